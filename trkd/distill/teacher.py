"""The teacher, frozen by construction: its outputs come from a dump or from an eval-mode,
no-grad forward on exactly the student's (augmented) batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from trkd import checkpoint as ckpt
from trkd.errors import InputError
from trkd.losses.sparse import SparseTeacher, reduce


class Columns(NamedTuple):
    """Both networks' logits over the columns they share, whatever kind of teacher gave them.

    A full teacher row (online, or a dense dump) shares every class. A teacher dumped at its top
    K shares K + 2 columns: its K highest non-targets (ascending class index), the target, and
    `rest`, the column that lumps the classes the dump cut, with logit T·lse(z/T) over them at
    the method's T (a method divides by T again). A method forms its loss from these columns."""

    student: torch.Tensor   # (B, N)
    teacher: torch.Tensor   # (B, N)
    target: torch.Tensor    # (B,) each row's target column
    rest: Optional[int]     # the lumped column, None where every class is a column of its own
    top_k: Optional[int] = None   # K of a top-K dump (None: full rows)


@dataclass
class TeacherOutput:
    logits: Union[torch.Tensor, SparseTeacher, None] = None   # (B, C) margin or cosine logits as `kd.logits` says, or a top-K dump's rows
    embedding: Optional[torch.Tensor] = None    # (B, D)
    levels: Optional[List[torch.Tensor]] = None  # every level, the embedding last

    def columns(self, student: torch.Tensor, target: torch.Tensor, temperature: float) -> Columns:
        """The logits both networks share (`Columns`); `temperature` places a top-K dump's rest."""
        if not isinstance(self.logits, SparseTeacher):
            return Columns(student, self.logits, target, None)
        try:
            red = reduce(student, self.logits, target, temperature)
        except ValueError as err:
            raise InputError("meta.yaml of the teacher dump", str(err)) from None
        return Columns(*red, top_k=self.logits.k)


@dataclass
class Teacher:
    """A trained model dir's network and AAM head, frozen, with what its config says. An imported
    teacher may have no usable head (`head` None, `spk2id` None): `no_head` says why."""

    model: nn.Module
    head: Optional[nn.Module]
    margin: float           # the FINAL margin: the teacher's logits are those of the trained head
    num_frms: int
    spk2id: Optional[Dict[str, int]]
    spk2id_path: Path
    no_head: Optional[str] = None

    def levels(self, feats: torch.Tensor) -> List[torch.Tensor]:
        with torch.no_grad():
            return self.model.forward_levels(feats)

    def logits(self, feats: torch.Tensor, target: torch.Tensor, kinds: Sequence[str]):
        """Levels and the chosen logits (`margin`, `cosine`) of a batch, in eval mode, no grad."""
        self.require_head("the teacher's logits")
        levels = self.levels(feats)
        with torch.no_grad():
            margin_logits, cosine_logits = self.head(levels[-1], target, self.margin)
        table = {"margin": margin_logits, "cosine": cosine_logits}
        return levels, [table[k] for k in kinds]

    def require_head(self, use: str) -> None:
        if self.head is None:
            raise InputError(self.spk2id_path.parent, f"{use} needs the teacher's classifier, and {self.no_head}; "
                             f"emb and mlkd (embedding level) distil it online without one")

    def to(self, device) -> "Teacher":
        for net in (self.model, self.head):
            if net is not None:
                net.to(device)
        return self

    def follow(self, x: torch.Tensor) -> "Teacher":
        """Move to `x`'s device (the trainer picks the device, in one place) if not there yet."""
        if next(self.model.parameters()).device != x.device:
            self.to(x.device)
        return self


def missing_classifier(model_dir, has_head: bool = True) -> Optional[str]:
    """Why MODEL has no classifier that logit methods can read (None where it has one): a
    checkpoint without `head`, or no `spk2id` naming its classes (an imported teacher says which)."""
    from trkd.teachers.folder import imported_record

    model_dir = Path(model_dir)
    if has_head and (model_dir / "spk2id").is_file():
        return None
    record = imported_record(model_dir) or {}
    if record.get("no_logits"):
        return record["no_logits"]
    return f"{model_dir / 'spk2id'} is missing" if has_head else f"{model_dir} has no classifier ('head')"


def load_teacher(model_dir, checkpoint: str = ckpt.AVG_NAME, device="cpu") -> Teacher:
    """The frozen teacher of a `trkd train` model dir (config.yaml, spk2id, models/CHECKPOINT)."""
    from trkd.data.chunks import read_spk2id
    from trkd.extract import load_model_dir, load_state
    from trkd.models.aam import AAMSoftmax

    model_dir = Path(model_dir)
    loaded = load_model_dir(model_dir, checkpoint)
    cfg, model = loaded.cfg, loaded.model
    no_head = missing_classifier(model_dir, "head" in loaded.state)
    spk2id, head = None, None
    if no_head is None:
        spk2id = read_spk2id(model_dir / "spk2id")
        head = AAMSoftmax(model.embed_dim, len(spk2id), scale=cfg.head.scale, fallback=cfg.head.margin_fallback)
        load_state(head, "head", loaded, model_dir)
    for net in (model, head):
        if net is not None:
            net.eval().requires_grad_(False)
    return Teacher(model, head, cfg.head.margin, cfg.data.num_frms, spk2id, model_dir / "spk2id", no_head).to(device)


class DumpedTeacher:
    """Teacher outputs that the dataset put in the batch (from a `trkd dump-logits` dump); the
    logits of a top-K dump arrive as packed rows and leave as a `SparseTeacher`."""

    def __init__(self, level_dims: Sequence[int], sparse: Optional[Tuple[int, Tuple[float, ...], int]] = None):
        self.level_dims, self.sparse = list(level_dims), sparse

    def __call__(self, batch: Dict[str, torch.Tensor]) -> TeacherOutput:
        from trkd.losses.sparse import unpack

        levels, logits = batch.get("teacher_levels"), batch.get("teacher_logits")
        if logits is not None and self.sparse is not None:
            logits = unpack(logits, batch["target"], *self.sparse)
        return TeacherOutput(logits, batch.get("teacher_embedding"),
                             None if levels is None else list(levels.split(self.level_dims, dim=1)))


class OnlineTeacher:
    """The teacher run on the student's own batch (same chunk, same augmentation)."""

    def __init__(self, teacher: Teacher, logits: str):
        self.teacher, self.kind = teacher, logits

    def __call__(self, batch: Dict[str, torch.Tensor]) -> TeacherOutput:
        teacher = self.teacher.follow(batch["feats"])
        if teacher.head is None:  # embedding-level methods only (distill refuses the others)
            levels = teacher.levels(batch["feats"])
            return TeacherOutput(None, levels[-1], levels)
        levels, (logits,) = teacher.logits(batch["feats"], batch["target"], (self.kind,))
        return TeacherOutput(logits, levels[-1], levels)
