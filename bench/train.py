"""Training throughput on the CPU: samples per second of one SGD step (forward + backward through
the model and the AAM head), batch 32 of 200-frame 80-dim fbank chunks, for each model at the
mini-recipe and at the VoxCeleb sizes, with parameters and MACs per second of audio.

The reference, measured in the same run, is the first row (the paper's teacher, ECAPA-TDNN
C=1024): the ratio column is each model's throughput relative to it. A second reference compares
the full `Trainer` loop on a real ark/scp (data loading, schedules, logging) against the bare
step for one small model, to show what the loop costs on top of the network.

    tools/venv/bin/python bench/train.py [--iters 2] [--threads 2] [--resnet152] [--no-loop] [--only NAME]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from trkd.config import Config
from trkd.models.complexity import count_params, macs_per_second
from trkd.trainer import build_student

VOXCELEB_CLASSES = 17982  # VoxCeleb2-dev, 5 994 speakers x 3 with speed perturbation
MIN_SECONDS = 3.0
MINI_CLASSES = 1000       # the embedded corpus's default training speakers
SIZES = {
    "voxceleb": [
        ("ecapa C=1024", {"name": "ecapa", "channels": 1024, "embed_dim": 192}),
        ("ecapa C=400", {"name": "ecapa", "channels": 400, "embed_dim": 192}),
        ("resnet34 w32", {"name": "resnet", "depth": 34, "width": 32, "embed_dim": 256}),
        ("mobilenetv2 x1.0", {"name": "mobilenetv2", "width_mult": 1.0, "embed_dim": 256}),
        ("xvector 512", {"name": "xvector", "channels": 512, "embed_dim": 512}),
        ("res2net34 w32", {"name": "res2net", "depth": 34, "width": 32, "embed_dim": 256}),
        ("campplus", {"name": "campplus", "embed_dim": 192}),
        ("redimnet b2", {"name": "redimnet", "size": "b2", "embed_dim": 192}),
    ],
    "mini": [
        ("ecapa C=256", {"name": "ecapa", "channels": 256, "mfa_channels": 768, "embed_dim": 128}),
        ("ecapa C=64", {"name": "ecapa", "channels": 64, "mfa_channels": 192, "embed_dim": 128}),
        ("resnet34 w8", {"name": "resnet", "depth": 34, "width": 8, "embed_dim": 128}),
        ("mobilenetv2 x0.25", {"name": "mobilenetv2", "width_mult": 0.25, "embed_dim": 128}),
        ("xvector 128", {"name": "xvector", "channels": 128, "stats_channels": 384, "segment_dim": 128,
                         "embed_dim": 128}),
        ("res2net34 w8", {"name": "res2net", "depth": 34, "width": 8, "embed_dim": 128}),
        ("campplus C=64", {"name": "campplus", "channels": 64, "growth": 16, "embed_dim": 128}),
        ("redimnet b0", {"name": "redimnet", "size": "b0", "embed_dim": 128}),
    ],
}


def step_rate(model_cfg: dict, classes: int, batch: int, frames: int, iters: int):
    """(samples/s of a full SGD step, params, MACs per second of audio) of one model."""
    cfg = Config(model=dict(model_cfg, feat_dim=80))
    cfg.head.num_classes = classes
    torch.manual_seed(0)
    student = build_student(cfg)
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(batch, frames, 80)
    y = torch.randint(0, classes, (batch,))

    def one():
        out = student(x, y, 0.2)
        loss = torch.nn.functional.cross_entropy(out.margin_logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    one()  # warm-up: allocator, kernels
    t0, done = time.perf_counter(), 0
    while done < iters or time.perf_counter() - t0 < MIN_SECONDS:  # small models: enough steps to time
        one()
        done += 1
    rate = batch * done / (time.perf_counter() - t0)
    return rate, count_params(student.model), macs_per_second(student.model)


def loop_vs_step(iters: int):
    """Samples/s of the Trainer on a real ark/scp vs the bare step, same tiny model and batch."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from train_helpers import make_feats_dir, write_config

    from trkd.config import load_config
    from trkd.trainer import train

    model = {"name": "xvector", "channels": 128, "stats_channels": 384, "segment_dim": 128, "embed_dim": 128}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_utts = 32 * (iters + 1)
        data = make_feats_dir(tmp / "data", num_spk=16, utts_per_spk=n_utts // 16, feat_dim=80,
                              min_len=250, max_len=400)
        conf = write_config(tmp / "c.yaml", model=model, data={"num_frms": 200, "batch_size": 32},
                            train={"epochs": 1, "avg_last": 1, "log_interval": 1000, "seed": 0})
        t0 = time.perf_counter()
        train(load_config(conf), data, tmp / "exp", device="cpu")
        loop = n_utts / (time.perf_counter() - t0)
    bare, _, _ = step_rate(model, 16, 32, 200, iters)
    return loop, bare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=2, help="least timed steps per model (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--resnet152", action="store_true", help="also the ResNet-152 teacher (slow)")
    ap.add_argument("--only", default="", help="comma-separated: time only the rows whose name contains one of "
                    "these (the reference row is always timed)")
    ap.add_argument("--no-loop", action="store_true", help="skip the Trainer-loop comparison")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = list(SIZES["voxceleb"])
    if args.resnet152:
        rows.insert(3, ("resnet152 w32", {"name": "resnet", "depth": 152, "width": 32, "embed_dim": 256}))
    plan = [("voxceleb", n, c, VOXCELEB_CLASSES) for n, c in rows] + \
           [("mini", n, c, MINI_CLASSES) for n, c in SIZES["mini"]]
    plan = plan[:1] + [row for row in plan[1:] if any(k in row[1] for k in args.only.split(","))]
    print(f"CPU training step, batch {args.batch} x 200 frames x 80 fbank, {args.threads} threads, "
          f"{args.iters} timed steps each")
    print(f"{'size':9} {'model':18} {'classes':>7} {'params':>9} {'MACs/s':>9} {'samples/s':>10} {'ratio':>7}")
    ref = None
    for size, name, cfg, classes in plan:
        rate, params, macs = step_rate(cfg, classes, args.batch, 200, args.iters)
        ref = ref or rate
        print(f"{size:9} {name:18} {classes:7d} {params / 1e6:8.2f}M {macs / 1e9:8.3f}G {rate:10.1f} "
              f"{rate / ref:7.2f}", flush=True)
    if not args.no_loop:
        loop, bare = loop_vs_step(max(args.iters, 4))
        print(f"Trainer loop on ark/scp (xvector 128, 1 epoch incl. start-up and checkpoint): {loop:.1f} samples/s; "
              f"bare step {bare:.1f} samples/s; ratio {loop / bare:.2f}")


if __name__ == "__main__":
    main()
