"""Training settings: one dataclass per yaml block, defaults = the seed paper's VoxCeleb values.

This is the core config, what `trkd train` reads and writes. A student's yaml adds a `kd:` block,
which `trkd distill` reads (`trkd.distill.kd_config.DistillConfig` extends `Config` with it);
every other reader of a config or a model dir leaves that block out.

A yaml file only overrides what it names; an unknown block or key, a value of the wrong type or
out of its range is an `InputError` naming the file, the line and the key (or the command line,
for a key set there), so that a typo never silently falls back to a default or fails deep inside
training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

from trkd.errors import InputError
from trkd.utils.precision import PRECISIONS
from trkd.utils.typed_yaml import Lines, bounded, from_dict, key_error, read_yaml, type_name


# `--quick`: a smoke test of a recipe, every schedule squeezed into two epochs (results meaningless)
QUICK = {"train.epochs": 2, "train.avg_last": 2, "optim.warmup_epochs": 1.0,
         "head.margin_start_epoch": 1, "head.margin_stop_epoch": 2}


def _default_model() -> Dict[str, Any]:
    return {"name": "ecapa", "feat_dim": 80, "embed_dim": 192, "channels": 1024}


@dataclass
class HeadConfig:
    """AAM-softmax head; `num_classes` is derived from the data (written to the resolved config)."""

    scale: float = bounded(32.0, above=0)
    margin: float = bounded(0.2, min=0.0, max=1.5)
    margin_start_epoch: int = bounded(20, min=0)
    margin_stop_epoch: int = bounded(40, min=0)
    margin_ramp: str = "linear"          # or exp (trkd.schedules.margin_at)
    margin_fallback: str = "arcface"     # or wespeaker, where θ_y + m ≥ π (trkd.models.aam)
    num_classes: Optional[int] = bounded(None, min=2)


@dataclass
class DataConfig:
    """Random-chunk sampling; `batch_size` is the GLOBAL batch, shared out over the DDP ranks.

    `aug_prob`: with a `utt2source` in the data dir, an epoch draws one item per source utterance,
    one of its augmented copies with this chance, else the clean one (the paper's 0.6); null: every
    stored copy is an item of every epoch (as for a dir without `utt2source`).
    Loader: `num_workers` processes per rank, each keeping `prefetch_factor` batches ready and
    staying alive between epochs (`persistent_workers`); `pin_memory` (null: on CUDA) lets the
    copy to the GPU overlap the step.
    """

    num_frms: int = bounded(200, min=1)
    batch_size: int = bounded(512, min=1)
    num_workers: int = bounded(4, min=0)
    pin_memory: Optional[bool] = None
    persistent_workers: bool = True
    prefetch_factor: int = bounded(2, min=1)
    min_frames: int = bounded(0, min=0)
    aug_prob: Optional[float] = bounded(0.6, min=0.0, max=1.0)
    spec_aug: bool = False
    spec_aug_prob: float = bounded(0.6, min=0.0, max=1.0)
    spec_aug_time_masks: int = bounded(1, min=0)
    spec_aug_max_time: int = bounded(10, min=0)
    spec_aug_freq_masks: int = bounded(1, min=0)
    spec_aug_max_freq: int = bounded(8, min=0)


@dataclass
class OptimConfig:
    """SGD with Nesterov momentum; lr warm-up 0 → lr then exponential decay to final_lr."""

    lr: float = bounded(0.1, above=0)
    final_lr: float = bounded(5e-5, above=0)
    warmup_epochs: float = bounded(6.0, min=0.0)
    momentum: float = bounded(0.9, min=0.0, max=1.0)
    nesterov: bool = True
    weight_decay: float = bounded(1e-4, min=0.0)


@dataclass
class TrainConfig:
    """`precision` null: bf16 on a GPU that has it, else fp32 (trkd.utils.precision); `sync_bn`:
    SyncBatchNorm under DDP on CUDA (gloo/CPU runs keep per-rank BatchNorm statistics)."""

    epochs: int = bounded(150, min=1)
    avg_last: int = bounded(10, min=1)
    log_interval: int = bounded(100, min=1)
    seed: int = 42
    precision: Optional[str] = bounded(None, choices=PRECISIONS)
    sync_bn: bool = True


# The block that `trkd distill` adds to a config (a student's settings per distillation method).
DISTILL_BLOCK = "kd"


@dataclass
class Config:
    """A whole training config."""

    model: Dict[str, Any] = field(default_factory=_default_model)
    head: HeadConfig = field(default_factory=HeadConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    command: Optional[str] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any], source: Union[str, Path, None] = None, lines=None) -> "Config":
        """Build from a nested dict; `lines` maps a key path ('optim.lr') to its yaml line."""
        return from_dict(cls, d or {}, source, "", lines or {})

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def error(self, key: str, message: str) -> InputError:
        """An error about `key`, naming where it was set (file:line, or the command line)."""
        source, lines = getattr(self, "_origin", (None, {}))
        return key_error(source, key, message, lines)


def load_config(path: Union[str, Path], overrides: Optional[Dict[str, Any]] = None, schema=Config) -> Config:
    """Read a yaml config as `schema` (Config, or a class extending it); `overrides`
    ({'train.seed': 3}) are applied after the file. A `kd:` block (a student's yaml, a distilled
    model dir) is left out unless `schema` has it: training a teacher or reading a model dir
    needs none of the distillation methods' settings."""
    path = Path(path)
    data, yaml_lines = read_yaml(path)
    lines = Lines(yaml_lines, overrides)
    for dotted, value in (overrides or {}).items():
        block, _, key = dotted.rpartition(".")
        target = data
        for part in filter(None, block.split(".")):
            target = target.setdefault(part, {})
        target[key] = value
    if DISTILL_BLOCK not in {f.name for f in dataclasses.fields(schema)}:
        data.pop(DISTILL_BLOCK, None)
    cfg = schema.from_dict(data, path, lines)
    cfg._origin = (path, lines)
    check_model_block(cfg.model, path, lines)
    _check_head_choices(cfg.head, path, lines)
    return cfg


def _check_head_choices(head: HeadConfig, path: Path, lines: Dict[str, int]) -> None:
    from trkd.models.aam import FALLBACKS
    from trkd.schedules import MARGIN_RAMPS

    for key, valid in (("margin_ramp", MARGIN_RAMPS), ("margin_fallback", FALLBACKS)):
        if getattr(head, key) not in valid:
            raise InputError(path, f"head.{key}: {getattr(head, key)!r} is not one of {', '.join(valid)}",
                             lines.get(f"head.{key}"))


def check_model_block(model: Dict[str, Any], path, lines) -> None:
    """The `model:` keys against the registry, each value against its constructor default's type,
    then a build on the meta device (no memory, no time) for the constructor's own checks: a bad
    value points at its line before any work."""
    import inspect

    import torch

    from trkd.models import MODELS, build_model

    name = model.get("name")
    if name not in MODELS:
        raise key_error(path, "model.name" if "model.name" in lines else "model",
                        f"unknown model name {name!r} (valid: {', '.join(MODELS)})", lines)
    params = dict(list(inspect.signature(MODELS[name].__init__).parameters.items())[1:])
    for key, value in model.items():
        if key == "name":
            continue
        if key not in params:
            raise key_error(path, f"model.{key}", f"unknown key 'model.{key}' for model {name!r} "
                                                  f"(valid: name, {', '.join(params)})", lines)
        _check_model_value(value, params[key].default, path, f"model.{key}", lines)
    try:
        with torch.device("meta"):
            build_model(dict(model))
    except (ValueError, TypeError) as err:  # worded as `trkd info` words it
        raise InputError(path, f"model: {err}") from None


def _check_model_value(value: Any, default: Any, path, key: str, lines) -> None:
    """Sizes are positive ints, flags bools, rates numbers, lists lists, as the defaults are."""
    import inspect

    if default is inspect.Parameter.empty or default is None:
        return
    kind = bool if isinstance(default, bool) else type(default)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind in (tuple, list):
        ok = isinstance(value, (tuple, list))
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise key_error(path, key, f"key '{key}' must be {type_name(list if kind is tuple else kind)}, "
                                   f"got {value!r}", lines)
    if kind is int and value < (0 if default == 0 else 1):
        raise key_error(path, key, f"key '{key}' must be >= {0 if default == 0 else 1}, got {value!r}", lines)


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
