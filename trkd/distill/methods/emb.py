"""emb: embedding-level KD.

    L_emb = λ_emb · mean_b (1 − cos(P eˢ_b, eᵀ_b))     (`distance: mse`: ‖P eˢ − eᵀ‖² on unit vectors)

P is a learned bias-free linear map when the embedding sizes differ, the identity otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from trkd.distill.heads import projection
from trkd.distill.methods.base import Method, Settings
from trkd.errors import InputError

DISTANCES = ("cosine", "mse")


def embedding_distance(pred: torch.Tensor, target: torch.Tensor, distance: str = "cosine"):
    """Batch mean of 1 − cos(pred, target) (`cosine`) or ‖n(pred) − n(target)‖² with n the L2
    normalisation (`mse`); computed in float32 or float64; `target` is detached."""
    if distance not in DISTANCES:
        raise ValueError(f"unknown embedding distance {distance!r}; valid: {', '.join(DISTANCES)}")
    if pred.shape != target.shape:
        raise ValueError(f"embedding shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    dtype = torch.float64 if torch.float64 in (pred.dtype, target.dtype) else torch.float32
    pred = F.normalize(pred.to(dtype), dim=-1)
    target = F.normalize(target.detach().to(dtype), dim=-1)
    if distance == "cosine":
        return (1.0 - (pred * target).sum(-1)).mean()
    return (pred - target).pow(2).sum(-1).mean()


def emb_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor,
             proj: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
             distance: str = "cosine") -> torch.Tensor:
    """L_emb = mean_b (1 − cos(P e^S_b, e^T_b)); `mse`: ‖P e^S − e^T‖² on L2-normalised vectors.

    P is `proj` (a learned linear map, required when the sizes differ), identity when None.
    """
    pred = student_emb if proj is None else proj(student_emb)
    if pred.shape[-1] != teacher_emb.shape[-1]:
        raise ValueError(f"student embedding size {pred.shape[-1]} != teacher's "
                         f"{teacher_emb.shape[-1]}: pass a projection")
    return embedding_distance(pred, teacher_emb, distance)


@dataclass
class EmbSettings(Settings):
    weight: float = 1.0
    distance: str = "cosine"

    def check(self, source, prefix: str, lines, given) -> None:
        if self.distance not in DISTANCES:
            raise InputError(source, f"'{prefix}.distance' must be one of {', '.join(DISTANCES)}",
                             lines.get(f"{prefix}.distance"))


class Emb(Method):
    Settings = EmbSettings
    level, warm, needs = "embedding", False, ("embedding",)

    def __init__(self, settings: EmbSettings, ctx):
        self.settings = settings
        self.proj = projection(ctx.student_dim, ctx.level_dims[-1])

    def __call__(self, batch, out, teacher, step):
        loss = emb_loss(out.embedding, teacher.embedding.float(), self.proj, self.settings.distance)
        return self.settings.weight * loss, {"emb": loss.detach()}

    def modules(self):
        return {} if self.proj is None else {"emb_proj": self.proj}
