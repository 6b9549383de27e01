"""The results table of a recipe (`trkd results`)."""

from pathlib import Path
from typing import List, Optional

import typer


def results(
    roots: List[Path] = typer.Argument(..., help="Experiment folders (exp/); several = one per seed."),
    out: Optional[Path] = typer.Option(None, help="Markdown table to write (default: RESULTS.md in the "
                                       "experiment folder; several: in their common parent)."),
    png: Optional[Path] = typer.Option(None, help="EER bar chart (default: OUT with .png)."),
    systems: str = typer.Option("", help="Row order: these systems first (space-separated), the others after."),
) -> None:
    """Table of every system under the experiment folders: parameters, MACs per second of audio,
    EER and minDCF per trial list (mean ± half-range over several folders, and which differences
    exceed that spread), and the systems that have no scores yet. Also a bar chart of the EERs
    (OUT with .png) and one DET plot of every system per trial list (OUT.<trials>.det.png)."""
    from trkd.results import default_out, write_results

    out = out or default_out(roots)
    typer.echo(write_results(roots, out, png, systems.split()), nl=False)
    typer.echo(f"wrote {out}", err=True)


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("results")(results)
