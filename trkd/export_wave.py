"""WAV-in ONNX export (`trkd export --with-fbank`): waveform → Kaldi fbank → embedding in one graph.

The graph takes `wave (samples,)`, float32 in [-1, 1) at the model's sample rate, and returns
`embedding (1, D)` and the log-mel `fbank (frames, F)` before normalisation. Inside: the matmul
fbank of `trkd.fbank_graph` (as `trkd fbank` with dither 0), per-utterance mean normalisation, an
utterance under MIN_FRAMES repeated up to it, then the network on the whole utterance (no windows:
`trkd extract` averages windows only beyond --max-frames, 30 s by default).

Parity is checked on a data dir's wav.scp or on synthetic speech (`trkd.corpus`): the graph's log-mel
against `trkd fbank`, and its embedding against the torch path `trkd extract` takes on `trkd fbank`
features. On the log-mel the bound is FBANK_TOL on bands above LOUD; in quieter bands float32
rounding dominates in every implementation (`trkd fbank` differs from a float64 fbank by up to 1e-2
there on the embedded corpus), so there the difference is only reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from trkd.data.chunks import mean_normalise
from trkd.errors import InputError
from trkd.export import ExportError, Parity
from trkd.features import FbankOptions, fbank_of
from trkd.fbank_graph import WaveFbank

FBANK_TOL = 1e-3
LOUD = 8.0  # log-mel of a band about 85 dB below int16 full scale
MAX_WAVES = 4


@dataclass(frozen=True)
class WaveParity(Parity):
    """Parity plus the log-mel's: on bands above LOUD, and over all bands."""

    fbank_max_abs: float = 0.0
    fbank_max_abs_all: float = 0.0

    def line(self) -> str:
        return (f"parity onnxruntime vs trkd fbank + torch on {self.inputs} waveforms ({self.source}): "
                f"log-mel max abs diff {self.fbank_max_abs:.3g} (bands above {LOUD:g}; "
                f"{self.fbank_max_abs_all:.3g} over all); embedding max abs diff {self.max_abs:.3g}, "
                f"min cosine {self.min_cosine:.6f}")


class WaveEmbedder(nn.Module):
    """`(samples,)` → (`(1, D)` embedding, `(frames, F)` log-mel), the graph that is exported."""

    def __init__(self, model: nn.Module, opts: FbankOptions, min_frames: int):
        super().__init__()
        self.fbank = WaveFbank(opts)
        self.model = model
        self.min_frames = min_frames

    def forward(self, wave: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats = self.fbank(wave)
        x = mean_normalise(feats)
        # a shape tensor, not a Python int, so that the exported graph keeps the length dynamic
        frames = torch._shape_as_tensor(x)[0]
        index = torch.arange(torch.clamp(frames, min=self.min_frames), device=x.device) % frames
        return self.model(x[index].unsqueeze(0)), feats


def data_waves(data_dir: Path, opts: FbankOptions, num: int = MAX_WAVES) -> List[np.ndarray]:
    """The first `num` utterances of DATA (wav.scp, segments) of distinct lengths, as float32 waveforms."""
    from trkd.data.audio import load_utt
    from trkd.data.kaldi_dir import read_data_dir

    if not (data_dir / "wav.scp").is_file():
        raise InputError(data_dir / "wav.scp", "no such file (--with-fbank checks parity on audio: "
                                               "--data needs a dir with wav.scp)")
    data = read_data_dir(data_dir)
    min_len = int(opts.sample_frequency * opts.frame_length / 1000)
    waves, lengths = [], set()
    for utt in sorted(data.utt2spk):
        wave = load_utt(data_dir, data, utt, opts.sample_frequency)
        if len(wave) >= min_len and len(wave) not in lengths:
            lengths.add(len(wave))
            waves.append(wave)
        if len(waves) == num:
            break
    if not waves:
        raise InputError(data_dir / "wav.scp", "no utterance long enough for one fbank frame")
    return waves


def export_wave_onnx(model: nn.Module, opts: FbankOptions, path: Path, opset: int, min_frames: int) -> None:
    """Write the WAV-in graph to `path`, with `opts` in its metadata."""
    import onnx

    from trkd.onnx_embedder import METADATA_KEY, WAVE_INPUT

    wrapper = WaveEmbedder(model, opts, min_frames).eval()
    example = torch.zeros(opts.sample_frequency * 2)
    with torch.no_grad():
        torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[WAVE_INPUT], output_names=["embedding", "fbank"],
                          dynamic_axes={WAVE_INPUT: {0: "samples"}, "fbank": {0: "frames"}})
    graph = onnx.load(str(path))
    graph.metadata_props.add(key=METADATA_KEY, value=json.dumps(opts.to_dict()))
    onnx.save(graph, str(path))


