"""TRKD's triage of the non-target classes: the confusion set F(τ), fast.

Rank the non-targets by teacher probability, descending, ties by ascending class index; F is the
shortest prefix of that ranking whose mass reaches τ, the crossing class included:
F = {π_r : S_<r < τ}. Nothing sorts the class axis (a full sort costs several times DKD, and a
trained AAM teacher is flat: F holds most classes at τ near 1). A histogram of the masses in
buckets 1/8–1/128 of an octave wide (a float's top bits) finds the bucket where the running mass
crosses τ; the classes above it are in F, and only the few inside it are ranked (key, then class
index). When F is surely few (their mass over the least of them bounds their number), its
classes are picked out by position and summed by gathers; otherwise F (or B, the smaller) is a
0/1 float mask whose sums are dot products.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from trkd.losses.common import (NEG_INF, as_working, finite, masked_max_sumexp, target_mask,
                                without_target, working_dtype)

CUTOFFS = ("conditional", "joint")
# The cutoff's mass buckets (`_crossing_bucket`) span OCTAVES octaves below the top class's mass.
OCTAVES = 24
# The smaller of F and B is held as a mask, not as indices, once it exceeds 1/DENSE of the classes:
# indices cost a nonzero over (B, C) and a dozen small ops; a mask's sums share nt's autograd node
# (sums.dense_sums), so the mask wins from about C/16 on, at C = 1 000 and 17 982 alike.
DENSE = 16


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
    """F as |F| per row and the smaller of F and B (`gathers_f` says which): its class indices
    (B, K), row b's first entries the set's (`valid`), so that its sums are gathers, not passes
    over the class axis; or, where it is a sizeable part of the classes, its 0/1 float mask `held`
    (B, C) (its sums are then dot products: cheaper than gathering most of a row)."""
    size: torch.Tensor
    index: Optional[torch.Tensor]
    valid: Optional[torch.Tensor]
    gathers_f: bool
    target: torch.Tensor
    num_classes: int
    held: Optional[torch.Tensor] = None

    def mask_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """F's bool mask (len(rows), C) on the given rows."""
        if self.held is not None:
            held = self.held[rows] > 0
        else:
            index = torch.where(self.valid[rows], self.index[rows], self.num_classes)
            held = torch.zeros(len(rows), self.num_classes + 1, dtype=torch.bool, device=index.device)
            held = held.scatter_(1, index, True)[:, :-1]
        if self.gathers_f:
            return held
        return ~held.scatter(1, self.target[rows].long().unsqueeze(1), True)

    @property
    def mask(self) -> torch.Tensor:
        return self.mask_rows(torch.arange(self.size.shape[0], device=self.size.device))


def partition(key: torch.Tensor, ref, tau: Optional[float], topk: Optional[int],
              e: Optional[torch.Tensor] = None, target: Optional[torch.Tensor] = None,
              e_shift: Optional[torch.Tensor] = None) -> Split:
    """F from `teacher_key` of the scaled teacher logits (the target at −inf).

    `ref` = (m, s): the cutoff's masses are exp(key_i − m) / s, with m, s from
    `masked_max_sumexp` over the non-targets (`conditional`) or all classes (`joint`); unused
    with `topk`. `e` = exp(key − max key) when the caller has it (`e_shift`: that max). The caller handles F = every
    non-target (`is_all_nontargets`) without ranking.
    """
    if target is None:
        target = key.argmin(-1)   # the only −inf: teacher logits are made finite
    if not key.shape[0]:   # an empty batch: nothing to rank
        index = torch.zeros(0, 1, dtype=torch.long, device=key.device)
        return Split(index.view(0), index, index.bool(), True, target, key.shape[1])
    if topk is not None:
        return _topk_split(key, topk, target)
    if e is None:
        top = key.amax(-1)
        e = (key - top.unsqueeze(1)).exp()
    else:
        top = key.detach().amax(-1) if e_shift is None else e_shift
    # mass_i = e_i · scale; the conditional cutoff's shift is e's own (exp(0) = 1: one op less).
    scale = (ref[1].double().reciprocal() if ref[0] is top
             else (top - ref[0]).double().exp() / ref[1].double())
    return _cutoff_split(key, e, scale, ref, float(tau), target)


def _topk_split(key: torch.Tensor, k: int, target: torch.Tensor) -> Split:
    """The k highest non-targets; ties at the k-th value go to the lowest class indices."""
    values, index = key.topk(k, dim=-1, sorted=True)
    threshold = values[:, -1:]
    size = torch.full((key.shape[0],), k, dtype=torch.long, device=key.device)
    valid = torch.ones_like(index, dtype=torch.bool)
    if bool(((key >= threshold).sum(-1) == k).all()):
        return Split(size, index, valid, True, target, key.shape[1])   # no ties at the threshold
    strictly = key > threshold
    tied = key == threshold
    mask = strictly | (tied & (tied.cumsum(-1) <= (k - strictly.sum(-1)).unsqueeze(1)))
    return Split(size, key.masked_fill(~mask, NEG_INF).topk(k, dim=-1).indices, valid, True, target, key.shape[1])


