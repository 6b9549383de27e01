"""ONNX export of a trained model dir's embedding extractor, checked against torch before it is kept.

The graph maps mean-normalised fbank `feats (batch, frames, F)` to `embedding (batch, D)`, with
dynamic batch and frame axes, through the legacy (TorchScript) exporter at opset 17. The file is
written under a temporary name and renamed only once onnxruntime agrees with torch on real fbank
(min cosine >= MIN_COSINE), so a file named `student.onnx` is always a verified one.

With `with_fbank=True` the graph takes a waveform instead and computes the fbank itself
(`trkd.export_wave`: torchaudio's fbank does not export, its FFT has no ONNX symbolic, so the graph
computes the DFT as a matrix product). Both graphs record the model's fbank options in their
metadata, so that `trkd embed --onnx` and `trkd.load_onnx` can embed audio with them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from trkd import checkpoint as ckpt
from trkd.data.chunks import mean_normalise
from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.atomic import atomic_path

OPSET = 17
MIN_COSINE = 0.9999
INPUT, OUTPUT = "feats", "embedding"
SAMPLE_RATE = 16000
TEST_SECONDS = (0.83, 2.0, 3.37)  # parity utterances: odd lengths catch a frame count baked in; the
# first, under a second, goes through the repetition of short inputs
GENERATED = "synthetic speech"
MAX_PARITY_UTTS = 4


class ExportError(InputError):
    """The model does not export faithfully: not written, reported as one line by the CLI."""


@dataclass(frozen=True)
class Parity:
    max_abs: float
    min_cosine: float
    inputs: int
    source: str

    def line(self) -> str:
        return (f"parity onnxruntime vs torch on {self.inputs} inputs ({self.source}): "
                f"max abs diff {self.max_abs:.3g}, min cosine {self.min_cosine:.6f}")


def export_onnx(model: nn.Module, path: PathLike, feat_dim: int, opset: int = OPSET, fbank_opts=None) -> None:
    """Write `model` as ONNX: `feats (batch, frames, feat_dim)` -> `embedding (batch, D)`; the fbank
    options (if known) go into its metadata."""
    import json

    import onnx

    from trkd.onnx_embedder import METADATA_KEY

    # A path, never a file object: `str()` of a BytesIO would name a file after its repr.
    path = os.fspath(path)
    example = torch.randn(2, 200, feat_dim)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shapes are expected
        torch.onnx.export(
            model.eval(), (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT], output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch", 1: "frames"}, OUTPUT: {0: "batch"}},
        )
    if fbank_opts is not None:
        graph = onnx.load(str(path))
        graph.metadata_props.add(key=METADATA_KEY, value=json.dumps(fbank_opts.to_dict()))
        onnx.save(graph, str(path))


def generated_waves(seconds: Sequence[float] = TEST_SECONDS, seed: int = 0) -> List[np.ndarray]:
    """The parity inputs without --data: speech-like utterances synthesised as the embedded corpus
    makes them (a smooth test tone leaves most mel bands near silence, where no user's audio is)."""
    from trkd.corpus.utterance import speech_waves

    return speech_waves(seconds, seed)


def fbank(wave: np.ndarray, num_mel_bins: int) -> np.ndarray:
    """Kaldi fbank (no dither, as for test data) of a [-1, 1) waveform, mean-normalised like extraction."""
    from trkd.features import FbankOptions, fbank_of

    opts = FbankOptions(num_mel_bins=num_mel_bins, dither=0.0, sample_frequency=SAMPLE_RATE)
    mat = fbank_of(torch.from_numpy(wave), SAMPLE_RATE, opts).numpy()
    return mean_normalise(mat)


def data_feats(data_dir: PathLike, num: int = MAX_PARITY_UTTS) -> List[np.ndarray]:
    """The first `num` utterances of `DATA/feats.scp` of distinct lengths, mean-normalised."""
    from trkd.data.chunks import load_feats
    from trkd.data.kaldi_dir import iter_table

    scp = Path(data_dir) / "feats.scp"
    if not scp.is_file():
        raise InputError(scp, "no such file (--data needs a dir with feats.scp)")
    mats, lengths = [], set()
    for _, (_, rx) in iter_table(scp):
        mat = load_feats(rx, scp)
        if mat.shape[0] not in lengths:
            lengths.add(mat.shape[0])
            mats.append(mean_normalise(mat))
        if len(mats) == num:
            break
    if not mats:
        raise InputError(scp, "no utterances")
    return mats


def compare(reference: Callable, candidate: Callable, inputs: Sequence[np.ndarray]) -> tuple:
    """(max abs difference, min cosine) of two embedders' outputs over `inputs`."""
    max_abs, min_cos = 0.0, 1.0
    for x in inputs:
        with torch.no_grad():
            ref = np.asarray(reference(torch.from_numpy(x)), dtype=np.float64)
        out = np.asarray(candidate(x), dtype=np.float64)
        if out.shape != ref.shape:
            return float("inf"), -1.0
        max_abs = max(max_abs, float(np.abs(out - ref).max()))
        cos = (out * ref).sum(-1) / (np.linalg.norm(out, axis=-1) * np.linalg.norm(ref, axis=-1) + 1e-12)
        min_cos = min(min_cos, float(cos.min()))
    return max_abs, min_cos


def check_parity(model: nn.Module, onnx_path: PathLike, feats: Sequence[np.ndarray], source: str,
                 name: Optional[PathLike] = None) -> Parity:
    """onnxruntime against torch, one utterance at a time and as a batch; ExportError below MIN_COSINE."""
    from trkd.onnx_embedder import OnnxEmbedder

    frames = min(m.shape[0] for m in feats)
    inputs = [m[None] for m in feats] + [np.stack([m[:frames] for m in feats])]  # dynamic frames, batch
    try:
        max_abs, min_cos = compare(model, OnnxEmbedder(onnx_path), inputs)
    except Exception as err:  # a graph with a baked-in shape fails inside onnxruntime
        raise ExportError(name or onnx_path, f"onnxruntime cannot run the exported graph: {err}; not written") from None
    parity = Parity(max_abs, min_cos, len(inputs), source)
    if not min_cos >= MIN_COSINE:
        raise ExportError(name or onnx_path, f"onnxruntime disagrees with torch: {parity.line()}, "
                          f"below {MIN_COSINE}; not written")
    return parity


def export(model_dir: PathLike, out: PathLike, checkpoint: str = ckpt.AVG_NAME, data_dir: Optional[PathLike] = None,
           with_fbank: bool = False, opset: int = OPSET):
    """Export MODEL's embedding extractor to ONNX and keep it only if onnxruntime matches torch.

    Parity runs on the first utterances of distinct lengths in DATA/feats.scp (DATA/wav.scp with
    `with_fbank`), or else on (fbank of) synthetic speech; each one alone (dynamic frames)
    and, without `with_fbank`, all cropped into one batch. Returns the parity (its `line()`).
    """
    from trkd.extract import load_model
    from trkd.model_fbank import model_fbank

    if opset < OPSET:
        raise InputError(None, f"opset {opset} is below {OPSET} (the lowest this exporter is checked with)")
    model = load_model(model_dir, checkpoint)
    feat_dim = int(getattr(model, "feat_dim", 80))
    out = Path(out)
    if with_fbank:
        from trkd.export_wave import export_with_fbank

        opts = model_fbank(model_dir)
        with atomic_path(out) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes are expected
            return export_with_fbank(model, opts, tmp, out, data_dir, opset, MIN_COSINE)
    try:
        opts = model_fbank(model_dir)
    except InputError:  # features not made by `trkd fbank`: the graph works, without the metadata
        opts = None
    with atomic_path(out) as tmp:
        if data_dir is not None:
            feats, source = data_feats(data_dir), f"{Path(data_dir) / 'feats.scp'}"
        else:
            feats, source = [fbank(w, feat_dim) for w in generated_waves()], f"fbank of {GENERATED}"
        if feats[0].shape[1] != feat_dim:
            raise InputError(source, f"features have {feats[0].shape[1]} dims, the model expects {feat_dim}")
        export_onnx(model, tmp, feat_dim, opset, opts)
        return check_parity(model, tmp, feats, source, name=out)
