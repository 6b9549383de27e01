"""Multi-level x-vector KD (Liu, Sahidullah, Kinnunen, 2023)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from trkd.losses.emb import embedding_distance


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
