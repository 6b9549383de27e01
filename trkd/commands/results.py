"""The results table of a recipe (`trkd results`)."""

from pathlib import Path
from typing import List, Optional

import typer


def results(
    roots: List[Path] = typer.Argument(..., help="Experiment folders (exp/); several = one per seed."),
    out: Path = typer.Option(Path("exp/RESULTS.md"), help="Markdown table to write."),
    png: Optional[Path] = typer.Option(None, help="EER bar chart (default: OUT with .png)."),
    systems: str = typer.Option("", help="Row order: these systems first (space-separated), the others after."),
) -> None:
    """Table of every system under the experiment folders: parameters, MACs per second of audio,
    EER and minDCF per trial list (mean ± half-range over several folders, and which differences
    exceed that spread); also a bar-chart PNG."""
    from trkd.results import write_results

    typer.echo(write_results(roots, out, png, systems.split()), nl=False)


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("results")(results)
