"""`EXP/metrics.jsonl`: one JSON record per log interval, the machine-readable twin of train.log
(and `EXP/events.jsonl`, the run's starts, epochs and stop, below).

Each record holds `iteration` (global steps done), `epoch`, `iter` (within the epoch),
`iters_per_epoch`, `steps` (how many it covers), `lr`, `margin` and the means over those steps and
the DDP ranks of `loss`, `acc` and the objective's parts (`aam`, `kd_weight`, `tau`, `f_size` = |F|,
...). train.log's progress line of an interval prints the same record (`trainer.record_due` says
where records close). Curves and study reports read
this file; nothing parses log lines. A resume drops the records after its checkpoint's step, so a
resumed run's file equals an uninterrupted run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.atomic import write_text_atomic

METRICS_NAME = "metrics.jsonl"


def metrics_path(exp: PathLike) -> Path:
    return Path(exp) / METRICS_NAME


def read_metrics(path: PathLike) -> List[Dict[str, float]]:
    """Every record of a metrics file ([] when there is none)."""
    return _read_records(Path(path), "iteration", "a metrics record")


def _read_records(path: Path, key: str, what: str) -> List[Dict]:
    """The JSON records of an appended file, each with `key`; a final line cut short by a killed
    writer is dropped, any other bad line is an InputError naming it."""
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.split("\n")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # no newline after it: the write was interrupted
                break
            raise InputError(path, "not a JSON record", n) from None
        if not isinstance(rec, dict) or key not in rec:
            raise InputError(path, f"{what} needs an '{key}' key", n)
        out.append(rec)
    return out


class MetricsWriter:
    """Appends records, flushed one by one, so a killed run keeps what it logged."""

    def __init__(self, path: PathLike, keep_until: int = 0):
        self.path = Path(path)
        kept = [r for r in read_metrics(self.path) if r["iteration"] <= keep_until]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a")

    def write(self, record: Dict[str, float]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# `EXP/events.jsonl`: what happened to the run rather than what it learnt, one record per event:
# {"event": "start" | "resume", "epoch": first epoch to train, "time": unix seconds},
# {"event": "epoch", "epoch": N, "seconds": wall seconds of its steps and checkpoint},
# {"event": "diverged", "epoch": N, "iter": i, "iters_per_epoch": n, "iteration": global step,
#  "loss": the non-finite value as text}. Wall time is not reproducible, so it lives here and
# metrics.jsonl stays equal between a resumed run and an uninterrupted one.
EVENTS_NAME = "events.jsonl"


def events_path(exp: PathLike) -> Path:
    return Path(exp) / EVENTS_NAME


def append_event(exp: PathLike, record: Dict[str, object]) -> None:
    with open(events_path(exp), "a") as f:
        f.write(json.dumps(record) + "\n")


def read_events(exp: PathLike) -> List[Dict[str, object]]:
    """Every event of a run ([] when it has none: a run from before this file, or not started)."""
    return _read_records(events_path(exp), "event", "an event record")


def train_seconds(exp: PathLike) -> float:
    """Wall seconds of the epochs that finished (an interruption's idle time left out; an epoch
    trained again after `--force` counts once, as its last run)."""
    per_epoch = {r["epoch"]: r["seconds"] for r in read_events(exp) if r["event"] == "epoch"}
    return float(sum(per_epoch.values()))


def diverged_epoch(exp: PathLike) -> Optional[int]:
    """The epoch at which the trainer's non-finite-loss guard stopped the run's last start, or None."""
    last = None
    for r in read_events(exp):
        if r["event"] in ("start", "resume"):
            last = None
        elif r["event"] == "diverged":
            last = int(r["epoch"])
    return last