def _cutoff_split(key: torch.Tensor, e: torch.Tensor, scale: torch.Tensor, ref, tau: float,
                  target: torch.Tensor) -> Split:
    """F: the classes of the buckets above the crossing one, and those of the crossing bucket
    whose exclusive prefix mass S_<r (float64, in rank order) is < τ."""
    rows, num_classes = key.shape
    bucket, crossing, before, least = _crossing_bucket(e, scale, tau)
    # |F| above the crossing bucket is at most their mass over the least of them.
    if float((before / (scale * least)).max()) * DENSE <= num_classes:
        # Few: F's classes are found by position, with the crossing bucket's, and no mask is made.
        flat = _flat_nonzero(torch.le, bucket, crossing)
        row = flat // num_classes
        inside = bucket.view(-1).index_select(0, flat) == crossing.view(-1).index_select(0, row)
        chosen = _ranked_prefix(flat.masked_select(inside), key, ref, before, tau)
        keep = (~inside).index_fill_(0, torch.searchsorted(flat, chosen), True)
        f = flat.masked_select(keep)
        r = f // num_classes
        size = torch.bincount(r, minlength=rows)
        most = int(size.max())
        if most * DENSE <= num_classes and most <= (num_classes - 1) // 2:   # the rule below
            return Split(size, *_indexed(f, rows, num_classes, size, r), True, target, num_classes)
        held = torch.zeros_like(e)   # more than the bound guessed: F's mask after all
        held.view(-1).index_fill_(0, f, 1.0)
    else:
        member = _flat_nonzero(torch.eq, bucket, crossing)
        held = _unit_below(bucket, crossing, e.dtype)
        held.view(-1).index_fill_(0, _ranked_prefix(member, key, ref, before, tau), 1.0)
    size = held.sum(-1).long()   # a float sum: exact below 2^24, and no conversion pass
    gathers_f = int(size.max()) <= (num_classes - 1) // 2
    if not gathers_f:   # hold B, the smaller set: nt minus F, in place
        held.neg_().add_(1.0).scatter_(1, target.long().unsqueeze(1), 0.0)
    counts = size if gathers_f else num_classes - 1 - size
    if int(counts.max()) * DENSE > num_classes:
        return Split(size, None, None, gathers_f, target, num_classes, held)
    return Split(size, *_indexed(_flat_nonzero(torch.gt, held, 0.0), rows, num_classes, counts),
                 gathers_f, target, num_classes)


