"""CLI start-up: `trkd --help` against `python -c pass` on the same interpreter, with what it is made of
(`import typer`, the floor of any typer CLI; typer's rich help module, which rendering a help imports;
loading trkd's CLI; the help without rich). Interleaved repeats, median and spread of the per-repeat
ratios, in wall time and in the children's CPU time (which other jobs' load changes far less).

    tools/venv/bin/python bench/startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np

from machine import describe, median_spread

PLAIN = {"TYPER_USE_RICH": "0"}
CASES = {  # name: (python arguments, extra environment)
    "python -c pass": (["-c", "pass"], {}),
    "python -c 'import typer'": (["-c", "import typer"], {}),
    "import typer, typer.rich_utils": (["-c", "import typer, typer.rich_utils"], {}),
    "import trkd.cli": (["-c", "import trkd.cli"], {}),
    "trkd --help": (["-m", "trkd", "--help"], {}),
    "trkd --help, TYPER_USE_RICH=0": (["-m", "trkd", "--help"], PLAIN),
}


def run(args, extra) -> tuple:
    """(wall, CPU) seconds of one run of the interpreter with `args`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, env={**os.environ, **extra})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    print(f"machine: {describe()}")
    times = {name: [] for name in CASES}
    for argv, extra in CASES.values():  # warm the page cache
        run(argv, extra)
    for _ in range(args.repeats):
        for name, (argv, extra) in CASES.items():
            times[name].append(run(argv, extra))
    ref = np.array(times["python -c pass"])
    print(f"{'command':32s} {'wall ms':>16s} {'x python -c pass':>16s} {'CPU ms':>16s} {'x python -c pass':>16s}"
          f"   (median [min-max] of {args.repeats})")
    for name, t in times.items():
        t = np.array(t)
        print(f"{name:32s} {median_spread(1000 * t[:, 0]):>16s} {median_spread(t[:, 0] / ref[:, 0], 1):>16s} "
              f"{median_spread(1000 * t[:, 1]):>16s} {median_spread(t[:, 1] / ref[:, 1], 1):>16s}")
    print(f"machine at the end: {describe()}")


if __name__ == "__main__":
    main()
