"""GPU readiness: the trainer's own step at fp32, bf16 and fp16 for the VoxCeleb configs of
`egs/voxceleb/conf` (ECAPA C=1024 and C=400, ResNet-34, MobileNetV2) at 5 994 and 17 982 classes;
TRKD distillation from a teacher dump (the recipes' default) and with the teacher online; peak
reserved GPU memory; the sustained MAC/s that `trkd plan` assumes; and the trainer's loader on
float32 and compressed (`trkd fbank --compress`) arks against the chunks/s a step consumes.

A step is `Trainer.train_step` (bench/trainer_steps.py): the loader's pinned batch copied to the
device, forward, objective, finite-loss check, SGD step and, under torchrun, DDP's gradient
exchange, with the recipe's 128 chunks of 200 frames x 80 fbank per GPU (batch 512 over 4 GPUs).
Without a GPU it runs on the CPU with a smaller batch (`--cpu-batch`) and says so: CPU figures show
that every path runs, not what a GPU does. Every figure is the median [min-max] of `--repeats`
repeats of `--steps` steps after two warm-up steps; the tables are markdown (`--out` writes them).

    tools/venv/bin/python bench/gpu.py [--quick] [--out bench/out/gpu.md] [--repeats 5] [--steps 5]
    tools/venv/bin/torchrun --standalone --nproc_per_node N bench/gpu.py ...   # N GPUs, DDP
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from machine import describe, median_spread
from trainer_steps import (FRAMES, STORAGE, TOPK, UTT_FRAMES, distill_objective, first_batch, frozen_teacher, load,
                           make_trainer, measure, forward_macs, release, stepper, with_dump_rows, write_data)
from trkd.config import DataConfig
from trkd.data.chunks import ChunkDataset, GlobalBatchSampler
from trkd.errors import InputError
from trkd.trainer import make_loader
from trkd.utils.atomic import write_text_atomic
from trkd.utils.device import Runtime, all_gather_objects, barrier, broadcast_object, setup, teardown
from trkd.utils.precision import PRECISIONS, default_precision, resolve_precision

MODELS = ["ecapa_c1024", "ecapa_c400", "resnet34", "mobilenetv2"]
CLASSES = [5994, 17982]         # VoxCeleb2-dev speakers; x3 with speed perturbation
PAIRS = [("ecapa_c1024", "ecapa_c400"), ("resnet34", "mobilenetv2")]
GPU_BATCH = 128
STEP_HEAD = ("| step | classes | precision | ms per step | x fp32 | chunks/s | T MAC/s | peak reserved MiB |\n"
             "|---|---|---|---|---|---|---|---|")
LOADER_HEAD = ("| loader, storage | workers | chunks/s | per worker | x the step | workers per GPU |\n"
               "|---|---|---|---|---|---|")


def figure(x: float) -> str:
    """At least three significant digits, without an exponent (a CPU run's chunks/s are a few)."""
    return f"{x:.{max(0, 2 - math.floor(math.log10(x)))}f}" if x > 0 else f"{x:g}"


class Report:
    """Lines printed as they come (rank 0 only) and kept for `--out`."""

    def __init__(self, rt: Runtime):
        self.rt, self.lines = rt, []

    def __call__(self, line: str = "") -> None:
        if self.rt.is_main:
            print(line, flush=True)
            self.lines.append(line)


class Steps:
    """The step rows: each precision's row of one (step, classes); the figures kept for the summary."""

    def __init__(self, report: Report, rt: Runtime, a):
        self.report, self.rt, self.a = report, rt, a
        self.rows = []  # (label, precision, chunks/s, MAC/s)

    def row(self, label: str, classes: int, build, extra_macs: float = 0.0, batch=None):
        """A row per precision for `build(precision) -> trainer`, on its loader's first batch or `batch`;
        MAC/s counts the student's forward and backward (3 x its forward MACs, as `trkd plan` does) and
        `extra_macs` per second of audio (the online teacher's forward)."""
        fp32: Optional[float] = None
        for p in PRECISIONS:
            try:
                resolve_precision(p, self.rt.device)
            except InputError as err:
                self.report(f"| {label} | {classes} | {p} | not run ({err.message.split(';')[0]}) | | | | |")
                continue
            trainer = build(p)
            times, peak = measure(stepper(trainer, batch or first_batch(trainer)), self.rt.device,
                                  self.a.repeats, self.a.steps)
            macs = 3 * forward_macs(trainer.student.model) + extra_macs
            del trainer
            release(self.rt.device)
            t = float(np.median(times))
            fp32 = t if p == "fp32" else fp32
            rate = self.a.batch / t
            mac_rate = macs * FRAMES / 100 * rate
            self.rows.append((label, p, rate, mac_rate))
            self.report(f"| {label} | {classes} | {p} | {median_spread(np.array(times) * 1e3, 1)} | "
                        f"{fp32 / t if fp32 else float('nan'):.2f} | {figure(rate)} | {mac_rate / 1e12:.3g} | "
                        f"{'-' if peak is None else f'{peak:.0f}'} |")


def train_rows(steps: Steps, models: List[str], classes: List[int], data: Path) -> None:
    for name in models:
        for c in classes:
            steps.row(f"train {name}", c, lambda p: make_trainer(load(name, c), data, steps.rt, steps.a.batch, p))


def distill_rows(steps: Steps, pairs, classes: List[int], data: Path) -> None:
    """TRKD with the teacher online, then from its top-K dump (the teacher freed first)."""
    rt, n = steps.rt, steps.a.batch
    for t, s in pairs:
        for c in classes:
            teacher = frozen_teacher(t, c, rt.device)
            teacher_macs = forward_macs(teacher.model)
            dims = list(teacher.model.level_dims)

            def online(p):
                cfg = load(s, c)
                return make_trainer(cfg, data, rt, n, p, distill_objective(cfg, teacher, dims, c))
            steps.row(f"distill trkd {t} -> {s}, online teacher", c, online, extra_macs=teacher_macs)
            probe = online("fp32")
            batch = with_dump_rows(first_batch(probe), teacher, probe.cfg.kd.logits)
            del probe, teacher
            release(rt.device)

            def dumped(p):
                cfg = load(s, c)
                return make_trainer(cfg, data, rt, n, p, distill_objective(cfg, None, dims, c))
            steps.row(f"distill trkd {t} -> {s}, top-{TOPK} dump", c, dumped, batch=batch)


def loader_rates(data: Path, rt: Runtime, n: int, workers: int, repeats: int) -> List[float]:
    """This rank's chunks/s from the trainer's loader, one epoch a repeat (its first batch, which
    starts the workers, left out), every rank reading at once as in training."""
    ds = ChunkDataset(data, FRAMES, seed=0)
    sampler = GlobalBatchSampler(ds, n * rt.world_size, rt.rank, rt.world_size)
    loader = make_loader(ds, sampler, DataConfig(batch_size=n * rt.world_size, num_workers=workers), rt.device, 0)
    rates = []
    for r in range(repeats):
        sampler.set_epoch(r + 1)
        it = iter(loader)
        next(it)
        barrier(rt)
        t0, count = time.perf_counter(), 0
        for b in it:
            count += len(b["target"])
        rates.append(count / (time.perf_counter() - t0))
    return rates


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one small row of each kind (the test suite's run)")
    ap.add_argument("--out", type=Path, help="also write the report, markdown, to this file")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of each figure (median [min-max])")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per repeat, after two warm-up steps")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8], help="loader workers per GPU")
    ap.add_argument("--batches", type=int, default=6, help="loader batches per repeat")
    ap.add_argument("--cpu-batch", type=int, default=8, help="chunks per step without a GPU")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (without a GPU)")
    a = ap.parse_args(argv)
    rt = setup(None)   # under torchrun: this rank's GPU and the process group (NCCL; gloo on the CPU)
    cuda = rt.device.type == "cuda"
    models, classes, pairs, workers = MODELS, CLASSES, PAIRS, a.workers
    if a.quick:
        models, classes, pairs, workers = ["mobilenetv2"], [5994], [("ecapa_c400", "mobilenetv2")], [1]
        a.cpu_batch, a.repeats, a.steps, a.batches = min(a.cpu_batch, 2), 2, 1, 2
    a.batch = GPU_BATCH if cuda else a.cpu_batch
    report = Report(rt)
    if cuda:
        torch.backends.cudnn.benchmark = True
        report(f"device: {torch.cuda.get_device_name(rt.device)} x {rt.world_size} (DDP over {rt.world_size} "
               f"process(es)), batch {a.batch} x {FRAMES} frames x 80 fbank per GPU per step")
    else:
        torch.set_num_threads(a.threads)
        report(f"device: cpu, {a.threads} threads (no CUDA GPU): batch {a.batch} per step instead of a GPU's "
               f"{GPU_BATCH}; CPU figures, not a GPU's; {rt.world_size} process(es)")
    report()
    report(f"torch {torch.__version__}; host: {describe()}; {a.repeats} repeats of {a.steps} step(s) after two "
           f"warm-up steps, median [min-max]; chunks/s and T MAC/s per GPU at the median (MAC/s: 3 x the "
           f"student's forward MACs, + the online teacher's forward); peak reserved memory: one step, rank 0")
    report()
    with tempfile.TemporaryDirectory() as tmp:
        root = broadcast_object(rt, tmp)   # rank 0 writes the data, every rank reads it
        if rt.is_main:
            write_data(Path(root), a.batch * rt.world_size * (a.batches + 1))
        barrier(rt)
        dirs = {kind: Path(root) / kind for kind in STORAGE}
        steps = Steps(report, rt, a)
        report(STEP_HEAD)
        train_rows(steps, models, classes, dirs["float32"])
        distill_rows(steps, pairs, classes, dirs["float32"])
        report()
        default = default_precision(rt.device)
        trains = [(label, rate, mac) for label, p, rate, mac in steps.rows
                  if p == default and label.startswith("train")]
        label, consumed, _ = max(trains, key=lambda r: r[1])
        report(f"GPU_MACS_PER_SECOND = {np.median([m for *_, m in trains]):.3g}  # median of the {default} training "
               f"rows [{min(m for *_, m in trains):.3g}-{max(m for *_, m in trains):.3g}]: trkd/plan/loader.py's "
               f"assumed rate, measured")
        report()
        report(f"Loader: the trainer's DataLoader on {FRAMES}-frame chunks of {UTT_FRAMES}-frame utterances (real "
               f"ark/scp, warm page cache), batch {a.batch} per rank, every rank reading at once; the step: "
               f"{label} at {default}, the fastest training step above, {figure(consumed)} chunks/s per GPU")
        report()
        report(LOADER_HEAD)
        for kind in STORAGE:
            for w in workers:
                rates = loader_rates(dirs[kind], rt, a.batch, w, a.repeats)
                rates = all_gather_objects(rt, rates)[0]   # rank 0's, once every rank is done
                rate = float(np.median(rates))
                report(f"| {kind} | {w} | {median_spread(rates)} | {rate / w:.0f} | {rate / consumed:.2f} | "
                       f"{math.ceil(consumed / (rate / w))} |")
        barrier(rt)
    if a.out is not None and rt.is_main:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(a.out, "\n".join(report.lines) + "\n")
    teardown(rt)


if __name__ == "__main__":
    sys.exit(main())
