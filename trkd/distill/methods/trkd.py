"""trkd: triage KD (Kim et al., ICASSP 2026): assess, prioritise, focus.

    F(τ) = the teacher's top non-targets whose mass reaches τ (`trkd.losses.confusion`),
    B = the other non-targets; both sets taken from the teacher and applied to both networks.
    TM = T² · KL([p_y, P_F, P_B]ᵀ ‖ [p_y, P_F, P_B]ˢ)
    CF = T² · KL of the softmaxes restricted to F;  BG = the same over B (0 where B is empty)
    L_trkd = λ_M · TM + λ_F · CF + λ_B · BG     (λ_M = 1, λ_F = 8, λ_B = 0, T = 4)
    τ(it) = τ0 before `start_epoch`, τ1 from `stop_epoch`, τ0 + (τ1 − τ0)(1 − γ^f) in between.

At τ = 1, F is every non-target and L_trkd is L_dkd with α = λ_M, β = λ_F.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, NamedTuple, Optional

import torch

from trkd.distill.methods.logit import LogitMethod, LogitSettings
from trkd.errors import InputError
from trkd.losses.confusion import CUTOFFS
from trkd.losses.terms import PARTITION_TERMS, logit_kd
from trkd.schedules import tau_at


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

    def topk(self) -> Optional[int]:
        return None if self.confusion == "cutoff" else int(self.confusion.split(":", 1)[1])

    def tau(self, iteration: int, iters_per_epoch: int) -> float:
        return tau_at(iteration, iters_per_epoch, self.tau0, self.tau1, self.gamma, self.start_epoch,
                      self.stop_epoch)

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


class TRKDParts(NamedTuple):
    tm: torch.Tensor
    cf: torch.Tensor
    bg: torch.Tensor
    f_size: torch.Tensor


_D = TRKDSettings


def trkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
              tau: Optional[float], temperature: float = _D.temperature, lambda_m: float = _D.lambda_m,
              lambda_f: float = _D.lambda_f, lambda_b: float = _D.lambda_b, cutoff: str = _D.cutoff,
              topk: Optional[int] = None):
    """L_trkd at a given τ (or the `topk` top non-targets as F), batch mean; returns (loss,
    TRKDParts): unweighted batch means, f_size the mean |F|."""
    loss, parts = logit_kd(student_logits, teacher_logits, target,
                           {"tm": lambda_m, "cf": lambda_f, "bg": lambda_b}, temperature,
                           tau=tau, cutoff=cutoff, topk=topk)
    return loss, TRKDParts(parts["tm"], parts["cf"], parts["bg"], parts["f_size"])


class TRKD(LogitMethod):
    """Needs from a training step its iteration, for τ; logs τ and |F|."""

    Settings = TRKDSettings

    def partition(self, step):
        s = self.settings
        return {"tau": s.tau(step.iteration, step.iters_per_epoch), "cutoff": s.cutoff, "topk": s.topk()}

    def __call__(self, batch, out, teacher, step):
        loss, parts = super().__call__(batch, out, teacher, step)
        if PARTITION_TERMS & set(self.weights):
            parts["tau"] = torch.tensor(self.settings.tau(step.iteration, step.iters_per_epoch))
        return loss, parts

    def describe(self, logs) -> str:
        if "tau" not in logs:
            return ""
        line = f"current tau {float(logs['tau']):.4f} |F| {float(logs.get('f_size', float('nan'))):.1f}"
        # From a sparse dump: the rows whose F did not fit in the dump's top K (cut to it).
        return line + (f" cut by top-K {float(logs['cut']):.3f}" if "cut" in logs else "")
