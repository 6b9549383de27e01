"""Composable logit-level KD terms: one engine behind kd, dkd, enskd and trkd.

Every term is unweighted, per example, and already multiplied by T². A method is a temperature
and a {term: weight} dict (PRESETS), so ablations such as `{tm: 1, nckd: 8}` need no new code.
`logit_kd` builds the shared quantities (scaled logits, log-sum-exps per class set, TRKD's
partition) once per call, so TRKD through the terms costs the same as `trkd_loss`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Tuple

import torch

from trkd.losses.common import (NEG_INF, as_working, conditional_kl, mass_kl, masked_logsumexp,
                                masked_max_sumexp, target_mask, working_dtype)
from trkd.losses.confusion import check_settings, is_all_nontargets, partition


class LogitStats:
    """The quantities that the terms share, each computed at most once per call.

    Class sets: `all`, `y` (the target), `nt` (non-targets), `F` (confusion set), `B` (background).
    The teacher is detached; logits are upcast to float32 (float64 stays float64).
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
        self.zt = as_working(teacher_logits.detach(), dtype) / self.temperature
        self.target = target
        self.tau, self.cutoff, self.topk = tau, cutoff, topk
        self._lse: Dict[Tuple[str, str], torch.Tensor] = {}
        self._sums: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}

    @cached_property
    def targets(self) -> torch.Tensor:
        return target_mask(self.target, self.zs.shape[-1])

    @cached_property
    def f_is_nontargets(self) -> bool:
        check_settings(self.tau, self.cutoff, self.topk)
        return is_all_nontargets(self.zs.shape[-1], self.tau, self.topk)

    def mask(self, name: str) -> Optional[torch.Tensor]:
        """Bool (B, C) mask of a class set (None for `all`)."""
        if name == "all":
            return None
        if name == "y":
            return self.targets
        if name == "nt" or (name == "F" and self.f_is_nontargets):
            return ~self.targets
        if name == "F":
            return self.confusion
        if name == "B":
            return self.background
        raise KeyError(name)

    @cached_property
    def confusion(self) -> torch.Tensor:
        ref = None
        if self.topk is None:
            ref = self.teacher_sums("nt" if self.cutoff == "conditional" else "all")
        return partition(self.zt, self.targets, ref, self.tau, self.topk)

    @cached_property
    def background(self) -> torch.Tensor:
        return ~(self.targets | self.mask("F"))

    def _canonical(self, name: str) -> str:
        # At τ = 1 F is exactly the non-targets: share their sums so TRKD equals DKD bit for bit.
        return "nt" if name == "F" and self.f_is_nontargets else name

    def is_empty(self, name: str) -> bool:
        """True when the set is known empty without looking at the data (B when F = non-targets)."""
        return name == "B" and self.f_is_nontargets

    def teacher_sums(self, name: str):
        """(m, s) of `masked_max_sumexp` over a class set for the teacher; cached."""
        name = self._canonical(name)
        if name not in self._sums:
            self._sums[name] = masked_max_sumexp(self.zt, self.mask(name))
        return self._sums[name]

    def lse(self, net: str, name: str) -> torch.Tensor:
        """Per-row log-sum-exp of network `net`'s ("s"/"t") scaled logits over class set `name`."""
        name = self._canonical(name)
        key = (net, name)
        if key not in self._lse:
            z = self.zs if net == "s" else self.zt
            if name == "all":
                value = torch.logsumexp(z, dim=-1)
            elif name == "y":
                value = z.gather(1, self.target.long().unsqueeze(1)).squeeze(1)
            elif self.is_empty(name):
                value = torch.full_like(z[:, 0], NEG_INF)
            elif net == "t":
                m, total = self.teacher_sums(name)
                value = m + total.log()
            else:
                value = masked_logsumexp(z, self.mask(name))
            self._lse[key] = value
        return self._lse[key]

    def log_mass(self, net: str, name: str) -> torch.Tensor:
        return self.lse(net, name) - self.lse(net, "all")

    def masses_kl(self, names: Tuple[str, ...]) -> torch.Tensor:
        """T² · KL between the teacher's and the student's masses of disjoint class sets."""
        log_mt = torch.stack([self.log_mass("t", n) for n in names], dim=-1)
        log_ms = torch.stack([self.log_mass("s", n) for n in names], dim=-1)
        return self.temperature ** 2 * mass_kl(log_mt, log_ms)

    def conditional_kl(self, name: str) -> torch.Tensor:
        """T² · KL between the teacher's and the student's softmaxes restricted to a class set."""
        if self.is_empty(name):
            return self.zs.new_zeros(self.zs.shape[0])
        kl = conditional_kl(self.zs, self.zt, self.mask(self._canonical(name)),
                            self.lse("s", name), self.lse("t", name))
        return self.temperature ** 2 * kl

    def f_size(self) -> torch.Tensor:
        """|F| per example."""
        return self.mask("F").sum(-1)


