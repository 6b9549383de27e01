"""Commands of the scoring area: `trkd score`."""

from pathlib import Path
from typing import List, Optional

import typer


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
    out_dir: Optional[Path] = typer.Option(None, help="Output dir (default: scores/ beside the test scp, or the score file's dir)."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Skip trials without an embedding or score."),
) -> None:
    """Cosine-score trial lists and print EER (%) and minDCF (p_target 0.01, 0.05), like Kaldi's compute-eer.

    Writes OUT/<trials>.score (enroll test score), OUT/<trials>.metrics.json and OUT/<trials>.det.png.
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


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("score")(score)
