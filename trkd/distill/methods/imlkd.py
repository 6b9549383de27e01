"""imlkd: integrated multi-level KD (Yang et al., 2024) — a documented approximation.

    for each duration d: a sub-segment x_d of every chunk (randomly placed, re-mean-normalised;
    the chunk itself when d covers it); a = |IG| / max |IG| of the teacher's target cosine logit;
    x̃_d = x_d ⊙ (0.5 + a);  L_d = instance + class + batch levels (`trkd.losses.imlkd`) between
    the student's logits on x_d and the teacher's on x̃_d
    L_imlkd = λ_iml · Σ_d L_d, warmed up like every logit-level loss

It needs the teacher's input gradients, so it always runs the teacher online.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch

from trkd.data.chunks import mean_normalise
from trkd.distill.methods.logit import student_logits
from trkd.errors import InputError
from trkd.losses.imlkd import imlkd_objective, integrated_gradients, integrated_input

FRAMES_PER_SECOND = 100  # fbank frame shift 10 ms: the durations are in seconds


@dataclass
class IMLKDSettings:
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


class IMLKD:
    """Runs the teacher and the student itself on the sub-segments (`bind` gives it the student)."""

    Settings = IMLKDSettings
    level, warm, needs, online_only = "logit", True, (), True

    def __init__(self, settings: IMLKDSettings, ctx):
        self.settings, self.kind, self.teacher = settings, ctx.kd.logits, ctx.teacher
        self.student = None

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

    def modules(self):
        return {}

    def describe(self, logs) -> str:
        return ""
