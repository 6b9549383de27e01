"""Forward + backward CPU time of kd, dkd and trkd (τ = 0.05, τ = 1), B = 256.

Then the τ sweep: on AAM-like logits (s = 32, target cosine 0.6 with margin 0.2, a few confusable
classes at cosine ≈ 0.4, the rest ≈ 0 ± 0.08; T = 4, a flat teacher as a trained AAM one is),
trkd / dkd and the mean |F| at every τ of the curriculum, C = 1 000 and 17 982 (target ≤ 1.5×),
the partition's own time ("split", ms) and that time over dkd's ("/ dkd").

Prints a table of median CPU times and the ratio trkd / dkd (median of per-repeat ratios, both
measured back to back in the same run; target ≤ 2×). `--order blocks` times each method's repeats
in a row instead of interleaving the methods: the steady state of a training loop, which calls one
loss only, where interleaving measures each call after another method's (differently shaped)
allocations.
`--ops` adds the number of top-level aten operations of one forward + backward per method and τ
(torch.profiler; an op called by another op is not counted): a deterministic count of the
per-op overhead, which dominates where C is small.
Usage: tools/venv/bin/python bench/losses.py [--repeats N] [--threads N] [--order interleaved|blocks]
                                            [--only random|sweep] [--ops]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from trkd.losses import LogitStats, dkd_loss, kd_loss
from trkd.losses import trkd_loss as _trkd_loss
from trkd.schedules import TAU_GRID

# The paper's reading (λ_B = 0), which bench/README.md's figures measured; trkd's default
# (λ_B = 8) adds the background's sums.
trkd_loss = functools.partial(_trkd_loss, lambda_b=0.0)


def _teacher_like(b: int, c: int, g: torch.Generator):
    """Peaked teacher logits (an AAM-like scale) so that F(0.05) is small, as for a trained one."""
    teacher = torch.randn(b, c, generator=g) * 3.0
    target = torch.randint(0, c, (b,), generator=g)
    teacher[torch.arange(b), target] += 25.0
    student = teacher + torch.randn(b, c, generator=g) * 2.0
    return student, teacher, target




def _aam_like(b: int, c: int, g: torch.Generator, scale: float = 32.0, margin: float = 0.2,
              confusable: int = 4):
    """Student and teacher AAM logits s·cos (margin on the target) of a trained flat classifier."""
    def logits(cos):
        target_cos = cos.gather(1, target[:, None]).clamp(-1, 1)
        return scale * cos.scatter(1, target[:, None], torch.cos(torch.acos(target_cos) + margin))

    target = torch.randint(0, c, (b,), generator=g)
    cos = torch.randn(b, c, generator=g) * 0.08
    near = torch.randint(0, c, (b, confusable), generator=g)
    cos.scatter_(1, near, 0.4 + 0.05 * torch.randn(b, confusable, generator=g))
    cos.scatter_(1, target[:, None], 0.6 + 0.05 * torch.randn(b, 1, generator=g))
    student = cos + 0.05 * torch.randn(b, c, generator=g)
    return logits(student), logits(cos), target


def _sweep(args, g: torch.Generator) -> None:
    print(f"\nτ sweep on AAM-like logits (s=32, T=4): trkd / dkd, mean |F|; B={args.batch}")
    print(f"{'C':>6} {'dkd ms':>7} " + " ".join(f"{'τ=' + str(t):>13}" for t in TAU_GRID))
    for c in (1000, 17982):
        s, t, y = _aam_like(args.batch, c, g)
        fns = {"dkd": lambda x: dkd_loss(x, t, y)}
        fns.update({tau: (lambda tau: lambda x: trkd_loss(x, t, y, tau))(tau) for tau in TAU_GRID})
        ms, ratio = (_medians if args.order == "interleaved" else _blocks)(fns, s, args.repeats)
        sizes = {tau: float(trkd_loss(s, t, y, tau)[1].f_size) for tau in TAU_GRID}
        cells = [f"{ratio[tau]:5.2f}× {sizes[tau]:>6.0f}" for tau in TAU_GRID]
        print(f"{c:>6} {ms['dkd']:>7.1f} " + " ".join(f"{x:>13}" for x in cells))
        split = {tau: _partition_ms(s, t, y, tau, args.repeats) for tau in TAU_GRID}
        print(f"{'':>6} {'split':>7} " + " ".join(f"{split[tau]:>10.2f} ms" for tau in TAU_GRID))
        # The partition's own cost against the whole of dkd (measured in separate rounds).
        print(f"{'':>6} {'/ dkd':>7} " + " ".join(f"{split[tau] / ms['dkd']:>12.2f}×"
                                                  for tau in TAU_GRID))
        p_y = torch.softmax(t / 4, -1).gather(1, y[:, None])
        print(f"{'':>6} teacher p_y at T=4: median {float(p_y.median()):.4f}, "
              f"worst ratio {max(ratio[tau] for tau in TAU_GRID):.2f}×")
        if args.ops:
            ops = {name: _op_count(fn, s) for name, fn in fns.items()}
            print(f"{'':>6} {'ops':>7} " + " ".join(f"{ops[tau]:>10d} ops" for tau in TAU_GRID)
                  + f"   (dkd {ops['dkd']})")


def _op_count(fn, student) -> int:
    """Top-level aten operations of one forward + backward (those not called by another op)."""
    from torch.profiler import ProfilerActivity, profile
    x = student.detach().requires_grad_(True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(x)[0].backward()
    return sum(1 for e in prof.events() if e.name.startswith("aten::")
               and not (e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::")))


def _partition_ms(student, teacher, target, tau: float, repeats: int) -> float:
    """Median CPU ms of TRKD's partition alone (LogitStats.split, the teacher's exponentials
    already made), measured after the sweep's rounds."""
    times = []
    for _ in range(repeats):
        stats = LogitStats(student, teacher, target, 4.0, tau)
        stats.t
        start = time.process_time()
        stats.split
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def _once(fn, student) -> float:
    x = student.detach().requires_grad_(True)
    start = time.process_time()  # CPU time: robust to other processes taking the cores
    fn(x)[0].backward()
    return time.process_time() - start


