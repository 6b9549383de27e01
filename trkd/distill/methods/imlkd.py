"""imlkd: integrated multi-level KD (Yang et al., 2024) — a documented approximation.

    for each duration d: a sub-segment x_d of every chunk (randomly placed, re-mean-normalised;
    the chunk itself when d covers it); a = |IG| / max |IG| of the teacher's target cosine logit;
    x̃_d = x_d ⊙ (0.5 + a);  L_d = instance + class + batch levels (below) between
    the student's logits on x_d and the teacher's on x̃_d
    L_imlkd = λ_iml · Σ_d L_d, warmed up like every logit-level loss

It needs the teacher's input gradients, so it always runs the teacher online. The paper's full
text could not be read: this is a reconstruction from its abstract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, NamedTuple, Sequence

import torch

from trkd.data.chunks import mean_normalise
from trkd.distill.methods.base import Method, Settings, student_logits
from trkd.distill.methods.kd import kl_rows
from trkd.errors import InputError
from trkd.losses.common import as_working, working_dtype

FRAMES_PER_SECOND = 100  # fbank frame shift 10 ms: the durations are in seconds
TINY = 1e-12  # keeps an all-zero attribution map at a = 0 instead of 0 / 0


class IMLKDParts(NamedTuple):
    instance: torch.Tensor
    cls: torch.Tensor
    batch: torch.Tensor


def integrated_gradients(forward_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                         target: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """IG = x ⊙ mean_k ∇F(α_k x), α_k = (k − 0.5)/m, of the target logit F of `forward_fn`.

    `forward_fn` maps fbank (B, T, F) to logits (B, C) with no coupling between examples (eval
    mode); the baseline is the all-zero input. Only the input's gradient is taken: no parameter
    gradient is accumulated. Returns a detached tensor shaped like `x`.
    """
    x = x.detach()
    total = torch.zeros_like(x)
    index = target.long().unsqueeze(1)
    with torch.enable_grad():
        for k in range(1, steps + 1):
            scaled = ((k - 0.5) / steps * x).requires_grad_(True)
            chosen = forward_fn(scaled).gather(1, index).sum()
            total += torch.autograd.grad(chosen, scaled)[0]
    return x * total / steps


def integrated_input(x: torch.Tensor, ig: torch.Tensor) -> torch.Tensor:
    """x̃ = x ⊙ (0.5 + a), a = |IG| / max |IG| per example (max over all but the batch axis)."""
    attribution = ig.abs()
    peak = attribution.flatten(1).amax(1).view(-1, *([1] * (ig.dim() - 1)))
    return x * (0.5 + attribution / peak.clamp_min(TINY))


def _gram_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖aᵀa − bᵀb‖²_F through (B, B) products: ‖aaᵀ‖² + ‖bbᵀ‖² − 2‖abᵀ‖², never a (C, C) matrix.

    float64, because the three terms nearly cancel when the student matches the teacher.
    """
    a, b = a.double(), b.double()
    return ((a @ a.T).pow(2).sum() + (b @ b.T).pow(2).sum() - 2 * (a @ b.T).pow(2).sum())


def imlkd_objective(student_logits: torch.Tensor, teacher_logits_on_integrated: torch.Tensor,
                    temperatures: Sequence[float] = (1, 2, 4)):
    """Instance + class + batch levels; returns (loss, IMLKDParts).

    instance = Σ_T T² KL(pᵀ_T ‖ pˢ_T) (batch mean); with P the (B, C) probabilities at T = 1,
    class = ‖Pᵀᵀ Pᵀ − Pˢᵀ Pˢ‖²_F / C and batch = ‖Pᵀ Pᵀᵀ − Pˢ Pˢᵀ‖²_F / B.
    """
    teacher = teacher_logits_on_integrated.detach()
    instance = sum(kl_rows(student_logits, teacher, t) for t in temperatures).mean()
    dtype = working_dtype(student_logits, teacher)
    p_s = torch.softmax(as_working(student_logits, dtype), -1)
    p_t = torch.softmax(as_working(teacher, dtype), -1)
    num_batch, num_classes = p_s.shape
    cls = (_gram_gap(p_t, p_s) / num_classes).to(p_s.dtype)
    batch = (p_t @ p_t.T - p_s @ p_s.T).pow(2).sum() / num_batch
    loss = instance + cls + batch
    return loss, IMLKDParts(instance.detach(), cls.detach(), batch.detach())


@dataclass
class IMLKDSettings(Settings):
    weight: float = 1.0
    durations: List[float] = field(default_factory=lambda: [2.0, 1.0, 0.5])
    steps: int = 8
    temperatures: List[float] = field(default_factory=lambda: [1.0, 2.0, 4.0])

    def frames(self) -> List[int]:
        return [max(1, round(d * FRAMES_PER_SECOND)) for d in self.durations]

    def check(self, source, prefix: str, lines, given) -> None:
        self.durations = [float(x) for x in self.durations]
        self.temperatures = [float(x) for x in self.temperatures]
        if not self.durations or min(self.durations) <= 0 or self.steps < 1 or not self.temperatures:
            raise InputError(source, f"'{prefix}': need positive durations, steps >= 1 and a temperature",
                             lines.get(prefix))


def random_segments(x: torch.Tensor, frames: int) -> torch.Tensor:
    """A `frames`-long window of each (T, F) example at a random place (the CPU generator, which
    checkpoints save, so a resumed run draws the same places), mean-normalised again."""
    starts = torch.randint(0, x.shape[1] - frames + 1, (x.shape[0],)).to(x.device)
    index = (starts.unsqueeze(1) + torch.arange(frames, device=x.device)).unsqueeze(2)
    seg = x.gather(1, index.expand(-1, -1, x.shape[2]))
    return mean_normalise(seg)


class IMLKD(Method):
    """Runs the teacher and the student itself on the sub-segments (`bind` gives it the student)."""

    Settings = IMLKDSettings
    needs, online_only = (), True

    def __init__(self, settings: IMLKDSettings, ctx):
        super().__init__(settings, ctx)
        self.teacher, self.student = ctx.teacher, None

    def bind(self, student) -> None:
        self.student = student

    def __call__(self, batch, out, teacher_out, step):
        x, target = batch["feats"], batch["target"]
        teacher = self.teacher.follow(x)

        def target_cosine(z: torch.Tensor) -> torch.Tensor:
            return teacher.head(teacher.model(z), target, 0.0)[1]

        total, sums = 0.0, torch.zeros(3)
        for frames in self.settings.frames():
            if frames >= x.shape[1]:
                seg, logits = x, student_logits(out, self.kind)
            else:
                seg = random_segments(x, frames)
                logits = student_logits(self.student(seg, target, step.margin), self.kind)
            ig = integrated_gradients(target_cosine, seg, target, self.settings.steps)
            _, (t_logits,) = teacher.logits(integrated_input(seg, ig), target, (self.kind,))
            loss, parts = imlkd_objective(logits, t_logits, self.settings.temperatures)
            total = total + loss
            sums += torch.stack([p.detach().float().cpu() for p in parts])
        names = ("iml_instance", "iml_class", "iml_batch")
        return self.settings.weight * total, dict(zip(names, sums))
