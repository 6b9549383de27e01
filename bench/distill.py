"""What distillation costs per student epoch on the CPU: (a) the student alone (`--method none`),
(b) the same student distilled with trkd from the teacher's dump, (c) with the teacher online.

The reference, measured in the same run, is (a); the target is (b) ≤ 1.15 × (a): with a dump a
student trains at about the cost of a plain student. The corpus is synthetic 80-dim fbank in a
real ark/scp (SPEAKERS × UTTS utterances of 2–8 s, about 2.5 grid chunks each); the teacher is a
randomly initialised larger ECAPA-TDNN (its values do not change the cost). τ is fixed below 1 so
that the confusion-set partition runs at every step. Epoch time = the trainer's `_epoch` only
(no checkpoint or plot), after a warm-up epoch, best of interleaved repeats. Data loading runs in
the main process (num_workers 0) so that the process CPU time holds all of an epoch's work: on a
shared machine that is the robust figure, wall time is printed beside it.

    tools/venv/bin/python bench/distill.py [--speakers 500] [--utts 1] [--epochs 2] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from train_helpers import make_feats_dir  # noqa: E402
from trkd import checkpoint as ckpt  # noqa: E402
from trkd.config import Config, dump_config  # noqa: E402
from trkd.data.chunks import write_spk2id  # noqa: E402

TEACHER = {"name": "ecapa", "channels": 256, "mfa_channels": 768, "embed_dim": 128, "feat_dim": 80}
STUDENT = {"name": "ecapa", "channels": 64, "mfa_channels": 192, "embed_dim": 128}


def make_teacher(exp: Path, data: Path) -> None:
    """A model dir as `trkd train` leaves it (config, class map, avg_model.pt), untrained."""
    from trkd.data.kaldi_dir import read_kv
    from trkd.trainer import build_student

    spk2id = {s: i for i, s in enumerate(sorted(set(read_kv(data / "utt2spk").values())))}
    cfg = Config(model=dict(TEACHER))
    cfg.head.num_classes = len(spk2id)
    torch.manual_seed(0)
    net = build_student(cfg)
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(dump_config(cfg))
    write_spk2id(exp / "spk2id", spk2id)
    ckpt.save(ckpt.model_dir(exp) / ckpt.AVG_NAME, {"model": net.model.state_dict(), "head": net.head.state_dict()})


def student_config(path: Path, epochs: int, batch: int) -> Path:
    path.write_text(yaml.safe_dump({
        "model": STUDENT,
        "data": {"num_frms": 200, "batch_size": batch, "num_workers": 0},
        "train": {"epochs": epochs, "avg_last": 1, "log_interval": 10**6, "seed": 0},
        "kd": {"warmup_epochs": 0, "trkd": {"tau0": 0.5, "tau1": 0.5}},
    }))
    return path


def epoch_seconds(run) -> list:
    """Run `run()` with the trainer's `_epoch` timed; per epoch (CPU seconds, wall seconds)."""
    from trkd import trainer

    times, inner = [], trainer.Trainer._epoch

    def timed(self, *args, **kwargs):
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            return inner(self, *args, **kwargs)
        finally:
            times.append((time.process_time() - c0, time.perf_counter() - t0))

    trainer.Trainer._epoch = timed
    trainer_plot, trainer.plot_history = trainer.plot_history, lambda *a, **k: None
    try:
        run()
    finally:
        trainer.Trainer._epoch, trainer.plot_history = inner, trainer_plot
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speakers", type=int, default=500)
    ap.add_argument("--utts", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2, help="the first is a warm-up, not counted")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best epoch counts")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from trkd.distill.dump import dump_logits
    from trkd.distill.run import distill

    tmp = Path(tempfile.mkdtemp(prefix="bench_distill_"))
    try:
        data = make_feats_dir(tmp / "data", num_spk=args.speakers, utts_per_spk=args.utts, feat_dim=80,
                              min_len=200, max_len=800)
        teacher = tmp / "teacher"
        make_teacher(teacher, data)
        t0 = time.perf_counter()
        dump_logits(teacher, data, nj=1, logits="both", device="cpu")
        dump_s = time.perf_counter() - t0
        chunks = len((teacher / "logits" / "chunks").read_text().splitlines())
        conf = student_config(tmp / "s.yaml", args.epochs, args.batch)
        systems = [("(a) student, no KD", "none", False), ("(b) trkd, dumped teacher", "trkd", False),
                   ("(c) trkd, online teacher", "trkd", True)]
        best = {name: (float("inf"), float("inf")) for name, _, _ in systems}
        for r in range(args.repeats):  # interleaved, best of: the machine may be shared
            for name, method, online in systems:
                exp = tmp / f"{name[1]}{r}"
                secs = epoch_seconds(lambda: distill(teacher, conf, method, data, exp, online=online, device="cpu"))
                counted = secs[1:] if len(secs) > 1 else secs
                best[name] = tuple(min([best[name][i]] + [s[i] for s in counted]) for i in range(2))
        rows = list(best.items())
        ref = rows[0][1]
        print(f"{args.speakers * args.utts} utterances, {chunks} grid chunks, {args.speakers} classes, "
              f"batch {args.batch}, {args.threads} threads; dump: {dump_s:.1f} s "
              f"({chunks / dump_s:.0f} chunks/s)")
        print(f"{'system':28s} {'CPU s/epoch':>12s} {'ratio':>6s} {'wall s/epoch':>13s} {'ratio':>6s}")
        for name, (cpu, wall) in rows:
            print(f"{name:28s} {cpu:12.2f} {cpu / ref[0]:6.2f} {wall:13.2f} {wall / ref[1]:6.2f}")
        ratio = rows[1][1][0] / ref[0]
        print(f"target: (b)/(a) <= 1.15 in CPU time: {ratio:.2f} -> {'met' if ratio <= 1.15 else 'NOT met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
