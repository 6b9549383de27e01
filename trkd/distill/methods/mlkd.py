"""mlkd: multi-level x-vector KD (Liu, Sahidullah, Kinnunen, 2023).

    L_mlkd = λ · mean_b (1 − cos(head(eˢ_b), concat_l n(eᵀ_{l,b})))     (n: L2 normalisation)

`levels` index the teacher's level list (negative from the end; null: all); `head` is learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F

from trkd.distill.heads import projection
from trkd.distill.methods.emb import Emb, EmbSettings, embedding_distance


def mlkd_target(teacher_levels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenation of the teacher's level embeddings (B, D_l), each L2-normalised; detached."""
    if not teacher_levels:
        raise ValueError("mlkd needs at least one teacher level")
    return torch.cat([F.normalize(level.detach().float(), dim=-1) for level in teacher_levels], -1)


def mlkd_loss(student_emb: torch.Tensor, teacher_levels: Sequence[torch.Tensor],
              head: Callable[[torch.Tensor], torch.Tensor], distance: str = "cosine"):
    """L_mlkd = mean_b (1 − cos(head(e^S_b), concat_l n(e^T_{l,b}))), n the L2 normalisation.

    `head` (a learned linear map to the concatenated size) is passed in; `mse` as in emb_loss.
    """
    return embedding_distance(head(student_emb), mlkd_target(teacher_levels), distance)


@dataclass
class MLKDSettings(EmbSettings):
    levels: Optional[List[int]] = None


class MLKD(Emb):
    Settings = MLKDSettings
    needs = ("levels",)

    def __init__(self, settings: MLKDSettings, ctx):
        n = len(ctx.level_dims)
        chosen = list(range(n)) if settings.levels is None else list(settings.levels)
        bad = [i for i in chosen if not -n <= i < n]
        if bad or not chosen:
            raise ValueError(f"kd.mlkd.levels {settings.levels}: the teacher has {n} levels (0..{n - 1}, or negative)")
        self.settings, self.chosen = settings, [i % n for i in chosen]
        self.head = projection(ctx.student_dim, sum(ctx.level_dims[i] for i in self.chosen), always=True)

    def __call__(self, batch, out, teacher, step):
        levels = [teacher.levels[i] for i in self.chosen]
        loss = mlkd_loss(out.embedding, levels, self.head, self.settings.distance)
        return self.settings.weight * loss, {"mlkd": loss.detach()}

    def modules(self):
        return {"mlkd_head": self.head}
