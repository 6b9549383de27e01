"""The comparison table of a recipe: every system under `exp/`, one row each, across seeds.

A system is a folder `EXP_ROOT/<name>/` holding `config.yaml` and `scores/<trials>.metrics.json`
(written by `trkd score`). Several roots are read as repeated runs with different seeds: each cell
is then the mean over the roots, with the spread (max − min) beside it, so that a difference between
methods can be compared with the run-to-run noise.
"""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.atomic import atomic_path, write_text_atomic

METRICS = (("eer", "EER %", 100.0), ("mindcf_p0_01", "minDCF 0.01", 1.0), ("mindcf_p0_05", "minDCF 0.05", 1.0))


@dataclass
class System:
    """One system's measurements: per trial list and metric, one value per root (seed)."""

    name: str
    params: int = 0
    macs: int = 0
    values: Dict[Tuple[str, str], List[float]] = field(default_factory=dict)


def _size(exp: Path) -> Tuple[int, int]:
    """Parameters and MACs per second of audio of the embedding extractor (head excluded)."""
    from trkd.config import load_config
    from trkd.models import build_model
    from trkd.models.complexity import count_params, macs_per_second

    model = build_model(load_config(exp / "config.yaml").model)
    return count_params(model), macs_per_second(model, getattr(model, "feat_dim", 80))


def unscored(roots: Sequence[PathLike], systems: Sequence[System]) -> List[str]:
    """Model dirs (a `config.yaml`) under the roots with no `scores/*.metrics.json` in any root."""
    scored = {s.name for s in systems}
    names = {p.parent.name for root in map(Path, roots) for p in root.glob("*/config.yaml")}
    return sorted(names - scored)


def collect(roots: Sequence[PathLike]) -> Tuple[List[System], List[str]]:
    """Read every `ROOT/*/scores/*.metrics.json`; systems keep the order of the first root."""
    systems: Dict[str, System] = {}
    lists: List[str] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise InputError(root, "no such experiment folder")
        for metrics in sorted(root.glob("*/scores/*.metrics.json")):
            exp = metrics.parent.parent
            try:
                result = json.loads(metrics.read_text())
            except json.JSONDecodeError as err:
                raise InputError(metrics, f"not valid json: {err.msg}", err.lineno) from None
            system = systems.get(exp.name)
            if system is None:
                system = systems[exp.name] = System(exp.name, *_size(exp))
            name = result["name"]
            if name not in lists:
                lists.append(name)
            for key, _, _ in METRICS:
                system.values.setdefault((name, key), []).append(float(result["metrics"][key]))
    if not systems:
        raise InputError(roots[0], "no */scores/*.metrics.json found: run the scoring stage first")
    return list(systems.values()), lists


def _cell(values: List[float], scale: float, digits: int) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(max(values) - min(values)) * scale / 2:.{digits}f}"


def markdown(systems: List[System], lists: List[str], runs: int) -> str:
    """The table: parameters, MACs, then EER and minDCF for each trial list."""
    head = ["system", "params (M)", "MMACs/s"]
    for name in lists:
        head += [f"{name} {label}" for _, label, _ in METRICS]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in systems:
        cells = [s.name, f"{s.params / 1e6:.3f}", f"{s.macs / 1e6:.1f}"]
        for name in lists:
            cells += [_cell(s.values.get((name, key), []), scale, 3 if key == "eer" else 4)
                      for key, _, scale in METRICS]
        rows.append("| " + " | ".join(cells) + " |")
    note = (f"\nMean over {runs} runs (seeds) ± half the range (max − min)/2.\n" if runs > 1 else "\n")
    return "\n".join(rows) + "\n" + note


def beyond_spread(systems: List[System], lists: List[str], runs: int) -> List[str]:
    """Pairs of rows whose EER ranges over the seeds do not overlap (every seed scored in both)."""
    if runs < 2:
        return ["One seed: no spread was measured, so no difference can be called beyond it."]
    found = []
    for name in lists:
        full = [s for s in systems if len(s.values.get((name, "eer"), [])) == runs]
        for a, b in itertools.combinations(full, 2):
            lo_a, hi_a = (100 * f(a.values[(name, "eer")]) for f in (min, max))
            lo_b, hi_b = (100 * f(b.values[(name, "eer")]) for f in (min, max))
            if hi_a < lo_b or hi_b < lo_a:
                better, worse = (a, b) if hi_a < lo_b else (b, a)
                mb, mw = (100 * statistics.fmean(s.values[(name, "eer")]) for s in (better, worse))
                found.append(f"`{better.name}` < `{worse.name}` ({mb:.3f} vs {mw:.3f}, Δ {mw - mb:.3f})"
                             + (f" on {name}" if len(lists) > 1 else ""))
    head = f"Differences beyond the spread (EER ranges over the {runs} seeds do not overlap): "
    return [head + ("; ".join(found) + "; every other pair overlaps." if found else "none; every pair overlaps.")]


