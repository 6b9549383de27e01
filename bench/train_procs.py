"""How a training job should use a few CPU cores: the real `trkd train` of a recipe's teacher,
launched as one process on 1 or 2 threads, or as 2 DDP processes of one thread each (torchrun,
gloo), with the freed heap kept (what `trkd` does) or glibc's defaults.

Each launch trains from scratch; the bench notes when the trainer's metrics.jsonl gains each record
(log_interval 50 steps) and times --steps steps after the first record, then stops the run. The
reference, measured in the same run and alternately with the others, is the recipe's launch before
DDP: one process, 2 threads, glibc's defaults. Steps per second, median and [min-max] over the
repeats; the ratio is taken within a repeat.

    tools/venv/bin/python bench/train_procs.py [--recipe egs/mini] [--repeats 2] [--steps 150]
      (needs the recipe's features: ./run.sh --stop-stage 2)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOG_INTERVAL = 50
# name: (processes, threads a process, glibc's heap defaults)
LAUNCHES = {
    "1 process, 2 threads, glibc heap (reference)": (1, 2, True),
    "1 process, 2 threads": (1, 2, False),
    "1 process, 1 thread": (1, 1, False),
    "2 processes, 1 thread each, glibc heap": (2, 1, True),
    "2 processes, 1 thread each": (2, 1, False),
}
REFERENCE = next(iter(LAUNCHES))


def steps_per_second(recipe: Path, procs: int, threads: int, glibc_heap: bool, steps: int) -> float:
    """Steps/s of the recipe's teacher between its first metrics record and --steps later."""
    bindir = Path(sys.executable).parent
    exp = Path(tempfile.mkdtemp(prefix="train_procs."))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if glibc_heap:  # a malloc setting of the user's (here one that changes nothing) leaves glibc as it is
        env["GLIBC_TUNABLES"] = "glibc.malloc.perturb=0"
    cmd = [str(bindir / "trkd"), "train", "--config", "conf/ecapa_teacher.yaml", "--data", "data/train_aug",
           "--exp", str(exp / "run"), "--seed", "0", "--set", f"train.log_interval={LOG_INTERVAL}"]
    if procs > 1:
        cmd = [str(bindir / "torchrun"), "--no-python", "--standalone", "--nproc-per-node", str(procs), *cmd]
    need = 1 + steps // LOG_INTERVAL
    seen = []
    proc = subprocess.Popen(cmd, cwd=recipe, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        metrics = exp / "run" / "metrics.jsonl"
        while len(seen) < need:
            if proc.poll() is not None:
                raise SystemExit(f"{' '.join(cmd)} ended (code {proc.returncode}) before {need} records")
            records = metrics.read_text().count("\n") if metrics.is_file() else 0
            seen += [time.perf_counter()] * (records - len(seen))
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        shutil.rmtree(exp, ignore_errors=True)
    return LOG_INTERVAL * (need - 1) / (seen[need - 1] - seen[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", type=Path, default=Path(__file__).resolve().parents[1] / "egs" / "mini")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=150, help="timed steps a launch (a multiple of 50)")
    args = ap.parse_args()
    if not (args.recipe / "data" / "train_aug" / "feats.scp").is_file():
        raise SystemExit(f"{args.recipe}/data/train_aug/feats.scp: missing; run ./run.sh --stop-stage 2 there")
    load = os.getloadavg()[0]
    rates = {name: [] for name in LAUNCHES}
    for _ in range(args.repeats):
        for name, launch in LAUNCHES.items():
            rates[name].append(steps_per_second(args.recipe, *launch, args.steps))
    print(f"teacher conf/ecapa_teacher.yaml of {args.recipe}, {args.steps} steps of 32 chunks a launch, "
          f"{args.repeats} repeats, {os.cpu_count()} cores, load average {load:.1f} -> {os.getloadavg()[0]:.1f}\n")
    print("| launch | steps/s | × reference |\n|---|---|---|")
    for name, values in rates.items():
        ratios = [v / r for v, r in zip(values, rates[REFERENCE])]
        print(f"| {name} | {statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}] | "
              f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] |")


if __name__ == "__main__":
    main()
