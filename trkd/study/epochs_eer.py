"""EER per epoch of a model dir: each `models/model_<epoch>.pt` extracted and scored as `trkd extract`
+ `trkd score` would, one record per epoch in `EXP/epochs_eer.jsonl` (trkd/study/convergence.py).

Resumable: an epoch already recorded with the same checkpoint file and trial list is skipped, and
the jsonl is rewritten whole after each epoch, so a rerun (while training goes on, or after an
interrupt) only scores what is new and never loses what was there. Every checkpoint to score is
opened before anything is written, so a bad one stops the run with the jsonl untouched.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from trkd import checkpoint as ckpt
from trkd.study.convergence import METRICS, WINDOW, read_records, records_path, write_records
from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.stamp import file_id

WORK_NAME = "epochs_eer"   # EXP/epochs_eer/epoch_<N>/: embeddings and scores of one epoch
PLOT_NAME = "epochs_eer.png"
log = logging.getLogger(__name__)


def select_epochs(saved: List[int], every: int = 1, last: Optional[int] = None,
                  tail: int = WINDOW) -> List[int]:
    """Every `every`-th saved epoch counted back from the newest, plus the newest `tail` (the plateau
    tests' windows), then the last `last` of those."""
    if every < 1 or (last is not None and last < 1):
        raise InputError(None, "--every and --last take a positive number")
    chosen = sorted(set(saved[::-1][::every]) | set(saved[-tail:]))
    return chosen[-last:] if last else chosen


def spans(epochs: List[int]) -> str:
    """`1-3, 5, 7-9` for [1, 2, 3, 5, 7, 8, 9] (ascending)."""
    runs: List[List[int]] = []
    for e in epochs:
        if runs and e == runs[-1][1] + 1:
            runs[-1][1] = e
        else:
            runs.append([e, e])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def epoch_dir(model_dir: Path, epoch: int) -> Path:
    """Where `--keep-embeddings` keeps one epoch's embeddings (`xvector.scp`) and scores."""
    return model_dir / WORK_NAME / f"epoch_{epoch}"


def _record(epoch: int, path: Path, trials: Path, metrics: Dict[str, float]) -> Dict:
    return {"epoch": epoch, **{k: float(metrics[k]) for k in METRICS}, "checkpoint": str(path),
            "checkpoint_id": file_id(path), "trials": str(trials.resolve())}


def score_epochs(model_dir: PathLike, data_dir: PathLike, trials: Optional[PathLike] = None, nj: int = 1,
                 every: int = 1, last: Optional[int] = None, keep_embeddings: bool = False,
                 device: Optional[str] = None, report=print) -> Tuple[List[Dict], List[int]]:
    """Score the chosen epoch checkpoints of MODEL on DATA's trials (default DATA/trials); returns
    all records of `EXP/epochs_eer.jsonl` and the epochs scored by this call. `report` receives one
    line per skip (and per stale record rescored)."""
    from trkd.extract import extract
    from trkd.scoring.evaluate import score_embeddings

    model_dir, data_dir = Path(model_dir), Path(data_dir)
    trials = Path(trials) if trials is not None else data_dir / "trials"
    if not trials.is_file():
        raise InputError(trials, "no such trial list (give --trials)")
    out = records_path(model_dir)
    records = {int(r["epoch"]): r for r in read_records(out)}
    other = [r for r in records.values() if r.get("trials") != str(trials.resolve())]
    if other:
        raise InputError(out, f"epoch {other[0]['epoch']} was scored on {other[0].get('trials')}, not {trials}: "
                              "move this file away to score another trial list")
    saved = ckpt.saved_epochs(model_dir)
    if not saved:
        raise InputError(ckpt.model_dir(model_dir), "holds no model_<epoch>.pt checkpoint")
    todo, skipped = [], []
    for epoch in select_epochs(saved, every, last):
        path = ckpt.epoch_path(model_dir, epoch)
        old = records.get(epoch)
        if old is not None and old.get("checkpoint_id") == file_id(path):
            skipped.append(epoch)
            continue
        if old is not None:
            report(f"epoch {epoch}: {path} changed since it was scored: scoring it again")
        ckpt.load(path)  # a corrupt file stops the run here, before the jsonl is touched
        todo.append((epoch, path))
    if skipped:
        report(f"already scored in {out}, skipped: epoch(s) {spans(skipped)}")
    scored = []
    for epoch, path in todo:
        work = epoch_dir(model_dir, epoch)
        scp = extract(model_dir, data_dir, work, nj, checkpoint=str(path.resolve()), device=device)
        (result,) = score_embeddings([trials], scp=scp, out_dir=work / "scores")
        records[epoch] = _record(epoch, path, trials, result.metrics)
        write_records(out, records.values())
        scored.append(epoch)
        if not keep_embeddings:
            shutil.rmtree(work)
    if not keep_embeddings and (model_dir / WORK_NAME).is_dir() and not any((model_dir / WORK_NAME).iterdir()):
        (model_dir / WORK_NAME).rmdir()
    ordered = [records[e] for e in sorted(records)]
    plot_epochs(ordered, model_dir / PLOT_NAME)
    return ordered, scored


def plot_epochs(records: List[Dict], path: PathLike) -> None:
    """EER (%) and both minDCFs against the epoch, one panel each, as trkd/curves.py draws."""
    from matplotlib.ticker import MaxNLocator

    from trkd.curves import panels, save_png

    if not records:
        return
    epochs = [int(r["epoch"]) for r in records]
    fig, (ax_eer, ax_dcf) = panels(2)
    ax_eer.plot(epochs, [100 * float(r["eer"]) for r in records], marker="o", ms=3, lw=1)
    ax_eer.set_title("EER %", fontsize=9)
    for key, label in (("mindcf_p0_01", "minDCF 0.01"), ("mindcf_p0_05", "minDCF 0.05")):
        ax_dcf.plot(epochs, [float(r[key]) for r in records], marker="o", ms=3, lw=1, label=label)
    ax_dcf.set_title("minDCF", fontsize=9)
    ax_dcf.legend(fontsize=7)
    for ax in (ax_eer, ax_dcf):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    save_png(fig, path)
