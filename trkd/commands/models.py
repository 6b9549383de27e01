"""Commands of the models area."""

from pathlib import Path
from typing import Optional

import typer


def info(
    model: Optional[Path] = typer.Option(None, "--model", help="Trained model dir (reads its config.yaml)."),
    config: Optional[Path] = typer.Option(None, "--config", help="yaml config with a 'model:' block (or a model dir)."),
) -> None:
    """Print a model's size: parameters (M) and MACs per second of audio (1 s = 100 frames)."""
    from trkd.config import load_config
    from trkd.errors import InputError
    from trkd.models import build_model
    from trkd.models.complexity import describe

    if (model is None) == (config is None):
        raise InputError(None, "give one of --model (a model dir) and --config (a yaml)")
    path = model if model is not None else config
    if path.is_dir():
        path = path / "config.yaml"
    block = load_config(path).model
    try:
        built = build_model(block)
    except (TypeError, ValueError) as err:  # a value the constructor rejects, e.g. channels % res2_scale
        raise InputError(path, f"model: {err}") from None
    typer.echo("model: " + ", ".join(f"{k}={v}" for k, v in block.items()))
    typer.echo(describe(built))


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("info")(info)
