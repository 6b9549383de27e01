"""dkd: decoupled KD (Zhao et al., CVPR 2022), and enskd, its preset by Truong et al. (ICASSP 2024).

    b = [p_y, 1 − p_y],  p̂_i = p_i / (1 − p_y) for i ≠ y  (the softmax over the non-target logits)
    TCKD = T² · KL(bᵀ ‖ bˢ),  NCKD = T² · KL(p̂ᵀ ‖ p̂ˢ)
    L_dkd = α · TCKD + β · NCKD     (α = 1, β = 8, T = 4; enskd, as released: T = 1, β = 2)

`dkd_rows` states it plainly (masked log-sum-exps). Training computes the same terms on TRKD's
fast path (`trkd_fast`: one exponential of the non-target logits serves both terms), about 3×
faster than the masked log-sum-exps and the float32 arithmetic the recipes' tables were measured
with; tests pin the two together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Tuple

import torch

from trkd.distill.methods.base import LogitSettings, Method, scaled, student_logits
from trkd.distill.methods.trkd_fast.sets import LogitStats
from trkd.losses.common import NEG_INF, mass_kl, target_mask


@dataclass
class DKDSettings(LogitSettings):
    alpha: float = 1.0
    beta: float = 8.0


@dataclass
class ENSKDSettings(DKDSettings):
    """ENSKD's released configuration: DKD with T = 1 and β ("γ" there) = 2."""

    temperature: float = 1.0
    beta: float = 2.0


class DKDParts(NamedTuple):
    tckd: torch.Tensor
    nckd: torch.Tensor


def dkd_rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
             temperature: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD) per row, each already multiplied by T²; log-masses from log-sum-exps, so that
    1 − p_y never cancels."""
    y = target_mask(target, student_logits.shape[-1])

    def log_masses(z):
        lse_all, lse_nt = torch.logsumexp(z, -1), torch.logsumexp(z.masked_fill(y, NEG_INF), -1)
        binary = torch.stack([z[y] - lse_all, lse_nt - lse_all], -1)   # log [p_y, 1 − p_y]
        return binary, (z - lse_nt.unsqueeze(-1)).masked_fill(y, NEG_INF)   # log p̂

    (bs, hat_s), (bt, hat_t) = (log_masses(z) for z in scaled(student_logits, teacher_logits, temperature))
    return temperature ** 2 * mass_kl(bt, bs), temperature ** 2 * mass_kl(hat_t, hat_s)


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
             temperature: float = DKDSettings.temperature, alpha: float = DKDSettings.alpha,
             beta: float = DKDSettings.beta):
    """L_dkd, batch mean, on the fast path; returns (loss, DKDParts of unweighted means)."""
    stats = LogitStats(student_logits, teacher_logits, target, temperature)
    tckd, nckd = stats.masses_kl(("y", "nt")), stats.conditional_kl("nt")
    loss = (alpha * tckd + beta * nckd).mean()
    return loss, DKDParts(tckd.detach().mean(), nckd.detach().mean())


def enskd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
               temperature: float = ENSKDSettings.temperature, alpha: float = ENSKDSettings.alpha,
               beta: float = ENSKDSettings.beta):
    """ENSKD: DKD with the non-target term emphasised as in the authors' release."""
    return dkd_loss(student_logits, teacher_logits, target, temperature, alpha, beta)


class DKD(Method):
    Settings = DKDSettings

    def __call__(self, batch, out, teacher, step):
        s = self.settings
        cols = teacher.columns(student_logits(out, self.kind), batch["target"], s.temperature)
        loss, parts = dkd_loss(cols.student, cols.teacher, cols.target, s.temperature, s.alpha, s.beta)
        return loss, parts._asdict()


class ENSKD(DKD):
    Settings = ENSKDSettings
