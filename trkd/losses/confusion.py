"""TRKD's triage of the non-target classes: the confusion set F(τ) (spec: trkd, steps 1–2).

Rank the non-targets by teacher probability, descending, ties by ascending class index; F is the
shortest prefix of that ranking whose mass reaches τ, the crossing class included. Only the top
of the ranking matters, so instead of sorting the class axis (35 ms at B = 256, C = 5 994) a
`topk` whose k grows (at least doubling) until every row's cumulative mass reaches τ finds F's
size; membership is then read off the full row with an exact tie rule, because torch.topk does
not order ties.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from trkd.losses.common import (NEG_INF, as_working, finite, masked_max_sumexp, target_mask,
                                without_target, working_dtype)

CUTOFFS = ("conditional", "joint")
# Smallest k tried, and the factor by which k overshoots a lower bound on |F|: topk costs
# more per call than per k.
INITIAL_K = 32
GROWTH = 2


def check_settings(tau: Optional[float], cutoff: str, topk: Optional[int]) -> None:
    """Raise ValueError for a cutoff, τ or top-k that the partition cannot use."""
    if cutoff not in CUTOFFS:
        raise ValueError(f"unknown cutoff {cutoff!r}; valid: {', '.join(CUTOFFS)}")
    if topk is not None:
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive integer, got {topk!r}")
    elif tau is None or not tau > 0:
        raise ValueError(f"tau must be > 0 (or give topk), got {tau!r}")


def is_all_nontargets(num_classes: int, tau: Optional[float], topk: Optional[int]) -> bool:
    """True when F is every non-target, which needs no ranking at all (τ ≥ 1, or K ≥ C − 1)."""
    return topk >= num_classes - 1 if topk is not None else tau >= 1.0


def teacher_key(zt: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The ranking key: the teacher's scaled logits made `finite`, the target at −inf."""
    return without_target(zt, target)


class Split(NamedTuple):
    """F as a bool (B, C) mask, |F| (B,), and F's class indices (B, max |F|): row b's first
    |F|_b entries (`valid`), so that sums over F are gathers, not passes over the class axis."""
    mask: torch.Tensor
    size: torch.Tensor
    index: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        ranks = torch.arange(self.index.shape[1], device=self.index.device)
        return ranks.unsqueeze(0) < self.size.unsqueeze(1)


def partition(key: torch.Tensor, ref, tau: Optional[float], topk: Optional[int]) -> Split:
    """F from `teacher_key` of the scaled teacher logits.

    `ref` = (m, s): the cutoff's masses are exp(key_i − m) / s, with m, s from
    `masked_max_sumexp` over the non-targets (`conditional`) or all classes (`joint`); unused
    with `topk`. The caller handles F = every non-target (`is_all_nontargets`) without ranking.
    """
    n = key.shape[-1] - 1
    if topk is not None:
        values, index = key.topk(topk, dim=-1, sorted=True)
        size = torch.full((key.shape[0],), topk, dtype=torch.long, device=key.device)
    else:
        values, index, size = _cutoff_size(key, ref, float(tau), n)
    threshold = values.gather(1, (size - 1).unsqueeze(1))
    above = key >= threshold
    widest = int(size.max())
    if bool((above.sum(-1) == size).all()):
        # Exactly |F| classes reach the threshold, so topk's first |F| are F, whatever its order.
        return Split(above, size, index[:, :widest])
    # Ties at the threshold: keep the lowest class indices among them, as many as F still needs.
    strictly = key > threshold
    tied = key == threshold
    need = (size - strictly.sum(-1)).unsqueeze(1)
    mask = strictly | (tied & (tied.cumsum(-1) <= need))
    index = key.masked_fill(~mask, NEG_INF).topk(widest, dim=-1).indices
    return Split(mask, size, index)


def _cutoff_size(key: torch.Tensor, ref, tau: float, n: int):
    """Top values and indices (B, k) and |F| per row, k grown until every row's mass reaches τ."""
    shift, total = ref[0].unsqueeze(1), ref[1].double().unsqueeze(1)
    # No mass exceeds the top one, so a row needs at least τ / (its top mass) classes.
    top = (key.amax(-1, keepdim=True) - shift).double().exp() / total
    bound = float((tau / top).max().clamp(max=n).ceil())  # top mass 0: joint, target-saturated
    k = int(min(max(INITIAL_K, GROWTH * bound), n))
    while True:
        values, index = key.topk(k, dim=-1, sorted=True)
        mass = (values - shift).double().exp() / total
        inclusive = mass.cumsum(-1)
        missing = tau - inclusive[:, -1]
        if k == n or bool((missing <= 0).all()):
            break
        # Masses fall with rank, so a row still short of τ needs at least missing / (its k-th
        # mass) more classes.
        extra = torch.where(missing > 0, missing / mass[:, -1], 0.0).max().clamp(max=n)
        k = int(min(max(2 * k, GROWTH * (k + float(extra.ceil()))), n))
    exclusive = torch.cat([torch.zeros_like(inclusive[:, :1]), inclusive[:, :-1]], dim=1)
    # S_<r is non-decreasing, so counting the ranks with S_<r < τ gives the prefix length.
    return values, index, (exclusive < tau).sum(-1)


def confusion_mask(teacher_logits: torch.Tensor, target: torch.Tensor, tau: Optional[float],
                   temperature: float = 4.0, cutoff: str = "conditional",
                   topk: Optional[int] = None) -> torch.Tensor:
    """TRKD's confusion set F(τ) as a bool (B, C) mask (spec: trkd, "Assess").

    With p = softmax(z/T) of the teacher, rank the non-targets by p descending (ties: ascending
    index); F = {π_r : S_<r < τ}, S_<r the exclusive prefix sum of p/(1 − p_y) (`conditional`) or
    of p (`joint`). `topk` = K takes the K highest non-targets instead (τ unused). Kim et al.,
    ICASSP 2026.
    """
    check_settings(tau, cutoff, topk)
    zt = finite(as_working(teacher_logits.detach(), working_dtype(teacher_logits)) / temperature)
    targets = target_mask(target, zt.shape[-1])
    if is_all_nontargets(zt.shape[-1], tau, topk):
        return ~targets
    key = teacher_key(zt, target)
    ref = None
    if topk is None:
        ref = masked_max_sumexp(key if cutoff == "conditional" else zt, None)
    return partition(key, ref, tau, topk).mask
