"""The class sets of a row and their log-sum-exps: what TRKD's terms read (`TERMS` in trkd.py).

A row's classes split into the target y, the confusion set F and the background B = nt \\ F
(F = every non-target and B = ∅ without a TRKD partition). Per network, one exponential of the
non-target logits shifted by their maximum m serves every set X (their sums: `sums.py`):

    Σ_X = Σ_{i∈X} exp(z_i − m),   lse_X = m + log Σ_X,   cross_X = Σ_{i∈X} p̃ᵀ_i (zᵀ_i − zˢ_i)

A row whose sum nears underflow takes the set's own log-sum-exp. The teacher is detached; logits
are upcast to float32 (float64 stays float64).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import NamedTuple, Optional, Tuple

import torch

from trkd.distill.methods.trkd_fast.partition import Split, check_settings, is_all_nontargets, partition
from trkd.distill.methods.trkd_fast.sums import (Net, Rows, Sums, dense_sums, dot_sums, exact_rows, gathered_sums,
                                                 rest_sums)
from trkd.losses.common import (NEG_INF, as_working, finite, mass_kl, masked_kl, masked_logsumexp,
                                masked_max_sumexp, target_mask, without_target, working_dtype)


def network(z: torch.Tensor, target: torch.Tensor) -> Net:
    key = without_target(z, target)
    m = key.detach().amax(-1)
    return Net(z, m, (key - m.unsqueeze(1)).exp(), key)


class ClassSet(NamedTuple):
    """A class set of every row: its sums, its mask on given rows, and the rows where it is
    non-empty (None: every row)."""
    sums: Sums
    mask_rows: Rows
    nonempty: Optional[torch.Tensor] = None


def log_sums(s: Net, t: Net, x: ClassSet, safe: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lse_s, lse_t, rows): the set's log-sum-exps, finite (arbitrary) where it is empty, and
    the rows recomputed exactly because a sum neared underflow."""
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


def conditional_kl(s: Net, t: Net, x: ClassSet, safe: float) -> torch.Tensor:
    """KL between the teacher's and the student's softmaxes restricted to the set (0 if empty)."""
    lse_s, lse_t, rows = log_sums(s, t, x, safe)
    kl = x.sums.cross / x.sums.t.clamp_min(safe) - (lse_t - lse_s)
    if rows.numel():
        # Far-apart logits make cross and lse_t − lse_s large and nearly equal: form the
        # log-probabilities first in these rows.
        kl = kl.index_put((rows,), masked_kl(s.z[rows], t.z[rows], x.mask_rows(rows), lse_s[rows], lse_t[rows]))
    return kl if x.nonempty is None else torch.where(x.nonempty, kl, 0.0)


def set_lse(s: Net, t: Net, x: ClassSet, safe: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(lse_s, lse_t) over the set, −inf where it is empty."""
    lse_s, lse_t, _ = log_sums(s, t, x, safe)
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
        self.confusion = confusion   # F given as a bool (B, C) mask (ranked among a top-K teacher's columns)
        # Below this a set's sum has lost digits to subnormals: e^40 keeps them < 1e-17 of it.
        self.safe = torch.finfo(dtype).tiny * math.exp(40.0)

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
        ref = (t.m, self._t_all) if self.cutoff == "conditional" else masked_max_sumexp(self.zt, None)
        return partition(t.key, ref, self.tau, None, t.e, self.target, t.m)

    def f_size(self) -> torch.Tensor:
        """|F| per example."""
        return (self.split.size if self.split is not None
                else torch.full_like(self.target, self.zs.shape[-1] - 1))

    @cached_property
    def nt(self) -> ClassSet:
        if self._dense is not None:
            sums = self._dense[0]
        else:   # dkd's path (no split) sums the teacher here, as it always did
            sums = dot_sums(self.s, self.t, self.gap, t_all=None if self.split is None else self._t_all)
        return ClassSet(sums, lambda rows: ~self.targets[rows])

    @cached_property
    def _t_all(self) -> torch.Tensor:
        """The teacher's Σ_nt: the conditional cutoff's normaliser, then nt's sum (one pass)."""
        return self.t.e.sum(-1)

    @cached_property
    def _dense(self) -> Optional[Tuple[Sums, Sums]]:
        """nt's sums and those of the split's held mask together (`dense_sums`), if it has one."""
        split = self.split
        return (None if split is None or split.held is None
                else dense_sums(self.s, self.t, self.gap, split.held, self._t_all))

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
            sums, rows = rest_sums(self.nt.sums, self._gathered)
            if rows.numel():
                sums = exact_rows(self.s, self.t, self.gap, sums, rows, mask_rows(rows))
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
        return set_lse(self.s, self.t, x, self.safe)

    @cached_property
    def _all(self):
        (ys, yt), (ns, nt) = self.lse("y"), self.lse("nt")
        return torch.logaddexp(ys, ns), torch.logaddexp(yt, nt)

    def conditional_kl(self, name: str) -> torch.Tensor:
        """T² · KL between the softmaxes of teacher and student restricted to nt, F or B."""
        x = getattr(self, name)
        if x is None:
            return self.zs.new_zeros(self.zs.shape[0])
        return self.temperature ** 2 * conditional_kl(self.s, self.t, x, self.safe)

    def weighted_conditional_kl(self, name: str) -> torch.Tensor:
        """P̂ᵀ_X · the conditional KL over X (F or B), P̂ᵀ_X = Σ_{i∈X} pᵀ_i / (1 − pᵀ_y) the
        teacher's share of the non-target mass in X (detached): the weight the KL chain rule
        gives X's conditional inside DKD's NCKD, so a set the teacher barely confuses weighs little."""
        kl = self.conditional_kl(name)
        if getattr(self, name) is None:
            return kl
        _, lse_x = self.lse(name)
        _, lse_nt = self.lse("nt")
        return (lse_x - lse_nt).exp().detach() * kl

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
