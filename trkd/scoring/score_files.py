"""Score files `enroll test score` (one trial a line), as Kaldi and WeSpeaker write them.

A fourth field `target|nontarget`, as WeSpeaker adds, is accepted and ignored on read: labels
always come from the trial list, matched by the (enroll, test) pair as written or else in Kaldi
form (`voxceleb_utt_id`). Kaldi's `compute-eer` input, `score target|nontarget` per line, carries
its own labels and needs no trial list.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from trkd.data.kaldi_dir import iter_table
from trkd.data.trials import KALDI_LABELS, Trials, voxceleb_utt_id
from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.atomic import atomic_path



def write_scores(path: PathLike, enroll: Sequence[str], test: Sequence[str], scores: np.ndarray) -> None:
    """Write `enroll test score` lines in trial order, atomically (6 decimals, as cosine needs)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"{e} {t} {s:.6f}\n" for e, t, s in zip(enroll, test, scores.tolist()))


def _score(path: PathLike, text: str, line: int) -> float:
    try:
        score = float(text)
    except ValueError:
        raise InputError(path, f"score is not a number: {text!r}", line) from None
    if not np.isfinite(score):
        raise InputError(path, f"score is not finite: {text!r}", line)
    return score


def is_labelled(path: PathLike) -> bool:
    """Whether a score file is in `compute-eer` form (`score target|nontarget`), by its first line."""
    for _, fields in iter_table(path, min_fields=1, max_fields=None):
        return len(fields) == 2 and fields[1] in KALDI_LABELS
    raise InputError(path, "no scores")


def read_labelled_scores(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Scores and labels (1 target, 0 nontarget) of a `compute-eer` input file."""
    scores, labels = [], []
    for n, fields in iter_table(path, min_fields=2, max_fields=None):
        if len(fields) != 2 or fields[1] not in KALDI_LABELS:
            raise InputError(path, f"expected 'score target|nontarget' (compute-eer form), got {' '.join(fields)!r}", n)
        scores.append(_score(path, fields[0], n))
        labels.append(KALDI_LABELS[fields[1]])
    return np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int8)


def read_scores(path: PathLike) -> Dict[Tuple[str, str], float]:
    """`(enroll, test) → score`; a repeated pair or a score that is not a finite number is an error."""
    out: Dict[Tuple[str, str], float] = {}
    for n, fields in iter_table(path, min_fields=3, max_fields=None):
        if len(fields) > 4:
            raise InputError(path, f"expected 'enroll test score', got {len(fields)} fields", n)
        score = _score(path, fields[2], n)
        pair = (fields[0], fields[1])
        if pair in out:
            raise InputError(path, f"duplicate trial {fields[0]} {fields[1]}", n)
        out[pair] = score
    return out


def scores_for_trials(trials: Trials, table: Dict[Tuple[str, str], float]) -> Tuple[np.ndarray, np.ndarray]:
    """Score of each trial (NaN where the file lacks it) and the mask of trials found."""
    get = table.get
    nan = float("nan")
    scores = np.fromiter((get(p, nan) for p in zip(trials.enroll, trials.test)), dtype=np.float64, count=len(trials))
    missing = np.flatnonzero(np.isnan(scores))
    if missing.size:  # ids written in the other VoxCeleb form: match both sides' Kaldi forms
        kaldi = {(voxceleb_utt_id(e), voxceleb_utt_id(t)): v for (e, t), v in table.items()}
        for i in missing.tolist():
            scores[i] = kaldi.get((voxceleb_utt_id(trials.enroll[i]), voxceleb_utt_id(trials.test[i])), nan)
    return scores, ~np.isnan(scores)
