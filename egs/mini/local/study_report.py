#!/usr/bin/env python3
"""The table of a distillation study (local/study.sh): `trkd results` over the seed folders, in the
study's row order, with the rows that diverged, each row's overrides, which EER differences exceed
the seed spread, and the loss / τ / |F| curves of chosen rows read from their metrics.jsonl (one
record per log interval, written by the trainer; a run that diverged keeps what it logged).

    study_report.py --rows ROWS.tsv --out RESULTS.md [--teacher DIR] [--curves "ROW ROW"]
                    [--common "KEY=VALUE ..."] SEED_ROOT...
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from trkd.errors import InputError
from trkd.train_metrics import diverged_epoch, metrics_path, read_metrics, train_seconds
from trkd.results import System, beyond_spread, collect, markdown, plot
from trkd.utils.atomic import atomic_path, write_text_atomic

CURVE_KEYS = {"loss": "loss", "aam": "aam", "tau": "tau", "|F|": "f_size"}  # panel -> metrics.jsonl key


def read_rows(path: Path) -> List[Tuple[str, str, List[str]]]:
    """rows.tsv: name, method, then the --set overrides, tab-separated."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0]:
            raise InputError(path, "expected NAME<TAB>METHOD[<TAB>OVERRIDE...]", n)
        rows.append((fields[0], fields[1], [f for f in fields[2:] if f]))
    return rows


def divergence(exp: Path) -> Optional[int]:
    """The epoch at which the trainer's NaN guard stopped this run, None if it did not."""
    return diverged_epoch(exp)


def train_minutes(exp: Path) -> Optional[float]:
    """Wall minutes of the epochs that finished (the run's events.jsonl; None before any)."""
    seconds = train_seconds(exp)
    return seconds / 60 if seconds else None


def wall_note(rows, roots: Sequence[Path], seeds: Sequence[str]) -> Optional[str]:
    """One sentence: each trained row's minutes per seed."""
    cells = []
    for name, _, _ in rows:
        mins = [train_minutes(root / name) for root in roots]
        if any(m is not None for m in mins):
            cells.append(f"{name} " + " / ".join("–" if m is None else f"{m:.1f}" for m in mins))
    if not cells:
        return None
    return (f"Training wall time, minutes per student (seed{'s' if len(seeds) > 1 else ''} {' / '.join(seeds)}; "
            "the finished epochs, from events.jsonl): " + "; ".join(cells) + ".")


def outcome(name: str, roots: Sequence[Path], seeds: Sequence[str]) -> Dict[str, int]:
    """{seed: epoch} of the seeds whose run of this row diverged."""
    return {s: e for s, root in zip(seeds, roots) if (e := divergence(root / name)) is not None}


def table(rows, roots: List[Path], seeds: List[str]) -> Tuple[str, List[System], List[str]]:
    """The Markdown table in the rows' order; a row that diverged on every seed says so in its cells."""
    try:
        found, lists = collect(roots)
    except InputError:  # every row diverged (or none was scored yet)
        found, lists = [], ["trials"]
    by_name = {s.name: s for s in found}
    systems, lines_for = [], {}
    for name, _, _ in rows:
        div = outcome(name, roots, seeds)
        if name in by_name:
            s = by_name[name]
            if div:
                s.name = f"{name} (" + ", ".join(f"seed {k} diverged at epoch {e}" for k, e in div.items()) + ")"
            systems.append(s)
        else:
            what = (f"diverged at epoch {', '.join(sorted(set(map(str, div.values()))))}"
                    + (f" (seed{'s' if len(div) > 1 else ''} {', '.join(div)})" if len(roots) > 1 else "")
                    if div else "not run")
            cells = [name, "–", "–"] + [c for _ in lists for c in (what, "–", "–")]
            lines_for[len(systems)] = "| " + " | ".join(cells) + " |"
            systems.append(System(name))
    text = markdown(systems, lists, len(roots)).split("\n")
    for i, line in lines_for.items():
        text[2 + i] = line
    return "\n".join(text), [s for s in systems if s.values], lists


