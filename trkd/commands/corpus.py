"""Commands of the corpus area: `trkd synth-corpus`."""

from pathlib import Path
from typing import Optional

import typer

from trkd.commands.help_text import docstring
from trkd.corpus.config import Difficulty, Sizes

_D, _Q = Sizes(), Sizes.quick()


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""

    @app.command("synth-corpus", help=docstring("trkd.corpus.build", "synth_corpus"), no_args_is_help=True)
    def synth_corpus_cmd(
        out: Path = typer.Argument(..., help="Corpus directory (wav/, train/, test/, noise/, rir/)."),
        seed: int = typer.Option(..., help="Everything is drawn from this seed."),
        train_speakers: Optional[int] = typer.Option(
            None, min=1, help=f"Training speakers (default {_D.train_speakers}; {_Q.train_speakers} with --quick)."),
        test_speakers: Optional[int] = typer.Option(
            None, min=2, help=f"Test speakers, none of them in training (default {_D.test_speakers}; {_Q.test_speakers} with --quick)."),
        utts_per_speaker: Optional[int] = typer.Option(
            None, min=2, help=f"Utterances per speaker (default {_D.utts_per_speaker}; {_Q.utts_per_speaker} with --quick)."),
        nj: int = typer.Option(1, min=1, help="Parallel workers (the output does not depend on it)."),
        quick: bool = typer.Option(False, "--quick", help="A tiny corpus for tests and smoke runs."),
        difficulty: Optional[Path] = typer.Option(
            None, help="YAML of difficulty knobs (trkd.corpus.config.Difficulty fields) overriding the defaults."),
    ) -> None:
        from trkd.corpus.build import synth_corpus

        typer.echo(f"trkd synth-corpus {out} --seed {seed}" + (" --quick" if quick else "") + f" --nj {nj}")
        diff = Difficulty.from_yaml(difficulty) if difficulty else None
        done = synth_corpus(out, seed, train_speakers, test_speakers, utts_per_speaker, nj, quick, diff)
        typer.echo(f"{done}: corpus.yaml, train/, test/ (with trials), noise/, rir/")
