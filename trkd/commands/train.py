"""Commands of the train area: `trkd train`, `trkd extract`, `trkd average`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from trkd.layout import AVG_NAME


def _command_line(ctx: typer.Context) -> str:
    """The invocation as a user would type it, whatever launched us (shell, torchrun, a test)."""
    import shlex

    spelling = {p.name: p.opts[0] for p in ctx.command.params if p.opts}
    words = ["trkd", ctx.info_name]
    for name, value in ctx.params.items():
        if value is None or value is False:
            continue
        option = spelling.get(name, "--" + name.replace("_", "-"))
        for item in value if isinstance(value, (list, tuple)) else [value]:  # a repeatable option
            words.append(option)
            if item is not True:
                words.append(shlex.quote(str(item)))
    return " ".join(words)


def train_cmd(
    ctx: typer.Context,
    config: Path = typer.Option(..., "--config", help="Training yaml (model, head, data, optim, train)."),
    data: Path = typer.Option(..., "--data", help="Data dir with feats.scp and utt2spk."),
    exp: Path = typer.Option(..., "--exp", help="Output model dir."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in EXP."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override train.seed."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    quick: bool = typer.Option(False, "--quick", help="Smoke test: 2 epochs, schedules squeezed into them."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (default: bf16 on a "
                                            "GPU that has it, else fp32)."),
    sets: List[str] = typer.Option([], "--set", help="Override a config key: train.epochs=20 (repeatable)."),
) -> None:
    """Train a speaker-embedding model with AAM-softmax on random fbank chunks.

    Writes EXP/config.yaml (resolved), EXP/spk2id, EXP/models/model_<epoch>.pt, EXP/models/avg_model.pt,
    EXP/train.log, EXP/metrics.jsonl (one record per log interval) and EXP/train_curves.png.
    Multi-GPU / multi-node: launch with torchrun.
    """
    from trkd import checkpoint
    from trkd.config import QUICK, load_config
    from trkd.commands.options import parse_sets
    from trkd.errors import InputError
    from trkd.model_fbank import fbank_record
    from trkd.trainer import train

    overrides = dict(QUICK) if quick else {}
    if seed is not None:
        overrides["train.seed"] = seed
    if precision is not None:
        overrides["train.precision"] = precision
    overrides.update(parse_sets(sets))
    cfg = load_config(config, overrides)
    cfg.command = _command_line(ctx)
    if not resume and checkpoint.saved_epochs(exp):
        raise InputError(checkpoint.model_dir(exp), "already holds checkpoints: pass --resume or use a new --exp")
    # EXP/fbank.yaml, so that `trkd embed` computes the same features from audio
    train(cfg, data, exp, resume=resume, device=device, files=fbank_record(data))


def extract_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="Trained model dir (config.yaml + models/); "
                                         "not with --onnx."),
    data: Path = typer.Option(..., "--data", help="Data dir with feats.scp (wav.scp for a WAV-in --onnx file)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Output dir for xvector.scp / xvector.ark."),
    out_old: Optional[Path] = typer.Option(None, "--out", hidden=True),
    nj: int = typer.Option(1, "--nj", help="Parallel CPU jobs."),
    checkpoint: str = typer.Option(AVG_NAME, "--checkpoint", help="File in MODEL/models, or an absolute path."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    max_frames: int = typer.Option(3000, "--max-frames", help="Longer utterances: average of windows this long."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="Embed with this `trkd export` file on onnxruntime "
                                        "(CPU) instead of MODEL."),
    force: bool = typer.Option(False, "--force", help="Extract again even if OUT is up to date."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (default: bf16 on a "
                                            "GPU that has it, else fp32)."),
) -> None:
    """Extract whole-utterance embeddings into OUT/xvector.scp and OUT/xvector.ark (Kaldi format).

    Features are mean-normalised per utterance; utterances longer than --max-frames frames are cut into
    windows whose embeddings are averaged, so memory stays bounded. A rerun with the same model,
    checkpoint, features and settings skips the work (OUT/extract.yaml records them).
    """
    from trkd import checkpoint as ckpt
    from trkd.commands.options import either
    from trkd.extract import extract
    from trkd.utils.lock import folder_lock
    from trkd.utils.stamp import file_id, is_current, write_stamp

    out_dir = either(out_dir, out_old, "--out-dir", "--out")
    ckpt_path = None
    if model is not None:
        ckpt_path = Path(checkpoint) if Path(checkpoint).is_absolute() else ckpt.model_dir(model) / checkpoint
    stamp = {"model": file_id(ckpt_path), "config": file_id(model and model / "config.yaml"),
             "onnx": file_id(onnx), "feats": file_id(data / "feats.scp"), "wav": file_id(data / "wav.scp"),
             "max_frames": max_frames}
    stamp_path, scp = out_dir / "extract.yaml", out_dir / "xvector.scp"
    if not force and (model or onnx) and is_current(stamp_path, scp, stamp):
        typer.echo(f"{scp} is up to date (same model, features and settings): skipped; --force reruns")
        return
    with folder_lock(out_dir, "trkd extract"):
        typer.echo(f"wrote {extract(model, data, out_dir, nj, checkpoint, device, max_frames, onnx, precision)}")
        write_stamp(stamp_path, stamp)


def average_cmd(
    model: Optional[Path] = typer.Option(None, "--model", help="Model dir with models/model_<epoch>.pt."),
    exp_old: Optional[Path] = typer.Option(None, "--exp", hidden=True),
    num: int = typer.Option(10, "--num", min=1, help="Average the last NUM epoch checkpoints."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file (default MODEL/models/avg_model.pt)."),
) -> None:
    """Average the weights of the last NUM epoch checkpoints of a model dir; fewer than NUM is an error."""
    from trkd.checkpoint import average, model_dir, saved_epochs
    from trkd.commands.options import either
    from trkd.errors import InputError

    model = either(model, exp_old, "--model", "--exp")
    saved = saved_epochs(model)
    if len(saved) < num:
        raise InputError(model_dir(model), f"holds {len(saved)} epoch checkpoints, --num {num} asked "
                                           f"(pass --num {len(saved)} to average those)" if saved else
                                           "holds no model_<epoch>.pt checkpoint to average")
    typer.echo(f"wrote {average(model, num, out)}")


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("train")(train_cmd)
    app.command("extract")(extract_cmd)
    app.command("average")(average_cmd)
