"""TRKD's triage of the non-target classes: the confusion set F(τ) (spec: trkd, steps 1–2).

Rank the non-targets by teacher probability, descending, ties by ascending class index; F is the
shortest prefix of that ranking whose mass reaches τ, the crossing class included:
F = {π_r : S_<r < τ}. Nothing sorts the class axis (a full sort costs several times DKD, and a
trained AAM teacher is flat: F holds most classes at τ near 1). A histogram of the masses in
buckets 0.4 % wide (a float's top bits) finds the bucket where the running mass crosses τ; the
classes above it are in F, and only the few inside it are ranked (key, then class index).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from trkd.losses.common import (NEG_INF, as_working, finite, masked_max_sumexp, target_mask,
                                without_target, working_dtype)

CUTOFFS = ("conditional", "joint")
# The cutoff's mass buckets (see `_cutoff_split`): TOP holds 1.0 (the top class), LOW is
# OCTAVES octaves below it.
OCTAVES = 24
TOP = 127 << 4
LOW = TOP - 16 * OCTAVES


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




def partition(key: torch.Tensor, ref, tau: Optional[float], topk: Optional[int],
              e: Optional[torch.Tensor] = None) -> Split:
    """F from `teacher_key` of the scaled teacher logits.

    `ref` = (m, s): the cutoff's masses are exp(key_i − m) / s, with m, s from
    `masked_max_sumexp` over the non-targets (`conditional`) or all classes (`joint`); unused
    with `topk`. `e` = exp(key − max key) when the caller has it. The caller handles F = every
    non-target (`is_all_nontargets`) without ranking.
    """
    if topk is not None:
        return _topk_split(key, topk)
    top = key.amax(-1)
    if e is None:
        e = (key - top.unsqueeze(1)).exp()
    scale = (top - ref[0]).double().exp() / ref[1].double()   # mass_i = e_i · scale
    return _cutoff_split(key, e, scale, ref, float(tau))


def _topk_split(key: torch.Tensor, k: int) -> Split:
    """The k highest non-targets; ties at the k-th value go to the lowest class indices."""
    values, index = key.topk(k, dim=-1, sorted=True)
    threshold = values[:, -1:]
    above = key >= threshold
    size = torch.full((key.shape[0],), k, dtype=torch.long, device=key.device)
    if bool((above.sum(-1) == k).all()):
        return Split(above, size, index)   # no ties at the threshold: topk's k are F
    strictly = key > threshold
    tied = key == threshold
    mask = strictly | (tied & (tied.cumsum(-1) <= (k - strictly.sum(-1)).unsqueeze(1)))
    return Split(mask, size, key.masked_fill(~mask, NEG_INF).topk(k, dim=-1).indices)


def _cutoff_split(key: torch.Tensor, e: torch.Tensor, scale: torch.Tensor, ref, tau: float) -> Split:
    """F: the classes of the buckets above the crossing one, and those of the crossing bucket
    whose exclusive prefix mass S_<r (float64, in rank order) is < τ."""
    rows = key.shape[0]
    # A non-negative float32's bits, read as an integer, grow with it: bits >> 19 is its exponent
    # and top 4 mantissa bits, a bucket 1/16 of an octave wide (e ≤ 1: at most TOP).
    bucket = (e.float().view(torch.int32) >> 19).long()
    hist = torch.zeros(rows, 1 << 12, dtype=e.dtype, device=e.device).scatter_add_(1, bucket, e)
    # Buckets LOW … TOP, below them one lump (masses under 2^-OCTAVES of the top, the target).
    window = torch.cat([hist[:, :LOW].sum(-1, keepdim=True), hist[:, LOW:TOP + 1]], 1)
    # The running mass from the top bucket down; the crossing bucket is the first to reach τ.
    # None reaches it (rounding, τ near 1): the lump crosses and F is every non-target.
    running = window.flip(-1).double().cumsum(-1) * scale.unsqueeze(1)
    reached = running >= tau
    from_top = torch.where(reached.any(-1), reached.byte().argmax(-1), window.shape[1] - 1)
    before = running.gather(1, (from_top - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    before = torch.where(from_top > 0, before, 0.0)
    crossing = TOP - from_top                      # the lump is LOW − 1: every bucket below LOW
    low = torch.where(crossing >= LOW, crossing, 0)
    r, c = (bucket >= low.unsqueeze(1)).nonzero(as_tuple=True)
    candidate = (bucket[r, c] <= crossing[r]).nonzero().squeeze(1)
    keep = torch.ones_like(r, dtype=torch.bool)
    keep[candidate] = False
    cr, cz = r[candidate], key[r[candidate], c[candidate]]
    # Rank the candidates by row, key descending, class index ascending (nonzero's order).
    order = cz.argsort(descending=True, stable=True)
    order = order[cr[order].argsort(stable=True)]
    cr, cz, candidate = cr[order], cz[order], candidate[order]
    m = (cz - ref[0][cr]).double().exp() / ref[1][cr].double()
    total = m.cumsum(0)
    counts = torch.bincount(cr, minlength=rows)
    first = counts.cumsum(0) - counts
    offset = torch.where(first > 0, total[(first - 1).clamp(min=0)], 0.0)
    chosen = (before[cr] + (total - m - offset[cr]) < tau) & (cz > NEG_INF)   # never the target
    keep[candidate[chosen]] = True
    return _split(r[keep], c[keep], key.shape)


def _split(r: torch.Tensor, c: torch.Tensor, shape) -> Split:
    """The Split of F's (row, class) pairs, sorted by row then class."""
    size = torch.bincount(r, minlength=shape[0])
    mask = torch.zeros(shape, dtype=torch.bool, device=r.device)
    mask[r, c] = True
    position = torch.arange(r.numel(), device=r.device) - (size.cumsum(0) - size)[r]
    index = torch.zeros(shape[0], int(size.max()), dtype=torch.long, device=r.device)
    index[r, position] = c
    return Split(mask, size, index)


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
