"""A student's config: the core training config (`trkd.config.Config`) and its `kd:` block.

The `kd:` block holds shared settings and one sub-block per method: one student yaml serves every
method of a recipe's comparison (`--methods "none kd dkd trkd"`), so each method reads its own
sub-block, whose fields and defaults are its settings dataclass in
`trkd/distill/methods/<name>.py` (a `base.Settings`). `DistillConfig` parses the block with the
rest of the file, each sub-block typed field by field like every other block, then each method's
`check`; unknown keys are `InputError`s naming the file, line and key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from trkd.config import Config, load_config
from trkd.distill.methods import METHODS
from trkd.errors import InputError

LOGITS = ("margin", "cosine")


def _check(self, source, lines: Mapping[str, int], given: Optional[Mapping[str, Any]]) -> None:
    """Check every value and resolve the methods' settings; `given` is the block as written
    (the yaml and --set), which tells a named weight from its default."""
    given = given or {}
    if self.logits not in LOGITS:
        raise InputError(source, f"'kd.logits' must be one of {', '.join(LOGITS)}, got {self.logits!r}",
                         lines.get("kd.logits"))
    for name in METHODS:
        getattr(self, name).check(source, f"kd.{name}", lines, given.get(name) or {})


def _to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


# `warmup_epochs` is spec's kd_warmup_epochs (0: off), `logits` its kd_logits; `method`, `teacher`
# and `online` are written by `trkd distill` into the resolved config.
KDConfig = make_dataclass("KDConfig", [
    ("warmup_epochs", int, 20),
    ("logits", str, "margin"),
    *((name, m.Settings, field(default_factory=m.Settings)) for name, m in METHODS.items()),
    ("method", Optional[str], None),
    ("teacher", Optional[str], None),
    ("online", bool, False),
], namespace={"check": _check, "to_dict": _to_dict, "__module__": __name__})


@dataclass
class DistillConfig(Config):
    """The config of a student trained by `trkd distill`: the training config and the `kd:` block."""

    kd: KDConfig = field(default_factory=KDConfig)

    @classmethod
    def from_dict(cls, d: Dict[str, Any], source=None, lines=None) -> "DistillConfig":
        cfg = super().from_dict(d, source, lines)
        cfg.kd.check(source, lines or {}, (d or {}).get("kd"))
        return cfg


def load_distill_config(path: Union[str, Path], overrides: Optional[Dict[str, Any]] = None) -> DistillConfig:
    """A student's yaml (or a distilled model dir's config.yaml), its `kd:` block typed and checked."""
    return load_config(path, overrides, DistillConfig)
