"""Training settings: one dataclass per yaml block, defaults = the seed paper's VoxCeleb values.

A yaml file only overrides what it names; an unknown block or key is an `InputError` naming the
file, the line and the key, so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

from trkd.distill.kd_config import KDConfig
from trkd.errors import InputError
from trkd.utils.typed_yaml import from_dict, read_yaml


# `--quick`: a smoke test of a recipe, every schedule squeezed into two epochs (results meaningless)
QUICK = {"train.epochs": 2, "train.avg_last": 2, "optim.warmup_epochs": 1.0,
         "head.margin_start_epoch": 1, "head.margin_stop_epoch": 2}


def _default_model() -> Dict[str, Any]:
    return {"name": "ecapa", "feat_dim": 80, "embed_dim": 192, "channels": 1024}


@dataclass
class HeadConfig:
    """AAM-softmax head; `num_classes` is derived from the data (written to the resolved config)."""

    scale: float = 32.0
    margin: float = 0.2
    margin_start_epoch: int = 20
    margin_stop_epoch: int = 40
    margin_ramp: str = "linear"          # or exp (trkd.schedules.margin_at)
    margin_fallback: str = "arcface"     # or wespeaker, where θ_y + m ≥ π (trkd.models.aam)
    num_classes: Optional[int] = None


@dataclass
class DataConfig:
    """Random-chunk sampling; `batch_size` is the GLOBAL batch, shared out over the DDP ranks.

    `aug_prob`: with a `utt2source` in the data dir, the chance that an epoch's item of a source is
    one of its augmented copies rather than the clean one (the paper's 0.6).
    """

    num_frms: int = 200
    batch_size: int = 512
    num_workers: int = 4
    min_frames: int = 0
    aug_prob: float = 0.6
    spec_aug: bool = False
    spec_aug_prob: float = 0.6
    spec_aug_time_masks: int = 1
    spec_aug_max_time: int = 10
    spec_aug_freq_masks: int = 1
    spec_aug_max_freq: int = 8


@dataclass
class OptimConfig:
    """SGD with Nesterov momentum; lr warm-up 0 → lr then exponential decay to final_lr."""

    lr: float = 0.1
    final_lr: float = 5e-5
    warmup_epochs: float = 6.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4


@dataclass
class TrainConfig:
    epochs: int = 150
    avg_last: int = 10
    log_interval: int = 100
    seed: int = 42


@dataclass
class Config:
    """A whole training config; `kd` is read by `trkd distill` only."""

    model: Dict[str, Any] = field(default_factory=_default_model)
    head: HeadConfig = field(default_factory=HeadConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    command: Optional[str] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any], source: Union[str, Path, None] = None, lines=None) -> "Config":
        """Build from a nested dict; `lines` maps a key path ('optim.lr') to its yaml line."""
        cfg = from_dict(cls, d or {}, source, "", lines or {})
        cfg.kd.check(source, lines or {}, (d or {}).get("kd"))
        return cfg

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: Union[str, Path], overrides: Optional[Dict[str, Any]] = None) -> Config:
    """Read a yaml config; `overrides` ({'train.seed': 3}) are applied after the file."""
    path = Path(path)
    data, lines = read_yaml(path)
    for dotted, value in (overrides or {}).items():
        block, _, key = dotted.rpartition(".")
        target = data
        for part in filter(None, block.split(".")):
            target = target.setdefault(part, {})
        target[key] = value
    cfg = Config.from_dict(data, path, lines)
    _check_model_block(cfg.model, path, lines)
    _check_head_choices(cfg.head, path, lines)
    return cfg


def _check_head_choices(head: HeadConfig, path: Path, lines: Dict[str, int]) -> None:
    from trkd.models.aam import FALLBACKS
    from trkd.schedules import MARGIN_RAMPS

    for key, valid in (("margin_ramp", MARGIN_RAMPS), ("margin_fallback", FALLBACKS)):
        if getattr(head, key) not in valid:
            raise InputError(path, f"head.{key}: {getattr(head, key)!r} is not one of {', '.join(valid)}",
                             lines.get(f"head.{key}"))


def _check_model_block(model: Dict[str, Any], path: Path, lines: Dict[str, int]) -> None:
    """The `model:` keys against the registry, so a typo points at its line before any work."""
    from trkd.models import MODELS, accepted_keys

    name = model.get("name")
    if name not in MODELS:
        raise InputError(path, f"unknown model name {name!r} (valid: {', '.join(MODELS)})",
                         lines.get("model.name", lines.get("model")))
    valid = accepted_keys(name)
    for key in model:
        if key != "name" and key not in valid:
            raise InputError(path, f"unknown key 'model.{key}' for model {name!r} (valid: name, {', '.join(valid)})",
                             lines.get(f"model.{key}"))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False, width=1 << 16)


def diff_keys(a: Dict[str, Any], b: Dict[str, Any], prefix: str = "") -> List[str]:
    """Key paths whose values differ between two nested dicts."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_keys(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
