"""imlkd's online path (a documented approximation of Yang et al. 2024, spec/losses.md).

For each duration, a sub-segment of every chunk (randomly placed, re-mean-normalised; the chunk
itself when the duration covers it) is attributed by Integrated Gradients of the teacher's target
cosine logit; the teacher's logits on the integrated input x ⊙ (0.5 + a) supervise the student's
logits on the plain sub-segment at instance, class and batch level. It needs the teacher's input
gradients, so it always runs the teacher online.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from trkd.distill.kd_config import IMLKDBlock
from trkd.distill.objective import student_logits
from trkd.distill.teacher import Teacher
from trkd.losses import imlkd_objective, integrated_gradients, integrated_input


def random_segments(x: torch.Tensor, frames: int) -> torch.Tensor:
    """A `frames`-long window of each (T, F) example at a random place (the CPU generator, which
    checkpoints save, so a resumed run draws the same places), mean-normalised again."""
    starts = torch.randint(0, x.shape[1] - frames + 1, (x.shape[0],)).to(x.device)
    index = (starts.unsqueeze(1) + torch.arange(frames, device=x.device)).unsqueeze(2)
    seg = x.gather(1, index.expand(-1, -1, x.shape[2]))
    return seg - seg.mean(1, keepdim=True)


class IMLKDTerm:
    """λ_iml · Σ_durations (instance + class + batch), warmed up like every logit-level loss."""

    warm, needs = True, ()

    def __init__(self, block: IMLKDBlock, logits: str, teacher: Teacher):
        self.block, self.kind, self.teacher = block, logits, teacher
        self.student = None

    def bind(self, student: nn.Module) -> None:
        self.student = student

    def __call__(self, batch, out, teacher_out, step):
        x, target = batch["feats"], batch["target"]
        teacher = self.teacher.follow(x)

        def target_cosine(z: torch.Tensor) -> torch.Tensor:
            return teacher.head(teacher.model(z), target, 0.0)[1]

        total, sums = 0.0, torch.zeros(3)
        for frames in self.block.frames():
            if frames >= x.shape[1]:
                seg, logits = x, student_logits(out, self.kind)
            else:
                seg = random_segments(x, frames)
                logits = student_logits(self.student(seg, target, step.margin), self.kind)
            ig = integrated_gradients(target_cosine, seg, target, self.block.steps)
            _, (t_logits,) = teacher.logits(integrated_input(seg, ig), target, (self.kind,))
            loss, parts = imlkd_objective(logits, t_logits, self.block.temperatures)
            total = total + loss
            sums += torch.stack([p.detach().float().cpu() for p in parts])
        names = ("iml_instance", "iml_class", "iml_batch")
        return self.block.weight * total, dict(zip(names, sums))

    def modules(self) -> Dict[str, nn.Module]:
        return {}
