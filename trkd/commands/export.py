"""Commands of the export area: `trkd export`."""

from pathlib import Path
from typing import Optional

import typer

from trkd.layout import AVG_NAME


def export_cmd(
    model: Path = typer.Option(..., "--model", help="Trained model dir (config.yaml + models/)."),
    out: Path = typer.Option(..., "--out", help="Output ONNX file, e.g. student.onnx."),
    checkpoint: str = typer.Option(AVG_NAME, "--checkpoint", help="File in MODEL/models, or an absolute path."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data dir whose feats.scp (wav.scp with --with-fbank) "
                                        "gives the parity inputs (default: synthetic speech, as trkd synth-corpus makes it)."),
    with_fbank: bool = typer.Option(False, "--with-fbank", help="WAV in: the graph computes the model's "
                                    "Kaldi fbank itself (float32 waveform in [-1, 1) at its sample rate)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or above)."),
) -> None:
    """Export a model's embedding extractor to ONNX and check onnxruntime against torch.

    The graph takes mean-normalised fbank `feats` (batch, frames, F) and returns `embedding`
    (batch, D), with dynamic batch and frames; with --with-fbank it takes `wave` (samples,) and
    returns `embedding` (1, D) and the log-mel `fbank` (frames, F), which must match `trkd fbank`
    within 1e-3 (bands above about -85 dB re full scale). OUT is written only if every parity input
    has cosine >= 0.9999; otherwise the command fails and leaves no file. Use it with
    `trkd extract --onnx OUT` or `trkd embed --onnx OUT`.
    """
    from trkd.export import export

    parity = export(model, out, checkpoint, data, with_fbank, opset)
    typer.echo(parity.line())
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("export")(export_cmd)
