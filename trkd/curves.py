"""The training-curve PNG: one panel per logged quantity (loss and its parts, accuracy, lr, margin,
τ, |F| …), one point per log interval of `EXP/metrics.jsonl` against the global iteration, with
the epoch boundaries marked, so that a 2-epoch run shows its course and not two dots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Union

from trkd.utils.atomic import atomic_path

FIRST = ("loss", "acc", "lr", "margin")  # fixed panels first; the objective's parts follow, sorted
POSITION = ("iteration", "epoch", "iter", "iters_per_epoch", "steps")  # where a record is, not what it measured
LOG_SCALE = {"lr", "f_size"}  # quantities that span decades (|F| falls from C - 1 to a handful)


def panels(n: int, width: float = 3.2, height: float = 2.6, cols: int = 4):
    """A figure of `n` panels of `width` x `height` inches, at most `cols` a row: (fig, its n axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(cols, n)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(width * cols, height * math.ceil(n / cols)),
                             squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def save_png(fig, path: Union[str, Path]) -> None:
    """Write `fig` to `path` whole or not at all (temp + rename), and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def plot_history(records: List[Dict[str, float]], path: Union[str, Path]) -> None:
    """Draw every quantity of metrics `records` (trkd.train_metrics) against the iteration."""
    if not records:
        return
    keys = sorted({k for rec in records for k in rec} - set(POSITION))
    keys = [k for k in FIRST if k in keys] + [k for k in keys if k not in FIRST]
    fig, axes = panels(len(keys))
    ends = epoch_ends(records)
    for ax, key in zip(axes, keys):
        pts = [(rec["iteration"], rec[key]) for rec in records if rec.get(key) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None, ms=3, lw=1)
        for x in ends:
            ax.axvline(x, color="0.6", lw=0.6, ls=":")
        ax.set_title(key if key != "f_size" else "|F|", fontsize=9)
        ax.set_xlabel("iteration (dotted: end of an epoch)", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if key in LOG_SCALE and pts and all(p[1] > 0 for p in pts):
            ax.set_yscale("log")
    save_png(fig, path)


def epoch_ends(records: List[Dict[str, float]]) -> List[int]:
    """The global iteration at which each epoch of `records` ended."""
    ends = {}
    for rec in records:
        if "iters_per_epoch" in rec:
            ends[rec["epoch"]] = rec["epoch"] * rec["iters_per_epoch"]
    return [ends[e] for e in sorted(ends)]
