"""trkd: triage KD (Kim et al., ICASSP 2026): assess, prioritise, focus.

    F(τ) = the teacher's top non-targets whose mass reaches τ (`reference_partition`),
    B = the other non-targets; both sets taken from the teacher and applied to both networks.
    TM = T² · KL([p_y, P_F, P_B]ᵀ ‖ [p_y, P_F, P_B]ˢ)
    CF = T² · KL of the softmaxes restricted to F;  BG = the same over B (0 where B is empty)
    L_trkd = λ_M · TM + λ_F · CF + λ_B · BG     (λ_M = 1, λ_F = 8, λ_B = 8, T = 4; the paper: λ_B = 0)
    τ(it) = τ0 before `start_epoch`, τ1 from `stop_epoch`, τ0 + (τ1 − τ0)(1 − γ^f) in between.

At τ = 1, F is every non-target and L_trkd is L_dkd with α = λ_M, β = λ_F.

The default keeps the background term (λ_B = 8) that the paper drops: with λ_B = 0 the student is
taught nothing about the classes outside F, which hold most of the teacher's non-target mass, and
on the embedded corpus every seed ended worse than no KD; with λ_B = 8 every seed beat it, level
with DKD. `lambda_b: 0` is the paper's reading.

Readings beyond the published one (options, off by default):
- `mass_weight: conditional`: CF and BG weighted by the teacher's share of the non-target mass in
  their set, P̂ᵀ_F = Σ_F pᵀ / (1 − pᵀ_y) (the KL chain rule's weight: CF alone over-weights the
  few classes of F). TRKD at τ = 1 is still DKD; with λ_B = λ_F it differs from DKD only in how
  the F/B split is carried. It applies to `terms` too (`cf` → `cfw`, `bg` → `bgw`).
- `start_fraction`, `stop_fraction`: the ramp's start and end as shares of the run instead of
  epochs, so that a short run keeps the paper's proportions (epochs 10 and 60 of 150: 0.06 and
  0.393 of training before each).

`terms: {tm: 1, nckd: 8}` replaces the named weights altogether (the paper's ablations are
configs): any of `TERMS`, DKD's and Hinton's terms included.

Below, `reference_partition` and `reference_terms` state TRKD plainly (a sort and a cumulative
sum, masked softmaxes); training runs `terms_loss`, the same terms on the fast path in
`trkd_fast/`, pinned equal to the reference by tests. A top-K teacher's F is ranked by the
reference among its K columns (few), then summed on the fast path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, Mapping, NamedTuple, Optional, Tuple

import torch

from trkd.distill.methods.base import LogitSettings, Method, scaled, student_logits
from trkd.distill.methods.dkd import dkd_rows
from trkd.distill.methods.kd import kl_rows
from trkd.distill.methods.trkd_fast.partition import CUTOFFS
from trkd.distill.methods.trkd_fast.sets import LogitStats
from trkd.errors import InputError
from trkd.losses.common import NEG_INF, mass_kl, masked_logsumexp, target_mask
from trkd.schedules import share_start, tau_at, tau_between

# Every term per example, already multiplied by T², on the fast path.
TERMS: Dict[str, Callable[[LogitStats], torch.Tensor]] = {
    "kl": lambda s: s.full_kl(),                    # Hinton: KL(pᵀ ‖ pˢ)
    "tckd": lambda s: s.masses_kl(("y", "nt")),     # DKD: target vs non-target masses
    "nckd": lambda s: s.conditional_kl("nt"),       # DKD: the non-target conditional
    "tm": lambda s: s.masses_kl(("y", "F", "B")),   # TRKD: the three masses
    "cf": lambda s: s.conditional_kl("F"),          # TRKD: the conditional over F
    "bg": lambda s: s.conditional_kl("B"),          # TRKD: the conditional over B
    # CF and BG weighted by the teacher's share of the non-target mass in their set (the KL
    # chain rule's weight): with these, TRKD at τ = 1 is still DKD.
    "cfw": lambda s: s.weighted_conditional_kl("F"),
    "bgw": lambda s: s.weighted_conditional_kl("B"),
}
PARTITION_TERMS = frozenset({"tm", "cf", "bg", "cfw", "bgw"})
# `mass_weight`: none (the published reading) or conditional, which swaps these terms.
MASS_WEIGHTS = ("none", "conditional")
MASS_WEIGHTED = {"cf": "cfw", "bg": "bgw"}


@dataclass
class TRKDSettings(LogitSettings):
    """`confusion`: `cutoff` (F from τ) or `topk:K` (the K top non-targets, a static-set ablation).
    A fixed τ is `tau0 == tau1`. A named weight left null takes its default."""

    NAMED: ClassVar[Dict[str, str]] = {"lambda_m": "tm", "lambda_f": "cf", "lambda_b": "bg"}
    lambda_m: Optional[float] = 1.0
    lambda_f: Optional[float] = 8.0
    lambda_b: Optional[float] = 8.0
    terms: Optional[Dict[str, float]] = None
    cutoff: str = "conditional"
    confusion: str = "cutoff"
    tau0: float = 1.0
    tau1: float = 0.05
    gamma: float = 0.001
    start_epoch: int = 10
    stop_epoch: int = 60
    start_fraction: Optional[float] = None   # replace start_epoch/stop_epoch when given (both)
    stop_fraction: Optional[float] = None
    mass_weight: str = "none"

    def weights(self) -> Dict[str, float]:
        """{term: weight}: `terms` when given, else the named weights; `mass_weight` swaps CF, BG."""
        if self.terms is not None:
            weights = {k: float(v) for k, v in self.terms.items()}
        else:
            weights = {term: float(getattr(self, key)) for key, term in self.NAMED.items()}
        if self.mass_weight == "none":
            return weights
        return {MASS_WEIGHTED.get(term, term): w for term, w in weights.items()}

    def topk(self) -> Optional[int]:
        return None if self.confusion == "cutoff" else int(self.confusion.split(":", 1)[1])

    def tau(self, iteration: int, iters_per_epoch: int, epochs: int = 0) -> float:
        """τ at a 0-based iteration; `epochs`, the run's length, places a ramp given as shares."""
        if self.start_fraction is None:
            return tau_at(iteration, iters_per_epoch, self.tau0, self.tau1, self.gamma, self.start_epoch,
                          self.stop_epoch)
        if epochs < 1:
            raise ValueError("a τ ramp given as shares of the run needs the run's number of epochs")
        t_s, t_e = (share_start(f, iters_per_epoch, epochs) for f in (self.start_fraction, self.stop_fraction))
        return tau_between(iteration, t_s, t_e, self.tau0, self.tau1, self.gamma)

    def check(self, source, prefix: str, lines, given: Mapping[str, Any]) -> None:
        def fail(message: str, key: str = ""):
            raise InputError(source, message, lines.get(f"{prefix}.{key}" if key else prefix))

        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for key in self.NAMED:
            if self.terms is None and getattr(self, key) is None:
                setattr(self, key, defaults[key])
            elif self.terms is not None:
                if given.get(key) is not None:
                    fail(f"'{prefix}.{key}' and '{prefix}.terms' both given: name the weights in one place", key)
                setattr(self, key, None)
        if self.terms is not None and (not self.terms or any(
                k not in TERMS or isinstance(v, bool) or not isinstance(v, (int, float)) for k, v in self.terms.items())):
            fail(f"'{prefix}.terms' needs {{term: weight}} with terms among {', '.join(TERMS)}; got {self.terms!r}", "terms")
        if self.cutoff not in CUTOFFS:
            fail(f"'{prefix}.cutoff' must be one of {', '.join(CUTOFFS)}, got {self.cutoff!r}", "cutoff")
        kind, _, k = self.confusion.partition(":")
        if not (self.confusion == "cutoff" or (kind == "topk" and k.isdigit() and int(k) > 0)):
            fail(f"'{prefix}.confusion' must be 'cutoff' or 'topk:K' (K > 0), got {self.confusion!r}", "confusion")
        if not (self.tau0 > 0 and self.tau1 > 0 and 0 < self.gamma < 1 and 1 <= self.start_epoch <= self.stop_epoch):
            fail(f"'{prefix}': need tau0, tau1 > 0, 0 < gamma < 1 and 1 <= start_epoch <= stop_epoch")
        shares = (self.start_fraction, self.stop_fraction)
        if shares != (None, None) and (None in shares or not 0 <= shares[0] < shares[1] <= 1):
            fail(f"'{prefix}.start_fraction' and '{prefix}.stop_fraction' go together, with 0 <= start_fraction "
                 f"< stop_fraction <= 1; got {shares[0]!r} and {shares[1]!r}", "start_fraction")
        if self.mass_weight not in MASS_WEIGHTS:
            fail(f"'{prefix}.mass_weight' must be one of {', '.join(MASS_WEIGHTS)}, got {self.mass_weight!r}",
                 "mass_weight")