def read_curve(exp: Path) -> Dict[str, List[Tuple[int, float]]]:
    """Per logged interval (global iteration): the interval means of loss and AAM, τ and |F|."""
    records = read_metrics(metrics_path(exp))
    return {panel: [(r["iteration"], r[key]) for r in records if key in r] for panel, key in CURVE_KEYS.items()}


def plot_curves(names: Sequence[str], roots: List[Path], seeds: List[str], png: Path) -> None:
    """One panel per quantity, one line per (row, seed); a cross where a run diverged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = tuple(CURVE_KEYS)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 2.8))
    for (name, color), (seed, root) in itertools.product(zip(names, plt.cm.tab10.colors), zip(seeds, roots)):
        curve = read_curve(root / name)
        for ax, key in zip(axes, keys):
            pts = curve[key]
            if pts:
                ax.plot(*zip(*pts), color=color, lw=1, label=name if seed == seeds[0] else None)
                if divergence(root / name) is not None:
                    ax.plot(*pts[-1], "x", color=color, ms=8)
    for ax, key in zip(axes, keys):
        ax.set_title(key, fontsize=9)
        if key == "|F|":
            ax.set_yscale("log")  # from every non-target (τ = 1) down to a handful
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def report(rows_path: Path, roots: List[Path], out: Path, teacher: Optional[Path], curves: List[str],
           common: Sequence[str] = ()) -> str:
    """Write OUT (Markdown), OUT's .png (EER bars) and OUT's curves_<rows>.png; return the text."""
    rows = read_rows(rows_path)
    seeds = [r.name[len("seed"):] if r.name.startswith("seed") else r.name for r in roots]
    text, scored, lists = table(rows, roots, seeds)
    notes = [f"Students: seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)} (`trkd distill --seed`); the "
             f"teacher{f' `{teacher}`' if teacher else ''} and its logit dump are shared by every run, so the "
             "spread is the students' alone."]
    t_eer = [(name, json.loads(m.read_text())["metrics"]["eer"]) for name in lists
             if teacher and (m := teacher / "scores" / f"{name}.metrics.json").is_file()]
    if t_eer:
        notes.append("Teacher EER " + ", ".join(f"{100 * e:.3f} %" + (f" ({n})" if len(lists) > 1 else "")
                                               for n, e in t_eer) + ".")
    notes += beyond_spread(scored, lists, len(roots))
    wall = wall_note(rows, roots, seeds)
    if wall:
        notes.append(wall)
    if common:
        notes.append("Every row also: " + " ".join(f"`--set {x}`" for x in common) + ".")
    legend = ["", "| row | --method | --set |", "|---|---|---|"]
    legend += [f"| {n} | {m} | {'<br>'.join(f'`{x}`' for x in sets) or '(config as is)'} |" for n, m, sets in rows]
    body = text.rstrip("\n") + "\n\n" + "\n".join(notes) + "\n" + "\n".join(legend) + "\n"
    if scored:
        plot(scored, lists, out.with_suffix(".png"))
    present = [c for c in curves if c in {n for n, _, _ in rows} and any((r / c).is_dir() for r in roots)]
    if present:
        png = out.with_name(f"curves_{'_'.join(present)}.png")
        plot_curves(present, roots, seeds, png)
        body += (f"\nTraining curves of {', '.join(present)} (per logged iteration, every seed; × marks a "
                 f"diverged run): `{png.name}`; each run's own: `seed*/<row>/train_curves.png`.\n")
    write_text_atomic(out, body)
    return body


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("roots", nargs="+", type=Path, help="one folder per seed (seed<S>/, a folder per row)")
    p.add_argument("--rows", type=Path, required=True, help="rows.tsv written by study.sh")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--teacher", type=Path, help="the shared teacher's exp folder")
    p.add_argument("--curves", default="", help="rows whose curves to draw (space-separated)")
    p.add_argument("--common", default="", help="the --set overrides of every row (space-separated)")
    a = p.parse_args(argv)
    try:
        print(report(a.rows, a.roots, a.out, a.teacher, a.curves.split(), a.common.split()), end="")
    except InputError as err:
        sys.exit(f"study_report.py: error: {err}")


if __name__ == "__main__":
    main()
