"""bench/gpu.py's steps: the trainer's own step (`Trainer.train_step`: the batch's copy to the
device, the forward in the run's precision, the float32 objective, the finite-loss check, the
(scaled) SGD step, and DDP's gradient exchange under torchrun) on a batch that the trainer's loader
read from a real ark/scp, for plain training, distillation from a teacher dump and distillation
with the teacher online; and their timing (repeats) and peak reserved GPU memory."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import kaldiio
import numpy as np
import torch

from trkd.config import DataConfig
from trkd.data.chunks import ChunkDataset
from trkd.data.kaldi_dir import write_kv
from trkd.distill.kd_config import load_distill_config
from trkd.distill.dump import TEMPERATURES, logit_rows
from trkd.distill.methods import Context, build, parse_method
from trkd.distill.objective import DistillObjective
from trkd.distill.teacher import DumpedTeacher, OnlineTeacher, Teacher
from trkd.models.complexity import macs_per_second
from trkd.student import Step, build_student
from trkd.trainer import Trainer, make_loader
from trkd.utils.device import Runtime

CONF = Path(__file__).resolve().parents[1] / "egs" / "voxceleb" / "conf"
FRAMES, FEAT_DIM = 200, 80      # the recipe's chunks of 80-bin fbank
UTT_FRAMES = 800                # a VoxCeleb utterance's typical 8 s
TOPK = 256                      # egs/voxceleb/run.sh's teacher dump: the K top non-target logits
# Storage of the training features: kaldiio's compression method (None: float32; 1: what
# `trkd fbank --compress` writes, CM for a feature matrix).
STORAGE = {"float32": None, "CM": 1}


def load(name: str, classes: int):
    """A recipe yaml with its `kd:` block (a teacher's yaml has none: the defaults)."""
    cfg = load_distill_config(CONF / f"{name}.yaml")
    cfg.model["feat_dim"], cfg.head.num_classes = FEAT_DIM, classes
    return cfg


def class_map(classes: int) -> Dict[str, int]:
    return {f"spk{i:05d}": i for i in range(classes)}


def write_data(root: Path, utts: int) -> Dict[str, Path]:
    """A data dir per storage (feats.scp, utt2spk, utt2num_frames) of `utts` 8-s utterances of
    Gaussian features (a compressed chunk costs the same whatever its values), over 50 speakers
    that every class map of `class_map` holds."""
    rng = np.random.default_rng(0)
    feats = {f"spk{(i * 37) % 50:05d}-u{i:05d}": rng.standard_normal((UTT_FRAMES, FEAT_DIM)).astype(np.float32)
             for i in range(utts)}
    dirs = {}
    for kind, method in STORAGE.items():
        d = dirs[kind] = root / kind
        d.mkdir(parents=True)
        with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp", compression_method=method) as w:
            for u in sorted(feats):
                w(u, feats[u])
        write_kv(d / "utt2spk", {u: u.split("-")[0] for u in sorted(feats)})
        write_kv(d / "utt2num_frames", {u: UTT_FRAMES for u in sorted(feats)})
    return dirs


def make_trainer(cfg, data_dir: Path, rt: Runtime, batch: int, precision: str, objective=None) -> Trainer:
    """The trainer as `trkd train` / `trkd distill` build it, `batch` chunks per GPU."""
    cfg.data.batch_size, cfg.train.precision = batch * rt.world_size, precision
    dataset = ChunkDataset(data_dir, FRAMES, cfg.train.seed, spk2id=class_map(cfg.head.num_classes))
    return Trainer(cfg, Path("unused-exp"), dataset, rt, objective)


def first_batch(trainer: Trainer) -> Dict[str, torch.Tensor]:
    """This rank's first batch from the trainer's loader (pinned on CUDA), still on the host."""
    loader = make_loader(trainer.dataset, trainer.sampler, DataConfig(batch_size=trainer.cfg.data.batch_size,
                                                                      num_workers=0), trainer.rt.device, 0)
    return next(iter(loader))


def frozen_teacher(name: str, classes: int, device: torch.device) -> Teacher:
    cfg = load(name, classes)
    torch.manual_seed(0)
    t = build_student(cfg)
    for net in (t.model, t.head):
        net.eval().requires_grad_(False)
    return Teacher(t.model, t.head, cfg.head.margin, FRAMES, {}, Path("spk2id")).to(device)


def with_dump_rows(batch: Dict[str, torch.Tensor], teacher: Teacher, kind: str) -> Dict[str, torch.Tensor]:
    """`batch` with the `teacher_logits` a top-K dump's dataset adds to it: the rows
    `trkd dump-logits --topk` writes (`logit_rows`) of the teacher's logits on these chunks."""
    device = teacher.head.weight.device
    target = batch["target"].to(device)
    _, logits = teacher.logits(batch["feats"].to(device), target, (kind,))
    rows = torch.from_numpy(logit_rows(logits, target, TOPK, TEMPERATURES)[:, 0].copy())
    rows = rows.pin_memory() if device.type == "cuda" else rows   # as the trainer's loader pins a batch
    return {**batch, "chunk": batch["index"].clone(), "teacher_logits": rows}


def distill_objective(cfg, teacher: Optional[Teacher], level_dims, classes: int) -> DistillObjective:
    """TRKD's objective as `trkd distill` builds it: the teacher online, or (None) its dump."""
    student_dim = build_student(cfg).model.embed_dim
    terms = build(parse_method("trkd"), Context(cfg.kd, student_dim, level_dims, teacher))
    source = (OnlineTeacher(teacher, cfg.kd.logits) if teacher is not None
              else DumpedTeacher(level_dims, (TOPK, tuple(TEMPERATURES), classes)))
    return DistillObjective(terms, source, cfg.kd.warmup_epochs)


def stepper(trainer: Trainer, batch: Dict[str, torch.Tensor]) -> Callable[[], None]:
    """One call, one trainer step at the end of training (τ at its last value, KD weight 1)."""
    net, cfg = trainer.network(), trainer.cfg
    net.train()
    for group in trainer.optimizer.param_groups:
        group["lr"] = cfg.optim.final_lr
    step = Step(cfg.train.epochs, cfg.train.epochs * 1000 - 1, 1000, cfg.optim.final_lr, cfg.head.margin,
                cfg.train.epochs)
    return lambda: trainer.train_step(net, batch, step)


def forward_macs(model: torch.nn.Module) -> int:
    """A forward pass's MACs per second of audio, as `trkd plan` counts them."""
    return macs_per_second(model, FEAT_DIM)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step: Callable[[], None], device: torch.device, repeats: int, steps: int):
    """(seconds per step of each repeat of `steps` steps, peak reserved MiB of one step or None).

    Two warm-up steps first (cuDNN's algorithm search, the optimizer's state); the cache is then
    emptied so that the peak is what a step itself makes the allocator hold."""
    step()
    step()
    peak = None
    if device.type == "cuda":
        _sync(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        step()
        _sync(device)
        peak = torch.cuda.max_memory_reserved(device) / 2 ** 20
    times: List[float] = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        times.append((time.perf_counter() - t0) / steps)
    return times, peak


def release(device: torch.device) -> None:
    """Free what the last row held, so the next row's peak is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
