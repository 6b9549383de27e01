"""Has a training run converged? Per-epoch EER records (`EXP/epochs_eer.jsonl`) and plateau tests.

A record is one epoch checkpoint scored on a trial list: `{"epoch", "eer", "mindcf_p0_01",
"mindcf_p0_05", "checkpoint", "checkpoint_id", "trials"}` with `eer` a fraction, as in
`<trials>.metrics.json`. The criteria of the paper's regime (converged teacher and student): a teacher has
plateaued when its EER moves less than `POINTS` percentage points over its last `POINTS_EPOCHS`
epochs; a student when it moves less than `RELATIVE` (a fraction of the EER) over its last
`RELATIVE_EPOCHS`; distilling is worth it when the student alone is `RATIO` times the teacher's EER.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.atomic import write_text_atomic

RECORDS_NAME = "epochs_eer.jsonl"
POINTS, POINTS_EPOCHS = 0.2, 3        # teacher: EER spread < 0.2 points over its last 3 epochs
RELATIVE, RELATIVE_EPOCHS = 0.05, 2   # student: spread < 5 % of the EER over its last 2 epochs
RATIO = 1.3                           # no-KD student EER >= 1.3 x the teacher's
WINDOW = max(POINTS_EPOCHS, RELATIVE_EPOCHS)  # the newest epochs both tests need scored
METRICS = ("eer", "mindcf_p0_01", "mindcf_p0_05")


def records_path(exp: PathLike) -> Path:
    return Path(exp) / RECORDS_NAME


def read_records(path: PathLike) -> List[Dict]:
    """The records of a jsonl file (none if it does not exist), sorted by epoch; a bad line is an
    InputError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        return []
    records = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            records[int(rec["epoch"])] = rec
            for key in METRICS:
                float(rec[key])
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(path, f"not an epoch record ({type(err).__name__}: {err})", n) from None
    return [records[e] for e in sorted(records)]


def write_records(path: PathLike, records: Sequence[Dict]) -> None:
    """All records, one json line each by epoch, replacing the file whole (temp + rename)."""
    ordered = sorted(records, key=lambda r: int(r["epoch"]))
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered))


@dataclass
class Change:
    """How much the EER moved over a window of consecutive epochs, tested strictly against
    `threshold` (points, or with `relative` a fraction of the window's first EER); `ok` is None
    when an epoch of the window is not scored or there are too few."""

    first: int                 # the window's epochs, first .. last
    last: int
    threshold: float
    relative: bool
    spread: Optional[float] = None   # max - min of the EER (fraction)
    rel: Optional[float] = None      # spread / the window's first EER
    ok: Optional[bool] = None
    missing: Sequence[int] = ()

    def line(self) -> str:
        test = f"< {100 * self.threshold:g} % relative" if self.relative else f"< {self.threshold:g} points"
        head = f"plateau {test} over epochs {self.first}-{self.last}"
        if self.ok is None:
            why = f"epochs {', '.join(map(str, self.missing))} not scored" if self.missing else "too few epochs"
            return f"{head}: unknown ({why})"
        value = f"{100 * self.rel:.2f} % relative" if self.relative else f"{100 * self.spread:.3f} points"
        return f"{head}: {value}: {'yes' if self.ok else 'no'}"


def change(records: Sequence[Dict], epochs: int, threshold: float, relative: bool) -> Change:
    """The EER change over the last `epochs` consecutive epochs of `records` (see Change)."""
    by_epoch = {int(r["epoch"]): float(r["eer"]) for r in records}
    last = max(by_epoch, default=0)
    window = list(range(max(last - epochs + 1, 1), last + 1))
    missing = [e for e in window if e not in by_epoch]
    out = Change(window[0] if window else 0, last, threshold, relative, missing=missing)
    if len(window) < epochs or missing:
        return out
    eers = [by_epoch[e] for e in window]
    out.spread = max(eers) - min(eers)
    out.rel = out.spread / eers[0] if eers[0] > 0 else (0.0 if out.spread == 0 else float("inf"))
    out.ok = out.rel < threshold if relative else 100 * out.spread < threshold
    return out


@dataclass
class Verdict:
    """Both plateau tests of one run's records: the teacher's (points) and the student's (relative)."""

    points: Change
    relative: Change

    def lines(self) -> List[str]:
        return [self.points.line(), self.relative.line()]


def plateau(records: Sequence[Dict], points: float = POINTS, points_epochs: int = POINTS_EPOCHS,
            relative: float = RELATIVE, relative_epochs: int = RELATIVE_EPOCHS) -> Verdict:
    """Both plateau tests on `records`, the default thresholds unless given."""
    return Verdict(change(records, points_epochs, points, False), change(records, relative_epochs, relative, True))


def table(records: Sequence[Dict]) -> List[str]:
    """One line per epoch: EER in %, both minDCFs."""
    lines = ["epoch    EER %  minDCF 0.01  minDCF 0.05"]
    for r in records:
        lines.append(f"{int(r['epoch']):5d}  {100 * float(r['eer']):7.3f}  {float(r['mindcf_p0_01']):11.4f}"
                     f"  {float(r['mindcf_p0_05']):11.4f}")
    return lines


def regime(teacher: Sequence[Dict], student: Sequence[Dict], points: float = POINTS,
           relative: float = RELATIVE, ratio: float = RATIO) -> List[str]:
    """The converged regime's three tests of a teacher and its no-KD student, one line each, then the
    conclusion; the EERs compared are those of each run's last scored epoch."""
    if not teacher or not student:
        raise InputError(None, "both runs need scored epochs (trkd score-epochs) to be compared")
    t_ok = plateau(teacher, points=points).points
    s_ok = plateau(student, relative=relative).relative
    t_eer, s_eer = float(teacher[-1]["eer"]), float(student[-1]["eer"])
    r = s_eer / t_eer if t_eer > 0 else float("inf")
    done = bool(t_ok.ok) and bool(s_ok.ok) and r >= ratio
    return [f"teacher: {t_ok.line()}", f"student: {s_ok.line()}",
            f"student / teacher EER (epochs {student[-1]['epoch']}, {teacher[-1]['epoch']}): "
            f"{100 * s_eer:.3f} / {100 * t_eer:.3f} % = {r:.2f} (>= {ratio:g}: {'yes' if r >= ratio else 'no'})",
            f"converged regime: {'yes' if done else 'no'}"]
