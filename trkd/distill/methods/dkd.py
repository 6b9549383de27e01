"""dkd: decoupled KD (Zhao et al., CVPR 2022), and enskd, its preset by Truong et al. (ICASSP 2024).

    b = [p_y, 1 − p_y],  p̂_i = p_i / (1 − p_y) for i ≠ y  (the softmax over the non-target logits)
    TCKD = T² · KL(bᵀ ‖ bˢ),  NCKD = T² · KL(p̂ᵀ ‖ p̂ˢ)
    L_dkd = α · TCKD + β · NCKD     (α = 1, β = 8, T = 4; enskd, as released: T = 1, β = 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, NamedTuple, Optional

import torch

from trkd.distill.methods.logit import LogitMethod, LogitSettings
from trkd.losses.terms import logit_kd


@dataclass
class DKDSettings(LogitSettings):
    NAMED: ClassVar[Dict[str, str]] = {"alpha": "tckd", "beta": "nckd"}
    alpha: Optional[float] = 1.0
    beta: Optional[float] = 8.0


@dataclass
class ENSKDSettings(DKDSettings):
    """ENSKD's released configuration: DKD with T = 1 and β ("γ" there) = 2."""

    temperature: float = 1.0
    beta: Optional[float] = 2.0


class DKDParts(NamedTuple):
    tckd: torch.Tensor
    nckd: torch.Tensor


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
             temperature: float = DKDSettings.temperature, alpha: float = DKDSettings.alpha,
             beta: float = DKDSettings.beta):
    """L_dkd, batch mean; returns (loss, DKDParts of unweighted means)."""
    loss, parts = logit_kd(student_logits, teacher_logits, target,
                           {"tckd": alpha, "nckd": beta}, temperature)
    return loss, DKDParts(parts["tckd"], parts["nckd"])


def enskd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
               temperature: float = ENSKDSettings.temperature, alpha: float = ENSKDSettings.alpha,
               beta: float = ENSKDSettings.beta):
    """ENSKD: DKD with the non-target term emphasised as in the authors' release."""
    return dkd_loss(student_logits, teacher_logits, target, temperature, alpha, beta)


class DKD(LogitMethod):
    Settings = DKDSettings


class ENSKD(LogitMethod):
    Settings = ENSKDSettings