TERMS: Dict[str, Callable[[LogitStats], torch.Tensor]] = {
    # Hinton: T² KL(pᵀ ‖ pˢ).
    "kl": lambda s: s.conditional_kl("all"),
    # DKD: target vs non-target binary masses, and the non-target conditional.
    "tckd": lambda s: s.masses_kl(("y", "nt")),
    "nckd": lambda s: s.conditional_kl("nt"),
    # TRKD: three masses (target, F, B), the conditional over F, the conditional over B.
    "tm": lambda s: s.masses_kl(("y", "F", "B")),
    "cf": lambda s: s.conditional_kl("F"),
    "bg": lambda s: s.conditional_kl("B"),
}
PARTITION_TERMS = frozenset({"tm", "cf", "bg"})


class Preset(NamedTuple):
    temperature: float
    weights: Mapping[str, float]


PRESETS: Dict[str, Preset] = {
    "kd": Preset(4.0, {"kl": 1.0}),
    "dkd": Preset(4.0, {"tckd": 1.0, "nckd": 8.0}),
    # ENSKD's released configuration: DKD with T = 1 and β ("γ" there) = 2.
    "enskd": Preset(1.0, {"tckd": 1.0, "nckd": 2.0}),
    "trkd": Preset(4.0, {"tm": 1.0, "cf": 8.0, "bg": 0.0}),
}


def check_terms(names) -> None:
    unknown = [n for n in names if n not in TERMS]
    if unknown:
        raise ValueError(f"unknown KD term(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(TERMS)}")


def term_values(stats: LogitStats, names) -> Dict[str, torch.Tensor]:
    """Per-example values (B,) of the named terms, plus `f_size` when a TRKD term is among them."""
    check_terms(names)
    values = {n: TERMS[n](stats) for n in names}
    if PARTITION_TERMS.intersection(names):
        values["f_size"] = stats.f_size()
    return values


def logit_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
             weights: Mapping[str, float], temperature: float, tau: Optional[float] = 1.0,
             cutoff: str = "conditional", topk: Optional[int] = None):
    """Σ_k w_k · term_k, batch mean; returns (loss, {term: unweighted batch mean, f_size}).

    Terms with weight 0 are still reported (for logging) but computed without autograd.
    """
    check_terms(weights)
    stats = LogitStats(student_logits, teacher_logits, target, temperature, tau, cutoff, topk)
    active = [n for n, w in weights.items() if w != 0]
    values = term_values(stats, active)
    loss = stats.zs.new_zeros(stats.zs.shape[0])
    for name in active:
        loss = loss + float(weights[name]) * values[name]
    with torch.no_grad():
        values.update(term_values(stats, [n for n in weights if weights[n] == 0]))
    parts = {n: v.detach().to(stats.zs.dtype).mean() for n, v in values.items()}
    return loss.mean(), parts
