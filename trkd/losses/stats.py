"""The shared quantities of the logit-level KD terms (see terms.py), each computed once."""

from __future__ import annotations

import math
from functools import cached_property
from typing import Dict, Optional, Tuple

import torch

from trkd.losses.common import (NEG_INF, as_working, finite, mass_kl, masked_kl, masked_logsumexp,
                                masked_max_sumexp, target_mask, without_target, working_dtype)
from trkd.losses.confusion import Split, check_settings, is_all_nontargets, partition, teacher_key


class LogitStats:
    """The quantities that the terms share, each computed at most once per call.

    The classes of a row split into the target y, the confusion set F and the background B
    (F = every non-target and B = ∅ unless a TRKD partition is asked for: τ < 1 or top-k).
    Per network one exponential of the non-target logits, shifted by their maximum, serves
    every set: its sum over F is a gather on F's indices (F is small), over B a dot product
    with B's mask, so lse_X = m + log Σ_X exp(z − m) costs no extra pass over the classes;
    lse_all = logaddexp(z_y, lse_nt). A row where a set's sum nears underflow (the set far below
    the shared shift) is recomputed exactly with the set's own log-sum-exp. The teacher is
    detached; logits are upcast to float32 (float64 stays float64). Logits must be finite,
    except teacher logits of −inf (probability 0).
    """

    def __init__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 target: torch.Tensor, temperature: float, tau: Optional[float] = 1.0,
                 cutoff: str = "conditional", topk: Optional[int] = None):
        if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
            raise ValueError(f"student and teacher logits must both be (B, C), got "
                             f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
        dtype = working_dtype(student_logits, teacher_logits)
        self.temperature = float(temperature)
        self.zs = as_working(student_logits, dtype) / self.temperature
        # A teacher logit of −inf (probability 0) becomes the most negative float, so that the
        # products p · z below give 0 · finite = 0 (the 0 · log 0 = 0 convention), never NaN.
        self.zt = finite(as_working(teacher_logits.detach(), dtype) / self.temperature)
        # The full KL splits around any class; kd may be called without targets.
        self.target = (target if target is not None
                       else torch.zeros(self.zs.shape[0], dtype=torch.long, device=self.zs.device))
        self.tau, self.cutoff, self.topk = tau, cutoff, topk
        # Below this a set's sum has lost digits to subnormals: e^40 keeps them < 1e-17 of it.
        self.safe = torch.finfo(dtype).tiny * math.exp(40.0)
        self._cache: Dict[Tuple[str, str], torch.Tensor] = {}

    @cached_property
    def targets(self) -> torch.Tensor:
        return target_mask(self.target, self.zs.shape[-1])

    @cached_property
    def split(self) -> Optional[Split]:
        """The confusion set F, or None when F is every non-target."""
        check_settings(self.tau, self.cutoff, self.topk)
        if is_all_nontargets(self.zs.shape[-1], self.tau, self.topk):
            return None
        ref = None
        if self.topk is None:
            ref = ((self._shift("t"), self.set_sum("t", "nt")) if self.cutoff == "conditional"
                   else masked_max_sumexp(self.zt, None))
        e = self.set_exp("t", "nt") if self.topk is None else None
        return partition(self._key("t"), ref, self.tau, self.topk, e)

    def f_size(self) -> torch.Tensor:
        """|F| per example."""
        return (self.split.size if self.split is not None
                else torch.full_like(self.target, self.zs.shape[-1] - 1))

    def _cached(self, net: str, name: str, make):
        if (net, name) not in self._cache:
            self._cache[(net, name)] = make()
        return self._cache[(net, name)]

    def _key(self, net: str) -> torch.Tensor:
        """Non-target logits, with the target at −inf."""
        if net == "t":
            return self._cached("t", "key", lambda: teacher_key(self.zt, self.target))
        return self._cached("s", "key", lambda: without_target(self.zs, self.target))

    def _shift(self, net: str) -> torch.Tensor:
        # Detached: lse = m + log Σ exp(z − m) has the same gradient whatever m is.
        return self._cached(net, "shift", lambda: self._key(net).detach().amax(-1))

    def _base(self, name: str) -> str:
        """The set whose sums stand for `name`: F is the non-targets when there is no partition."""
        return "nt" if name == "F" and self.split is None else name

    def set_exp(self, net: str, name: str) -> torch.Tensor:
        """exp(z − m) on set nt (full width, 0 at the target) or F (on F's indices, 0 past |F|);
        B's are nt's times the B mask (taken only for the teacher: the student needs sums)."""
        name = self._base(name)

        def make():
            if name == "nt":
                return (self._key(net) - self._shift(net).unsqueeze(1)).exp()
            if name == "F":  # F is small: a gather, not a pass over the class axis
                shifted = self._on_set(self._z(net), "F") - self._shift(net).unsqueeze(1)
                return torch.where(self.split.valid, shifted.exp(), 0.0)
            return self.set_exp(net, "nt") * self._b_weight()
        return self._cached(net, "exp:" + name, make)

    def set_sum(self, net: str, name: str) -> torch.Tensor:
        name = self._base(name)

        def make():
            if name == "B":
                return self._b_sum(net)
            return self.set_exp(net, name).sum(-1)
        return self._cached(net, "sum:" + name, make)

    def _b_sum(self, net: str) -> torch.Tensor:
        """Σ_B = Σ_nt − Σ_F: no pass over the class axis (F's sum is a gather). Where B holds less
        than half of the non-target sum the difference would lose digits, so those rows take a
        dot product with B's mask instead (at small τ, B is the bulk and no row needs it)."""
        nt, f = self.set_sum(net, "nt"), self.set_sum(net, "F")
        total = nt - f
        rows = (total.detach() < 0.5 * nt.detach()).nonzero().squeeze(1)
        if rows.numel():
            exact = torch.linalg.vecdot(self.set_exp(net, "nt")[rows], self._b_weight()[rows])
            total = total.index_put((rows,), exact)
        return total

    def _b_weight(self) -> torch.Tensor:
        return self._cached("", "weight:B", lambda: self._mask("B").to(self.zs.dtype))

    def _z(self, net: str) -> torch.Tensor:
        return self.zt if net == "t" else self.zs

    def _on_set(self, z: torch.Tensor, name: str) -> torch.Tensor:
        """z aligned with `set_exp(·, name)`: gathered on F's indices for F, else as is."""
        if self._base(name) != "F":
            return z
        net = "t" if z is self.zt else "s"
        return self._cached(net, "on:F", lambda: z.gather(1, self.split.index))

    def nonempty(self, name: str) -> Optional[torch.Tensor]:
        """Rows where set B is non-empty; None (every row) for the other sets."""
        if name != "B":
            return None
        return self.split.size < self.zs.shape[-1] - 1

    def _mask(self, name: str) -> torch.Tensor:
        """Bool (B, C) mask of set nt, F or B."""
        if name == "F":
            return self.split.mask
        if name == "B":
            return self._cached("", "mask:B", lambda: ~(self.targets | self.split.mask))
        return ~self.targets

    def _fallback_rows(self, name: str) -> torch.Tensor:
        """Rows of a non-empty set whose sum is too small to trust, for either network."""
        def make():
            low = (self.set_sum("t", name) < self.safe) | (self.set_sum("s", name) < self.safe)
            rows = low if self.nonempty(name) is None else low & self.nonempty(name)
            return rows.nonzero().squeeze(1)
        return self._cached("", "fallback:" + self._base(name), make)

    def _finite_lse(self, net: str, name: str) -> torch.Tensor:
        """log-sum-exp over set nt, F or B; finite (arbitrary) in rows where the set is empty."""
        name = self._base(name)

        def make():
            total = self.set_sum(net, name)
            if self.nonempty(name) is not None:
                total = torch.where(self.nonempty(name), total, 1.0)
            value = self._shift(net) + total.clamp_min(self.safe).log()
            rows = self._fallback_rows(name)
            if rows.numel():
                exact = masked_logsumexp(self._z(net)[rows], self._mask(name)[rows])
                value = value.index_put((rows,), exact)
            return value
        return self._cached(net, "lse:" + name, make)

    def lse(self, net: str, name: str) -> torch.Tensor:
        """Per-row log-sum-exp of `net`'s ("s"/"t") scaled logits over a class set; −inf if empty.

        Sets: `y` (the target), `nt` (non-targets), `F`, `B`, `all`.
        """
        def make():
            z = self._z(net)
            if name == "y":
                return z.gather(1, self.target.long().unsqueeze(1)).squeeze(1)
            if name == "all":
                return torch.logaddexp(self.lse(net, "y"), self.lse(net, "nt"))
            if name == "B" and self.split is None:
                return torch.full_like(z[:, 0], NEG_INF)
            value = self._finite_lse(net, name)
            empty = self.nonempty(name)
            return value if empty is None else torch.where(empty, value, NEG_INF)
        return self._cached(net, "set:" + name, make)

    def log_mass(self, net: str, name: str) -> torch.Tensor:
        return self.lse(net, name) - self.lse(net, "all")

    def cross(self, name: str) -> torch.Tensor:
        """Σ_{i∈set} p̃ᵀ_i (zt_i − zs_i) over set nt, F or B; p̃ᵀ the teacher's softmax on it."""
        name = self._base(name)

        def make():
            e_t = self.set_exp("t", name)
            total = self.set_sum("t", name).clamp_min(self.safe)
            zt, zs = self._on_set(self.zt, name), self._on_set(self.zs, name)
            return (torch.linalg.vecdot(e_t, zt) - torch.linalg.vecdot(e_t, zs)) / total
        return self._cached("", "cross:" + name, make)

    def conditional_kl(self, name: str) -> torch.Tensor:
        """T² · KL between the softmaxes of teacher and student restricted to nt, F or B."""
        if name == "B" and self.split is None:
            return self.zs.new_zeros(self.zs.shape[0])
        lse_t, lse_s = self._finite_lse("t", name), self._finite_lse("s", name)
        kl = self.cross(name) - (lse_t - lse_s)
        rows = self._fallback_rows(name)
        if rows.numel():
            # Far-apart logits make cross and lse_t − lse_s large and nearly equal: form the
            # log-probabilities first in these rows.
            exact = masked_kl(self.zs[rows], self.zt[rows], self._mask(name)[rows], lse_s[rows],
                              lse_t[rows])
            kl = kl.index_put((rows,), exact)
        if self.nonempty(name) is not None:
            kl = torch.where(self.nonempty(name), kl, 0.0)
        return self.temperature ** 2 * kl

    def full_kl(self) -> torch.Tensor:
        """T² · KL(pᵀ ‖ pˢ) = T² [p_y (zt_y − zs_y) + P_nt · cross_nt − (lse_t − lse_s)]."""
        p_y, p_nt = self.log_mass("t", "y").exp(), self.log_mass("t", "nt").exp()
        target_term = torch.where(p_y > 0, p_y * (self.lse("t", "y") - self.lse("s", "y")), 0.0)
        kl = (target_term + p_nt * self.cross("nt")
              - (self.lse("t", "all") - self.lse("s", "all")))
        return self.temperature ** 2 * kl

    def masses_kl(self, names: Tuple[str, ...]) -> torch.Tensor:
        """T² · KL between the teacher's and the student's masses of disjoint class sets."""
        log_mt = torch.stack([self.log_mass("t", n) for n in names], dim=-1)
        log_ms = torch.stack([self.log_mass("s", n) for n in names], dim=-1)
        return self.temperature ** 2 * mass_kl(log_mt, log_ms)