def _unit_below(bucket: torch.Tensor, crossing: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """1 where bucket < crossing, else 0, in `dtype` (the dense sums' weights). float32 is
    written over the int32 buckets in place (0 or 1 times the bits of 1.0 are the bits of 0.0
    or 1.0): three in-place integer passes take half the time of a compare and a conversion,
    and of a compare written into a float32 view (its cast is not vectorised)."""
    unit = bucket.sub_(crossing).clamp_(-1, 0)
    if dtype == torch.float32:
        return unit.mul_(-0x3F800000).view(torch.float32)
    return unit.neg_().to(dtype)


def _indexed(flat: torch.Tensor, rows: int, num_classes: int, counts: torch.Tensor,
             r: Optional[torch.Tensor] = None):
    """(index (B, K), valid (B, K)) of a set given by its flat indices into (B, C), ascending,
    and its size per row (`r`: flat // C if made already): row b's first entries its classes."""
    r = flat // num_classes if r is None else r
    start = counts.cumsum(0) - counts
    position = torch.arange(r.numel(), device=flat.device) - start.index_select(0, r)
    index = torch.zeros(rows, max(int(counts.max()), 1), dtype=torch.long, device=flat.device)
    index[r, position] = flat - r * num_classes
    valid = torch.arange(index.shape[1], device=flat.device).unsqueeze(0) < counts.unsqueeze(1)
    return index, valid


def _flat_nonzero(compare, x: torch.Tensor, value) -> torch.Tensor:
    """The flat indices of x (B, C) where compare(x, value) holds, ascending. nonzero costs
    per element it scans: the bool mask is written into rows padded to whole int64 words, the
    words are scanned (8 classes each), then only the bytes of the non-zero words."""
    rows, cols = x.shape
    width = -(-cols // 8) * 8
    if width == cols:   # rows already whole words: no padding to write or to skip
        mask = compare(x, value)
    else:
        mask = torch.empty(rows, width, dtype=torch.bool, device=x.device)
        mask[:, cols:] = False
        compare(x, value, out=mask[:, :cols])
    words = mask.view(torch.int64).view(-1).nonzero().squeeze(1)
    byte = (words.unsqueeze(1) * 8 + torch.arange(8, device=x.device)).view(-1)
    byte = byte.masked_select(mask.view(-1).index_select(0, byte))
    return byte if width == cols else byte - byte // width * (width - cols)


def _crossing_bucket(e: torch.Tensor, scale: torch.Tensor, tau: float):
    """(bucket of every class, the crossing bucket (B, 1), the mass of the buckets above it, the
    least e they can hold).

    A non-negative float32's bits, read as an integer, grow with it: its exponent and top k
    mantissa bits make a bucket 2^-k of an octave wide (k grows with C, so that the crossing
    bucket of a flat teacher holds a few dozen classes), counted down from the top class's
    (e = 1: bucket 1); the last bucket lumps the masses under 2^-OCTAVES of the top (and the
    target's 0). Row b's buckets are numbered from b · width on, bucket 0 of each row left
    empty (its running mass, 0, is the mass before the top bucket): one flat histogram (each
    bucket summed in e's dtype, as bincount does), its running mass in float64. The bucket
    tensor is built in place: each (B, C) temporary costs a pass.
    """
    rows, num_classes = e.shape
    k = min(max(round(math.log2(max(num_classes, 1) / 64)), 3), 7)
    depth, top, width = OCTAVES << k, 127 << k, (OCTAVES << k) + 2
    start = torch.arange(top + 1, top + 1 + rows * width, width, dtype=torch.int32,
                         device=e.device).view(rows, 1)
    bucket = (e if e.dtype == torch.float32 else e.float()).view(torch.int32) >> (23 - k)
    bucket = torch.sub(start, bucket.clamp_(min=top - depth), out=bucket)
    window = torch.bincount(bucket.view(-1), weights=e.reshape(-1), minlength=rows * width)
    # The running mass from the top bucket down; the crossing bucket is the first to reach τ.
    # None reaches it (rounding, τ near 1): the lump crosses and F is every non-target.
    running = window.view(rows, width).cumsum(-1, dtype=torch.float64).mul_(scale.unsqueeze(1))
    # The running mass never decreases: a binary search per row, not passes over the buckets.
    crossing = torch.searchsorted(running, torch.full((rows, 1), tau, dtype=running.dtype,
                                                      device=e.device)).clamp_(max=depth + 1)
    before = running.gather(1, crossing - 1).squeeze(1)
    crossing = crossing.int()
    # The lower edge of the bucket above the crossing one: e ≥ it above the crossing bucket.
    least = ((top + 2 - crossing) << (23 - k)).view(torch.float32).squeeze(1).double()
    return bucket, start + (crossing - (top + 1)), before, least


def _ranked_prefix(member: torch.Tensor, key: torch.Tensor, ref, before: torch.Tensor,
                   tau: float) -> torch.Tensor:
    """The crossing bucket's classes (flat indices into key (B, C), ascending) that are in F:
    ranked by key descending, then class index, their S_<r = the mass above the bucket plus the
    exclusive running mass inside it, in float64. Returns their flat indices."""
    num_classes = key.shape[1]
    z = key.view(-1).index_select(0, member)
    r = member // num_classes
    order = _rank_order(z, r)
    member, r, z = member.index_select(0, order), r.index_select(0, order), z.index_select(0, order)
    m = (z - ref[0].index_select(0, r)).double().exp() / ref[1].index_select(0, r).double()
    total = m.cumsum(0)
    # The running total up to the rows before a member's (0 for the first row): at the index
    # before its row's first member (r ascending), read off total with a 0 in front.
    counts = torch.bincount(r, minlength=key.shape[0])
    start = counts.cumsum(0) - counts
    earlier = torch.nn.functional.pad(total, (1, 0)).index_select(0, start.index_select(0, r))
    inside = total - m - earlier
    ranked = (before.index_select(0, r) + inside < tau) & (z > NEG_INF)
    return member.masked_select(ranked)   # never the target: its key is −inf


def _rank_order(z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The stable order by row r ascending, then key z descending (ties keep the given order)."""
    if z.dtype != torch.float32:
        order = z.argsort(descending=True, stable=True)
        return order[r[order].argsort(stable=True)]
    # One sort, not two: row and key packed in an int64. A float32's bits, read as an int32,
    # order like it where it is ≥ 0 and in reverse below (flipping the magnitude bits mends
    # that); + 0.0 makes −0.0 the +0.0 it equals.
    bits = (z + 0.0).view(torch.int32).long()
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return ((r << 33) - bits).argsort(stable=True)


def confusion_mask(teacher_logits: torch.Tensor, target: torch.Tensor, tau: Optional[float],
                   temperature: float = 4.0, cutoff: str = "conditional",
                   topk: Optional[int] = None) -> torch.Tensor:
    """TRKD's confusion set F(τ) as a bool (B, C) mask (the paper's "Assess").

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
    return partition(key, ref, tau, topk, target=target).mask
