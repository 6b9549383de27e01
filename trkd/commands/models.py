"""Commands of the models area."""

from pathlib import Path

import typer


def info(config: Path = typer.Option(..., "--config", help="yaml config with a 'model:' block.")) -> None:
    """Print a model's size: parameters (M) and MACs per second of audio (1 s = 100 frames)."""
    from trkd.config import load_config
    from trkd.errors import InputError
    from trkd.models import build_model
    from trkd.models.complexity import describe

    block = load_config(config).model
    try:
        model = build_model(block)
    except (TypeError, ValueError) as err:  # a value the constructor rejects, e.g. channels % res2_scale
        raise InputError(config, f"model: {err}") from None
    typer.echo("model: " + ", ".join(f"{k}={v}" for k, v in block.items()))
    typer.echo(describe(model))


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("info")(info)
