"""Commands that turn official corpus layouts into Kaldi data dirs (`trkd prepare <corpus>`)."""

from pathlib import Path
from typing import Optional

import typer

from trkd.commands.help_text import docstring


def register(app: typer.Typer) -> None:
    """Add `trkd prepare …` to the `trkd` app."""
    prepare_app = typer.Typer(no_args_is_help=True, help="Kaldi data dirs from official corpus layouts.")
    app.add_typer(prepare_app, name="prepare")

    @prepare_app.command("voxceleb", help=docstring("trkd.data.prepare_voxceleb", "prepare_voxceleb"), no_args_is_help=True)
    def voxceleb(
        vox1: Optional[Path] = typer.Option(None, help="VoxCeleb1 root (wav/ and the trial lists)."),
        vox2: Optional[Path] = typer.Option(None, help="VoxCeleb2 root (dev/aac/)."),
        musan: Optional[Path] = typer.Option(None, help="MUSAN root (music/, noise/, speech/)."),
        rirs: Optional[Path] = typer.Option(None, help="RIRS_NOISES root (simulated_rirs/)."),
        out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Where the data dirs go [default: data]."),
        out_old: Optional[Path] = typer.Option(None, "--out", hidden=True),
        convert_m4a: bool = typer.Option(True, help="Convert VoxCeleb2 m4a to wav with ffmpeg (else expect them in --wav-dir)."),
        wav_dir: Optional[Path] = typer.Option(None, help="Converted VoxCeleb2 wavs [default: OUT/wav/vox2_dev]."),
        nj: int = typer.Option(4, min=1, help="Parallel ffmpeg jobs."),
    ) -> None:
        from trkd.commands.options import either
        from trkd.data.prepare_voxceleb import prepare_voxceleb

        out = either(out_dir, out_old, "--out-dir", "--out", required=False) or Path("data")
        typer.echo(f"trkd prepare voxceleb: writing {out}")
        done = prepare_voxceleb(out, vox1, vox2, musan, rirs, convert_m4a, wav_dir, nj)
        for name, data in done.items():
            speakers = "" if name in ("musan", "rirs") else f", {len(data.speakers)} speakers"
            typer.echo(f"{out / name}: {len(data.utt2spk)} recordings{speakers}")
