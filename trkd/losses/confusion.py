"""TRKD's triage of the non-target classes: the confusion set F(τ) (spec: trkd, steps 1–2).

Rank the non-targets by teacher probability, descending, ties by ascending class index; F is the
shortest prefix of that ranking whose mass reaches τ, the crossing class included. Only the top
of the ranking matters, so instead of sorting the class axis (35 ms at B = 256, C = 5 994) a
`topk` whose k grows (at least doubling) until every row's cumulative mass reaches τ finds F's
size; membership is then read off the full row with an exact tie rule, because torch.topk does
not order ties.
"""

from __future__ import annotations

from typing import Optional

import torch

from trkd.losses.common import NEG_INF, as_working, masked_max_sumexp, target_mask, working_dtype

CUTOFFS = ("conditional", "joint")
# First k tried: topk(32) costs little more than a max, and growth bounds the retries.
INITIAL_K = 32


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


def partition(zt: torch.Tensor, targets: torch.Tensor, ref, tau: Optional[float],
              topk: Optional[int]) -> torch.Tensor:
    """Bool (B, C) mask of F from the teacher's scaled logits `zt` and target mask `targets`.

    `ref` = (m, s) from `masked_max_sumexp` of `zt` over the non-targets (`conditional`) or all
    classes (`joint`): the cutoff's masses are exp(zt_i − m) / s. Unused with `topk`.
    """
    nontargets = ~targets
    n = zt.shape[-1] - 1
    if is_all_nontargets(zt.shape[-1], tau, topk):
        return nontargets
    key = zt.masked_fill(targets, NEG_INF)
    if topk is not None:
        values = key.topk(topk, dim=-1, sorted=True).values
        size = torch.full((zt.shape[0],), topk, dtype=torch.long, device=zt.device)
    else:
        values, size = _cutoff_size(key, ref, float(tau), n)
    threshold = values.gather(1, (size - 1).unsqueeze(1))
    above = key >= threshold
    if bool((above.sum(-1) == size).all()):
        return above
    # Ties at the threshold: keep the lowest class indices among them, as many as F still needs.
    strictly = key > threshold
    tied = (key == threshold) & nontargets
    need = (size - strictly.sum(-1)).unsqueeze(1)
    return strictly | (tied & (tied.cumsum(-1) <= need))


def _cutoff_size(key: torch.Tensor, ref, tau: float, n: int):
    """Top values (B, k) and |F| per row, growing k until every row's mass reaches τ."""
    k = min(INITIAL_K, n)
    shift, total = ref[0].unsqueeze(1), ref[1].double().unsqueeze(1)
    while True:
        values = key.topk(k, dim=-1, sorted=True).values
        mass = (values - shift).double().exp() / total
        inclusive = mass.cumsum(-1)
        missing = tau - inclusive[:, -1]
        if k == n or bool((missing <= 0).all()):
            break
        # Masses fall with rank, so a row still short of τ needs at least missing / (its k-th
        # mass) more classes: jump there at once when that beats doubling.
        extra = torch.where(missing > 0, missing / mass[:, -1], 0.0).max().clamp(max=n)
        needed = k + float(extra.ceil())
        k = int(min(max(2 * k, needed), n))
    exclusive = torch.cat([torch.zeros_like(inclusive[:, :1]), inclusive[:, :-1]], dim=1)
    # S_<r is non-decreasing, so counting the ranks with S_<r < τ gives the prefix length.
    return values, (exclusive < tau).sum(-1)


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
    zt = as_working(teacher_logits.detach(), working_dtype(teacher_logits)) / float(temperature)
    targets = target_mask(target, zt.shape[-1])
    ref = None
    if topk is None and not is_all_nontargets(zt.shape[-1], tau, topk):
        ref = masked_max_sumexp(zt, ~targets if cutoff == "conditional" else None)
    return partition(zt, targets, ref, tau, topk)
