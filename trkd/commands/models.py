"""Commands of the models area."""

import typer


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
