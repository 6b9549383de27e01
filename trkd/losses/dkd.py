"""Decoupled KD (Zhao et al., CVPR 2022) and its ENSKD preset (Truong et al., ICASSP 2024)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from trkd.losses.terms import logit_kd


class DKDParts(NamedTuple):
    tckd: torch.Tensor
    nckd: torch.Tensor


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
             temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0):
    """L_dkd = α · TCKD + β · NCKD, batch mean; returns (loss, DKDParts of unweighted means).

    TCKD = T² KL(bᵀ ‖ bˢ) with b = [p_y, 1 − p_y]; NCKD = T² KL(p̂ᵀ ‖ p̂ˢ) with p̂ the softmax over
    the non-target logits.
    """
    loss, parts = logit_kd(student_logits, teacher_logits, target,
                           {"tckd": alpha, "nckd": beta}, temperature)
    return loss, DKDParts(parts["tckd"], parts["nckd"])


def enskd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
               temperature: float = 1.0, alpha: float = 1.0, beta: float = 2.0):
    """ENSKD: DKD with the non-target term emphasised as in the authors' release (T = 1, β = 2)."""
    return dkd_loss(student_logits, teacher_logits, target, temperature, alpha, beta)
