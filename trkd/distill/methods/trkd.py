"""trkd: triage KD (Kim et al., ICASSP 2026): assess, prioritise, focus.

    F(τ) = the teacher's top non-targets whose mass reaches τ (`trkd.losses.confusion`),
    B = the other non-targets; both sets taken from the teacher and applied to both networks.
    TM = T² · KL([p_y, P_F, P_B]ᵀ ‖ [p_y, P_F, P_B]ˢ)
    CF = T² · KL of the softmaxes restricted to F;  BG = the same over B (0 where B is empty)
    L_trkd = λ_M · TM + λ_F · CF + λ_B · BG     (λ_M = 1, λ_F = 8, λ_B = 0, T = 4)
    τ(it) = τ0 before `start_epoch`, τ1 from `stop_epoch`, τ0 + (τ1 − τ0)(1 − γ^f) in between.

At τ = 1, F is every non-target and L_trkd is L_dkd with α = λ_M, β = λ_F.

Readings beyond the published one (options, off by default):
- `mass_weight: conditional`: CF and BG weighted by the teacher's share of the non-target mass in
  their set, P̂ᵀ_F = Σ_F pᵀ / (1 − pᵀ_y) (the KL chain rule's weight: CF alone over-weights the
  few classes of F). TRKD at τ = 1 is still DKD; with λ_B = λ_F it differs from DKD only in how
  the F/B split is carried. It applies to `terms` too (`cf` → `cfw`, `bg` → `bgw`).
- `start_fraction`, `stop_fraction`: the ramp's start and end as shares of the run instead of
  epochs, so that a short run keeps the paper's proportions (epochs 10 and 60 of 150: 0.06 and
  0.393 of training before each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, NamedTuple, Optional

import torch

from trkd.distill.methods.logit import LogitMethod, LogitSettings, student_logits
from trkd.errors import InputError
from trkd.losses.confusion import CUTOFFS
from trkd.losses.sparse import confusion_in_top
from trkd.losses.terms import PARTITION_TERMS, logit_kd
from trkd.schedules import share_start, tau_at, tau_between

# `mass_weight`: none (the published reading) or conditional, which swaps these terms.
MASS_WEIGHTS = ("none", "conditional")
MASS_WEIGHTED = {"cf": "cfw", "bg": "bgw"}


@dataclass
class TRKDSettings(LogitSettings):
    """`confusion`: `cutoff` (F from τ) or `topk:K` (the K top non-targets, a static-set ablation).
    A fixed τ is `tau0 == tau1`."""

    NAMED: ClassVar[Dict[str, str]] = {"lambda_m": "tm", "lambda_f": "cf", "lambda_b": "bg"}
    PARTITION: ClassVar[bool] = True
    lambda_m: Optional[float] = 1.0
    lambda_f: Optional[float] = 8.0
    lambda_b: Optional[float] = 0.0
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
        weights = super().weights()
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

    def check(self, source, prefix: str, lines, given) -> None:
        super().check(source, prefix, lines, given)
        if self.cutoff not in CUTOFFS:
            raise InputError(source, f"'{prefix}.cutoff' must be one of {', '.join(CUTOFFS)}, got "
                             f"{self.cutoff!r}", lines.get(f"{prefix}.cutoff"))
        kind, _, k = self.confusion.partition(":")
        if not (self.confusion == "cutoff" or (kind == "topk" and k.isdigit() and int(k) > 0)):
            raise InputError(source, f"'{prefix}.confusion' must be 'cutoff' or 'topk:K' (K > 0), got "
                             f"{self.confusion!r}", lines.get(f"{prefix}.confusion"))
        if not (self.tau0 > 0 and self.tau1 > 0 and 0 < self.gamma < 1
                and 1 <= self.start_epoch <= self.stop_epoch):
            raise InputError(source, f"'{prefix}': need tau0, tau1 > 0, 0 < gamma < 1 and "
                             f"1 <= start_epoch <= stop_epoch", lines.get(prefix))
        shares = (self.start_fraction, self.stop_fraction)
        if shares != (None, None) and (None in shares or not 0 <= shares[0] < shares[1] <= 1):
            raise InputError(source, f"'{prefix}.start_fraction' and '{prefix}.stop_fraction' go together, "
                             f"with 0 <= start_fraction < stop_fraction <= 1; got {shares[0]!r} and "
                             f"{shares[1]!r}", lines.get(f"{prefix}.start_fraction"))
        if self.mass_weight not in MASS_WEIGHTS:
            raise InputError(source, f"'{prefix}.mass_weight' must be one of {', '.join(MASS_WEIGHTS)}, "
                             f"got {self.mass_weight!r}", lines.get(f"{prefix}.mass_weight"))


class TRKDParts(NamedTuple):
    tm: torch.Tensor
    cf: torch.Tensor
    bg: torch.Tensor
    f_size: torch.Tensor


_D = TRKDSettings


def trkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
              tau: Optional[float], temperature: float = _D.temperature, lambda_m: float = _D.lambda_m,
              lambda_f: float = _D.lambda_f, lambda_b: float = _D.lambda_b, cutoff: str = _D.cutoff,
              topk: Optional[int] = None, mass_weight: str = _D.mass_weight):
    """L_trkd at a given τ (or the `topk` top non-targets as F), batch mean; returns (loss,
    TRKDParts): batch means of the terms as weighted by `mass_weight` (none: unweighted), f_size
    the mean |F|."""
    settings = TRKDSettings(lambda_m=lambda_m, lambda_f=lambda_f, lambda_b=lambda_b, mass_weight=mass_weight)
    loss, parts = logit_kd(student_logits, teacher_logits, target, settings.weights(), temperature,
                           tau=tau, cutoff=cutoff, topk=topk)
    cf, bg = (MASS_WEIGHTED[t] if mass_weight != "none" else t for t in ("cf", "bg"))
    return loss, TRKDParts(parts["tm"], parts[cf], parts[bg], parts["f_size"])


class TRKD(LogitMethod):
    """Needs from a training step its iteration, for τ; logs τ and |F|."""

    Settings = TRKDSettings

    def __call__(self, batch, out, teacher, step):
        s, t = self.settings, self.settings.temperature
        tau = s.tau(step.iteration, step.iters_per_epoch, step.epochs)
        cols = teacher.columns(student_logits(out, self.kind), batch["target"], t)
        if not PARTITION_TERMS & set(self.weights):
            return logit_kd(cols.student, cols.teacher, cols.target, self.weights, t)
        extra, cut = {"tau": tau, "cutoff": s.cutoff, "topk": s.topk()}, None
        if cols.rest is not None:
            # A top-K teacher: F is ranked among its K columns (the lumped rest never enters it).
            f, cut = confusion_in_top(cols, tau, t, s.cutoff, s.topk())
            if s.topk() is not None or tau < 1:
                extra = {"confusion": f}
        loss, parts = logit_kd(cols.student, cols.teacher, cols.target, self.weights, t, **extra)
        if cut is not None:
            parts["cut"] = cut.float().mean()
        parts["tau"] = torch.tensor(tau)
        return loss, parts

    def describe(self, logs) -> str:
        if "tau" not in logs:
            return ""
        line = f"current tau {float(logs['tau']):.4f} |F| {float(logs.get('f_size', float('nan'))):.1f}"
        # From a sparse dump: the rows whose F did not fit in the dump's top K (cut to it).
        return line + (f" cut by top-K {float(logs['cut']):.3f}" if "cut" in logs else "")
