"""kd: classical knowledge distillation (Hinton et al., 2015).

    L_kd = T² · KL(pᵀ ‖ pˢ),  p = softmax(z / T),  T = 4

`kl_rows` states it plainly (two log-softmaxes). Training computes the same KL on TRKD's fast
path (`trkd_fast`: one exponential of the non-target logits, shared by every class set), which
costs 0.6× the log-softmaxes at C = 5 994 and is the float32 arithmetic the recipes' tables were
measured with; tests pin the two together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from trkd.distill.methods.base import LogitSettings, Method, scaled, student_logits
from trkd.distill.methods.trkd_fast.sets import LogitStats
from trkd.losses.common import mass_kl


@dataclass
class KDSettings(LogitSettings):
    pass


class KDParts(NamedTuple):
    kl: torch.Tensor


def kl_rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(pᵀ ‖ pˢ) per row (0 · log 0 = 0 where the teacher's probability is 0)."""
    zs, zt = scaled(student_logits, teacher_logits, temperature)
    return temperature ** 2 * mass_kl(torch.log_softmax(zt, -1), torch.log_softmax(zs, -1))


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: Optional[torch.Tensor] = None,
            temperature: float = KDSettings.temperature):
    """L_kd, batch mean, on the fast path; returns (loss, KDParts). `target` is unused by the
    formula (a signature common to every logit loss)."""
    loss = LogitStats(student_logits, teacher_logits, target, temperature).full_kl().mean()
    return loss, KDParts(loss.detach())


class KD(Method):
    Settings = KDSettings

    def __call__(self, batch, out, teacher, step):
        t = self.settings.temperature
        cols = teacher.columns(student_logits(out, self.kind), batch["target"], t)
        loss, parts = kd_loss(cols.student, cols.teacher, cols.target, t)
        return loss, parts._asdict()