def check_wave_parity(model: nn.Module, opts: FbankOptions, onnx_path: Path, waves: Sequence[np.ndarray],
                      source: str, name: Path, min_cosine: float) -> WaveParity:
    """onnxruntime's log-mel against `trkd fbank` and its embedding against torch on `trkd fbank`."""
    import onnxruntime as ort

    from trkd.extract import MIN_FRAMES, embed_utterance

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    loud, every, max_abs, min_cos = 0.0, 0.0, 0.0, 1.0
    for wave in waves:
        try:
            emb, feats = session.run(None, {"wave": wave.astype(np.float32)})
        except Exception as err:  # onnxruntime's own exception types
            raise ExportError(name, f"--with-fbank: onnxruntime cannot run the exported graph: "
                                   f"{str(err).splitlines()[0]}; not written") from None
        ref_feats = fbank_of(torch.from_numpy(wave), opts.sample_frequency, opts).numpy()
        if feats.shape != ref_feats.shape:
            raise ExportError(name, f"--with-fbank: the graph makes {feats.shape[0]} frames of {len(wave)} "
                                   f"samples, trkd fbank {ref_feats.shape[0]}; not written")
        diff = np.abs(feats - ref_feats)
        every = max(every, float(diff.max()))
        loud = max(loud, float(diff[ref_feats > LOUD].max(initial=0.0)))
        # the whole utterance in one window, as the graph runs it (a short one repeated up to MIN_FRAMES)
        ref = embed_utterance(model, ref_feats, max_frames=max(len(ref_feats), MIN_FRAMES))
        max_abs = max(max_abs, float(np.abs(emb[0] - ref).max()))
        min_cos = min(min_cos, float(emb[0] @ ref / (np.linalg.norm(emb[0]) * np.linalg.norm(ref) + 1e-12)))
    parity = WaveParity(max_abs, min_cos, len(waves), source, loud, every)
    if not (loud <= FBANK_TOL and min_cos >= min_cosine):
        raise ExportError(name, f"--with-fbank: onnxruntime disagrees: {parity.line()}; needs log-mel "
                               f"<= {FBANK_TOL:g} and cosine >= {min_cosine}; not written")
    return parity


def export_with_fbank(model: nn.Module, opts: FbankOptions, tmp: Path, out: Path, data_dir: Optional[Path],
                      opset: int, min_cosine: float) -> WaveParity:
    """Export the WAV-in graph to `tmp` and check it; `out` names it in messages."""
    from trkd.export import GENERATED, generated_waves
    from trkd.extract import MIN_FRAMES

    feat_dim = int(getattr(model, "feat_dim", opts.num_mel_bins))
    if feat_dim != opts.num_mel_bins:
        raise InputError(out, f"the model takes {feat_dim} features, its fbank options make "
                              f"{opts.num_mel_bins} mel bins")
    if data_dir is not None:
        waves, source = data_waves(Path(data_dir), opts), str(Path(data_dir) / "wav.scp")
    else:
        waves, source = generated_waves(), GENERATED
    try:
        export_wave_onnx(model, opts, tmp, opset, MIN_FRAMES)
    except Exception as err:  # the exporter's errors are pages of TorchScript: keep the first line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ExportError(out, f"--with-fbank: the ONNX exporter failed: {first[:300]}") from None
    return check_wave_parity(model, opts, tmp, waves, source, out, min_cosine)
