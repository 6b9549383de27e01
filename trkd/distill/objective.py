"""The method-agnostic distillation objective plugged into the trainer, and its terms.

L = L_AAM(student) + w(e) · Σ(logit-level terms) + Σ(embedding-level terms), w(e) the KD warm-up
weight. A method is a list of terms (see `methods.py`); each term takes the batch, the student's
output, the teacher's output and the step, and returns its weighted loss and unweighted parts.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trkd.distill.heads import projection
from trkd.distill.kd_config import EmbBlock, KDBlock, MLKDBlock, TRKDBlock
from trkd.distill.teacher import TeacherOutput
from trkd.losses import emb_loss, logit_kd, mlkd_loss
from trkd.losses.terms import PARTITION_TERMS
from trkd.schedules import kd_warmup_weight, tau_at

log = logging.getLogger("trkd.train")


def student_logits(out, kind: str) -> torch.Tensor:
    """The student's logits that are distilled: AAM (margin applied) or s·cos θ."""
    return out.margin_logits if kind == "margin" else out.cosine_logits


class LogitTerms:
    """A weighted set of `trkd.losses.terms` (kd, dkd, enskd, trkd or any `terms:` ablation)."""

    warm, needs = True, ("logits",)

    def __init__(self, block: KDBlock, logits: str):
        self.block, self.kind = block, logits
        self.weights = block.weights()
        self.partition = bool(PARTITION_TERMS & set(self.weights))

    def tau(self, step) -> float:
        b = self.block
        if not isinstance(b, TRKDBlock):
            return 1.0
        return tau_at(step.iteration, step.iters_per_epoch, b.tau0, b.tau1, b.gamma, b.start_epoch, b.stop_epoch)

    def __call__(self, batch, out, teacher: TeacherOutput, step):
        tau = self.tau(step)
        b = self.block
        cutoff = b.cutoff if isinstance(b, TRKDBlock) else "conditional"
        topk = b.topk() if isinstance(b, TRKDBlock) else None
        loss, parts = logit_kd(student_logits(out, self.kind), teacher.logits, batch["target"], self.weights,
                               b.temperature, tau=tau, cutoff=cutoff, topk=topk)
        if self.partition:
            parts["tau"] = torch.tensor(tau)
        return loss, parts

    def modules(self) -> Dict[str, nn.Module]:
        return {}


class EmbTerm:
    """λ_emb · distance(P eˢ, eᵀ), P learned when the embedding sizes differ."""

    warm, needs = False, ("embedding",)

    def __init__(self, block: EmbBlock, student_dim: int, teacher_dim: int):
        self.block = block
        self.proj = projection(student_dim, teacher_dim)

    def __call__(self, batch, out, teacher: TeacherOutput, step):
        loss = emb_loss(out.embedding, teacher.embedding.float(), self.proj, self.block.distance)
        return self.block.weight * loss, {"emb": loss.detach()}

    def modules(self) -> Dict[str, nn.Module]:
        return {} if self.proj is None else {"emb_proj": self.proj}


class MLKDTerm:
    """λ · distance(head(eˢ), concat of the chosen teacher levels, each L2-normalised)."""

    warm, needs = False, ("levels",)

    def __init__(self, block: MLKDBlock, student_dim: int, level_dims: Sequence[int]):
        n = len(level_dims)
        chosen = list(range(n)) if block.levels is None else list(block.levels)
        bad = [i for i in chosen if not -n <= i < n]
        if bad or not chosen:
            raise ValueError(f"kd.mlkd.levels {block.levels}: the teacher has {n} levels (0..{n - 1}, or negative)")
        self.block, self.chosen = block, [i % n for i in chosen]
        self.head = projection(student_dim, sum(level_dims[i] for i in self.chosen), always=True)

    def __call__(self, batch, out, teacher: TeacherOutput, step):
        levels = [teacher.levels[i] for i in self.chosen]
        loss = mlkd_loss(out.embedding, levels, self.head, self.block.distance)
        return self.block.weight * loss, {"mlkd": loss.detach()}

    def modules(self) -> Dict[str, nn.Module]:
        return {"mlkd_head": self.head}


class DistillObjective:
    """AAM + the terms of a method; `teacher` yields the teacher's outputs for a batch (dumped or
    online), asked for only when a term needs them. Logs τ and |F| every `log_interval` steps."""

    needs_levels = False

    def __init__(self, terms: List, teacher, warmup_epochs: int, log_interval: int = 0):
        self.terms, self.teacher = terms, teacher
        self.warmup_epochs, self.log_interval = warmup_epochs, log_interval
        self.needs = {n for t in terms for n in t.needs}

    def modules(self) -> Dict[str, nn.Module]:
        return {k: m for t in self.terms for k, m in t.modules().items()}

    def bind(self, student: nn.Module) -> None:
        """Give terms that run the student themselves (imlkd's sub-segments) the student."""
        for t in self.terms:
            if hasattr(t, "bind"):
                t.bind(student)

    def __call__(self, batch: Dict[str, torch.Tensor], out, step):
        aam = F.cross_entropy(out.margin_logits, batch["target"])
        loss, parts = aam, {"aam": aam.detach()}
        teacher: Optional[TeacherOutput] = self.teacher(batch) if self.needs else None
        w = kd_warmup_weight(step.epoch, self.warmup_epochs)
        for term in self.terms:
            value, term_parts = term(batch, out, teacher, step)
            loss = loss + (w if term.warm else 1.0) * value
            parts.update(term_parts)
        if any(t.warm for t in self.terms):
            parts["kd_weight"] = torch.tensor(w)
        self._log(step, parts)
        return loss, parts

    def _log(self, step, parts) -> None:
        """The current τ (the trainer's log lines hold running means over the epoch)."""
        i = step.iteration - (step.epoch - 1) * step.iters_per_epoch
        if "tau" in parts and self.log_interval and (i + 1) % self.log_interval == 0:
            log.info("epoch %d iter %d/%d current tau %.4f |F| %.1f", step.epoch, i + 1, step.iters_per_epoch,
                     float(parts["tau"]), float(parts.get("f_size", float("nan"))))
