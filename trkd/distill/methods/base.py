"""What every method shares: settings with a default check, the method's interface, and the
numerics of a KL between two networks' logits.

A method reads the teacher only through `teacher.columns(student_logits, target, T)`, the logits
both networks share (`trkd.distill.teacher.Columns`): every class for an online teacher or a dense
dump, a top-K dump's K classes, the target and the lumped rest otherwise. So a method's formula
runs unchanged on every kind of teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

import torch

from trkd.losses.common import as_working, finite, working_dtype


@dataclass
class Settings:
    """A method's `kd.<name>` block: fields and defaults. `check` validates the values once the
    yaml and --set are applied (`given`: the keys they named); the default accepts them."""

    def check(self, source, prefix: str, lines: Mapping[str, int], given: Mapping[str, Any]) -> None:
        return None


@dataclass
class LogitSettings(Settings):
    temperature: float = 4.0   # Hinton's, unless a method says otherwise


class Method:
    """A distillation method: `Settings`, `level` ("logit": weighted by the KD warm-up when `warm`;
    "embedding"), `needs` (what it reads of the teacher: "logits", "embedding", "levels"),
    `online_only` (it runs the teacher itself). Built from its settings and a `Context`;
    `__call__(batch, out, teacher, step) -> (loss, {name: value to log})`."""

    Settings = Settings
    level, warm, needs, online_only = "logit", True, ("logits",), False

    def __init__(self, settings, ctx):
        self.settings, self.kind = settings, ctx.kd.logits

    def modules(self) -> Dict[str, torch.nn.Module]:
        """Learned heads to train and checkpoint."""
        return {}

    def describe(self, logs) -> str:
        """A progress line for the log every log interval ('' for none)."""
        return ""


def student_logits(out, kind: str) -> torch.Tensor:
    """The student's logits that are distilled (`kd.logits`): AAM (margin applied) or s·cos θ."""
    return out.margin_logits if kind == "margin" else out.cosine_logits


def scaled(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """z / T of both networks in float32 (float64 stays float64; half precision never reaches a
    loss), the teacher detached, its −inf logits (probability 0) made the most negative float."""
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(f"student and teacher logits must both be (B, C), got {tuple(student.shape)} "
                         f"and {tuple(teacher.shape)}")
    dtype = working_dtype(student, teacher)
    return as_working(student, dtype) / temperature, finite(as_working(teacher.detach(), dtype) / temperature)
