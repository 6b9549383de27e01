"""Score trial lists (from embeddings or from score files) and write scores, metrics and DET plots.

For each trial list `T` the outputs are `OUT/<name>.score` (`enroll test score`, embeddings only),
`OUT/<name>.metrics.json` and `OUT/<name>.det.png`, where `<name>` is `trials_name(T)`. Scoring
score files writes only where an OUT is given.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from trkd.data.kaldi_dir import read_list_table
from trkd.data.tables import table_path
from trkd.data.trials import Trials, read_trials, trials_name
from trkd.errors import InputError
from trkd.scoring.asnorm import DEFAULT_TOP_N, as_norm
from trkd.scoring.cosine import cosine_scores, trial_rows
from trkd.scoring.det import det_title, plot_det, system_of
from trkd.scoring.embeddings import EmbeddingTable, check_same_dim, load_embeddings, prepare, speaker_average
from trkd.scoring.metrics import compute_metrics, mindcf_key
from trkd.scoring.score_files import is_labelled, read_labelled_scores, read_scores, scores_for_trials, write_scores
from trkd.utils import PathLike
from trkd.utils.atomic import staged, write_text_atomic
from trkd.utils.lock import folder_lock

P_TARGETS = (0.01, 0.05)
log = logging.getLogger(__name__)


@dataclass
class ListResult:
    """What scoring one trial list produced; `to_json` is the `<name>.metrics.json` a recipe collects."""

    name: str
    trials: str
    num_trials: int
    num_target: int
    num_nontarget: int
    num_skipped: int
    metrics: Dict[str, float]
    outputs: Dict[str, str]
    setup: Dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        """The printed summary: EER in %, minDCF at each prior."""
        dcfs = "  ".join(f"minDCF({p:g}) {self.metrics[mindcf_key(p)]:.4f}" for p in P_TARGETS)
        skipped = f", {self.num_skipped} skipped" if self.num_skipped else ""
        return f"{self.name}: EER {100 * self.metrics['eer']:.3f}%  {dcfs}  ({self.num_trials} trials{skipped})"


def _unique_names(trials: Sequence[PathLike]) -> List[str]:
    names: List[str] = []
    for path in trials:
        name = trials_name(path)
        if name in names:
            raise InputError(path, f"another trial list is also named {name!r}: outputs would collide")
        names.append(name)
    return names


def _drop_missing(trials: Trials, found: np.ndarray, path: PathLike, what: str, first: str, skip: bool) -> Trials:
    """Keep the trials in `found`; without `skip`, any absent one is an error naming the count and the first."""
    n_missing = int((~found).sum())
    if n_missing == 0:
        return trials
    if not skip:
        raise InputError(path, f"{n_missing} of {len(trials)} trials have no {what}; the first is {first!r} (use --skip-missing to skip them)")
    log.warning("%s: skipping %d of %d trials without %s (first: %r)", path, n_missing, len(trials), what, first)
    kept = trials.subset(found)
    if int(kept.labels.sum()) in (0, len(kept)):
        raise InputError(path, f"after skipping {n_missing} trials, targets and non-targets are no longer both present")
    return kept


def _both_labels(trials: Trials, path: PathLike) -> Trials:
    n_target = int(trials.labels.sum())
    if n_target in (0, len(trials)):
        raise InputError(path, f"{n_target} target and {len(trials) - n_target} nontarget trials: EER and minDCF "
                               "need both")
    return trials


def _result(name: str, path: PathLike, trials: Trials, scores: np.ndarray, skipped: int,
            out_dir: Optional[Path], outputs: Dict[str, str], setup: Dict[str, object]) -> ListResult:
    """The metrics of one list, and where its outputs go (`out_dir` None: none, metrics only);
    nothing is written yet."""
    labels = trials.labels
    metrics = compute_metrics(scores, labels, P_TARGETS)
    if out_dir is not None:
        outputs = dict(outputs, det=str(out_dir / f"{name}.det.png"), metrics=str(out_dir / f"{name}.metrics.json"))
    n_target = int(labels.sum())
    return ListResult(name, str(path), len(labels), n_target, len(labels) - n_target, skipped, metrics, outputs, setup)


def _write(done: Sequence[Tuple[ListResult, Trials, np.ndarray, bool]]) -> List[ListResult]:
    """Write every list's outputs (its score file when `True`, the DET plot, the metrics) under
    temporary names, then rename them all: the score, metrics and plot files of a run are replaced
    together or not at all, while each output folder is locked."""
    written = [d for d in done if "metrics" in d[0].outputs]   # a metrics-only look writes nothing
    folders = sorted({Path(r.outputs["metrics"]).parent for r, *_ in written})
    with contextlib.ExitStack() as stack:
        for folder in folders:
            stack.enter_context(folder_lock(folder, "trkd score"))
        with staged() as group:
            for result, trials, scores, own_scores in written:
                if own_scores:
                    write_scores(group.path(result.outputs["scores"]), trials.enroll, trials.test, scores)
                out_dir = Path(result.outputs["metrics"]).parent
                plot_det(group.path(result.outputs["det"]), {system_of(out_dir): (scores, trials.labels)},
                         title=det_title(result.trials))
                write_text_atomic(group.path(result.outputs["metrics"]), json.dumps(asdict(result), indent=2) + "\n")
    return [r for r, *_ in done]


def _first_absent(trials: Trials, e_rows: np.ndarray, t_rows: np.ndarray) -> str:
    i = int(np.flatnonzero((e_rows < 0) | (t_rows < 0))[0])
    return trials.enroll[i] if e_rows[i] < 0 else trials.test[i]


def score_embeddings(
    trials: Sequence[PathLike],
    scp: Optional[PathLike] = None,
    enroll_scp: Optional[PathLike] = None,
    test_scp: Optional[PathLike] = None,
    spk2utt: Optional[PathLike] = None,
    cohort_scp: Optional[PathLike] = None,
    cohort_spk2utt: Optional[PathLike] = None,
    mean_sub: bool = True,
    asnorm: bool = False,
    asnorm_top_n: int = DEFAULT_TOP_N,
    out_dir: Optional[PathLike] = None,
    skip_missing: bool = False,
) -> List[ListResult]:
    """Cosine-score trial lists on embeddings, with optional cohort mean subtraction and AS-norm."""
    one_scp = scp is not None and enroll_scp is None and test_scp is None
    two_scps = scp is None and enroll_scp is not None and test_scp is not None
    if not (one_scp or two_scps):
        raise InputError(None, "give either --scp, or both --enroll-scp and --test-scp")
    if asnorm and cohort_scp is None:
        raise InputError(None, "--asnorm needs a cohort (--cohort-scp)")
    if not trials:
        raise InputError(None, "give at least one --trials")
    names = _unique_names(trials)
    out = Path(out_dir) if out_dir is not None else table_path(test_scp or scp).parent / "scores"

    # A file named twice (the cohort is often the scored set) is read, and prepared, once.
    raw: Dict[str, EmbeddingTable] = {}
    for spec in (cohort_scp, test_scp or scp, enroll_scp):
        if spec is not None and str(spec) not in raw:
            raw[str(spec)] = load_embeddings(spec)
    check_same_dim([raw[str(s)] for s in (enroll_scp or scp, test_scp or scp, cohort_scp) if s is not None])
    mean = None
    if cohort_scp is not None and mean_sub:
        mean = raw[str(cohort_scp)].matrix.mean(axis=0, dtype=np.float64).astype(np.float32)
    prepared: Dict[str, EmbeddingTable] = {}

    def side(spec: PathLike) -> EmbeddingTable:
        if str(spec) not in prepared:
            prepared[str(spec)] = prepare(raw[str(spec)], mean)
        return prepared[str(spec)]

    test = side(test_scp or scp)
    enroll = test if scp is not None else side(enroll_scp)
    cohort = None
    if asnorm:  # only AS-norm scores against the cohort itself
        cohort = side(cohort_scp)
        if cohort_spk2utt is not None:
            cohort, _ = speaker_average(cohort, read_list_table(cohort_spk2utt), str(cohort_spk2utt))
    raw.clear()  # the prepared tables are all that scoring needs
    if spk2utt is not None:
        enroll, absent = speaker_average(enroll, read_list_table(spk2utt), str(spk2utt))
        if absent:
            log.warning("%s: %d speakers have no embedding (first: %r)", spk2utt, len(absent), absent[0])

    setup = {
        "enroll": str(enroll_scp or scp), "test": str(test_scp or scp),
        "enrollment": "speaker" if spk2utt is not None else "utterance",
        "cohort": None if cohort_scp is None else str(cohort_scp),
        "mean_subtraction": mean is not None,
        "asnorm_top_n": asnorm_top_n if asnorm else None,
    }
    done = []
    for path, name in zip(trials, names):
        tr = _both_labels(read_trials(path), path)
        e_rows, t_rows = trial_rows(tr, enroll, test)
        found = (e_rows >= 0) & (t_rows >= 0)
        if not found.all():
            what = f"embedding in {enroll.source}" + ("" if enroll is test else f" or {test.source}")
            kept = _drop_missing(tr, found, path, what, _first_absent(tr, e_rows, t_rows), skip_missing)
            tr, e_rows, t_rows = kept, e_rows[found], t_rows[found]
        scores = cosine_scores(enroll.matrix, test.matrix, e_rows, t_rows)
        if asnorm:
            scores = as_norm(scores, enroll.matrix, test.matrix, e_rows, t_rows, cohort.matrix, asnorm_top_n)
        outputs = {"scores": str(out / f"{name}.score")}
        done.append((_result(name, path, tr, scores, int((~found).sum()), out, outputs, setup), tr, scores, True))
    return _write(done)


def score_files(trials: Sequence[PathLike], scores: Sequence[PathLike], out_dir: Optional[PathLike] = None, skip_missing: bool = False) -> List[ListResult]:
    """Metrics of existing score files, the i-th scored against the i-th trial list; without trial
    lists, each file is `compute-eer` input (`score target|nontarget`) and carries its labels.
    Read-only unless `out_dir` is given: the metrics json and DET plot beside a score file are the
    results of the run that wrote it, and are not replaced by a second look at its scores."""
    if not trials:
        return _write([_labelled_file(path, name, out_dir) for path, name in zip(scores, _unique_names(scores))])
    if len(trials) != len(scores):
        raise InputError(None, f"{len(scores)} score files for {len(trials)} trial lists: give one --scores per --trials")
    names = _unique_names(trials)
    done = []
    for path, name, score_path in zip(trials, names, scores):
        tr = _both_labels(read_trials(path), path)
        if is_labelled(score_path):
            raise InputError(score_path, "is 'score target|nontarget' (compute-eer form), which carries its labels: give it without --trials")
        values, found = scores_for_trials(tr, read_scores(score_path))
        if not found.all():
            i = int(np.flatnonzero(~found)[0])
            tr = _drop_missing(tr, found, path, f"score in {score_path}", f"{tr.enroll[i]} {tr.test[i]}", skip_missing)
            values = values[found]
        out = Path(out_dir) if out_dir is not None else None
        result = _result(name, path, tr, values, int((~found).sum()), out, {"scores": str(score_path)}, {})
        done.append((result, tr, values, False))
    return _write(done)


def _labelled_file(path: PathLike, name: str, out_dir: Optional[PathLike]) -> Tuple[ListResult, Trials, np.ndarray, bool]:
    if not is_labelled(path):
        raise InputError(path, "has trial ids ('enroll test score'): give its trial list with --trials "
                               "(without one, a score file must be 'score target|nontarget', compute-eer's input)")
    values, labels = read_labelled_scores(path)
    if int(labels.sum()) in (0, len(labels)):
        raise InputError(path, "needs both target and nontarget scores")
    blank = [""] * len(labels)
    out = Path(out_dir) if out_dir is not None else None
    trials = Trials(blank, blank, labels)
    return _result(name, path, trials, values, 0, out, {"scores": str(path)}, {}), trials, values, False
