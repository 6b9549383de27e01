"""Triage KD (Kim et al., ICASSP 2026): assess, prioritise, focus."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from trkd.losses.terms import logit_kd


class TRKDParts(NamedTuple):
    tm: torch.Tensor
    cf: torch.Tensor
    bg: torch.Tensor
    f_size: torch.Tensor


def trkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
              tau: Optional[float], temperature: float = 4.0, lambda_m: float = 1.0,
              lambda_f: float = 8.0, lambda_b: float = 0.0, cutoff: str = "conditional",
              topk: Optional[int] = None):
    """L_trkd = λ_M · TM + λ_F · CF + λ_B · BG, batch mean; returns (loss, TRKDParts).

    With the teacher's confusion set F(τ) (see `confusion_mask`) and background B, both applied
    to both networks: TM = T² KL of the masses [p_y, P_F, P_B]; CF, BG = T² KL of the softmaxes
    restricted to F, to B (BG = 0 where B is empty). Parts are unweighted batch means, f_size the
    mean |F|. At τ = 1 this is DKD with α = λ_M, β = λ_F.
    """
    loss, parts = logit_kd(student_logits, teacher_logits, target,
                           {"tm": lambda_m, "cf": lambda_f, "bg": lambda_b}, temperature,
                           tau=tau, cutoff=cutoff, topk=topk)
    return loss, TRKDParts(parts["tm"], parts["cf"], parts["bg"], parts["f_size"])
