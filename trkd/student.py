"""What the trainer trains: the student (network + AAM head + extra trainable modules), its
output, the step record objectives see, the plain AAM objective, and the precision helpers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from trkd.config import Config
from trkd.utils.device import Runtime
from trkd.utils.precision import autocast


@dataclass
class StudentOutput:
    embedding: torch.Tensor
    margin_logits: torch.Tensor
    cosine_logits: torch.Tensor
    levels: Optional[List[torch.Tensor]] = None


@dataclass(frozen=True)
class Step:
    """Where the loop is; objectives derive their schedules (KD warm-up, τ) from it."""

    epoch: int
    iteration: int
    iters_per_epoch: int
    lr: float
    margin: float
    epochs: int = 0   # of the whole run (schedules given as a share of it)


class AAMObjective:
    """The plain speaker-classification loss: cross-entropy on the AAM-softmax logits."""

    needs_levels = False

    def __call__(self, batch: Dict[str, torch.Tensor], out: StudentOutput, step: Step):
        loss = F.cross_entropy(out.margin_logits, batch["target"])
        return loss, {"aam": loss.detach()}

    def modules(self) -> Dict[str, nn.Module]:
        return {}


class Student(nn.Module):
    """Embedding network + AAM head + any extra trainable modules, as one DDP-wrappable module."""

    def __init__(self, model: nn.Module, head: nn.Module, extras: Optional[Dict[str, nn.Module]] = None):
        super().__init__()
        self.model, self.head = model, head
        self.extras = nn.ModuleDict(extras or {})

    def forward(self, feats, target, margin: float, levels: bool = False) -> StudentOutput:
        lv = self.model.forward_levels(feats) if levels else None
        emb = lv[-1] if levels else self.model(feats)
        margin_logits, cosine_logits = self.head(emb, target, margin)
        return StudentOutput(emb, margin_logits, cosine_logits, lv)


def to_float(x):
    """Tensors (also inside lists, named tuples such as a top-K dump's SparseTeacher, and
    dataclasses such as StudentOutput) as float32."""
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(to_float(v) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(to_float(v) for v in x)
    if dataclasses.is_dataclass(x):
        return dataclasses.replace(x, **{f.name: to_float(getattr(x, f.name)) for f in dataclasses.fields(x)})
    return x


class PrecisionSource:
    """An objective's teacher source run under the forward-pass precision, returning float32."""

    def __init__(self, source, device: torch.device, precision: str):
        self.source, self.device, self.precision = source, device, precision

    def __call__(self, batch):
        with autocast(self.device, self.precision):
            out = self.source(batch)
        return to_float(out)


def uses_sync_bn(cfg: Config, rt: Runtime) -> bool:
    """SyncBatchNorm iff asked for and DDP on CUDA: gloo has no SyncBatchNorm, so a CPU run keeps
    each rank's BatchNorm statistics over its own shard of the batch."""
    return cfg.train.sync_bn and rt.distributed and rt.device.type == "cuda"


def build_student(cfg: Config, extras: Optional[Dict[str, nn.Module]] = None) -> Student:
    """The model and head of a resolved config (feat_dim and num_classes filled in)."""
    from trkd.models import build_model
    from trkd.models.aam import AAMSoftmax

    model = build_model(dict(cfg.model))
    head = AAMSoftmax(model.embed_dim, cfg.head.num_classes, scale=cfg.head.scale, fallback=cfg.head.margin_fallback)
    return Student(model, head, extras)


def forward(net: nn.Module, objective, batch: Dict[str, torch.Tensor], step: Step, device: torch.device,
            precision: str) -> StudentOutput:
    """The student's forward in `precision`, its outputs in float32 for the objective (which runs
    in float32; its teacher source must already be a `PrecisionSource`)."""
    with autocast(device, precision):
        out = net(batch["feats"], batch["target"], step.margin, levels=getattr(objective, "needs_levels", False))
    return to_float(out)


def with_precision(objective, device: torch.device, precision: str):
    """`objective` with its teacher source (if any) run in `precision`; returns the objective."""
    if getattr(objective, "teacher", None) is not None and precision != "fp32":
        objective.teacher = PrecisionSource(objective.teacher, device, precision)
    return objective

