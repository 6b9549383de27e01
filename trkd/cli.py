"""The `trkd` command line: one Typer app, one subcommand per recipe stage.

Each area of the toolkit keeps its commands in `trkd/commands/<area>.py` with a `register(app)`
function, so that the CLI stays a thin layer over the library and this file only lists the areas.
Heavy imports (torch) happen inside the commands, which keeps `trkd --help` fast.
"""

from __future__ import annotations

import sys
import typer

from trkd import __version__
from trkd.commands import corpus, data, distill, export, features, models, plan, prepare, results, scoring, train
from trkd.errors import InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Speaker-verification training and knowledge distillation (TRKD and baselines), Kaldi-style.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"trkd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """trkd: data prep, fbank, training, distillation, extraction, scoring and export."""


for _area in (prepare, data, features, corpus, models, train, distill, scoring, export, results, plan):
    _area.register(app)


def main() -> None:
    """Console entry point: a bad input is one line on stderr and exit status 1, not a traceback."""
    try:
        app()
    except InputError as err:
        typer.echo(f"trkd: error: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
