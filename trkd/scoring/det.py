"""DET curves (miss vs false-alarm rate on normal-deviate axes) saved as PNG.

Each curve is labelled with its system's name, EER and minDCF, and marks both operating points:
the EER (a circle on the diagonal) and the minDCF threshold at P_TARGET (a square). The axes span
the data: from half an error of the smaller class up to beyond the weakest curve's EER.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Dict, Tuple

import numpy as np

from trkd.scoring.metrics import eer_from_rates, error_rates
from trkd.utils import PathLike
from trkd.utils.atomic import atomic_path


TICKS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9,
         0.95, 0.98, 0.99)
MIN_TOP = 0.4  # a good system's plot still shows the usual 0.1 %–40 % square
P_TARGET = 0.01  # the minDCF operating point that is marked (NIST SRE / VoxSRC)
# Curve points closer than this along the curve (in log-odds, about 1.7 probit units) are drawn
# as one: a 580 000-trial curve becomes a few thousand points with no visible change.
STEP = 0.01


def probit(p) -> np.ndarray:
    """Inverse of the standard normal CDF (scipy's norm.ppf); only for the few plotted points."""
    inv_cdf = NormalDist().inv_cdf
    return np.array([inv_cdf(float(v)) for v in np.atleast_1d(p)])


def _thin(fnr: np.ndarray, fpr: np.ndarray, floor: float) -> Tuple[np.ndarray, np.ndarray]:
    """Rates clipped at `floor`, thinned along the curve (log-odds have the probit's shape, cheaply)."""
    fpr = np.clip(fpr, floor, 1 - floor)
    fnr = np.clip(fnr, floor, 1 - floor)
    x, y = np.log(fpr / (1 - fpr)), np.log(fnr / (1 - fnr))
    length = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))))
    _, keep = np.unique(np.floor(length / STEP), return_index=True)
    keep = np.union1d(keep, [len(x) - 1])
    return fpr[keep], fnr[keep]


def det_points(scores, labels, floor: float) -> Tuple[np.ndarray, np.ndarray]:
    """`(probit(fpr), probit(fnr))` of the curve, rates clipped at `floor`, thinned along the curve."""
    fnr, fpr = error_rates(scores, labels)
    fpr, fnr = _thin(fnr, fpr, floor)
    return probit(fpr), probit(fnr)


@dataclass(frozen=True)
class OperatingPoints:
    eer: float
    mindcf: float
    mindcf_at: Tuple[float, float]  # (fpr, fnr) of the minDCF threshold


def operating_points(scores, labels, p_target: float = P_TARGET) -> OperatingPoints:
    """The EER and the minDCF at `p_target` with the rates where it is reached (C_miss = C_fa = 1)."""
    fnr, fpr = error_rates(scores, labels)
    dcf = fnr * p_target + fpr * (1.0 - p_target)
    k = int(np.argmin(dcf))
    return OperatingPoints(eer_from_rates(fnr, fpr), float(dcf[k] / min(p_target, 1 - p_target)),
                           (float(fpr[k]), float(fnr[k])))


def axis_range(curves: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> Tuple[float, float]:
    """(lowest, highest) rate shown: below half an error of the smaller class the axis says nothing;
    the top reaches past twice the weakest EER, so a weak system's curve is on the plot."""
    smallest = min(min(int((np.asarray(l) == 1).sum()), int((np.asarray(l) != 1).sum())) for _, l in curves.values())
    lo = max(TICKS[0], 0.5 / smallest)
    worst = max(operating_points(s, l).eer for s, l in curves.values())
    hi = next((t for t in TICKS if t >= max(MIN_TOP, 2 * worst)), TICKS[-1])
    return min(lo, hi / 10), hi


def det_figure(curves: Dict[str, Tuple[np.ndarray, np.ndarray]], title: str = ""):
    """A matplotlib Figure with one DET curve per `system name → (scores, labels)`."""
    # A bare Figure renders with Agg and leaves pyplot's global backend state alone.
    from matplotlib.figure import Figure

    lo, hi = axis_range(curves)
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.subplots()
    for name, (scores, labels) in curves.items():
        x, y = det_points(scores, labels, floor=lo / 2)
        op = operating_points(scores, labels)
        (line,) = ax.plot(x, y, label=f"{name} (EER {100 * op.eer:.2f}%, minDCF {op.mindcf:.3f})")
        ax.plot(*probit(np.clip([op.eer, op.eer], lo, hi)), "o", color=line.get_color(), markersize=6)
        # a threshold outside the axes (minDCF 1: reject everything) is drawn on their edge
        ax.plot(*probit(np.clip(op.mindcf_at, lo, hi)), "s", color=line.get_color(), markersize=7,
                markerfacecolor="none", clip_on=False)
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
    ax.legend(loc="best", fontsize="small", title=f"o EER   □ minDCF (p={P_TARGET:g})",
              title_fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_det(path: PathLike, curves: Dict[str, Tuple[np.ndarray, np.ndarray]], title: str = "") -> None:
    """Draw one DET curve per `system name → (scores, labels)` into a PNG, written atomically."""
    fig = det_figure(curves, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def system_of(out_dir: PathLike) -> str:
    """The system a scores dir belongs to: `exp/<system>/scores` → `<system>`."""
    out_dir = Path(out_dir).resolve()
    return out_dir.parent.name if out_dir.name == "scores" else out_dir.name
