"""Whole-utterance embeddings of a trained model dir, written as Kaldi `xvector.scp` / `xvector.ark`.

Features are mean-normalised over the whole utterance (training normalises each chunk the same
way). An utterance longer than `max_frames` is cut into `max_frames` windows (the last one aligned
to the end) whose embeddings are averaged, so memory stays bounded for any length; anything
shorter is embedded in one pass, exactly. With `nj > 1` worker processes (trkd/jobs.py) embed
utterances and the parent writes them in `feats.scp` order, so there is one writer.

`load_model_dir` is the one way to open a trained model dir (extract, dump-logits, distill).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
from tqdm import tqdm

from trkd import checkpoint as ckpt
from trkd.data.chunks import crop_or_repeat, load_feats, mean_normalise
from trkd.data.tables import read_scp
from trkd.errors import InputError
from trkd.jobs import Context, run_jobs
from trkd.utils import PathLike
from trkd.utils.ark import ark_scp_writer
from trkd.utils.atomic import make_dirs, remove_stale
from trkd.utils.precision import autocast

MIN_FRAMES = 100  # shorter inputs are repeated up to 1 s, as training pads short chunks


@dataclass
class TrainedDir:
    """A `trkd train` model dir as loaded: its resolved config, the checkpoint and its network."""

    cfg: Any
    state: Dict[str, Any]
    path: Path           # the checkpoint file
    model: torch.nn.Module


def load_state(module: torch.nn.Module, part: str, loaded: "TrainedDir", model_dir: Path) -> None:
    """Load `loaded.state[part]` into `module`; a mismatch names the checkpoint and the config."""
    try:
        module.load_state_dict(loaded.state[part])
    except (KeyError, RuntimeError) as err:
        raise InputError(loaded.path, f"does not match the model of {model_dir / 'config.yaml'}: {err}") from None


def load_model_dir(model_dir: PathLike, checkpoint: str = ckpt.AVG_NAME) -> TrainedDir:
    """The one way to open a model dir: `config.yaml`, `models/CHECKPOINT` (or an absolute path), the
    network built from the config with the checkpoint's weights (on the CPU, in train mode)."""
    from trkd.config import load_config
    from trkd.models import build_model

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(model_dir, "no such model directory")
    cfg = load_config(model_dir / "config.yaml")
    path = Path(checkpoint) if Path(checkpoint).is_absolute() else ckpt.model_dir(model_dir) / checkpoint
    loaded = TrainedDir(cfg, ckpt.load(path), path, build_model(dict(cfg.model)))
    load_state(loaded.model, "model", loaded, model_dir)
    return loaded


def load_model(model_dir: PathLike, checkpoint: str = ckpt.AVG_NAME, device: str = "cpu") -> torch.nn.Module:
    """The embedding network of a model dir (its resolved `config.yaml` + a checkpoint), in eval mode."""
    return load_model_dir(model_dir, checkpoint).model.to(device).eval()


@torch.no_grad()
def embed_utterance(model: torch.nn.Module, mat: np.ndarray, max_frames: int = 3000,
                    device: Union[str, torch.device] = "cpu", precision: str = "fp32") -> np.ndarray:
    """One embedding of a (T, F) feature matrix; windows of `max_frames` averaged when longer."""
    mat = mean_normalise(mat)
    if mat.shape[0] < MIN_FRAMES:
        mat = crop_or_repeat(mat, 0, MIN_FRAMES)
    t = mat.shape[0]
    starts = list(range(0, max(t - max_frames, 0) + 1, max_frames))
    if starts[-1] + max_frames < t:
        starts.append(t - max_frames)
    x = torch.from_numpy(np.ascontiguousarray(mat)).to(device)
    with autocast(torch.device(device), precision):
        embs = [model(x[s:s + max_frames].unsqueeze(0))[0].float() for s in starts]
    return torch.stack(embs).mean(0).float().cpu().numpy()


def load_embedder(model_dir: Optional[PathLike], checkpoint: str = ckpt.AVG_NAME, device: str = "cpu",
                  onnx: Optional[PathLike] = None, num_threads: Optional[int] = None):
    """The torch model of a model dir, or, with `onnx`, that exported file run by onnxruntime."""
    if onnx is not None and model_dir is not None:
        raise InputError(None, "give --model or --onnx, not both (an exported file embeds on its own)")
    if onnx is not None:
        from trkd.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(onnx, num_threads)
    if model_dir is None:
        raise InputError(None, "give a model dir (--model) or an ONNX file (--onnx)")
    return load_model(model_dir, checkpoint, device)


