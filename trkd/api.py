"""The Python API: load a trained model, embed audio, score two embeddings.

    import trkd
    model = trkd.load_model("exp_quick/seed0/ecapa_teacher")   # a model dir of `trkd train`/`distill`
    a = model.embed_file("data_quick/wav/tst0001/tst0001-u001.wav")
    b = model.embed(wave, 16000)                                 # numpy or torch, float in [-1, 1)
    trkd.score(a, b)                                              # cosine similarity

`trkd.load_onnx("student.onnx")` gives the same object over a `trkd export` file. Embeddings are
those of `trkd extract` on `trkd fbank` features: the model dir's fbank options (dither 0), per
utterance mean normalisation, windows averaged beyond `max_frames`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from trkd.errors import InputError
from trkd.layout import AVG_NAME
from trkd.utils import PathLike

MAX_FRAMES = 3000  # as `trkd extract --max-frames`


class Embedder:
    """A speaker-embedding extractor from audio: fbank (as in training) then the network."""

    def __init__(self, net, fbank_opts, device="cpu", max_frames: int = MAX_FRAMES, source: str = ""):
        self.net, self.fbank_opts, self.device = net, fbank_opts, device
        self.max_frames, self.source = max_frames, source
        self.takes_wave = bool(getattr(net, "takes_wave", False))

    @property
    def sample_rate(self) -> int:
        return int(self.fbank_opts.sample_frequency)

    def features(self, wave, sample_rate: int) -> np.ndarray:
        """`(frames, num_mel_bins)` fbank of a mono waveform, as `trkd fbank` computes it (dither 0)."""
        import torch

        from trkd.features import fbank_of

        return fbank_of(torch.as_tensor(self._mono(wave, sample_rate)), sample_rate, self.fbank_opts).numpy()

    def embed(self, wave, sample_rate: int) -> np.ndarray:
        """The `(D,)` float32 embedding of a mono waveform (numpy or torch, float in [-1, 1))."""
        from trkd.extract import MIN_FRAMES, embed_utterance

        wave = self._mono(wave, sample_rate)
        if len(wave) < int(sample_rate * self.fbank_opts.frame_length / 1000):
            raise ValueError(f"{len(wave)} samples make no fbank frame (one frame is "
                             f"{self.fbank_opts.frame_length:g} ms; shorter than {MIN_FRAMES} frames is repeated)")
        if self.takes_wave:
            return self.net.run(wave)[0]
        return embed_utterance(self.net, self.features(wave, sample_rate), self.max_frames, self.device)

    def embed_file(self, path: PathLike) -> np.ndarray:
        """The embedding of an audio file (any format soundfile reads, mono, at `sample_rate`)."""
        import soundfile as sf

        try:
            wave, rate = sf.read(str(path), dtype="float32", always_2d=False)
        except (OSError, RuntimeError) as err:
            raise InputError(path, f"cannot read audio: {str(err).splitlines()[0]}") from None
        try:
            return self.embed(wave, rate)
        except ValueError as err:
            raise InputError(path, str(err)) from None

    def _mono(self, wave, sample_rate: int) -> np.ndarray:
        wave = np.asarray(wave.detach().cpu() if hasattr(wave, "detach") else wave, dtype=np.float32)
        if wave.ndim == 2 and 1 in wave.shape:
            wave = wave.reshape(-1)
        if wave.ndim != 1:
            raise ValueError(f"expected mono audio, got an array of shape {wave.shape}")
        if sample_rate != self.sample_rate:
            raise ValueError(f"sample rate {sample_rate} Hz, the model expects {self.sample_rate} Hz "
                             f"(resample first, e.g. `sox in.wav -r {self.sample_rate} out.wav`)")
        return wave

    def __repr__(self) -> str:
        return f"Embedder({self.source!r}, {self.sample_rate} Hz, {self.fbank_opts.num_mel_bins} mel bins)"


def load_model(model_dir: PathLike, checkpoint: str = AVG_NAME, device: Optional[str] = None,
               max_frames: int = MAX_FRAMES) -> Embedder:
    """An Embedder over a model dir of `trkd train` or `trkd distill` (its config.yaml, a checkpoint
    in models/, the fbank options of its training data); `device` None picks cuda when available."""
    from trkd.extract import load_model as load_net
    from trkd.model_fbank import model_fbank
    from trkd.utils.device import choose_device

    dev = choose_device(device)
    net = load_net(model_dir, checkpoint, dev)
    return Embedder(net, model_fbank(model_dir), dev, max_frames, str(model_dir))


def load_onnx(path: PathLike, num_threads: Optional[int] = None) -> Embedder:
    """An Embedder over a `trkd export` file (fbank-in, or WAV-in with --with-fbank), on onnxruntime."""
    from trkd.onnx_embedder import OnnxEmbedder

    net = OnnxEmbedder(path, num_threads)
    return Embedder(net, net.fbank_options(), "cpu", MAX_FRAMES, str(path))


def score(a, b) -> float:
    """Cosine similarity of two embeddings (what `trkd score` computes, without mean subtraction)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"embeddings of different sizes: {a.size} and {b.size}")
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def score_epochs(model_dir: PathLike, data_dir: PathLike, trials: Optional[PathLike] = None, nj: int = 1,
                 every: int = 1, last: Optional[int] = None, device: Optional[str] = None):
    """`trkd score-epochs`: EER and minDCF of each epoch checkpoint of a model dir (already scored
    epochs skipped), its records (MODEL/epochs_eer.jsonl, epoch order) and the plateau verdict."""
    from trkd.study.convergence import plateau
    from trkd.study.epochs_eer import score_epochs as run

    records, _ = run(model_dir, data_dir, trials, nj, every, last, device=device, report=lambda line: None)
    return records, plateau(records)