class TRKDParts(NamedTuple):
    tm: torch.Tensor
    cf: torch.Tensor
    bg: torch.Tensor
    f_size: torch.Tensor


# ---------------------------------------------------------------- TRKD as the paper writes it

def reference_partition(cols, tau: Optional[float], temperature: float, cutoff: str = "conditional",
                        topk: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """F (bool (B, N)) over `cols` (a `Columns`: teacher, target, rest) and the rows whose F the
    lumped rest cut (bool (B,)).

    Rank the candidate columns (the non-targets but the rest) by the teacher's probability,
    descending, ties by ascending column (= class index); F = {π_r : S_<r < τ}, S the running sum
    of the conditional masses p/(1 − p_y) (or the `joint` p), in float64. `topk` = k: the k first
    of the ranking. A row is cut where the candidates' mass stays below τ (or k exceeds them)
    while a rest exists; at τ ≥ 1 training takes every non-target as F, the rest included."""
    if cutoff not in CUTOFFS:
        raise ValueError(f"unknown cutoff {cutoff!r}; valid: {', '.join(CUTOFFS)}")
    zt = cols.teacher.double() / temperature
    nontarget = ~target_mask(cols.target, zt.shape[1])
    log_p = zt - torch.logsumexp(zt, dim=1, keepdim=True)
    if cutoff == "conditional":
        log_p = log_p - masked_logsumexp(log_p, nontarget).unsqueeze(1)
    candidate = nontarget.clone()
    if cols.rest is not None:
        candidate[:, cols.rest] = False
    k = int(candidate[0].sum())
    mass, order = torch.where(candidate, log_p.exp(), -1.0).sort(dim=1, descending=True, stable=True)
    mass, order = mass[:, :k], order[:, :k]
    if topk is not None:
        in_f = torch.arange(k, device=mass.device).unsqueeze(0).expand_as(mass) < topk
        cut = torch.full((mass.shape[0],), topk > k and cols.rest is not None, dtype=torch.bool, device=mass.device)
    else:
        inclusive = mass.cumsum(1)
        in_f, cut = (inclusive - mass) < tau, (inclusive[:, -1] < tau) & (cols.rest is not None)
    return torch.zeros_like(candidate).scatter(1, order, in_f), cut


def reference_terms(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, f: torch.Tensor,
                    temperature: float) -> Dict[str, torch.Tensor]:
    """Every term of `TERMS` per example (× T²) from F's mask, with masked softmaxes."""
    zs, zt = scaled(student, teacher, temperature)
    y = target_mask(target, zs.shape[1])
    b = ~(f | y)

    def lse(z, mask):
        return masked_logsumexp(z, mask)

    def masses(z):   # log [p_y, P_F, P_B]
        return torch.stack([lse(z, m) for m in (y, f, b)], -1) - torch.logsumexp(z, -1, keepdim=True)

    def within(z, mask):   # log of the softmax restricted to the set
        return (z - lse(z, mask).unsqueeze(-1)).masked_fill(~mask, NEG_INF)

    t2 = temperature ** 2
    cf, bg = (t2 * mass_kl(within(zt, m), within(zs, m)) for m in (f, b))
    share = {name: (lse(zt, m) - lse(zt, ~y)).exp() for name, m in (("f", f), ("b", b))}
    tckd, nckd = dkd_rows(student, teacher, target, temperature)
    return {"kl": kl_rows(student, teacher, temperature), "tckd": tckd, "nckd": nckd,
            "tm": t2 * mass_kl(masses(zt), masses(zs)), "cf": cf, "bg": bg,
            "cfw": share["f"] * cf, "bgw": share["b"] * bg}


# ---------------------------------------------------------------- the fast path training runs

def check_terms(names) -> None:
    unknown = [n for n in names if n not in TERMS]
    if unknown:
        raise ValueError(f"unknown KD term(s) {', '.join(map(repr, unknown))}; valid: {', '.join(TERMS)}")


def term_values(stats: LogitStats, names) -> Dict[str, torch.Tensor]:
    """Per-example values (B,) of the named terms, plus `f_size` when a TRKD term is among them."""
    check_terms(names)
    values = {n: TERMS[n](stats) for n in names}
    if PARTITION_TERMS.intersection(names):
        values["f_size"] = stats.f_size()
    return values


def terms_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
               weights: Mapping[str, float], temperature: float, tau: Optional[float] = 1.0,
               cutoff: str = "conditional", topk: Optional[int] = None,
               confusion: Optional[torch.Tensor] = None):
    """Σ_k w_k · term_k, batch mean; returns (loss, {term: unweighted batch mean, f_size}).

    Terms with weight 0 are still reported (for logging) but computed without autograd.
    `confusion`, a bool (B, C) mask, gives F instead of τ / `topk`.
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


_D = TRKDSettings


def trkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
              tau: Optional[float], temperature: float = _D.temperature, lambda_m: float = _D.lambda_m,
              lambda_f: float = _D.lambda_f, lambda_b: float = _D.lambda_b, cutoff: str = _D.cutoff,
              topk: Optional[int] = None, mass_weight: str = _D.mass_weight):
    """L_trkd at a given τ (or the `topk` top non-targets as F), batch mean; returns (loss,
    TRKDParts): batch means of the terms as weighted by `mass_weight` (none: unweighted), f_size
    the mean |F|."""
    settings = TRKDSettings(lambda_m=lambda_m, lambda_f=lambda_f, lambda_b=lambda_b, mass_weight=mass_weight)
    loss, parts = terms_loss(student_logits, teacher_logits, target, settings.weights(), temperature,
                             tau=tau, cutoff=cutoff, topk=topk)
    cf, bg = (MASS_WEIGHTED[t] if mass_weight != "none" else t for t in ("cf", "bg"))
    return loss, TRKDParts(parts["tm"], parts[cf], parts[bg], parts["f_size"])


class TRKD(Method):
    """Needs from a training step its iteration, for τ; logs τ and |F|."""

    Settings = TRKDSettings

    def __init__(self, settings: TRKDSettings, ctx):
        super().__init__(settings, ctx)
        self.weights = settings.weights()

    def __call__(self, batch, out, teacher, step):
        s, t = self.settings, self.settings.temperature
        tau = s.tau(step.iteration, step.iters_per_epoch, step.epochs)
        cols = teacher.columns(student_logits(out, self.kind), batch["target"], t)
        if not PARTITION_TERMS & set(self.weights):
            return terms_loss(cols.student, cols.teacher, cols.target, self.weights, t)
        partition, cut = {"tau": tau, "cutoff": s.cutoff, "topk": s.topk()}, None
        if cols.top_k is not None:   # a top-K teacher: F ranked among its K columns
            f, cut = reference_partition(cols, tau, t, s.cutoff, s.topk())
            if s.topk() is not None or tau < 1:
                partition = {"confusion": f}
        loss, parts = terms_loss(cols.student, cols.teacher, cols.target, self.weights, t, **partition)
        if cut is not None:
            parts["cut"] = cut.float().mean()
        parts["tau"] = torch.tensor(tau)
        return loss, parts

    def describe(self, logs) -> str:
        if "tau" not in logs:
            return ""
        line = f"current tau {float(logs['tau']):.4f} |F| {float(logs.get('f_size', float('nan'))):.1f}"
        # From a top-K dump: the rows whose F did not fit in the dump's top K (cut to it).
        return line + (f" cut by top-K {float(logs['cut']):.3f}" if "cut" in logs else "")
