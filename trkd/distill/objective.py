"""The method-agnostic distillation objective plugged into the trainer.

L = L_AAM(student) + w(e) · Σ(logit-level methods) + Σ(embedding-level methods), w(e) the KD
warm-up weight. Each method (`trkd.distill.methods`) takes the batch, the student's output, the
teacher's output and the step, and returns its weighted loss and the values to log.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from trkd.distill.teacher import TeacherOutput
from trkd.schedules import kd_warmup_weight


class DistillObjective:
    """AAM + the methods' losses; `teacher` yields the teacher's outputs for a batch (dumped or
    online), asked for only when a method needs them. What it returns beside the loss (τ, |F| …)
    the trainer logs with the loss, as interval means."""

    needs_levels = False

    def __init__(self, methods: List, teacher, warmup_epochs: int):
        self.methods, self.teacher = methods, teacher
        self.warmup_epochs = warmup_epochs
        self.needs = {n for m in methods for n in m.needs}

    def modules(self) -> Dict[str, nn.Module]:
        return {k: v for m in self.methods for k, v in m.modules().items()}

    def bind(self, student: nn.Module) -> None:
        """Give methods that run the student themselves (imlkd's sub-segments) the student."""
        for m in self.methods:
            if hasattr(m, "bind"):
                m.bind(student)

    def __call__(self, batch: Dict[str, torch.Tensor], out, step):
        aam = F.cross_entropy(out.margin_logits, batch["target"])
        loss, parts = aam, {"aam": aam.detach()}
        teacher: Optional[TeacherOutput] = self.teacher(batch) if self.needs else None
        w = kd_warmup_weight(step.epoch, self.warmup_epochs)
        for method in self.methods:
            value, logs = method(batch, out, teacher, step)
            loss = loss + (w if method.warm else 1.0) * value
            parts.update(logs)
        if any(m.warm for m in self.methods):
            parts["kd_weight"] = torch.tensor(w)
        return loss, parts

