"""Learned maps from the student's embedding to a teacher-side target (emb, mlkd)."""

from __future__ import annotations

from typing import Optional

from torch import nn


def projection(in_dim: int, out_dim: int, always: bool = False) -> Optional[nn.Linear]:
    """A bias-free linear map `in_dim → out_dim`; None (identity) when the sizes agree and not
    `always`. No bias: both losses compare directions, which a bias would shift for every input."""
    if in_dim == out_dim and not always:
        return None
    return nn.Linear(in_dim, out_dim, bias=False)
