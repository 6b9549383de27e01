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
from trkd.data.tables import read_scp
from trkd.errors import InputError
from trkd.utils.atomic import atomic_path

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
                    device: Union[str, torch.device] = "cpu") -> np.ndarray:
    """One embedding of a (T, F) feature matrix; windows of `max_frames` averaged when longer."""
    mat = mat - mat.mean(axis=0, keepdims=True)
    if mat.shape[0] < MIN_FRAMES:
        mat = crop_or_repeat(mat, 0, MIN_FRAMES)
    t = mat.shape[0]
    starts = list(range(0, max(t - max_frames, 0) + 1, max_frames))
    if starts[-1] + max_frames < t:
        starts.append(t - max_frames)
    x = torch.from_numpy(np.ascontiguousarray(mat)).to(device)
    embs = [model(x[s:s + max_frames].unsqueeze(0))[0] for s in starts]
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


_worker = {}


def _init_worker(model_dir: Optional[str], checkpoint: str, max_frames: int, onnx: Optional[str]) -> None:
    torch.set_num_threads(1)  # nj processes share the cores
    _worker.update(model=load_embedder(model_dir, checkpoint, "cpu", onnx, 1), max_frames=max_frames)


def _embed_job(item: Tuple[str, str, str]):
    utt, rx, scp = item
    try:
        return utt, embed_utterance(_worker["model"], load_feats(rx, scp), _worker["max_frames"])
    except InputError as err:  # its constructor signature does not survive pickling back
        return utt, (err.path, err.message, err.line)


def extract(model_dir: Optional[PathLike], data_dir: PathLike, out_dir: PathLike, nj: int = 1,
            checkpoint: str = ckpt.AVG_NAME, device: Optional[str] = None, max_frames: int = 3000,
            onnx: Optional[PathLike] = None) -> Path:
    """Embed every utterance of `DATA/feats.scp` with the model of `MODEL` (or the ONNX file `onnx`,
    on the CPU; a WAV-in one of `trkd export --with-fbank` reads DATA/wav.scp); write `OUT/xvector.{ark,scp}`."""
    from trkd.utils.device import choose_device

    out_dir = Path(out_dir)
    wave_model = wave_graph(model_dir, onnx)
    if wave_model is not None:
        return write_xvectors(*wave_embeddings(wave_model, Path(data_dir)), out_dir)
    scp_path = Path(data_dir) / "feats.scp"
    items = [(e.key, e.rx, str(scp_path)) for e in read_scp(scp_path)]
    if not items:
        raise InputError(scp_path, "no utterances")
    dev = choose_device("cpu" if onnx is not None else device)
    model = load_embedder(model_dir, checkpoint, dev, onnx)  # also validates the model before forking
    feat_dim = load_feats(items[0][1], scp_path).shape[1]
    if feat_dim != getattr(model, "feat_dim", feat_dim):
        raise InputError(scp_path, f"features have {feat_dim} dims, the model expects {model.feat_dim}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if nj > 1 and dev.type == "cpu":
        del model
        worker_args = (model_dir and str(model_dir), checkpoint, max_frames, onnx and str(onnx))
        pool = mp.get_context("spawn").Pool(nj, _init_worker, worker_args)
        results: Iterator = pool.imap(_embed_job, items, chunksize=8)
    else:
        pool = None
        results = ((u, embed_utterance(model, load_feats(rx, s), max_frames, dev)) for u, rx, s in items)
    try:
        return write_xvectors(results, len(items), out_dir)
    finally:
        if pool is not None:
            pool.close()
            pool.join()


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
    """(`(utt, embedding)` pairs, their count) of a WAV-in ONNX embedder over DATA's audio, in utt order."""
    from trkd.data.audio import load_utt
    from trkd.data.kaldi_dir import line_of, read_data_dir

    data = read_data_dir(data_dir)
    opts = embedder.fbank_options()
    min_len = int(opts.sample_frequency * opts.frame_length / 1000)

    def pairs():
        for utt in sorted(data.utt2spk):
            wave = load_utt(data_dir, data, utt, opts.sample_frequency)
            if len(wave) < min_len:
                raise InputError(data_dir / "utt2spk", f"{utt}: {len(wave)} samples make no fbank frame",
                                 line_of(data_dir / "utt2spk", utt))
            yield utt, embedder.run(wave)[0]

    return pairs(), len(data.utt2spk)


def write_xvectors(results, total: int, out_dir: Path) -> Path:
    """Write `(utt, embedding)` pairs to OUT/xvector.{ark,scp}, each file whole or not at all.

    A worker's InputError arrives as a `(path, message, line)` tuple and is raised here.
    """
    ark_path, scp_out = (out_dir / "xvector.ark").resolve(), out_dir / "xvector.scp"
    lines: List[str] = []
    with atomic_path(ark_path) as tmp, open(tmp, "wb") as f:
        for utt, emb in tqdm(results, total=total, desc="extract", dynamic_ncols=True, disable=None):
            if isinstance(emb, tuple):
                raise InputError(*emb)
            # kaldiio writes "utt " then the vector; the scp offset points past the key
            lines.append(f"{utt} {ark_path}:{f.tell() + len(utt.encode()) + 1}")
            kaldiio.save_ark(f, {utt: emb})
    with atomic_path(scp_out) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines))
    return scp_out
