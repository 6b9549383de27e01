"""`trkd plan`: what each recipe stage writes and computes, printed before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def plan_cmd(
    data: Optional[Path] = typer.Option(None, "--data", help="Source training data dir (before augmentation)."),
    utts: Optional[int] = typer.Option(None, "--utts", help="Without --data: source training utterances."),
    hours: Optional[float] = typer.Option(None, "--hours", help="Without --data: hours of source training audio."),
    speakers: Optional[int] = typer.Option(None, "--speakers", help="Without --data: training speakers."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Without --data: the corpus `trkd synth-corpus` "
                                   "writes (with --quick: its --quick size), train and test."),
    test_data: Optional[Path] = typer.Option(None, "--test-data", help="Test data dir (embeddings, stage 6)."),
    test_utts: Optional[int] = typer.Option(None, "--test-utts", help="Without --test-data: test utterances."),
    test_hours: Optional[float] = typer.Option(None, "--test-hours", help="Without --test-data: hours of test audio."),
    aug: Optional[Path] = typer.Option(None, "--aug", help="Augmentation yaml (trkd augment --config)."),
    speed_perturb: bool = typer.Option(False, "--speed-perturb", help="Speed copies as new classes (trkd augment)."),
    write_wavs: bool = typer.Option(False, "--write-wavs", help="The augmented copies are WAVs "
                                    "(trkd augment --write-wavs), not entries that fbank makes again."),
    fbank: Optional[Path] = typer.Option(None, "--fbank", help="fbank yaml (trkd fbank --config)."),
    compress: Optional[int] = typer.Option(None, "--compress", help="Kaldi compression method of the training features."),
    teacher: Path = typer.Option(..., "--teacher", help="Teacher training yaml (with --teacher-from: the "
                                 "downloaded model folder)."),
    teacher_from: Optional[str] = typer.Option(None, "--teacher-from", help="The teacher is imported from this "
                                               "toolkit (wespeaker), not trained (trkd import-teacher)."),
    student: Optional[Path] = typer.Option(None, "--student", help="Student training yaml."),
    methods: str = typer.Option("none kd dkd enskd trkd", "--methods", help="Distillation methods, space-separated."),
    topk: int = typer.Option(0, "--topk", help="Sparse dump: K top non-target logits per chunk (0: full rows)."),
    quick: bool = typer.Option(False, "--quick", help="The recipe's --quick schedules."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the rows as JSON here."),
) -> None:
    """Print items, bytes (also per hour of source audio), steps per epoch and compute per stage."""
    from trkd.errors import InputError
    from trkd.plan import Corpus, make_plan, render

    if data is not None:
        train = Corpus.from_data_dir(data)
    elif synthetic:
        train = Corpus.synthetic("train", quick)
    elif None not in (utts, hours, speakers):
        train = Corpus.from_counts(utts, hours, speakers)
    else:
        raise InputError(None, "give --data DIR, --synthetic, or the corpus's counts --utts, --hours and --speakers")
    test = None
    if test_data is not None:
        test = Corpus.from_data_dir(test_data)
    elif synthetic:
        test = Corpus.synthetic("test", quick)
    elif test_utts is not None and test_hours is not None:
        test = Corpus.from_counts(test_utts, test_hours, 1)
    from trkd.plan.imported import SOURCES

    if teacher_from is not None and teacher_from not in SOURCES:
        raise InputError(None, f"--teacher-from {teacher_from!r}: valid: {', '.join(SOURCES)}")
    plan = make_plan(train, test, teacher, student, methods.split(), aug, speed_perturb, fbank, compress, topk,
                     quick=quick, write_wavs=write_wavs, teacher_from=teacher_from)
    typer.echo(f"source: {len(train.durations)} utterances, {train.hours:.2f} h, {train.speakers} speakers")
    typer.echo(render(plan, train.hours))
    if json_out is not None:
        from trkd.utils.atomic import write_text_atomic

        rows = [r.to_dict() for r in plan.rows]
        write_text_atomic(json_out, json.dumps({"source_hours": train.hours, "rows": rows}, indent=1) + "\n")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_cmd)
