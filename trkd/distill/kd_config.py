"""The `kd:` block of a student config: shared settings and one sub-block per method.

One student yaml serves every method of a recipe's comparison (`--methods "none kd dkd trkd"`),
so each method reads its own sub-block, whose fields and defaults are its settings dataclass in
`trkd/distill/methods/<name>.py`. `trkd.config.Config` parses it with the rest of the file;
unknown keys are `InputError`s naming the file, line and key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field, make_dataclass
from typing import Any, Dict, Mapping, Optional

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
