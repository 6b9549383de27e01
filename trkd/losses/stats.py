"""The class sets of a row and their sums: what every logit-level KD term reads (terms.py).

A row's classes split into the target y, the confusion set F and the background B = nt \\ F
(F = every non-target and B = ∅ without a TRKD partition). Per network, one exponential of the
non-target logits shifted by their maximum m serves every set X:

    Σ_X = Σ_{i∈X} exp(z_i − m),   lse_X = m + log Σ_X,   cross_X = Σ_{i∈X} p̃ᵀ_i (zᵀ_i − zˢ_i)

The smaller of F and B is summed by a gather on its class indices, or, when it is a sizeable part
of the classes, by dot products with its mask taken with nt's sums (`dense_sums`: their gradient
is one pass); the other as nt minus it,
except in rows where it holds under a quarter of nt's sum (the difference would lose digits): those
take a dot product with its mask. A row whose sum nears underflow takes the set's own
log-sum-exp. The teacher is detached; logits are upcast to float32 (float64 stays float64).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Callable, NamedTuple, Optional, Tuple

import torch

from trkd.losses.common import (NEG_INF, as_working, finite, mass_kl, masked_kl, masked_logsumexp,
                                masked_max_sumexp, target_mask, without_target, working_dtype)
from trkd.losses.confusion import Split, check_settings, is_all_nontargets, partition

REST_SHARE = 0.25
Rows = Callable[[torch.Tensor], torch.Tensor]   # row indices -> the set's bool mask on those rows


class Net(NamedTuple):
    """One network's scaled logits z, the max m of its non-target logits (detached: lse has the
    same gradient whatever m is), e = exp(z − m) at the non-targets, 0 at the target, and
    `key`, z with the target at −inf (the teacher's ranks the classes for F)."""
    z: torch.Tensor
    m: torch.Tensor
    e: torch.Tensor
    key: torch.Tensor


def network(z: torch.Tensor, target: torch.Tensor) -> Net:
    key = without_target(z, target)
    m = key.detach().amax(-1)
    return Net(z, m, (key - m.unsqueeze(1)).exp(), key)


class Sums(NamedTuple):
    """Σ_X of the student (s) and of the teacher (t), and cross_X · Σ_X of the teacher."""
    s: torch.Tensor
    t: torch.Tensor
    cross: torch.Tensor


def dot_sums(s: Net, t: Net, gap: torch.Tensor, weight: Optional[torch.Tensor] = None,
             rows=slice(None)) -> Sums:
    """Sums over the classes where `weight` (float 0/1, on `rows`) is 1; None: every non-target.
    `gap` = eᵗ (zˢ − zᵗ), shared by every set, gives cross as −Σ gap: one product per set, not
    two dot products that cancel."""
    es, et, gap = s.e[rows], t.e[rows], gap[rows]
    if weight is None:
        return Sums(es.sum(-1), et.sum(-1), -gap.sum(-1))
    return Sums(torch.linalg.vecdot(es, weight), torch.linalg.vecdot(et, weight),
                -torch.linalg.vecdot(gap, weight))


def _dot(x: torch.Tensor, w: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """Σ_i x_i w_i per row, as linalg.vecdot computes it (the product, then its sum), with the
    product written into `scratch`: a fresh (B, C) tensor costs more than the product."""
    return torch.mul(x, w, out=scratch).sum(-1)


class _RowSums(torch.autograd.Function):
    """(Σ_i x_i, Σ_i w_i x_i) per row. Its backward, g_all + g_set · w, makes one tensor
    (autograd's would make g_set · w, then a second adding the broadcast g_all)."""

    @staticmethod
    def forward(ctx, x, w, scratch):
        ctx.save_for_backward(w)
        return x.sum(-1), _dot(x, w, scratch)

    @staticmethod
    def backward(ctx, g_all, g_set):
        (w,) = ctx.saved_tensors
        # Not addcmul: with (B, 1) operands it takes a scalar loop, 4–5× slower than a product
        # and an in-place add (the same numbers: w is 0/1, so g_set · w is exact).
        return (w * g_set.unsqueeze(1)).add_(g_all.unsqueeze(1)), None, None


def dense_sums(s: Net, t: Net, gap: torch.Tensor, weight: torch.Tensor) -> Tuple[Sums, Sums]:
    """(sums over every non-target, sums over the set where `weight` (float 0/1) is 1)."""
    scratch = torch.empty_like(weight)   # the three products', one after another
    s_all, s_set = _RowSums.apply(s.e, weight, scratch)
    c_all, c_set = _RowSums.apply(gap, weight, scratch)
    return (Sums(s_all, t.e.sum(-1), -c_all),
            Sums(s_set, _dot(t.e, weight, scratch), -c_set))


def gathered_sums(s: Net, t: Net, index: torch.Tensor, valid: torch.Tensor) -> Sums:
    """Sums over a set given by its class indices (B, K), the first |X| of each row `valid`."""
    zs, zt = s.z.gather(1, index), t.z.gather(1, index)
    es = torch.where(valid, (zs - s.m.unsqueeze(1)).exp(), 0.0)
    et = torch.where(valid, (zt - t.m.unsqueeze(1)).exp(), 0.0)
    return Sums(es.sum(-1), et.sum(-1), torch.linalg.vecdot(et, zt) - torch.linalg.vecdot(et, zs))


def rest_sums(s: Net, t: Net, gap: torch.Tensor, nt: Sums, other: Sums, mask_rows: Rows) -> Sums:
    """Sums over nt minus the `other` set; exact (its mask) in rows where the rest holds under
    a quarter of nt's sum: the difference would lose more than two bits there."""
    rest = Sums(*(a - b for a, b in zip(nt, other)))
    low = (rest.s.detach() < REST_SHARE * nt.s.detach()) | (rest.t < REST_SHARE * nt.t)
    rows = low.nonzero().squeeze(1)
    if not rows.numel():
        return rest
    every = rows.numel() == low.numel()
    weight = mask_rows(rows).view(torch.uint8).to(s.e.dtype)   # from bytes: bool's conversion is slower
    exact = dot_sums(s, t, gap, weight, slice(None) if every else rows)
    return Sums(*(a.index_put((rows,), b) for a, b in zip(rest, exact)))


class ClassSet(NamedTuple):
    """A class set of every row: its sums, its mask on given rows, and the rows where it is
    non-empty (None: every row)."""
    sums: Sums
    mask_rows: Rows
    nonempty: Optional[torch.Tensor] = None


def log_sums(s: Net, t: Net, x: ClassSet, safe: float,
             rows: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lse_s, lse_t, rows): the set's log-sum-exps, finite (arbitrary) where it is empty, and
    the rows recomputed exactly because a sum neared underflow (given: found already)."""
    if rows is None:
        low = (x.sums.s < safe) | (x.sums.t < safe)
        rows = (low if x.nonempty is None else low & x.nonempty).nonzero().squeeze(1)
    mask = x.mask_rows(rows) if rows.numel() else None

    def lse(net: Net, total: torch.Tensor) -> torch.Tensor:
        if x.nonempty is not None:
            total = torch.where(x.nonempty, total, 1.0)
        value = net.m + total.clamp_min(safe).log()
        if mask is None:
            return value
        return value.index_put((rows,), masked_logsumexp(net.z[rows], mask))
    return lse(s, x.sums.s), lse(t, x.sums.t), rows


def conditional_kl(s: Net, t: Net, x: ClassSet, safe: float, logs=None) -> torch.Tensor:
    """KL between the teacher's and the student's softmaxes restricted to the set (0 if empty);
    `logs`: the set's `log_sums` if made already."""
    lse_s, lse_t, rows = logs or log_sums(s, t, x, safe)
    kl = x.sums.cross / x.sums.t.clamp_min(safe) - (lse_t - lse_s)
    if rows.numel():
        # Far-apart logits make cross and lse_t − lse_s large and nearly equal: form the
        # log-probabilities first in these rows.
        kl = kl.index_put((rows,), masked_kl(s.z[rows], t.z[rows], x.mask_rows(rows), lse_s[rows], lse_t[rows]))
    return kl if x.nonempty is None else torch.where(x.nonempty, kl, 0.0)


def set_lse(s: Net, t: Net, x: ClassSet, safe: float, logs=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(lse_s, lse_t) over the set, −inf where it is empty."""
    lse_s, lse_t, _ = logs or log_sums(s, t, x, safe)
    if x.nonempty is None:
        return lse_s, lse_t
    return torch.where(x.nonempty, lse_s, NEG_INF), torch.where(x.nonempty, lse_t, NEG_INF)


class LogitStats:
    """The scaled logits of one call and, each computed when first asked for, the networks'
    exponentials, TRKD's split and the sets y, nt, F and B with their log-sum-exps."""

    def __init__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 target: torch.Tensor, temperature: float, tau: Optional[float] = 1.0,
                 cutoff: str = "conditional", topk: Optional[int] = None,
                 confusion: Optional[torch.Tensor] = None):
        if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
            raise ValueError(f"student and teacher logits must both be (B, C), got "
                             f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
        dtype = working_dtype(student_logits, teacher_logits)
        self.temperature = float(temperature)
        self.zs = as_working(student_logits, dtype) / self.temperature
        # A teacher logit of −inf (probability 0) becomes the most negative float, so that the
        # products p · z give 0 · finite = 0 (the 0 · log 0 = 0 convention), never NaN.
        self.zt = finite(as_working(teacher_logits.detach(), dtype) / self.temperature)
        # The full KL splits around any class; kd may be called without targets.
        self.target = (target if target is not None
                       else torch.zeros(self.zs.shape[0], dtype=torch.long, device=self.zs.device))
        self.tau, self.cutoff, self.topk = tau, cutoff, topk
        self.confusion = confusion   # F given as a bool (B, C) mask (a sparse teacher's, losses/sparse.py)
        # Below this a set's sum has lost digits to subnormals: e^40 keeps them < 1e-17 of it.
        self.safe = torch.finfo(dtype).tiny * math.exp(40.0)
        self._logs = {}

    @cached_property
    def s(self) -> Net:
        return network(self.zs, self.target)

    @cached_property
    def t(self) -> Net:
        return network(self.zt, self.target)

    @cached_property
    def targets(self) -> torch.Tensor:
        return target_mask(self.target, self.zs.shape[-1])

    @cached_property
    def split(self) -> Optional[Split]:
        """The confusion set F, or None when F is every non-target."""
        if self.confusion is not None:
            return Split(self.confusion.sum(-1), None, None, True, self.target, self.zs.shape[-1],
                         held=self.confusion.to(self.zs.dtype))
        check_settings(self.tau, self.cutoff, self.topk)
        if is_all_nontargets(self.zs.shape[-1], self.tau, self.topk):
            return None
        t = self.t
        if self.topk is not None:
            return partition(t.key, None, None, self.topk, target=self.target)
        ref = (t.m, t.e.sum(-1)) if self.cutoff == "conditional" else masked_max_sumexp(self.zt, None)
        return partition(t.key, ref, self.tau, None, t.e, self.target, t.m)

    def f_size(self) -> torch.Tensor:
        """|F| per example."""
        return (self.split.size if self.split is not None
                else torch.full_like(self.target, self.zs.shape[-1] - 1))

    @cached_property
    def nt(self) -> ClassSet:
        sums = self._dense[0] if self._dense is not None else dot_sums(self.s, self.t, self.gap)
        return ClassSet(sums, lambda rows: ~self.targets[rows])

    @cached_property
    def _dense(self) -> Optional[Tuple[Sums, Sums]]:
        """nt's sums and those of the split's held mask together (`dense_sums`), if it has one."""
        split = self.split
        return None if split is None or split.held is None else dense_sums(self.s, self.t, self.gap, split.held)

    @cached_property
    def gap(self) -> torch.Tensor:
        return self.t.e * (self.zs - self.zt)

    @cached_property
    def _gathered(self) -> Sums:
        if self.split.held is not None:
            return self._dense[1]
        return gathered_sums(self.s, self.t, self.split.index, self.split.valid)

    def _part(self, is_f: bool) -> ClassSet:
        split = self.split
        if is_f:
            def mask_rows(rows):
                return split.mask_rows(rows)
        else:
            def mask_rows(rows):
                return ~(split.mask_rows(rows) | self.targets[rows])
        if split.gathers_f == is_f:
            sums = self._gathered
        else:
            sums = rest_sums(self.s, self.t, self.gap, self.nt.sums, self._gathered, mask_rows)
        return ClassSet(sums, mask_rows, None if is_f else split.size < self.zs.shape[-1] - 1)

    @cached_property
    def F(self) -> ClassSet:
        return self.nt if self.split is None else self._part(True)

    @cached_property
    def B(self) -> Optional[ClassSet]:
        """None where there is no partition (B = ∅ in every row)."""
        return None if self.split is None else self._part(False)

    def lse(self, name: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """(student, teacher) log-sum-exp over set `y`, `nt`, `F`, `B` or `all`; −inf if empty."""
        if name == "y":
            index = self.target.long().unsqueeze(1)
            return self.zs.gather(1, index).squeeze(1), self.zt.gather(1, index).squeeze(1)
        if name == "all":
            return self._all
        x = getattr(self, name)
        if x is None:
            empty = torch.full_like(self.zs[:, 0], NEG_INF)
            return empty, empty
        return set_lse(self.s, self.t, x, self.safe, self._part_logs(name))

    @cached_property
    def _all(self):
        (ys, yt), (ns, nt) = self.lse("y"), self.lse("nt")
        return torch.logaddexp(ys, ns), torch.logaddexp(yt, nt)

    def conditional_kl(self, name: str) -> torch.Tensor:
        """T² · KL between the softmaxes of teacher and student restricted to nt, F or B."""
        x = getattr(self, name)
        if x is None:
            return self.zs.new_zeros(self.zs.shape[0])
        return self.temperature ** 2 * conditional_kl(self.s, self.t, x, self.safe, self._part_logs(name))

    def _part_logs(self, name: str):
        """F's and B's `log_sums` (nt: None, dkd's path). tm reads them, then cf or bg: these
        reuse them as they are without autograd (a logged term), else only their low rows (a
        second autograd path through one node would sum the gradients in another order)."""
        if name == "nt":
            return None
        made = self._logs.get(name)
        if made is None or torch.is_grad_enabled():
            made = log_sums(self.s, self.t, getattr(self, name), self.safe, made and made[2])
            self._logs.setdefault(name, made)
        return made

    def full_kl(self) -> torch.Tensor:
        """T² · KL(pᵀ ‖ pˢ) = T² [p_y (zt_y − zs_y) + P_nt · cross_nt − (lse_t − lse_s)]."""
        (ys, yt), (_, nt), (alls, allt) = self.lse("y"), self.lse("nt"), self._all
        p_y, p_nt = (yt - allt).exp(), (nt - allt).exp()
        cross = self.nt.sums.cross / self.nt.sums.t.clamp_min(self.safe)
        target_term = torch.where(p_y > 0, p_y * (yt - ys), 0.0)
        return self.temperature ** 2 * (target_term + p_nt * cross - (allt - alls))

    def masses_kl(self, names: Tuple[str, ...]) -> torch.Tensor:
        """T² · KL between the teacher's and the student's masses of disjoint class sets."""
        alls, allt = self._all
        pairs = [self.lse(n) for n in names]
        log_mt = torch.stack([t - allt for _, t in pairs], dim=-1)
        log_ms = torch.stack([s - alls for s, _ in pairs], dim=-1)
        return self.temperature ** 2 * mass_kl(log_mt, log_ms)
