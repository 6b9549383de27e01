"""Integrated multi-level KD (Yang et al., 2024) — a documented approximation.

The paper's full text could not be read: this follows our reconstruction from the
abstract. Integrated Gradients of the teacher's target logit re-weight the input features; the
teacher's logits on that integrated input supervise the student's logits on the plain input at
instance, class and batch level. Cropping the sub-segments belongs to the training code.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch

from trkd.losses.common import as_working, working_dtype
from trkd.losses.stats import LogitStats
from trkd.losses.terms import TERMS

TINY = 1e-12  # keeps an all-zero attribution map at a = 0 instead of 0 / 0


class IMLKDParts(NamedTuple):
    instance: torch.Tensor
    cls: torch.Tensor
    batch: torch.Tensor


def integrated_gradients(forward_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                         target: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """IG = x ⊙ mean_k ∇F(α_k x), α_k = (k − 0.5)/m, of the target logit F of `forward_fn`.

    `forward_fn` maps fbank (B, T, F) to logits (B, C) with no coupling between examples (eval
    mode); the baseline is the all-zero input. Only the input's gradient is taken: no parameter
    gradient is accumulated. Returns a detached tensor shaped like `x`.
    """
    x = x.detach()
    total = torch.zeros_like(x)
    index = target.long().unsqueeze(1)
    with torch.enable_grad():
        for k in range(1, steps + 1):
            scaled = ((k - 0.5) / steps * x).requires_grad_(True)
            chosen = forward_fn(scaled).gather(1, index).sum()
            total += torch.autograd.grad(chosen, scaled)[0]
    return x * total / steps


def integrated_input(x: torch.Tensor, ig: torch.Tensor) -> torch.Tensor:
    """x̃ = x ⊙ (0.5 + a), a = |IG| / max |IG| per example (max over all but the batch axis)."""
    attribution = ig.abs()
    peak = attribution.flatten(1).amax(1).view(-1, *([1] * (ig.dim() - 1)))
    return x * (0.5 + attribution / peak.clamp_min(TINY))


def _gram_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖aᵀa − bᵀb‖²_F through (B, B) products: ‖aaᵀ‖² + ‖bbᵀ‖² − 2‖abᵀ‖², never a (C, C) matrix.

    float64, because the three terms nearly cancel when the student matches the teacher.
    """
    a, b = a.double(), b.double()
    return ((a @ a.T).pow(2).sum() + (b @ b.T).pow(2).sum() - 2 * (a @ b.T).pow(2).sum())


def imlkd_objective(student_logits: torch.Tensor, teacher_logits_on_integrated: torch.Tensor,
                    temperatures: Sequence[float] = (1, 2, 4)):
    """Instance + class + batch levels; returns (loss, IMLKDParts).

    instance = Σ_T T² KL(pᵀ_T ‖ pˢ_T) (batch mean); with P the (B, C) probabilities at T = 1,
    class = ‖Pᵀᵀ Pᵀ − Pˢᵀ Pˢ‖²_F / C and batch = ‖Pᵀ Pᵀᵀ − Pˢ Pˢᵀ‖²_F / B.
    """
    teacher = teacher_logits_on_integrated.detach()
    instance = sum(TERMS["kl"](LogitStats(student_logits, teacher, None, t))
                   for t in temperatures).mean()
    dtype = working_dtype(student_logits, teacher)
    p_s = torch.softmax(as_working(student_logits, dtype), -1)
    p_t = torch.softmax(as_working(teacher, dtype), -1)
    num_batch, num_classes = p_s.shape
    cls = (_gram_gap(p_t, p_s) / num_classes).to(p_s.dtype)
    batch = (p_t @ p_t.T - p_s @ p_s.T).pow(2).sum() / num_batch
    loss = instance + cls + batch
    return loss, IMLKDParts(instance.detach(), cls.detach(), batch.detach())
