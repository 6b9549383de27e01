"""The `trkd` command line: one Typer app, one subcommand per recipe stage.

Each area of the toolkit keeps its commands in `trkd/commands/<area>.py` with a `register(app)`
function, so that the CLI stays a thin layer over the library and this file only lists the areas.
Heavy imports (torch) happen inside the commands, which keeps `trkd --help` fast.
"""

from __future__ import annotations

import os
import sys

# Before anything imports torch: OpenMP threads that spin while idle make every trkd call several
# times slower on a shared machine; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from trkd import __version__  # noqa: E402
from trkd.commands import (  # noqa: E402
    corpus, data, distill, embed, export, features, import_teacher, models, plan, prepare, results, scoring, train)
from trkd.commands.help_text import rewrap_help  # noqa: E402
from trkd.errors import InputError, from_loader_worker  # noqa: E402
from trkd.utils.logs import DEFAULT_LEVEL, ENV_VAR, LEVELS, setup_logging  # noqa: E402

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Speaker-verification training and knowledge distillation (TRKD and baselines), Kaldi-style. "
         "A flag also takes the recipes' true/false: --asnorm true, --mean-sub false.",
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
    log_level: str = typer.Option(
        DEFAULT_LEVEL, "--log-level", envvar=ENV_VAR, help=f"Console log level: {', '.join(LEVELS)}."
    ),
) -> None:
    """trkd: data prep, fbank, training, distillation, extraction, scoring and export."""
    from trkd.utils.heap import keep_freed_heap

    keep_freed_heap()
    setup_logging(log_level)


for _area in (prepare, data, features, corpus, models, train, import_teacher, distill, embed, scoring, export,
              results, plan):
    _area.register(app)
rewrap_help(app)


def main() -> None:
    """Console entry point: a bad input is one line on stderr and exit status 1, not a traceback.

    So is an operating-system error that no writer translated (trkd/utils/atomic.py names the
    output it was writing): the user needs the path and the cause, not the call stack.
    """
    from trkd.commands.options import flag_words

    try:
        app(args=flag_words(app, sys.argv[1:]))
    except InputError as err:
        typer.echo(f"trkd: error: {err}", err=True)
        sys.exit(1)
    except RuntimeError as err:  # an InputError of a DataLoader worker, wrapped by torch
        unwrapped = from_loader_worker(err)
        if unwrapped is None:
            raise
        typer.echo(f"trkd: error: {unwrapped}", err=True)
        sys.exit(1)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        typer.echo(f"trkd: error: {where}{err.strerror or err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
