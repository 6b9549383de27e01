"""kd: classical knowledge distillation (Hinton et al., 2015).

    L_kd = T² · KL(pᵀ ‖ pˢ),  p = softmax(z / T),  T = 4
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, NamedTuple

import torch

from trkd.distill.methods.logit import LogitMethod, LogitSettings
from trkd.losses.terms import logit_kd


@dataclass
class KDSettings(LogitSettings):
    FIXED: ClassVar[Dict[str, float]] = {"kl": 1.0}


class KDParts(NamedTuple):
    kl: torch.Tensor


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
            temperature: float = KDSettings.temperature):
    """L_kd, batch mean; returns (loss, KDParts). `target` is unused by the formula (a signature
    common to every logit loss)."""
    loss, parts = logit_kd(student_logits, teacher_logits, target, {"kl": 1.0}, temperature)
    return loss, KDParts(parts["kl"])


class KD(LogitMethod):
    Settings = KDSettings
