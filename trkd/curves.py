"""The training-curve PNG: one panel per logged quantity (loss and its parts, accuracy, lr, margin…)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Union

from trkd.utils.atomic import atomic_path

FIRST = ("loss", "acc", "lr", "margin")  # fixed panels first; the objective's parts follow, sorted


def plot_history(history: List[Dict[str, float]], path: Union[str, Path]) -> None:
    """Draw every per-epoch quantity of `history` (records with an 'epoch' key) against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    keys = sorted({k for rec in history for k in rec} - {"epoch"})
    keys = [k for k in FIRST if k in keys] + [k for k in keys if k not in FIRST]
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(rec["epoch"], rec[key]) for rec in history if key in rec]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None, ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if key == "lr" and all(p[1] > 0 for p in pts):
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
