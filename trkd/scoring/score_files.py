"""Score files `enroll test score` (one trial a line), as Kaldi and WeSpeaker write them.

A fourth field `target|nontarget`, as WeSpeaker adds, is accepted and ignored on read: labels
always come from the trial list, matched by the (enroll, test) pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import numpy as np

from trkd.data.kaldi_dir import iter_table
from trkd.data.trials import Trials
from trkd.errors import InputError
from trkd.utils.atomic import atomic_path

PathLike = Union[str, Path]


def write_scores(path: PathLike, enroll: Sequence[str], test: Sequence[str], scores: np.ndarray) -> None:
    """Write `enroll test score` lines in trial order, atomically (6 decimals, as cosine needs)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"{e} {t} {s:.6f}\n" for e, t, s in zip(enroll, test, scores.tolist()))


def read_scores(path: PathLike) -> Dict[Tuple[str, str], float]:
    """`(enroll, test) → score`; a repeated pair or a score that is not a number is an error."""
    out: Dict[Tuple[str, str], float] = {}
    for n, fields in iter_table(path, min_fields=3, max_fields=None):
        if len(fields) > 4:
            raise InputError(path, f"expected 'enroll test score', got {len(fields)} fields", n)
        try:
            score = float(fields[2])
        except ValueError:
            raise InputError(path, f"score is not a number: {fields[2]!r}", n) from None
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
    return scores, ~np.isnan(scores)
