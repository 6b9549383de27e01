"""Composable logit-level KD terms: one engine behind kd, dkd, enskd and trkd.

Every term is unweighted, per example, and already multiplied by T². A method is a temperature
and a {term: weight} dict (its settings in `trkd/distill/methods/`), so ablations such as
`{tm: 1, nckd: 8}` need no new code.
`logit_kd` builds the shared quantities (scaled logits, log-sum-exps per class set, TRKD's
partition) once per call, so TRKD through the terms costs the same as `trkd_loss`.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, NamedTuple, Optional

import torch

from trkd.losses.stats import LogitStats


TERMS: Dict[str, Callable[[LogitStats], torch.Tensor]] = {
    # Hinton: T² KL(pᵀ ‖ pˢ).
    "kl": lambda s: s.full_kl(),
    # DKD: target vs non-target binary masses, and the non-target conditional.
    "tckd": lambda s: s.masses_kl(("y", "nt")),
    "nckd": lambda s: s.conditional_kl("nt"),
    # TRKD: three masses (target, F, B), the conditional over F, the conditional over B.
    "tm": lambda s: s.masses_kl(("y", "F", "B")),
    "cf": lambda s: s.conditional_kl("F"),
    "bg": lambda s: s.conditional_kl("B"),
    # The same conditionals weighted by the teacher's share of the non-target mass in their set
    # (the KL chain rule's weight): with these, TRKD at τ = 1 is still DKD.
    "cfw": lambda s: s.weighted_conditional_kl("F"),
    "bgw": lambda s: s.weighted_conditional_kl("B"),
}
PARTITION_TERMS = frozenset({"tm", "cf", "bg", "cfw", "bgw"})


class Preset(NamedTuple):
    """A logit method's temperature and term weights (`trkd.losses.PRESETS`)."""
    temperature: float
    weights: Mapping[str, float]


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
             cutoff: str = "conditional", topk: Optional[int] = None,
             confusion: Optional[torch.Tensor] = None):
    """Σ_k w_k · term_k, batch mean; returns (loss, {term: unweighted batch mean, f_size}).

    Terms with weight 0 are still reported (for logging) but computed without autograd.
    `confusion`, a bool (B, C) mask, gives F instead of τ / `topk` (a sparse teacher's F).
    """
    check_terms(weights)
    stats = LogitStats(student_logits, teacher_logits, target, temperature, tau, cutoff, topk, confusion)
    active = [n for n, w in weights.items() if w != 0]
    values = term_values(stats, active)
    loss = stats.zs.new_zeros(stats.zs.shape[0])
    for name in active:
        loss = loss + float(weights[name]) * values[name]
    with torch.no_grad():
        values.update(term_values(stats, [n for n in weights if weights[n] == 0]))
    parts = {n: v.detach().to(stats.zs.dtype).mean() for n, v in values.items()}
    return loss.mean(), parts
