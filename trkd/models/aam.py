"""Additive angular margin softmax head (ArcFace, Deng et al. 2019; AAM-softmax in speaker
verification)."""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


# fallback name -> the amount subtracted from cos θ_y where θ_y + m ≥ π
FALLBACKS = {
    "arcface": lambda m: math.sin(m) * m,
    "wespeaker": lambda m: 1.0 + math.cos(math.pi - m),
}


class AAMSoftmax(nn.Module):
    """Cosine classifier whose target logit is s·cos(θ_y + m).

    `forward(emb, target, margin)` returns `(margin_logits, cosine_logits)`, both `(B, C)` and
    scaled by s: the first has the margin on the target class (the training loss and the default
    distilled logits), the second is s·cos θ for every class. The margin is an argument of each
    call because it follows a schedule (`trkd.schedules.margin_at`).

    Where θ_y + m ≥ π, cos(θ_y + m) would rise again and reward a worse angle; there the target
    logit falls back to a monotone function of θ_y, by `fallback` (FALLBACKS):
    "arcface" (default): cos θ_y − m·sin m, the ArcFace paper's (insightface's) choice;
    "wespeaker": cos θ_y − (1 + cos(π − m)) = cos θ_y − (1 − cos m), WeSpeaker's, which meets
    cos(θ_y + m) exactly at θ_y = π − m (the arcface fallback jumps there by m·sin m − 1 + cos m,
    −0.020 for m = 0.2). With `easy_margin` the margin is applied only where cos θ_y > 0.
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 32.0, easy_margin: bool = False,
                 fallback: str = "arcface"):
        super().__init__()
        if fallback not in FALLBACKS:
            raise ValueError(f"unknown margin fallback {fallback!r}; valid: {', '.join(FALLBACKS)}")
        self.fallback = fallback
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.scale = float(scale)
        self.easy_margin = easy_margin
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.xavier_normal_(self.weight)

    def forward(self, emb: torch.Tensor, target: torch.Tensor, margin: float) -> Tuple[torch.Tensor, torch.Tensor]:
        # Angles in half precision lose the margin (cos 0.2 rad differs from 1 by 0.02).
        with torch.autocast(device_type=emb.device.type, enabled=False):
            cosine = F.linear(F.normalize(emb.float(), dim=1), F.normalize(self.weight.float(), dim=1))
            cosine = cosine.clamp(-1.0, 1.0)
            sine = (1.0 - cosine.pow(2)).clamp(min=0.0).sqrt()
            phi = cosine * math.cos(margin) - sine * math.sin(margin)
            if self.easy_margin:
                phi = torch.where(cosine > 0, phi, cosine)
            else:
                # θ + m < π  ⇔  cos θ > cos(π − m)
                phi = torch.where(cosine > math.cos(math.pi - margin), phi, cosine - FALLBACKS[self.fallback](margin))
            one_hot = F.one_hot(target.long(), self.num_classes).bool()
            margin_logits = torch.where(one_hot, phi, cosine) * self.scale
            return margin_logits, cosine * self.scale

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_classes={self.num_classes}, scale={self.scale}, "
                f"easy_margin={self.easy_margin}, fallback={self.fallback}")