def _blocks(fns: dict, student, repeats: int):
    """Median CPU ms per method with each method's repeats in a row (first 3 calls not counted);
    ratios are of the medians."""
    ms = {}
    for name, fn in fns.items():
        times = [_once(fn, student) for _ in range(repeats + 3)][3:]
        ms[name] = statistics.median(times) * 1e3
    return ms, {name: v / ms["dkd"] for name, v in ms.items()}


def _medians(fns: dict, student, repeats: int):
    """Median CPU ms per method, and the median over repeats of each method's time over dkd's
    in the same repeat. Methods alternate within a repeat so that load from other processes
    hits them alike; the first round (allocator warm-up) is not counted."""
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats + 1):
        for i in range(len(names)):  # rotated each repeat: no method always follows another
            name = names[(i + r) % len(names)]
            elapsed = _once(fns[name], student)
            if r:
                times[name].append(elapsed)
    ratios = {name: statistics.median(a / b for a, b in zip(t, times["dkd"]))
              for name, t in times.items()}
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--order", choices=("interleaved", "blocks"), default="interleaved")
    parser.add_argument("--only", choices=("random", "sweep"), default=None)
    parser.add_argument("--ops", action="store_true", help="also count each call's aten ops")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"B={args.batch}, float32, {args.threads} thread(s), median of {args.repeats}, CPU ms, "
          f"methods {args.order}")
    if args.only != "sweep":
        _random_table(args, g)
    if args.only != "random":
        _sweep(args, g)


def _random_table(args, g: torch.Generator) -> None:
    print(f"{'C':>6} {'kd':>8} {'dkd':>8} {'trkd τ=1':>9} {'trkd τ=.05':>11} {'|F|':>6} "
          f"{'ratio τ=1':>10} {'ratio τ=.05':>12}")
    for c in (5994, 17982):
        s, t, y = _teacher_like(args.batch, c, g)
        fns = {"kd": lambda x: kd_loss(x, t, y), "dkd": lambda x: dkd_loss(x, t, y),
               "trkd1": lambda x: trkd_loss(x, t, y, 1.0), "trkd05": lambda x: trkd_loss(x, t, y, 0.05)}
        ms, ratio = (_medians if args.order == "interleaved" else _blocks)(fns, s, args.repeats)
        f_size = float(trkd_loss(s, t, y, 0.05)[1].f_size)
        print(f"{c:>6} {ms['kd']:>8.1f} {ms['dkd']:>8.1f} {ms['trkd1']:>9.1f} "
              f"{ms['trkd05']:>11.1f} {f_size:>6.1f} {ratio['trkd1']:>10.2f} "
              f"{ratio['trkd05']:>12.2f}")


if __name__ == "__main__":
    main()
