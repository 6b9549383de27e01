"""Classical knowledge distillation (Hinton et al., 2015)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from trkd.losses.terms import logit_kd


class KDParts(NamedTuple):
    kl: torch.Tensor


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
            temperature: float = 4.0):
    """L_kd = T² · KL(pᵀ ‖ pˢ), p = softmax(z / T), batch mean; returns (loss, KDParts).

    `target` is unused by the formula; it is taken for a signature common to all logit losses.
    """
    loss, parts = logit_kd(student_logits, teacher_logits, target, {"kl": 1.0}, temperature)
    return loss, KDParts(parts["kl"])
