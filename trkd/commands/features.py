"""Commands of the features area: fbank."""

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""

    @app.command("fbank")
    def fbank(
        data: Path = typer.Argument(..., help="Kaldi data dir."),
        out_dir: Optional[Path] = typer.Option(None, help="Where the ark/scp parts and logs go (default: DATA/feats)."),
        nj: int = typer.Option(1, help="Local worker processes (and number of parts)."),
        split: Optional[str] = typer.Option(None, help="K/N: compute part K of N only (cluster job array)."),
        config: Optional[Path] = typer.Option(None, help="yaml of FbankOptions keys; flags win."),
        dither: Optional[float] = typer.Option(None, help="Dither (Kaldi default 1.0 for training; 0 for test sets)."),
        num_mel_bins: Optional[int] = typer.Option(None, help="Mel bins (default 80)."),
        frame_length: Optional[float] = typer.Option(None, help="Frame length in ms (default 25)."),
        frame_shift: Optional[float] = typer.Option(None, help="Frame shift in ms (default 10)."),
        seed: int = typer.Option(0, help="Seed of the dither noise (per utterance: seed + utterance id)."),
        compress: bool = typer.Option(False, help="Kaldi-compressed matrices: 4x less disk (--compression-method)."),
        compression_method: int = typer.Option(1, help="Kaldi's compression method: 1 (automatic, Kaldi's default) "
                                               "writes CM; 5 writes CM3, as small and read about twice as fast "
                                               "by training (egs/voxceleb/RESULTS.md); 3 CM2 (2 bytes a value)."),
    ) -> None:
        """Kaldi fbank of a data dir into OUT/raw_fbank.G.K.ark/scp (G: the settings), merged into DATA/feats.scp and utt2num_frames."""
        from trkd.data.options import load_options
        from trkd.features import FbankOptions, compute_fbank

        flags = dict(dither=dither, num_mel_bins=num_mel_bins, frame_length=frame_length, frame_shift=frame_shift)
        opts = load_options(FbankOptions, config, flags)
        from trkd.utils.compressed import check_method

        feats = compute_fbank(data, out_dir, nj=nj, split=split, opts=opts, seed=seed,
                              compression_method=check_method(compression_method) if compress else None)
        typer.echo(f"wrote {feats}" if feats else f"part {split} done; feats.scp is written once all parts exist")
