"""Commands of the scoring area: `trkd score`, `trkd score-epochs`, `trkd check-regime`,
`trkd embedding-stats`, `trkd epoch-trace`."""

from pathlib import Path
from typing import List, Optional

import typer

from trkd.study.convergence import POINTS, POINTS_EPOCHS, RATIO, RELATIVE, RELATIVE_EPOCHS, WINDOW


def score(
    trials: List[Path] = typer.Option([], "--trials", help="Trial list, Kaldi or VoxCeleb form (repeatable); "
                                      "not with a compute-eer 'score target|nontarget' --scores file."),
    scp: Optional[Path] = typer.Option(None, help="Embeddings for both sides: scp, ark, text ark or scp:/ark:/ark,t: rspecifier."),
    enroll_scp: Optional[Path] = typer.Option(None, help="Enrollment embeddings (with --test-scp)."),
    test_scp: Optional[Path] = typer.Option(None, help="Test embeddings (with --enroll-scp)."),
    spk2utt: Optional[Path] = typer.Option(None, help="Enroll speakers by averaging their utterances' embeddings."),
    cohort_scp: Optional[Path] = typer.Option(None, help="Cohort embeddings (e.g. the training set): mean subtraction, AS-norm."),
    cohort_spk2utt: Optional[Path] = typer.Option(None, help="Average the cohort per speaker first."),
    mean_sub: bool = typer.Option(True, help="Subtract the cohort mean from every embedding."),
    asnorm: bool = typer.Option(False, "--asnorm", help="Adaptive S-norm against the cohort."),
    asnorm_top_n: int = typer.Option(300, min=1, help="Cohort scores kept per side by AS-norm."),
    scores: List[Path] = typer.Option([], "--scores", help="Existing score file, one per --trials: metrics only."),
    out_dir: Optional[Path] = typer.Option(None, help="Output dir (default: scores/ beside the test scp; "
                                           "with --scores, nothing is written unless it is given)."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Skip trials without an embedding or score."),
) -> None:
    """Cosine-score trial lists and print EER (%) and minDCF (p_target 0.01, 0.05), like Kaldi's compute-eer.

    Writes OUT/<trials>.score (enroll test score), OUT/<trials>.metrics.json and OUT/<trials>.det.png,
    and prints each path. With --scores it only prints the metrics, unless --out-dir names where to
    write the json and the plot (a score file's own run keeps its results).
    """
    from trkd.errors import InputError
    from trkd.scoring.evaluate import score_embeddings, score_files

    if scores and (scp or enroll_scp or test_scp or spk2utt or cohort_scp or asnorm):
        raise InputError(scores[0], "--scores takes metrics of a score file: give no embedding options with it")
    if scores:
        results = score_files(trials, scores, out_dir, skip_missing)
    else:
        results = score_embeddings(
            trials, scp, enroll_scp, test_scp, spk2utt, cohort_scp, cohort_spk2utt,
            mean_sub, asnorm, asnorm_top_n, out_dir, skip_missing,
        )
    for result in results:
        typer.echo(result.line())
        for key, path in result.outputs.items():
            if not (scores and key == "scores"):  # with --scores, the score file is the input
                typer.echo(f"wrote {path}")


def score_epochs_cmd(
    model: Path = typer.Option(..., "--model", help="Model dir of trkd train / distill (models/model_<epoch>.pt)."),
    data: Path = typer.Option(..., "--data", help="Data dir with feats.scp (and trials, unless --trials)."),
    trials: Optional[Path] = typer.Option(None, "--trials", help="Trial list (default DATA/trials)."),
    nj: int = typer.Option(1, "--nj", help="Parallel CPU jobs of the extraction."),
    every: int = typer.Option(1, "--every", help="Score every K-th epoch, counted back from the last, and "
                       f"the last {WINDOW} (the plateau tests' windows)."),
    last: Optional[int] = typer.Option(None, "--last", help="Score only the last N of the chosen epochs."),
    keep_embeddings: bool = typer.Option(False, "--keep-embeddings", help="Keep MODEL/epochs_eer/epoch_<N>/ "
                                         "(embeddings and scores of each epoch)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    points: float = typer.Option(POINTS, "--points", help="Teacher plateau: EER spread below this many points..."),
    points_epochs: int = typer.Option(POINTS_EPOCHS, "--points-epochs", help="...over this many last epochs."),
    relative: float = typer.Option(RELATIVE, "--relative", help="Student plateau: EER spread below this fraction "
                                   "of the EER..."),
    relative_epochs: int = typer.Option(RELATIVE_EPOCHS, "--relative-epochs", help="...over this many last epochs."),
) -> None:
    """EER and minDCF of every epoch checkpoint: extract DATA with models/model_<N>.pt, score the
    trials, append a record to MODEL/epochs_eer.jsonl; then print the table and the plateau verdict.

    Epochs already recorded are skipped, so a rerun (during training or after an interrupt) scores
    only new checkpoints; the jsonl is replaced whole after each epoch. Also draws MODEL/epochs_eer.png.
    """
    from trkd.study.convergence import plateau, table
    from trkd.study.epochs_eer import score_epochs

    records, scored = score_epochs(model, data, trials, nj, every, last, keep_embeddings, device, typer.echo)
    typer.echo(f"scored {len(scored)} new epoch(s)" + (f": {', '.join(map(str, scored))}" if scored else ""))
    for line in table(records) + plateau(records, points, points_epochs, relative, relative_epochs).lines():
        typer.echo(line)


def check_regime_cmd(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher model dir with epochs_eer.jsonl."),
    student: Path = typer.Option(..., "--student", help="No-KD student model dir with epochs_eer.jsonl."),
    points: float = typer.Option(POINTS, "--points", help="Teacher: EER spread below this many points over its "
                                 f"last {POINTS_EPOCHS} epochs."),
    relative: float = typer.Option(RELATIVE, "--relative", help="Student: EER spread below this fraction over its "
                                   f"last {RELATIVE_EPOCHS} epochs."),
    ratio: float = typer.Option(RATIO, "--ratio", help="Student EER at least this many times the teacher's."),
) -> None:
    """Is a teacher worth distilling? The converged regime's tests on two runs' `trkd score-epochs` records: the
    teacher's plateau, the no-KD student's plateau, and the student / teacher EER ratio."""
    from trkd.study.convergence import read_records, records_path, regime
    from trkd.errors import InputError

    runs = []
    for exp in (teacher, student):
        runs.append(read_records(records_path(exp)))
        if not runs[-1]:
            raise InputError(records_path(exp), "no epoch records: run trkd score-epochs first")
    for line in regime(*runs, points, relative, ratio):
        typer.echo(line)


def embedding_stats_cmd(
    scp: Path = typer.Option(..., "--scp", help="Embeddings: scp, ark, text ark or scp:/ark: rspecifier."),
    utt2spk: Path = typer.Option(..., "--utt2spk", help="The speaker of each embedding's utterance."),
) -> None:
    """Norms, effective rank and same/different-speaker cosines of an embedding set, one JSON line:
    what a distillation term did to the embedding space beside the EER it gave."""
    import json

    from trkd.data.kaldi_dir import read_kv
    from trkd.study.embedding_stats import embedding_stats
    from trkd.scoring.embeddings import load_embeddings

    typer.echo(json.dumps(embedding_stats(load_embeddings(scp), read_kv(utt2spk), str(utt2spk))))


def epoch_trace_cmd(
    model: Path = typer.Option(..., "--model", help="Model dir scored by trkd score-epochs --keep-embeddings."),
    utt2spk: Path = typer.Option(..., "--utt2spk", help="The speaker of each scored utterance (the trials' data dir)."),
) -> None:
    """A run epoch by epoch: EER, the training's means over the epoch (accuracy, the objective's
    terms) and the test embeddings' shape (norm, effective rank, cosines). Prints the table and
    writes MODEL/epochs_trace.jsonl and .png."""
    from trkd.data.kaldi_dir import read_kv
    from trkd.study.epoch_trace import table, trace

    for line in table(trace(model, read_kv(utt2spk), str(utt2spk))):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("score")(score)
    app.command("score-epochs")(score_epochs_cmd)
    app.command("check-regime")(check_regime_cmd)
    app.command("embedding-stats")(embedding_stats_cmd)
    app.command("epoch-trace")(epoch_trace_cmd)
