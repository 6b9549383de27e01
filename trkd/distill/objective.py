"""The method-agnostic distillation objective plugged into the trainer.

L = L_AAM(student) + w(e) · Σ(logit-level methods) + Σ(embedding-level methods), w(e) the KD
warm-up weight. Each method (`trkd.distill.methods`) takes the batch, the student's output, the
teacher's output and the step, and returns its weighted loss and the values to log.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from trkd.distill.teacher import TeacherOutput
from trkd.schedules import kd_warmup_weight

log = logging.getLogger("trkd.train")


class DistillObjective:
    """AAM + the methods' losses; `teacher` yields the teacher's outputs for a batch (dumped or
    online), asked for only when a method needs them. Every `log_interval` steps it logs each
    method's `describe` line (TRKD: the current τ and |F|)."""

    needs_levels = False

    def __init__(self, methods: List, teacher, warmup_epochs: int, log_interval: int = 0):
        self.methods, self.teacher = methods, teacher
        self.warmup_epochs, self.log_interval = warmup_epochs, log_interval
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
        self._log(step, parts)
        return loss, parts

    def _log(self, step, parts) -> None:
        """The methods' progress lines (the trainer's log lines hold running means over the epoch)."""
        i = step.iteration - (step.epoch - 1) * step.iters_per_epoch
        if not (self.log_interval and (i + 1) % self.log_interval == 0):
            return
        for method in self.methods:
            line = method.describe(parts)
            if line:
                log.info("epoch %d iter %d/%d %s", step.epoch, i + 1, step.iters_per_epoch, line)
