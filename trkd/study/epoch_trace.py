"""One run's course epoch by epoch, to see why a run went wrong rather than only that it did: each
scored epoch's EER (`trkd score-epochs --keep-embeddings`), the training's means over that epoch
(accuracy and the objective's terms, from `EXP/metrics.jsonl`) and the shape of the epoch's test
embeddings (trkd/study/embedding_stats.py). Written to `EXP/epochs_trace.jsonl` and drawn in
`EXP/epochs_trace.png`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Mapping

from trkd.curves import FIRST, POSITION, panels, save_png
from trkd.errors import InputError
from trkd.study.convergence import read_records, records_path, write_records
from trkd.study.embedding_stats import embedding_stats
from trkd.study.epochs_eer import epoch_dir
from trkd.train_metrics import metrics_path, read_metrics
from trkd.utils import PathLike

TRACE_NAME = "epochs_trace"
NOT_MEANS = set(POSITION) | {"lr", "margin", "kd_weight"}  # schedules, not measurements
STATS = ("norm", "common", "rank", "cos_same", "cos_diff")


def epoch_means(records: List[Mapping[str, float]]) -> Dict[int, Dict[str, float]]:
    """Per epoch, the mean of each measured quantity over the epoch's log intervals (each record
    already holds its interval's means; intervals are equal but for an epoch's last one)."""
    sums: Dict[int, Dict[str, List[float]]] = {}
    for rec in records:
        row = sums.setdefault(int(rec["epoch"]), {})
        for key, value in rec.items():
            if key not in NOT_MEANS and isinstance(value, (int, float)) and math.isfinite(value):
                row.setdefault(key, []).append(float(value))
    return {e: {k: sum(v) / len(v) for k, v in row.items()} for e, row in sums.items()}


def trace(model_dir: PathLike, utt2spk: Mapping[str, str], source: str = "utt2spk") -> List[Dict]:
    """The trace of MODEL: one row per epoch that `trkd score-epochs --keep-embeddings` scored and
    kept, with `eer`, the training means (`train_<key>`) and the embedding statistics."""
    from trkd.scoring.embeddings import load_embeddings

    model_dir = Path(model_dir)
    scored = read_records(records_path(model_dir))
    if not scored:
        raise InputError(records_path(model_dir), "no epoch records: run trkd score-epochs --keep-embeddings first")
    means = epoch_means(read_metrics(metrics_path(model_dir)))
    rows = []
    for rec in scored:
        epoch = int(rec["epoch"])
        scp = epoch_dir(model_dir, epoch) / "xvector.scp"
        if not scp.is_file():
            raise InputError(scp, f"epoch {epoch}'s embeddings were not kept: rerun trkd score-epochs "
                                  "--keep-embeddings after moving epochs_eer.jsonl away")
        stats = embedding_stats(load_embeddings(scp), utt2spk, source)
        rows.append({"epoch": epoch, "eer": float(rec["eer"]),
                     **{f"train_{k}": v for k, v in sorted(means.get(epoch, {}).items())},
                     **{k: stats[k] for k in STATS}})
    write_records(model_dir / f"{TRACE_NAME}.jsonl", rows)
    plot_trace(rows, model_dir / f"{TRACE_NAME}.png")
    return rows


def _columns(rows: List[Dict]) -> List[str]:
    """EER, the training means (accuracy and loss first, as in the training curves), the statistics."""
    train = {k for r in rows for k in r if k.startswith("train_")}
    first = [f"train_{k}" for k in FIRST if f"train_{k}" in train]
    return ["eer"] + first + sorted(train - set(first)) + list(STATS)


def table(rows: List[Dict]) -> List[str]:
    """The trace as aligned text lines: EER %, every training mean, then the embedding statistics."""
    keys = _columns(rows)
    names = ["epoch", "EER%"] + [k[len("train_"):] if k.startswith("train_") else k for k in keys[1:]]
    lines = [[str(r["epoch"])] + [_cell(k, r.get(k)) for k in keys] for r in rows]
    width = [max(len(x) for x in col) for col in zip(names, *lines)]
    return ["  ".join(x.rjust(w) for x, w in zip(line, width)) for line in [names] + lines]


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}" if key == "eer" else f"{value:.4g}"


def plot_trace(rows: List[Dict], path: PathLike) -> None:
    """One panel per column of the trace against the epoch."""
    keys = _columns(rows)
    fig, axes = panels(len(keys), 3.0, 2.4)
    for ax, key in zip(axes, keys):
        pts = [(r["epoch"], r[key] * (100 if key == "eer" else 1)) for r in rows if r.get(key) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1)
        ax.set_title("EER %" if key == "eer" else key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    save_png(fig, path)
