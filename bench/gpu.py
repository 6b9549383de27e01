"""GPU readiness: the training step at fp32 and bf16, the distillation step with the online
teacher, peak GPU memory, and the loader's chunks/s per worker beside the chunks/s a step
consumes, for the VoxCeleb configs of `egs/voxceleb/conf` (ECAPA C=1024 and C=400, ResNet-34,
MobileNetV2) at 5 994 and 17 982 classes.

On a CUDA GPU a step is the recipe's 128 chunks per GPU (batch 512 over 4 GPUs) of 200 frames x
80 fbank. Without one it runs on the CPU with a smaller batch (`--cpu-batch`) and says so: CPU
figures show that every path runs, not what a GPU does. Each row's reference is its own fp32
step, measured in the same run (the `bf16 x` column: fp32 time / bf16 time).

    tools/venv/bin/python bench/gpu.py [--quick] [--steps 3] [--workers 1 2 4] [--cpu-batch 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import kaldiio
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "egs" / "voxceleb" / "conf"
MODELS = ["ecapa_c1024", "ecapa_c400", "resnet34", "mobilenetv2"]
CLASSES = [5994, 17982]         # VoxCeleb2-dev speakers; x3 with speed perturbation
PAIRS = [("ecapa_c1024", "ecapa_c400"), ("resnet34", "mobilenetv2")]
GPU_BATCH, FRAMES, FEAT_DIM = 128, 200, 80
UTT_FRAMES = 800                # a VoxCeleb utterance's typical 8 s


def load(name: str, classes: int):
    from trkd.distill.kd_config import load_distill_config

    cfg = load_distill_config(CONF / f"{name}.yaml")
    cfg.model["feat_dim"], cfg.head.num_classes = FEAT_DIM, classes
    return cfg


def batch_of(n: int, classes: int, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    return {"feats": torch.randn(n, FRAMES, FEAT_DIM, generator=gen).to(device),
            "target": torch.randint(0, classes, (n,), generator=gen).to(device)}


def timed(step, steps: int, device: torch.device):
    """(seconds per step after one warm-up step, peak GPU MiB or None)."""
    cuda = device.type == "cuda"
    step()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if cuda else None
    return (time.perf_counter() - t0) / steps, peak


def sgd_step(student, objective, batch, device, precision):
    """One step of the trainer's path: forward in `precision`, float32 objective, SGD."""
    from trkd.student import Step, forward

    opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    step_info = Step(epoch=60, iteration=60_000, iters_per_epoch=1000, lr=1e-3, margin=0.2)

    def one():
        loss, _ = objective(batch, forward(student, objective, batch, step_info, device, precision), step_info)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return one


def train_row(name: str, classes: int, n: int, device, steps: int):
    from trkd.student import AAMObjective, build_student

    torch.manual_seed(0)
    student = build_student(load(name, classes)).to(device).train()
    batch = batch_of(n, classes, device)
    return {p: timed(sgd_step(student, AAMObjective(), batch, device, p), steps, device) for p in ("fp32", "bf16")}


def distill_row(teacher_name: str, student_name: str, classes: int, n: int, device, steps: int):
    """trkd with the teacher run online on every batch (the path of `trkd distill --online`)."""
    from trkd.distill.methods import Context, build, parse_method
    from trkd.distill.objective import DistillObjective
    from trkd.distill.teacher import OnlineTeacher, Teacher
    from trkd.student import build_student, with_precision

    torch.manual_seed(0)
    t = build_student(load(teacher_name, classes))
    for net in (t.model, t.head):
        net.eval().requires_grad_(False)
    teacher = Teacher(t.model, t.head, 0.2, FRAMES, {}, Path("spk2id")).to(device)
    cfg = load(student_name, classes)
    kd = cfg.kd
    student = build_student(cfg).to(device).train()
    out = {}
    for p in ("fp32", "bf16"):
        terms = build(parse_method("trkd"), Context(kd, student.model.embed_dim, teacher.model.level_dims, teacher))
        objective = with_precision(DistillObjective(terms, OnlineTeacher(teacher, kd.logits), kd.warmup_epochs),
                                   device, p)
        out[p] = timed(sgd_step(student, objective, batch_of(n, classes, device), device, p), steps, device)
    return out


