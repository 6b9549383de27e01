"""The method-agnostic training loop shared by `trkd train` and `trkd distill`.

What is trained and on what is passed in: a dataset (anything with `epoch_items(epoch)`,
`__len__`, `__getitem__(item) -> dict` holding at least "feats" and "target", `spk2id`,
`num_classes`, `feat_dim`) and an objective `(batch, StudentOutput, Step) -> (loss, parts)` that may
own extra trainable modules (`objective.modules()`) and ask for per-level embeddings
(`objective.needs_levels`). The loop itself only knows SGD, the schedules, precision, DDP and
checkpoints. The student's forward runs in the configured precision; the objective gets float32
outputs and runs in float32, except its `teacher` source (a callable batch -> TeacherOutput, if
it has one), whose forward runs in the student's precision with float32 outputs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from trkd import checkpoint as ckpt
from trkd.config import Config, diff_keys, dump_config
from trkd.curves import POSITION, plot_history
from trkd.data.chunks import GlobalBatchSampler, write_spk2id
from trkd.errors import InputError
from trkd.train_metrics import MetricsWriter, append_event, metrics_path, read_metrics
from trkd.schedules import lr_at, margin_at
from trkd.utils.atomic import write_text_atomic
from trkd.student import (AAMObjective, Step, StudentOutput, build_student, forward, uses_sync_bn,
                          with_precision)
from trkd.utils.device import Runtime, all_gather_objects, all_reduce_sum, barrier
from trkd.utils.logs import LogFile
from trkd.utils.precision import default_precision, grad_scaler, resolve_precision

__all__ = ["AAMObjective", "Step", "StudentOutput", "Trainer", "TrainingDiverged", "build_student", "train"]

log = logging.getLogger("trkd.train")
CURVES_NAME = "train_curves.png"


# What a progress line and a metrics.jsonl record hold (said once at the top of train.log).
RECORD_MEANING = ("logged values: each progress line and its metrics.jsonl record hold the means over the "
                  "`steps` since the one before (log_interval; an epoch's tail under half of it joins its "
                  "last record), an 'epoch done' line the epoch's means")


def record_due(done: int, n: int, interval: int) -> bool:
    """Whether a record closes after step `done` of an `n`-step epoch: every `interval` steps and at
    the epoch's end, where a tail shorter than half an interval joins the record before it, so no
    record covers a handful of batches (a spike in the curves)."""
    return done == n or (done % interval == 0 and n - done >= interval / 2)


def progress_line(record: Dict[str, float]) -> str:
    """The train.log line of a metrics record."""
    values = " ".join(f"{k} {v:.4f}" for k, v in record.items()
                      if k not in POSITION + ("lr", "margin"))
    return (f"epoch {record['epoch']} iter {record['iter']}/{record['iters_per_epoch']} lr {record['lr']:.4g} "
            f"margin {record['margin']:.3f} {values}")


def _value_at(config: Dict, key: str) -> str:
    """The value at dotted `key` of a config dict, as the yaml shows it (`null` where it is absent)."""
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config if isinstance(config, str) else json.dumps(config)


class TrainingDiverged(InputError):
    """A non-finite loss: training stops, the last epoch checkpoint stays the last good one."""


def make_loader(dataset, sampler, d, device: torch.device, seed: int) -> DataLoader:
    """The training loader of DataConfig `d`: workers that outlive an epoch and keep batches
    queued, memory pinned on CUDA (so the copy to the GPU overlaps the step)."""
    workers = {"persistent_workers": d.persistent_workers, "prefetch_factor": d.prefetch_factor} \
        if d.num_workers > 0 else {}
    return DataLoader(dataset, batch_sampler=sampler, num_workers=d.num_workers,
                      pin_memory=device.type == "cuda" and d.pin_memory is not False,
                      generator=torch.Generator().manual_seed(seed), **workers)


class Trainer:
    """Train `cfg` on `dataset` into `exp`; see the module docstring for the contracts."""

    def __init__(self, cfg: Config, exp, dataset, rt: Runtime, objective=None):
        self.cfg, self.exp, self.dataset, self.rt = cfg, Path(exp), dataset, rt
        self.objective = objective or AAMObjective()
        self.precision = cfg.train.precision = resolve_precision(cfg.train.precision, rt.device)
        self.scaler = grad_scaler(rt.device, self.precision)
        with_precision(self.objective, rt.device, self.precision)
        cfg.model["feat_dim"] = int(dataset.feat_dim)
        classes = int(dataset.num_classes)
        if cfg.head.num_classes is not None and cfg.head.num_classes != classes:
            raise cfg.error("head.num_classes", f"head.num_classes is {cfg.head.num_classes}, but training has "
                                                f"{classes} classes (the data's speakers; a student's are its "
                                                f"teacher's); remove the key or make it {classes}")
        cfg.head.num_classes = classes
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        self.student = build_student(cfg, self.objective.modules()).to(rt.device)
        if uses_sync_bn(cfg, rt):  # the same Parameter objects: the optimizer below is unaffected
            self.student = nn.SyncBatchNorm.convert_sync_batchnorm(self.student)
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
        self.files: Dict[str, str] = {}  # EXP/NAME -> text: written with the config, checked on resume
        self.step = 0
        self.start_epoch = 1

    # -- exp dir ---------------------------------------------------------------------------
    def _check_resume(self) -> None:
        """On resume, the config and the recorded files (`self.files`) must be what EXP holds."""
        import yaml

        from trkd.config import load_config

        cfg_path = self.exp / "config.yaml"
        if cfg_path.is_file():
            old = load_config(cfg_path, schema=type(self.cfg)).to_dict()
            if old["train"]["precision"] is None:  # written before precision was recorded
                old["train"]["precision"] = default_precision(self.rt.device)
            changed = [k for k in diff_keys(old, self.cfg.to_dict()) if k != "command"]
            if changed:
                new = self.cfg.to_dict()
                values = "; ".join(f"{k} changed: {_value_at(old, k)} in the run being resumed, {_value_at(new, k)} now"
                                   for k in changed)
                raise InputError(cfg_path, f"--resume with a different config: {values}")
        for name, text in self.files.items():
            path = self.exp / name
            if path.is_file() and path.read_text() != text:
                changed = diff_keys(yaml.safe_load(path.read_text()) or {}, yaml.safe_load(text) or {})
                raise InputError(path, f"--resume on data of other settings: {', '.join(changed) or 'its content'} "
                                       "changed since this file was written; train into a new --exp")

    def _prepare_exp(self, resume: bool) -> None:
        """Check everything first (on resume: the config and recorded files), then open train.log
        and write the resolved config, the class map and the recorded files: a refused run writes
        nothing."""
        if resume:
            self._check_resume()
        if self.rt.is_main:
            self.exp.mkdir(parents=True, exist_ok=True)
            handler = LogFile(self.exp / "train.log")  # before any write: a planted link is refused
            write_text_atomic(self.exp / "config.yaml", dump_config(self.cfg))
            write_spk2id(self.exp / "spk2id", self.dataset.spk2id)
            for name, text in self.files.items():
                write_text_atomic(self.exp / name, text)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.info("# %s", self.cfg.command or "(library call)")
            if hasattr(self.dataset, "describe"):
                log.info("%s", self.dataset.describe())
            bn = ("SyncBatchNorm" if uses_sync_bn(self.cfg, self.rt) else
                  "per-rank BatchNorm (SyncBatchNorm needs DDP on CUDA)" if self.rt.distributed else "BatchNorm")
            log.info("device %s, precision %s, %d process(es), %s", self.rt.device, self.precision,
                     self.rt.world_size, bn)
            log.info("%s", RECORD_MEANING)

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
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
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
            "history": self.history, "config": self.cfg.to_dict(),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {})})
        plot_history(read_metrics(metrics_path(self.exp)), self.exp / CURVES_NAME)

    # -- loop ------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> Path:
        """Train the remaining epochs; return the averaged model's path."""
        self._prepare_exp(resume)
        if resume:
            self._resume()
        else:
            torch.manual_seed(self.cfg.train.seed + self.rt.rank)
        net = self.network()
        loader = make_loader(self.dataset, self.sampler, self.cfg.data, self.rt.device, self.cfg.train.seed)
        self.metrics = MetricsWriter(metrics_path(self.exp), self.step) if self.rt.is_main else None
        if self.rt.is_main:
            append_event(self.exp, {"event": "resume" if resume else "start", "epoch": self.start_epoch,
                                    "time": round(time.time(), 3)})
        try:
            for epoch in range(self.start_epoch, self.cfg.train.epochs + 1):
                started = time.monotonic()
                self.sampler.set_epoch(epoch)
                self.history.append(self._epoch(net, loader, epoch))
                self._save(epoch)
                if self.rt.is_main:
                    append_event(self.exp, {"event": "epoch", "epoch": epoch,
                                            "seconds": round(time.monotonic() - started, 3)})
                    rec = self.history[-1]
                    log.info("epoch %d done: %s", epoch,
                             " ".join(f"{k} {v:.6g}" for k, v in rec.items() if k != "epoch"))
        finally:
            if self.metrics is not None:
                self.metrics.close()
        barrier(self.rt)
        path = ckpt.model_dir(self.exp) / ckpt.AVG_NAME
        if self.rt.is_main:
            path = ckpt.average(self.exp, self.cfg.train.avg_last)
            log.info("averaged the last %d checkpoints into %s", self.cfg.train.avg_last, path)
        barrier(self.rt)
        return path

    def network(self) -> nn.Module:
        """What the loop steps: the student, wrapped in DDP (the gradient exchange) under torchrun."""
        if not self.rt.distributed:
            return self.student
        ids = [self.rt.device] if self.rt.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(self.student, device_ids=ids)

    def train_step(self, net: nn.Module, batch, step: Step):
        """One step of the loop on a loader's batch: the copy to the device, the forward in the
        run's precision, the objective in float32, the finite-loss check, one (scaled) SGD step."""
        batch = {k: v.to(self.rt.device, non_blocking=True) for k, v in batch.items()}
        out = forward(net, self.objective, batch, step, self.rt.device, self.precision)
        loss, parts = self.objective(batch, out, step)
        self._check_finite(loss, step)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        acc = (out.cosine_logits.detach().argmax(1) == batch["target"]).float().mean()
        return {"loss": loss.detach(), "acc": acc, **parts}

    def _epoch(self, net: nn.Module, loader: DataLoader, epoch: int) -> Dict[str, float]:
        net.train()
        cfg, n = self.cfg, len(self.sampler)
        sums: Dict[str, torch.Tensor] = {}
        window: Dict[str, torch.Tensor] = {}  # sums since the last record
        window_steps = 0
        # A bar only on a terminal: in a log file its carriage-return frames are noise.
        bar = tqdm(loader, total=n, desc=f"epoch {epoch}/{cfg.train.epochs}", dynamic_ncols=True, leave=False,
                   disable=not (self.rt.is_main and sys.stderr.isatty()))
        lr = margin = 0.0
        for i, batch in enumerate(bar):
            o, h = cfg.optim, cfg.head
            lr = lr_at(self.step, n, cfg.train.epochs, o.lr, o.final_lr, o.warmup_epochs)
            margin = margin_at(self.step, n, h.margin, h.margin_start_epoch, h.margin_stop_epoch, h.margin_ramp)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            values = self.train_step(net, batch, Step(epoch, self.step, n, lr, margin, cfg.train.epochs))
            self.step += 1
            window_steps += 1
            for k, v in values.items():
                v = torch.as_tensor(v, dtype=torch.float64).detach()
                sums[k] = sums.get(k, 0.0) + v
                window[k] = window.get(k, 0.0) + v
            if record_due(i + 1, n, cfg.train.log_interval):
                means = self._global_means(window, window_steps)
                if self.rt.is_main:  # one record, written to metrics.jsonl and logged as it is
                    record = {"iteration": self.step, "epoch": epoch, "iter": i + 1, "iters_per_epoch": n,
                              "steps": window_steps, "lr": lr, "margin": margin, **means}
                    self.metrics.write(record)
                    bar.set_postfix(loss=f"{means['loss']:.3f}", acc=f"{means['acc']:.3f}")
                    log.info("%s", progress_line(record))
                window, window_steps = {}, 0
        return {"epoch": epoch, "lr": lr, "margin": margin, **self._global_means(sums, n)}

    def _global_means(self, sums: Dict[str, torch.Tensor], steps: int) -> Dict[str, float]:
        """Means over every rank's last `steps` steps (one all-reduce): what DDP optimised."""
        keys = sorted(sums)
        total = all_reduce_sum(self.rt, torch.stack([sums[k].to(self.rt.device) for k in keys]))
        return {k: float(v) / (steps * self.rt.world_size) for k, v in zip(keys, total.cpu())}

    def _check_finite(self, loss: torch.Tensor, step: Step) -> None:
        """Stop every rank together on a NaN/inf loss, before it reaches the weights (the inputs are
        finite: the table readers refuse any that is not, see `trkd.data.ark_values`)."""
        bad = all_reduce_sum(self.rt, (~torch.isfinite(loss.detach())).float().reshape(1))
        if bad.item() == 0:
            return
        last = ckpt.saved_epochs(self.exp)
        kept = f"the last good checkpoint is {ckpt.epoch_path(self.exp, last[-1])}" if last else "no checkpoint was written"
        i, n = step.iteration - (step.epoch - 1) * step.iters_per_epoch, step.iters_per_epoch
        msg = (f"training diverged: the loss is {loss.item()} at epoch {step.epoch}, iteration {i + 1} of {n} "
               f"(global step {self.step}); stopped, {kept}")
        if self.rt.is_main:
            log.error(msg)
            append_event(self.exp, {"event": "diverged", "epoch": step.epoch, "iter": i + 1, "iters_per_epoch": n,
                                    "iteration": self.step, "loss": str(loss.item())})
        raise TrainingDiverged(self.exp, msg)


def train(config: Config, data_dir, exp, dataset=None, objective=None, resume: bool = False,
          device: Optional[str] = None, files: Optional[Dict[str, str]] = None) -> Path:
    """Train a model from a resolved-to-be config on `data_dir` (feats.scp + utt2spk) into `exp`;
    `files` (name -> text) are written into EXP with the config (and must match it on resume)."""
    from trkd.data.chunks import ChunkDataset, SpecAugment
    from trkd.utils.device import setup, teardown
    from trkd.utils.lock import folder_lock

    rt = setup(device)
    try:
        with folder_lock(exp, " ".join((config.command or "trkd train").split()[:2])):
            if dataset is None:
                d = config.data
                dataset = ChunkDataset(data_dir, d.num_frms, config.train.seed, spec_aug=SpecAugment.from_config(d),
                                       min_frames=d.min_frames, aug_prob=d.aug_prob)
            trainer = Trainer(config, exp, dataset, rt, objective)
            trainer.files = dict(files or {})
            return trainer.run(resume)
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
        teardown(rt)
