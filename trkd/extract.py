"""Whole-utterance embeddings of a trained model dir, written as Kaldi `xvector.scp` / `xvector.ark`.

Features are mean-normalised over the whole utterance (training normalises each chunk the same
way). An utterance longer than `max_frames` is cut into `max_frames` windows (the last one aligned
to the end) whose embeddings are averaged, so memory stays bounded for any length; anything
shorter is embedded in one pass, exactly. With `nj > 1` worker processes embed utterances and
the parent writes them in `feats.scp` order, so there is one writer and nothing to merge.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import kaldiio
import numpy as np
import torch
from tqdm import tqdm

from trkd import checkpoint as ckpt
from trkd.data.chunks import crop_or_repeat, load_feats
from trkd.data.kaldi_dir import iter_table
from trkd.errors import InputError
from trkd.utils.atomic import atomic_path
from trkd.utils.precision import autocast

PathLike = Union[str, Path]
MIN_FRAMES = 100  # shorter inputs are repeated up to 1 s, as training pads short chunks


def load_model(model_dir: PathLike, checkpoint: str = ckpt.AVG_NAME, device: str = "cpu") -> torch.nn.Module:
    """The embedding network of a model dir (its resolved `config.yaml` + a checkpoint), in eval mode."""
    from trkd.config import load_config
    from trkd.models import build_model

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(model_dir, "no such model directory")
    cfg = load_config(model_dir / "config.yaml")
    path = Path(checkpoint) if Path(checkpoint).is_absolute() else ckpt.model_dir(model_dir) / checkpoint
    state = ckpt.load(path)
    model = build_model(dict(cfg.model))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise InputError(path, f"does not match the model of {model_dir / 'config.yaml'}: {err}") from None
    return model.to(device).eval()


@torch.no_grad()
def embed_utterance(model: torch.nn.Module, mat: np.ndarray, max_frames: int = 3000,
                    device: Union[str, torch.device] = "cpu", precision: str = "fp32") -> np.ndarray:
    """One embedding of a (T, F) feature matrix; windows of `max_frames` averaged when longer."""
    mat = mat - mat.mean(axis=0, keepdims=True)
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
    if onnx is not None:
        from trkd.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(onnx, num_threads)
    if model_dir is None:
        raise InputError(None, "give a model dir (--model) or an ONNX file (--onnx)")
    return load_model(model_dir, checkpoint, device)


_worker = {}


def _init_worker(model_dir: Optional[str], checkpoint: str, max_frames: int, onnx: Optional[str],
                 precision: str = "fp32") -> None:
    torch.set_num_threads(1)  # nj processes share the cores
    _worker.update(model=load_embedder(model_dir, checkpoint, "cpu", onnx, 1), max_frames=max_frames,
                   precision=precision)


def _embed_job(item: Tuple[str, str, str]):
    utt, rx, scp = item
    try:
        return utt, embed_utterance(_worker["model"], load_feats(rx, scp), _worker["max_frames"], "cpu",
                                    _worker["precision"])
    except InputError as err:  # its constructor signature does not survive pickling back
        return utt, (err.path, err.message, err.line)


def extract(model_dir: Optional[PathLike], data_dir: PathLike, out_dir: PathLike, nj: int = 1,
            checkpoint: str = ckpt.AVG_NAME, device: Optional[str] = None, max_frames: int = 3000,
            onnx: Optional[PathLike] = None, precision: Optional[str] = None) -> Path:
    """Embed every utterance of `DATA/feats.scp` with the model of `MODEL` (or the ONNX file `onnx`,
    on the CPU); write `OUT/xvector.{ark,scp}`."""
    from trkd.utils.device import choose_device
    from trkd.utils.precision import resolve_precision

    scp_path = Path(data_dir) / "feats.scp"
    items = [(utt, rx, str(scp_path)) for _, (utt, rx) in iter_table(scp_path)]
    if not items:
        raise InputError(scp_path, "no utterances")
    dev = choose_device("cpu" if onnx is not None else device)
    precision = "fp32" if onnx is not None else resolve_precision(precision, dev)
    model = load_embedder(model_dir, checkpoint, dev, onnx)  # also validates the model before forking
    feat_dim = load_feats(items[0][1], scp_path).shape[1]
    if feat_dim != getattr(model, "feat_dim", feat_dim):
        raise InputError(scp_path, f"features have {feat_dim} dims, the model expects {model.feat_dim}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ark_path, scp_out = (out_dir / "xvector.ark").resolve(), out_dir / "xvector.scp"
    if nj > 1 and dev.type == "cpu":
        del model
        worker_args = (model_dir and str(model_dir), checkpoint, max_frames, onnx and str(onnx), precision)
        pool = mp.get_context("spawn").Pool(nj, _init_worker, worker_args)
        results: Iterator = pool.imap(_embed_job, items, chunksize=8)
    else:
        pool = None
        results = ((u, embed_utterance(model, load_feats(rx, s), max_frames, dev, precision)) for u, rx, s in items)
    lines: List[str] = []
    try:
        with atomic_path(ark_path) as tmp, open(tmp, "wb") as f:
            for utt, emb in tqdm(results, total=len(items), desc="extract", dynamic_ncols=True):
                if isinstance(emb, tuple):
                    raise InputError(*emb)
                # kaldiio writes "utt " then the vector; the scp offset points past the key
                lines.append(f"{utt} {ark_path}:{f.tell() + len(utt.encode()) + 1}")
                kaldiio.save_ark(f, {utt: emb})
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    with atomic_path(scp_out) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines))
    return scp_out