def _worker_embedder(model_dir: Optional[str], checkpoint: str, onnx: Optional[str]):
    return load_embedder(model_dir, checkpoint, "cpu", onnx, 1), "cpu"


def _embed_job(ctx: Context, utt: str, rx: str, scp: str, max_frames: int, precision: str):
    model, device = ctx.state
    return utt, embed_utterance(model, load_feats(rx, scp), max_frames, device, precision)


def extract(model_dir: Optional[PathLike], data_dir: PathLike, out_dir: PathLike, nj: int = 1,
            checkpoint: str = ckpt.AVG_NAME, device: Optional[str] = None, max_frames: int = 3000,
            onnx: Optional[PathLike] = None, precision: Optional[str] = None) -> Path:
    """Embed every utterance of `DATA/feats.scp` with the model of `MODEL` (or the ONNX file `onnx`,
    on the CPU; a WAV-in one of `trkd export --with-fbank` reads DATA/wav.scp); write
    `OUT/xvector.{ark,scp}` (logs in `OUT/log/extract.J.log`)."""
    from trkd.utils.device import choose_device
    from trkd.utils.precision import resolve_precision

    out_dir = Path(out_dir)
    if nj < 1:
        raise InputError(None, f"--nj must be >= 1, got {nj}")
    wave_model = wave_graph(model_dir, onnx)
    if wave_model is not None:
        return write_xvectors(wave_embeddings(wave_model, Path(data_dir)), make_dirs(out_dir))
    scp_path = Path(data_dir) / "feats.scp"
    dev = choose_device("cpu" if onnx is not None else device)
    precision = "fp32" if onnx is not None else resolve_precision(precision, dev)
    items = [(e.key, e.rx, str(scp_path), max_frames, precision) for e in read_scp(scp_path)]
    if not items:
        raise InputError(scp_path, "no utterances")
    model = load_embedder(model_dir, checkpoint, dev, onnx)  # also validates the model before the workers start
    feat_dim = load_feats(items[0][1], scp_path).shape[1]
    if feat_dim != getattr(model, "feat_dim", feat_dim):
        raise InputError(scp_path, f"features have {feat_dim} dims, the model expects {model.feat_dim}")
    out_dir = make_dirs(out_dir)
    for path in (out_dir / "xvector.ark", out_dir / "xvector.scp"):
        remove_stale(path)  # left by a killed run
    if nj > 1 and dev.type == "cpu":
        del model
        setup = (_worker_embedder, (model_dir and str(model_dir), checkpoint, onnx and str(onnx)))
    else:
        nj, setup = 1, (lambda: (model, dev), ())
    # Workers embed, this process writes in feats.scp order: one writer, nothing to merge.
    return write_xvectors(run_jobs("extract", _embed_job, items, nj, out_dir / "log", setup=setup, chunksize=8,
                                   desc="extract", unit="utt"), out_dir)


def wave_graph(model_dir: Optional[PathLike], onnx: Optional[PathLike]):
    """The onnxruntime embedder of `onnx` if it is a WAV-in graph, else None.

    Asked before feats.scp is read, which a WAV-in graph does not need; a fbank-in file is then
    opened again by `load_embedder` (a session costs little beside extraction).
    """
    if onnx is None:
        return None
    embedder = load_embedder(model_dir, onnx=onnx)
    return embedder if embedder.takes_wave else None


def wave_embeddings(embedder, data_dir: Path):
    """`(utt, embedding)` pairs of a WAV-in ONNX embedder over DATA's audio, in utt order."""
    from trkd.data.audio import load_utt
    from trkd.data.kaldi_dir import line_of, read_data_dir

    data = read_data_dir(data_dir)
    opts = embedder.fbank_options()
    min_len = int(opts.sample_frequency * opts.frame_length / 1000)

    def pairs():
        for utt in tqdm(sorted(data.utt2spk), desc="extract", unit="utt", disable=None):
            wave = load_utt(data_dir, data, utt, opts.sample_frequency)
            if len(wave) < min_len:
                raise InputError(data_dir / "utt2spk", f"{utt}: {len(wave)} samples make no fbank frame",
                                 line_of(data_dir / "utt2spk", utt))
            yield utt, embedder.run(wave)[0]

    return pairs()


def write_xvectors(results, out_dir: Path) -> Path:
    """Write `(utt, embedding)` pairs to OUT/xvector.{ark,scp}, each file whole or not at all."""
    with ark_scp_writer(out_dir / "xvector.ark", out_dir / "xvector.scp") as write:
        for utt, emb in results:
            write(utt, emb)
    return out_dir / "xvector.scp"
