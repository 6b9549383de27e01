"""Commands of the data area: validate-data, fix-data, augment, augment-wav."""

from pathlib import Path
from typing import Optional

import typer

from trkd.errors import InputError


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""

    @app.command("validate-data")
    def validate_data(
        data: Path = typer.Argument(..., help="Kaldi data dir (wav.scp, utt2spk, spk2utt[, segments])."),
        rate: int = typer.Option(16000, help="Expected sample rate of every recording."),
        no_audio: bool = typer.Option(False, "--no-audio", help="Check the tables only; do not open the audio."),
    ) -> None:
        """Check a data dir like Kaldi's validate_data_dir.sh; the first problem is reported as FILE:LINE."""
        from trkd.data.validate import validate_data_dir

        d = validate_data_dir(data, check_audio=not no_audio, rate=rate, check_feats=True)
        typer.echo(f"{data}: OK ({len(d.utts)} utterances, {len(d.speakers)} speakers)")

    @app.command("fix-data")
    def fix_data(data: Path = typer.Argument(..., help="Kaldi data dir to repair in place.")) -> None:
        """Keep the consistent subset of a data dir (like Kaldi's fix_data_dir.sh); originals go to DIR/.backup."""
        from trkd.data.fix import fix_data_dir

        report = fix_data_dir(data)
        for line in report.dropped:
            typer.echo(line)
        typer.echo(f"{data}: kept {report.kept} of {report.total} utterances; originals in {data / '.backup'}")

    @app.command("augment")
    def augment(
        in_dir: Path = typer.Argument(..., help="Clean Kaldi data dir."),
        out_dir: Path = typer.Argument(..., help="Output data dir (clean + augmented copies)."),
        rir_dir: Optional[Path] = typer.Option(None, help="RIR list: DIR/wav.scp."),
        noise_dir: Optional[Path] = typer.Option(None, help="Noise list: DIR/wav.scp and DIR/utt2type."),
        speed_perturb: bool = typer.Option(False, "--speed-perturb", help="Add speed copies as new speakers."),
        copies: Optional[str] = typer.Option(None, help="Comma list of reverb,noise,music,babble (default: all)."),
        seed: int = typer.Option(0, help="Seed of every random choice."),
        config: Optional[Path] = typer.Option(None, help="yaml of AugmentConfig keys; flags win."),
        nj: int = typer.Option(1, help="Worker processes."),
        write_wavs: bool = typer.Option(False, "--write-wavs", help="Write the copies as 16-bit WAVs under OUT/wav "
                                        "(default: wav.scp entries `trkd augment-wav … |` that make them on read)."),
    ) -> None:
        """Make reverb/noise/music/babble (and speed) copies of a data dir, the Kaldi way, before features.

        By default no audio is written: each copy's wav.scp entry is a command making it (Kaldi
        tools run it; trkd's readers make the copy in-process), bit-identical to --write-wavs's WAV."""
        from trkd.data.augment import AugmentConfig, augment_data_dir
        from trkd.data.options import load_options

        kinds = None if copies is None else [k for k in copies.split(",") if k]
        cfg = load_options(AugmentConfig, config, {"copies": kinds}).check(str(config or "--copies"))
        out = augment_data_dir(in_dir, out_dir, rir_dir, noise_dir, speed_perturb, seed, cfg, nj, write_wavs)
        typer.echo(f"{out_dir}: {len(out.utts)} utterances, {len(out.speakers)} speakers")

    @app.command("augment-wav")
    def augment_wav(
        data: Path = typer.Argument(..., help="Data dir made by `trkd augment`."),
        utt: str = typer.Argument(..., help="Id of one of its augmented copies."),
        gen: Optional[str] = typer.Option(None, "--gen", help="Hash of the settings the entry was written with: "
                                          "refuse to make the copy if DIR/conf/augment.yaml changed since."),
    ) -> None:
        """Write one augmented copy as a 16-bit WAV on stdout (the wav.scp entries of `trkd augment`)."""
        import sys

        from trkd.data.virtual import copy_wav

        d = data.resolve()
        try:
            wav = copy_wav(d, utt, gen)
        except InputError as err:
            from trkd.data.kaldi_dir import line_of

            raise InputError(d / "wav.scp", f"{utt}: {err}", line_of(d / "wav.scp", utt)) from None
        sys.stdout.buffer.write(wav)
        sys.stdout.buffer.flush()
