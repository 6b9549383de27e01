"""The method-agnostic training loop shared by `trkd train` and `trkd distill`.

What is trained and on what is passed in: a dataset (anything with `epoch_items(epoch)`,
`__len__`, `__getitem__(item) -> dict` holding at least "feats" and "target", `spk2id`,
`num_classes`, `feat_dim`) and an objective `(batch, StudentOutput, Step) -> (loss, parts)` that may
own extra trainable modules (`objective.modules()`) and ask for per-level embeddings
(`objective.needs_levels`). The loop itself only knows SGD, the schedules, DDP and checkpoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from trkd import checkpoint as ckpt
from trkd.config import Config, diff_keys, dump_config
from trkd.curves import plot_history
from trkd.data.chunks import GlobalBatchSampler, write_spk2id
from trkd.errors import InputError
from trkd.schedules import lr_at, margin_at
from trkd.utils.atomic import write_text_atomic
from trkd.utils.device import Runtime, all_gather_objects, all_reduce_sum, barrier

log = logging.getLogger("trkd.train")
CURVES_NAME = "train_curves.png"


class TrainingDiverged(InputError):
    """A non-finite loss: training stops, the last epoch checkpoint stays the last good one."""


@dataclass
class StudentOutput:
    embedding: torch.Tensor
    margin_logits: torch.Tensor
    cosine_logits: torch.Tensor
    levels: Optional[List[torch.Tensor]] = None


@dataclass(frozen=True)
class Step:
    """Where the loop is; objectives derive their schedules (KD warm-up, τ) from it."""

    epoch: int
    iteration: int
    iters_per_epoch: int
    lr: float
    margin: float


class AAMObjective:
    """The plain speaker-classification loss: cross-entropy on the AAM-softmax logits."""

    needs_levels = False

    def __call__(self, batch: Dict[str, torch.Tensor], out: StudentOutput, step: Step):
        loss = F.cross_entropy(out.margin_logits, batch["target"])
        return loss, {"aam": loss.detach()}

    def modules(self) -> Dict[str, nn.Module]:
        return {}


class Student(nn.Module):
    """Embedding network + AAM head + any extra trainable modules, as one DDP-wrappable module."""

    def __init__(self, model: nn.Module, head: nn.Module, extras: Optional[Dict[str, nn.Module]] = None):
        super().__init__()
        self.model, self.head = model, head
        self.extras = nn.ModuleDict(extras or {})

    def forward(self, feats, target, margin: float, levels: bool = False) -> StudentOutput:
        lv = self.model.forward_levels(feats) if levels else None
        emb = lv[-1] if levels else self.model(feats)
        margin_logits, cosine_logits = self.head(emb, target, margin)
        return StudentOutput(emb, margin_logits, cosine_logits, lv)


def build_student(cfg: Config, extras: Optional[Dict[str, nn.Module]] = None) -> Student:
    """The model and head of a resolved config (feat_dim and num_classes filled in)."""
    from trkd.models import build_model
    from trkd.models.aam import AAMSoftmax

    model = build_model(dict(cfg.model))
    head = AAMSoftmax(model.embed_dim, cfg.head.num_classes, scale=cfg.head.scale, fallback=cfg.head.margin_fallback)
    return Student(model, head, extras)


class Trainer:
    """Train `cfg` on `dataset` into `exp`; see the module docstring for the contracts."""

    def __init__(self, cfg: Config, exp, dataset, rt: Runtime, objective=None):
        self.cfg, self.exp, self.dataset, self.rt = cfg, Path(exp), dataset, rt
        self.objective = objective or AAMObjective()
        cfg.model["feat_dim"] = int(dataset.feat_dim)
        cfg.head.num_classes = int(dataset.num_classes)
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        self.student = build_student(cfg, self.objective.modules()).to(rt.device)
        if hasattr(self.objective, "bind"):  # objectives that run the student themselves (imlkd)
            self.objective.bind(self.student)
        o = cfg.optim
        self.optimizer = torch.optim.SGD(self.student.parameters(), lr=0.0, momentum=o.momentum,
                                         nesterov=o.nesterov, weight_decay=o.weight_decay)
        self.sampler = GlobalBatchSampler(dataset, cfg.data.batch_size, rt.rank, rt.world_size)
        if len(self.sampler) == 0:
            raise InputError(getattr(dataset, "scp_path", None),
                             f"{len(dataset)} training items, fewer than one global batch ({cfg.data.batch_size})")
        self.history: List[Dict[str, float]] = []
        self.step = 0
        self.start_epoch = 1

    # -- exp dir ---------------------------------------------------------------------------
    def _prepare_exp(self, resume: bool) -> None:
        """Write (or, on resume, check) the resolved config and the class map; open train.log."""
        cfg_path = self.exp / "config.yaml"
        new = self.cfg.to_dict()
        if resume and cfg_path.is_file():
            from trkd.config import load_config
            old = load_config(cfg_path).to_dict()
            changed = [k for k in diff_keys(old, new) if k != "command"]
            if changed:
                raise InputError(cfg_path, f"--resume with a different config: {', '.join(changed)} changed")
        if self.rt.is_main:
            self.exp.mkdir(parents=True, exist_ok=True)
            write_text_atomic(cfg_path, dump_config(self.cfg))
            write_spk2id(self.exp / "spk2id", self.dataset.spk2id)
            handler = logging.FileHandler(self.exp / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.info("# %s", self.cfg.command or "(library call)")
            if hasattr(self.dataset, "describe"):
                log.info("%s", self.dataset.describe())

    def _resume(self) -> None:
        epochs = ckpt.saved_epochs(self.exp)
        if not epochs:
            if self.rt.is_main:
                log.info("--resume: no checkpoint in %s, starting from scratch", ckpt.model_dir(self.exp))
            return
        state = ckpt.load(ckpt.epoch_path(self.exp, epochs[-1]), self.rt.device)
        self.student.model.load_state_dict(state["model"])
        self.student.head.load_state_dict(state["head"])
        for name, sd in state.get("extras", {}).items():
            self.student.extras[name].load_state_dict(sd)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.start_epoch, self.history = state["step"], state["epoch"] + 1, state["history"]
        rngs = state["rng"]
        if len(rngs) == self.rt.world_size:
            ckpt.set_rng_state(rngs[self.rt.rank])
        else:  # another world size cannot repeat the run; it still continues deterministically
            torch.manual_seed(self.cfg.train.seed + 1000 * state["epoch"] + self.rt.rank)
        if self.rt.is_main:
            log.info("resumed from epoch %d (step %d)", state["epoch"], self.step)

    def _save(self, epoch: int) -> None:
        rngs = all_gather_objects(self.rt, ckpt.rng_state())
        if not self.rt.is_main:
            return
        s = self.student
        ckpt.save(ckpt.epoch_path(self.exp, epoch), {
            "epoch": epoch, "step": self.step, "model": s.model.state_dict(), "head": s.head.state_dict(),
            "extras": {k: m.state_dict() for k, m in s.extras.items()},
            "optimizer": self.optimizer.state_dict(), "rng": rngs, "sampler": self.sampler.state_dict(),
            "history": self.history, "config": self.cfg.to_dict()})
        plot_history(self.history, self.exp / CURVES_NAME)

    # -- loop ------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> Path:
        """Train the remaining epochs; return the averaged model's path."""
        self._prepare_exp(resume)
        if resume:
            self._resume()
        else:
            torch.manual_seed(self.cfg.train.seed + self.rt.rank)
        net: nn.Module = self.student
        if self.rt.distributed:
            ids = [self.rt.device] if self.rt.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(self.student, device_ids=ids)
        loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=self.cfg.data.num_workers,
                            pin_memory=self.rt.device.type == "cuda",
                            generator=torch.Generator().manual_seed(self.cfg.train.seed))
        for epoch in range(self.start_epoch, self.cfg.train.epochs + 1):
            self.sampler.set_epoch(epoch)
            self.history.append(self._epoch(net, loader, epoch))
            self._save(epoch)
            if self.rt.is_main:
                rec = self.history[-1]
                log.info("epoch %d done: %s", epoch, " ".join(f"{k} {v:.6g}" for k, v in rec.items() if k != "epoch"))
        barrier(self.rt)
        path = ckpt.model_dir(self.exp) / ckpt.AVG_NAME
        if self.rt.is_main:
            path = ckpt.average(self.exp, self.cfg.train.avg_last)
            log.info("averaged the last %d checkpoints into %s", self.cfg.train.avg_last, path)
        barrier(self.rt)
        return path

    def _epoch(self, net: nn.Module, loader: DataLoader, epoch: int) -> Dict[str, float]:
        net.train()
        cfg, n = self.cfg, len(self.sampler)
        sums: Dict[str, torch.Tensor] = {}
        bar = tqdm(loader, total=n, desc=f"epoch {epoch}/{cfg.train.epochs}", disable=not self.rt.is_main,
                   dynamic_ncols=True, leave=False)
        lr = margin = 0.0
        for i, batch in enumerate(bar):
            o, h = cfg.optim, cfg.head
            lr = lr_at(self.step, n, cfg.train.epochs, o.lr, o.final_lr, o.warmup_epochs)
            margin = margin_at(self.step, n, h.margin, h.margin_start_epoch, h.margin_stop_epoch, h.margin_ramp)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            batch = {k: v.to(self.rt.device, non_blocking=True) for k, v in batch.items()}
            out = net(batch["feats"], batch["target"], margin, levels=getattr(self.objective, "needs_levels", False))
            loss, parts = self.objective(batch, out, Step(epoch, self.step, n, lr, margin))
            self._check_finite(loss, epoch, i, n)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            acc = (out.cosine_logits.detach().argmax(1) == batch["target"]).float().mean()
            for k, v in {"loss": loss.detach(), "acc": acc, **parts}.items():
                sums[k] = sums.get(k, 0.0) + torch.as_tensor(v, dtype=torch.float64).detach()
            if (i + 1) % cfg.train.log_interval == 0 and self.rt.is_main:
                means = {k: float(v) / (i + 1) for k, v in sums.items()}
                bar.set_postfix(loss=f"{means['loss']:.3f}", acc=f"{means['acc']:.3f}")
                log.info("epoch %d iter %d/%d lr %.4g margin %.3f %s", epoch, i + 1, n, lr, margin,
                         " ".join(f"{k} {v:.4f}" for k, v in means.items()))
        keys = sorted(sums)
        total = all_reduce_sum(self.rt, torch.stack([sums[k].to(self.rt.device) for k in keys]))
        record = {"epoch": epoch, "lr": lr, "margin": margin}
        record.update({k: float(v) / (n * self.rt.world_size) for k, v in zip(keys, total.cpu())})
        return record

    def _check_finite(self, loss: torch.Tensor, epoch: int, i: int, n: int) -> None:
        """Stop every rank together on a NaN/inf loss, before it reaches the weights."""
        bad = all_reduce_sum(self.rt, (~torch.isfinite(loss.detach())).float().reshape(1))
        if bad.item() > 0:
            last = ckpt.saved_epochs(self.exp)
            kept = f"the last good checkpoint is {ckpt.epoch_path(self.exp, last[-1])}" if last else "no checkpoint was written"
            msg = (f"training diverged: the loss is {loss.item()} at epoch {epoch}, iteration {i + 1} of {n} "
                   f"(global step {self.step}); stopped, {kept}")
            if self.rt.is_main:
                log.error(msg)
            raise TrainingDiverged(self.exp, msg)


def train(config: Config, data_dir, exp, dataset=None, objective=None, resume: bool = False,
          device: Optional[str] = None) -> Path:
    """Train a model from a resolved-to-be config on `data_dir` (feats.scp + utt2spk) into `exp`."""
    from trkd.data.chunks import ChunkDataset, SpecAugment
    from trkd.utils.device import setup, teardown

    rt = setup(device)
    try:
        if dataset is None:
            d = config.data
            dataset = ChunkDataset(data_dir, d.num_frms, config.train.seed, spec_aug=SpecAugment.from_config(d),
                                   min_frames=d.min_frames, aug_prob=d.aug_prob)
        return Trainer(config, exp, dataset, rt, objective).run(resume)
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
        teardown(rt)