def loader_rate(workers: int, n: int, batches: int, device) -> float:
    """Chunks/s of the trainer's DataLoader (ChunkDataset on a real ark/scp), worker start-up excluded."""
    from trkd.config import DataConfig
    from trkd.data.chunks import ChunkDataset, GlobalBatchSampler
    from trkd.data.kaldi_dir import write_kv
    from trkd.trainer import make_loader

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rng = np.random.default_rng(0)
        utts = [f"spk{i % 50:03d}-u{i:05d}" for i in range(n * (batches + 1))]
        with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
            for u in sorted(utts):
                w(u, rng.standard_normal((UTT_FRAMES, FEAT_DIM)).astype(np.float32))
        write_kv(d / "utt2spk", {u: u.split("-")[0] for u in sorted(utts)})
        write_kv(d / "utt2num_frames", {u: UTT_FRAMES for u in sorted(utts)})
        ds = ChunkDataset(d, FRAMES, seed=0)
        sampler = GlobalBatchSampler(ds, n, 0, 1)
        sampler.set_epoch(1)
        loader = make_loader(ds, sampler, DataConfig(batch_size=n, num_workers=workers), device, 0)
        it = iter(loader)
        next(it)  # workers started, first batch out
        t0, count = time.perf_counter(), 0
        for b in it:
            count += len(b["target"])
        return count / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one small row of each kind (the test suite's run)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per row, after one warm-up step")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="loader worker counts")
    ap.add_argument("--cpu-batch", type=int, default=8, help="chunks per step without a GPU")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (without a GPU)")
    a = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    models, classes, pairs, workers, steps = MODELS, CLASSES, PAIRS, a.workers, a.steps
    if a.quick:
        models, classes, pairs, workers, steps = ["mobilenetv2"], [5994], [("ecapa_c400", "mobilenetv2")], [1], 1
        a.cpu_batch = min(a.cpu_batch, 2)
    n = GPU_BATCH if cuda else a.cpu_batch
    if cuda:
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(device)}, batch {n} x {FRAMES} frames x {FEAT_DIM} fbank per step")
    else:
        torch.set_num_threads(a.threads)
        print(f"device: cpu, {a.threads} threads (no CUDA GPU): batch {n} per step instead of a GPU's {GPU_BATCH}; "
              "CPU figures, not a GPU's")
    print(f"torch {torch.__version__}; each row: {steps} timed step(s) after one warm-up; bf16 x = fp32 time / bf16 time")
    mem = (lambda r, p: f"{r[p][1]:9.0f}") if cuda else (lambda r, p: f"{'-':>9}")
    print(f"{'train':28} {'classes':>7} {'fp32 ms':>9} {'bf16 ms':>9} {'bf16 x':>7} {'fp32 MiB':>9} {'bf16 MiB':>9}")
    consumed = {}
    for name in models:
        for c in classes:
            r = train_row(name, c, n, device, steps)
            consumed[(name, c)] = n / r["bf16"][0]
            print(f"{name:28} {c:7d} {1e3 * r['fp32'][0]:9.1f} {1e3 * r['bf16'][0]:9.1f} "
                  f"{r['fp32'][0] / r['bf16'][0]:7.2f} {mem(r, 'fp32')} {mem(r, 'bf16')}", flush=True)
    print(f"{'distill trkd, online teacher':28} {'classes':>7} {'fp32 ms':>9} {'bf16 ms':>9} {'bf16 x':>7} "
          f"{'fp32 MiB':>9} {'bf16 MiB':>9}")
    for t, s in pairs:
        for c in classes:
            r = distill_row(t, s, c, n, device, steps)
            print(f"{t + ' -> ' + s:28} {c:7d} {1e3 * r['fp32'][0]:9.1f} {1e3 * r['bf16'][0]:9.1f} "
                  f"{r['fp32'][0] / r['bf16'][0]:7.2f} {mem(r, 'fp32')} {mem(r, 'bf16')}", flush=True)
    fastest = max(consumed.values())
    print(f"loader: {FRAMES}-frame chunks of {UTT_FRAMES}-frame utterances (real ark/scp), batch {n}; the fastest "
          f"bf16 training step above consumes {fastest:.1f} chunks/s")
    for w in workers:
        rate = loader_rate(w, n, 2 if a.quick else 6, device)
        print(f"loader {w} worker(s): {rate:9.1f} chunks/s, {rate / w:9.1f} per worker, "
              f"{rate / fastest:5.2f}x what the step consumes", flush=True)


if __name__ == "__main__":
    sys.exit(main())
