"""DET curves (miss vs false-alarm rate on normal-deviate axes) saved as PNG."""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist
from typing import Dict, Tuple, Union

import numpy as np

from trkd.scoring.metrics import error_rates
from trkd.utils.atomic import atomic_path

PathLike = Union[str, Path]

TICKS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6)
# Curve points closer than this along the curve (in log-odds, about 1.7 probit units) are drawn
# as one: a 580 000-trial curve becomes a few thousand points with no visible change.
STEP = 0.01


def probit(p) -> np.ndarray:
    """Inverse of the standard normal CDF (scipy's norm.ppf); only for the few plotted points."""
    inv_cdf = NormalDist().inv_cdf
    return np.array([inv_cdf(float(v)) for v in np.atleast_1d(p)])


def det_points(scores, labels, floor: float) -> Tuple[np.ndarray, np.ndarray]:
    """`(probit(fpr), probit(fnr))` of the curve, rates clipped at `floor`, thinned along the curve.

    Thinning uses the log-odds, which has the probit's shape but costs no per-point inverse CDF.
    """
    fnr, fpr = error_rates(scores, labels)
    fpr = np.clip(fpr, floor, 1 - floor)
    fnr = np.clip(fnr, floor, 1 - floor)
    x, y = np.log(fpr / (1 - fpr)), np.log(fnr / (1 - fnr))
    length = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))))
    _, keep = np.unique(np.floor(length / STEP), return_index=True)
    keep = np.union1d(keep, [len(x) - 1])
    return probit(fpr[keep]), probit(fnr[keep])


def plot_det(path: PathLike, curves: Dict[str, Tuple[np.ndarray, np.ndarray]], title: str = "") -> None:
    """Draw one DET curve per `name → (scores, labels)` into a PNG, written atomically."""
    # A bare Figure renders with Agg and leaves pyplot's global backend state alone.
    from matplotlib.figure import Figure

    smallest = min(min(int((np.asarray(l) == 1).sum()), int((np.asarray(l) != 1).sum())) for _, l in curves.values())
    lo = max(TICKS[0], 0.5 / smallest)  # below one error in the smaller class the axis says nothing
    hi = TICKS[-1]
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, (scores, labels) in curves.items():
        x, y = det_points(scores, labels, floor=TICKS[0] / 2)
        ax.plot(x, y, label=name)
    ax.plot(probit([lo, hi]), probit([lo, hi]), color="0.7", linestyle=":", linewidth=1)  # EER line
    ticks = [t for t in TICKS if lo <= t <= hi]
    pos = probit(ticks)
    labels_pct = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(pos, labels_pct)
    ax.set_yticks(pos, labels_pct)
    ax.set_xlim(*probit([lo, hi]))
    ax.set_ylim(*probit([lo, hi]))
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.grid(True, color="0.85")
    ax.legend(loc="upper right", fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
