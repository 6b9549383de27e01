"""Commands of the embed area: `trkd embed` (embeddings straight from audio files)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer

from trkd.layout import AVG_NAME


def audio_list(inputs: List[str]) -> List[Tuple[str, str, Optional[Tuple[Path, int]]]]:
    """(key, path, (wav.scp, line) or None) of each input: an audio file is keyed by `safe_key` of
    its path as given (a Kaldi key holds no whitespace, and a key is a name); an argument ending in
    `.scp` is a wav.scp, whose keys are used as they are."""
    from trkd.data.kaldi_dir import iter_table
    from trkd.errors import InputError
    from trkd.utils.ids import safe_key

    pairs: List[Tuple[str, str, Optional[Tuple[Path, int]]]] = []
    for item in inputs:
        if item.endswith(".scp"):
            scp = Path(item)
            if not scp.is_file():
                raise InputError(scp, "no such wav.scp")
            for n, (key, path) in iter_table(scp):
                if path.endswith("|"):
                    raise InputError(scp, f"{key}: piped commands are not read by trkd embed; give files", n)
                pairs.append((key, path, (scp, n)))  # a relative path is relative to here, as in Kaldi
        else:
            pairs.append((safe_key(item), item, None))
    seen = {}
    for key, path, _ in pairs:
        if key in seen:
            raise InputError(None, f"{key}: given twice (keys must be unique): {seen[key]} and {path}")
        seen[key] = path
    return pairs


def embed_cmd(
    inputs: List[str] = typer.Argument(..., help="Audio files, or a wav.scp (name ending .scp: key path lines). "
                                       "A file's key is its path as given without the audio suffix, folders "
                                       "joined by '-', '.' and '..' dropped, whitespace as '_' (id10270/x y/"
                                       "00001.wav: id10270-x_y-00001, as VoxCeleb data prep names it)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Trained model dir; not with --onnx."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="Embed with this `trkd export` file on onnxruntime "
                                        "(CPU) instead of a model dir."),
    out: Optional[str] = typer.Option(None, "--out", help="Kaldi wspecifier, e.g. ark,scp:emb.ark,emb.scp "
                                      "(default: a text ark on stdout)."),
    checkpoint: str = typer.Option(AVG_NAME, "--checkpoint", help="File in MODEL/models, or an absolute path."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
) -> None:
    """Embed audio files with a trained model: fbank as the model was trained on (dither 0), then the
    network, as `trkd extract` does on features. Prints a Kaldi text ark (key [ v1 v2 ... ]) or writes
    --out; nothing is written unless every input is embedded."""
    import kaldiio

    from trkd.api import load_model, load_onnx
    from trkd.errors import InputError

    if (model is None) == (onnx is None):
        raise InputError(None, "give exactly one of --model (a model dir) and --onnx (an exported file)")
    pairs = audio_list(inputs)
    embedder = load_onnx(onnx) if onnx is not None else load_model(model, checkpoint, device)
    embeddings = {}
    for key, path, origin in pairs:
        try:
            embeddings[key] = embedder.embed_file(path)
        except InputError as err:
            if origin is None:
                raise
            raise InputError(origin[0], f"{key}: {err}", origin[1]) from None
    try:
        with kaldiio.WriteHelper(out or "ark,t:-") as writer:
            for key, emb in embeddings.items():
                writer(key, emb)
    except (ValueError, OSError) as err:
        raise InputError(None, f"--out {out}: {err}") from None
    if out is not None:
        typer.echo(f"wrote {len(embeddings)} embeddings to {out}")


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("embed", no_args_is_help=True)(embed_cmd)
