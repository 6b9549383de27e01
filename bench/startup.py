"""CLI start-up: wall time of `trkd --help` against `python -c pass` (and `import typer`, the floor of any
typer CLI) on the same interpreter, interleaved, median and spread of the per-repeat ratios.

    tools/venv/bin/python bench/startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from machine import describe, median_spread

CASES = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import typer'": ["-c", "import typer"],
    "trkd --help": ["-m", "trkd", "--help"],
    "trkd --help, TYPER_USE_RICH=0": ["-m", "trkd", "--help"],
}


def wall(args, env=None) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    plain = {**os.environ, "TYPER_USE_RICH": "0"}
    print(f"machine: {describe()}")
    times = {name: [] for name in CASES}
    for name, argv in CASES.items():  # warm the page cache
        wall(argv, plain if "RICH" in name else None)
    for _ in range(args.repeats):
        for name, argv in CASES.items():
            times[name].append(wall(argv, plain if "RICH" in name else None))
    ref = np.array(times["python -c pass"])
    print(f"{'command':32s} {'wall ms':>18s} {'x python -c pass':>18s}   (median [min-max] of {args.repeats})")
    for name, t in times.items():
        print(f"{name:32s} {median_spread(1000 * np.array(t)):>18s} {median_spread(np.array(t) / ref, 1):>18s}")
    print(f"machine at the end: {describe()}")


if __name__ == "__main__":
    main()