def bar_figure(systems: List[System], lists: List[str], runs: int):
    """Bar chart of EER per system (one group per trial list), values on the bars; with several
    runs the bars are means and the error bars the seed range (one run: no error bars)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5, 1.1 * len(systems) * len(lists)), 3.8))
    ax = fig.subplots()
    width = 0.8 / len(lists)
    for j, name in enumerate(lists):
        means, errs = [], [[], []]
        for s in systems:
            v = [100 * x for x in s.values.get((name, "eer"), [float("nan")])]
            m = statistics.fmean(v)
            means.append(m)
            errs[0].append(m - min(v))
            errs[1].append(max(v) - m)
        xs = [i + (j - (len(lists) - 1) / 2) * width for i in range(len(systems))]
        bars = ax.bar(xs, means, width, yerr=errs if runs > 1 else None, capsize=3 if runs > 1 else 0, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize="small", padding=2)
    ax.set_xticks(range(len(systems)), [s.name for s in systems], rotation=30, ha="right")
    ax.set_ylabel("EER (%)")
    spread = f"mean over {runs} runs, error bars: min–max" if runs > 1 else "one run"
    ax.set_title(f"EER per system ({spread})")
    ax.margins(y=0.15)  # room for the value labels
    if len(lists) > 1:
        ax.legend(title="trial list")
    fig.tight_layout()
    return fig


def plot(systems: List[System], lists: List[str], png: PathLike, runs: Union[int, None] = None) -> None:
    """Write `bar_figure` to `png`; `runs` defaults to the most values of any cell."""
    runs = runs or max((len(v) for s in systems for v in s.values.values()), default=1)
    with atomic_path(png) as tmp:
        bar_figure(systems, lists, runs).savefig(tmp, dpi=120, format="png")


def det_curves(root: Path, systems: List[System], name: str) -> Dict[str, tuple]:
    """`system → (scores, labels)` of trial list `name` in one root, from the files `trkd score` wrote."""
    from trkd.data.trials import read_trials
    from trkd.scoring.score_files import read_scores, scores_for_trials

    curves = {}
    for s in systems:
        metrics = root / s.name / "scores" / f"{name}.metrics.json"
        if not metrics.is_file():
            continue
        result = json.loads(metrics.read_text())
        scores, trials = Path(result["outputs"].get("scores", "")), Path(result["trials"])
        if not (scores.is_file() and trials.is_file()):
            continue
        try:
            tr = read_trials(trials)
            values, found = scores_for_trials(tr, read_scores(scores))
        except InputError:  # not a trial list + score file pair (e.g. compute-eer input): no curve
            continue
        labels = tr.labels[found]
        if 0 < int(labels.sum()) < len(labels):  # a DET curve needs both kinds of trial
            curves[s.name] = (values[found], labels)
    return curves


def default_out(roots: Sequence[PathLike]) -> Path:
    """RESULTS.md in the experiment folder (several: their common parent, e.g. exp/ of exp/seed*)."""
    import os

    paths = [Path(r).resolve() for r in roots]
    base = paths[0] if len(paths) == 1 else Path(os.path.commonpath(paths))
    return base / "RESULTS.md"


def in_order(systems: List[System], names: Sequence[str]) -> List[System]:
    """`names` first, in that order (a recipe's teacher, then its methods); the others after."""
    rank = {name: i for i, name in enumerate(names)}
    return sorted(systems, key=lambda s: rank.get(s.name, len(rank)))


def write_results(roots: Sequence[PathLike], out: Union[PathLike, None] = None, png: Union[PathLike, None] = None,
                  order: Sequence[str] = ()) -> str:
    """Collect, write the Markdown table to `out` (default: `default_out`), the bar chart to `png`
    (default OUT with .png) and one DET plot of every system per trial list (OUT.<list>.det.png, the
    first root's scores); return the table. With several roots the table ends with the differences
    that exceed the seed spread; systems without scores are named under it."""
    from trkd.scoring.det import det_title, plot_det

    out = Path(out) if out is not None else default_out(roots)
    systems, lists = collect(roots)
    systems = in_order(systems, order)
    table = markdown(systems, lists, len(roots))
    if len(roots) > 1:
        table += "\n".join(beyond_spread(systems, lists, len(roots))) + "\n"
    missing = unscored(roots, systems)
    if missing:
        table += f"\nNo scores yet (not in the table): {', '.join(f'`{m}`' for m in missing)}.\n"
    write_text_atomic(out, table)
    plot(systems, lists, png or out.with_suffix(".png"), len(roots))
    for name in lists:
        curves = det_curves(Path(roots[0]), systems, name)
        if curves:
            plot_det(out.with_suffix(f".{name}.det.png"), curves, title=det_title(name, Path(roots[0]).name))
    return table
