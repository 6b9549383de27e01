"""`trkd import-teacher`: a public teacher (a WeSpeaker model folder) as a trkd model dir."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trkd.layout import AVG_NAME


def import_teacher_cmd(
    source: Path = typer.Argument(..., help="The downloaded model folder (WeSpeaker: config.yaml + avg_model.pt)."),
    kind: str = typer.Option(..., "--from", help="Which toolkit made it: wespeaker."),
    out: Path = typer.Option(..., "--out", help="The trkd model dir to write (must not exist)."),
    spk2id: Optional[Path] = typer.Option(None, "--spk2id", help="The classifier's speakers in WeSpeaker's order "
                                          "(`SPK` or `SPK INDEX` per line; WeSpeaker numbers the sorted speakers "
                                          "of its training utt2spk); speed-perturbed classes are named "
                                          "sp0.9-SPK and sp1.1-SPK."),
    checkpoint: str = typer.Option(AVG_NAME, "--checkpoint", help="State dict in SOURCE, or an absolute path."),
) -> None:
    """Import a speaker model trained elsewhere, as a teacher (or a model) every trkd command takes.

    Writes OUT/config.yaml, OUT/models/avg_model.pt, OUT/fbank.yaml (the source's front end),
    OUT/imported.yaml and, with --spk2id and a classifier in the checkpoint, OUT/spk2id. Every key
    of the state dict is checked against the architecture its config.yaml names; the network
    computes what the source's does. With a named AAM classifier every distillation method works;
    without one, emb and mlkd (embedding level) do. Nothing is downloaded.
    """
    import shlex

    from trkd.errors import InputError
    from trkd.teachers.importer import SOURCES, import_wespeaker, summary

    if kind not in SOURCES:
        raise InputError(None, f"--from {kind!r}: valid: {', '.join(SOURCES)}")
    words = ["trkd", "import-teacher", "--from", kind, str(source), "--out", str(out)]
    words += ["--spk2id", str(spk2id)] * (spk2id is not None) + ["--checkpoint", checkpoint]
    result = import_wespeaker(source, out, spk2id, checkpoint, " ".join(map(shlex.quote, words)))
    typer.echo(summary(result))


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("import-teacher")(import_teacher_cmd)
