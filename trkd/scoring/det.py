"""DET curves (miss vs false-alarm rate on normal-deviate axes) saved as PNG.

Each curve is labelled with its system's name, EER and minDCF, and marks both operating points:
the EER (a circle on the diagonal) and the minDCF threshold at P_TARGET (a square). The axes span
the data: from half an error of the smaller class up to beyond the weakest curve's EER. The layout
is fixed in inches at the written size (tests/test_scoring.py draws it and checks that tick labels,
markers, legend and title do not collide).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Dict, List, Tuple

import numpy as np

from trkd.scoring.metrics import eer_from_rates, error_rates
from trkd.utils import PathLike
from trkd.utils.atomic import atomic_path


TICKS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9,
         0.95, 0.98, 0.99)
MIN_TOP = 0.4  # a good system's plot still shows the usual 0.1 %–40 % square
P_TARGET = 0.01  # the minDCF operating point that is marked (NIST SRE / VoxSRC)
# Layout (inches, at the size the PNG is written): the plot's width, the legend's height, the width of
# a tick label's character and the least gap between two labels; the axes reach EDGE_MARGIN of
# their span beyond the rates shown.
FIG_WIDTH = 5.5
AXIS_INCHES = 4.3
LEGEND_INCHES, LEGEND_LINE_INCHES = 0.5, 0.24  # the legend's frame and title line; a line per system
CHAR_INCHES = 0.085
TICK_GAP_INCHES = 0.08
EDGE_MARGIN = 0.03
DPI = 100
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


def tick_rates(lo: float, hi: float, axis_inches: float = AXIS_INCHES) -> List[float]:
    """The TICKS in [lo, hi] whose labels fit side by side on an axis `axis_inches` long: 1-, then
    5-, then 2-valued ones first (on a probit axis 0.01 % and 0.02 % lie close together)."""
    inches = axis_inches / float(np.diff(probit([lo, hi]))[0])  # per probit unit
    chosen: List[float] = []
    for t in sorted((t for t in TICKS if lo <= t <= hi), key=_tick_rank):
        if all(abs(probit(t)[0] - probit(c)[0]) * inches >= (_label_inches(t) + _label_inches(c)) / 2
               + TICK_GAP_INCHES for c in chosen):
            chosen.append(t)
    return sorted(chosen)


def _tick_label(rate: float) -> str:
    return f"{100 * rate:g}"


def _label_inches(rate: float) -> float:
    return len(_tick_label(rate)) * CHAR_INCHES


def _tick_rank(rate: float) -> Tuple[int, float]:
    lead = _tick_label(rate).replace("0.", "").lstrip("0")[0]
    return {"1": 0, "5": 1, "2": 2, "4": 1}.get(lead, 3), rate


def det_figure(curves: Dict[str, Tuple[np.ndarray, np.ndarray]], title: str = ""):
    """A matplotlib Figure with one DET curve per `system name → (scores, labels)`: a square plot,
    the legend below it (never over a curve), the axes a margin wider than the rates shown, so that
    a marker on the edge (minDCF 1: reject everything) is whole."""
    # A bare Figure renders with Agg and leaves pyplot's global backend state alone.
    from matplotlib.figure import Figure

    lo, hi = axis_range(curves)
    fig = Figure(figsize=(FIG_WIDTH, FIG_WIDTH + LEGEND_INCHES + LEGEND_LINE_INCHES * (len(curves) + 1)),
                 layout="constrained")
    ax = fig.subplots()
    ax.set_box_aspect(1)
    for name, (scores, labels) in curves.items():
        x, y = det_points(scores, labels, floor=lo / 2)
        op = operating_points(scores, labels)
        (line,) = ax.plot(x, y, label=f"{name} (EER {100 * op.eer:.2f}%, minDCF {op.mindcf:.3f})")
        ax.plot(*probit(np.clip([op.eer, op.eer], lo, hi)), "o", color=line.get_color(), markersize=6)
        # a threshold outside the axes (minDCF 1: reject everything) is drawn on their edge
        ax.plot(*probit(np.clip(op.mindcf_at, lo, hi)), "s", color=line.get_color(), markersize=7,
                markerfacecolor="none")
    ax.plot(probit([lo, hi]), probit([lo, hi]), color="0.7", linestyle=":", linewidth=1)  # EER line
    ticks = tick_rates(lo, hi)
    pos = probit(ticks)
    labels_pct = [_tick_label(t) for t in ticks]
    ax.set_xticks(pos, labels_pct)
    ax.set_yticks(pos, labels_pct)
    a, b = probit([lo, hi])
    pad = EDGE_MARGIN * (b - a)
    ax.set_xlim(a - pad, b + pad)
    ax.set_ylim(a - pad, b + pad)
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.grid(True, color="0.85")
    fig.legend(handles=[ln for ln in ax.lines if ln.get_label()[0] != "_"], loc="outside lower center",
               fontsize="small", title=f"o EER   □ minDCF (p={P_TARGET:g})", title_fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_det(path: PathLike, curves: Dict[str, Tuple[np.ndarray, np.ndarray]], title: str = "") -> None:
    """Draw one DET curve per `system name → (scores, labels)` into a PNG, written atomically."""
    fig = det_figure(curves, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")


def det_title(trials: PathLike, where: str = "") -> str:
    """`DET: data/test/trials (where)`: the trial list by its last three path parts, since its
    file name alone is often just `trials`."""
    return f"DET: {'/'.join(Path(trials).parts[-3:])}" + (f" ({where})" if where else "")


def system_of(out_dir: PathLike) -> str:
    """The system a scores dir belongs to: `exp/<system>/scores` → `<system>`."""
    out_dir = Path(out_dir).resolve()
    return out_dir.parent.name if out_dir.name == "scores" else out_dir.name
