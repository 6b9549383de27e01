"""Kaldi-style training-data augmentation, before features: reverb, noise, music, babble, speed.

Each clean utterance gets copies with suffixed ids (`-reverb`, `-noise`, `-music`, `-babble`);
`--speed-perturb` adds 0.9×/1.1× copies as new speakers (`sp0.9-<spk>`, `sp0.9-<utt>`), which are
augmented too. `utt2source` records where each utterance comes from (see `trkd.data.sampler`). Every random choice comes from a stream keyed by (seed, kind, utterance id), so the
output does not depend on the number of workers or on which other kinds are asked for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from trkd.corpus.rng import rng_for
from trkd.data.audio import load_utt, write_wav
from trkd.data.kaldi_dir import DataDir, PathLike, write_data_dir
from trkd.data.noise_bank import NoiseBank
from trkd.data.sampler import Origin, write_utt2source
from trkd.data.validate import validate_data_dir
from trkd.errors import InputError
from trkd.jobs import Context, run_all
from trkd.utils.atomic import remove_stale_under
from trkd.utils.stamp import write_stamp


@dataclass
class AugmentConfig:
    """Augmentation settings; SNR ranges (dB) are Kaldi's / WeSpeaker's MUSAN values.

    `prob` is the chance that an utterance gets each kind of copy (Kaldi's x-vector recipe keeps a
    random subset of the augmented data); `augment_speed` also augments the speed copies.
    """

    copies: List[str] = field(default_factory=lambda: ["reverb", "noise", "music", "babble"])
    noise_snr: List[float] = field(default_factory=lambda: [0.0, 15.0])
    music_snr: List[float] = field(default_factory=lambda: [5.0, 15.0])
    babble_snr: List[float] = field(default_factory=lambda: [13.0, 20.0])
    babble_count: List[int] = field(default_factory=lambda: [3, 7])
    speed_factors: List[float] = field(default_factory=lambda: [0.9, 1.1])
    augment_speed: bool = True
    prob: float = 1.0
    rate: int = 16000

    def check(self, source: str = "augmentation config") -> "AugmentConfig":
        for kind in self.copies:
            if kind not in KINDS:
                raise InputError(source, f"unknown copy kind {kind!r} (valid: {', '.join(KINDS)})")
        for name in ("noise_snr", "music_snr", "babble_snr", "babble_count"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise InputError(source, f"{name} must be [low, high], got {lo_hi}")
        if self.babble_count[0] < 1:
            raise InputError(source, f"babble_count must be >= 1, got {self.babble_count}")
        for f in self.speed_factors:
            if not 0.5 <= f <= 2.0 or f == 1.0:
                raise InputError(source, f"speed factor {f} must lie in [0.5, 2] and differ from 1")
        return self


def reverberate(x: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """Convolve with an RIR aligned on its direct path (its peak), same length and power as `x`."""
    rir = rir / rir.norm()
    delay = int(rir.abs().argmax())
    y = AF.fftconvolve(x, rir)[delay: delay + x.shape[-1]]
    return y * (x.pow(2).mean() / y.pow(2).mean().clamp_min(1e-20)).sqrt()


def add_at_snr(x: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """`x` plus `noise` scaled to the given SNR; a silent noise leaves `x` as it is."""
    if float(noise.pow(2).sum()) == 0.0:
        return x.clone()
    return AF.add_noise(x[None], noise[None], torch.tensor([snr_db], dtype=x.dtype))[0]


def speed(x: torch.Tensor, factor: float, rate: int) -> torch.Tensor:
    """Sox-style speed change (tempo and pitch): resample as if recorded at `rate · factor`."""
    return AF.resample(x, int(round(rate * factor)), rate)


def _reverb(x, rng, aug: "Augmenter") -> torch.Tensor:
    return reverberate(x, aug.rirs.draw(rng, x.shape[-1], whole=True))


def _additive(kind: str) -> Callable:
    def make(x, rng, aug: "Augmenter") -> torch.Tensor:
        lo, hi = getattr(aug.cfg, f"{kind}_snr")
        if kind == "babble":
            count = int(rng.integers(aug.cfg.babble_count[0], aug.cfg.babble_count[1] + 1))
            noise = sum(aug.noises.draw(rng, x.shape[-1], kind) for _ in range(count))
        else:
            noise = aug.noises.draw(rng, x.shape[-1], kind)
        return add_at_snr(x, noise, float(rng.uniform(lo, hi)))
    return make


# The kinds of copies: each makes one augmented waveform from a clean one and its own RNG stream.
KINDS: Dict[str, Callable] = {
    "reverb": _reverb,
    "noise": _additive("noise"),
    "music": _additive("music"),
    "babble": _additive("babble"),
}


class Augmenter:
    """Makes and writes the copies of one clean utterance (picklable, for worker processes)."""

    def __init__(self, in_dir: Path, data: DataDir, wav_dir: Path, cfg: AugmentConfig, seed: int,
                 rirs: Optional[NoiseBank], noises: Optional[NoiseBank], speed_perturb: bool, reuse: bool):
        self.in_dir, self.data, self.wav_dir, self.cfg, self.seed = in_dir, data, wav_dir, cfg, seed
        self.rirs, self.noises, self.speed_perturb, self.reuse = rirs, noises, speed_perturb, reuse

    def __call__(self, utt: str) -> List[Tuple[str, str, Path, int, Origin]]:
        """`(new utt, speaker, wav path, samples, origin)` of every copy of `utt`."""
        spk, rate = self.data.utt2spk[utt], self.cfg.rate
        clean = torch.from_numpy(load_utt(self.in_dir, self.data, utt, rate))
        out, bases = [], [(utt, spk, clean, 1.0)]
        if self.speed_perturb:
            for f in self.cfg.speed_factors:
                tag = f"sp{f:g}-"
                # Always in memory (cheap), so that copies of it do not depend on a reused WAV.
                wave = speed(clean, f, rate)
                out.append((*self._write(tag + utt, tag + spk, lambda: wave), Origin(utt, f)))
                if self.cfg.augment_speed:
                    bases.append((tag + utt, tag + spk, wave, f))
        for base, base_spk, wave, f in bases:
            for kind in self.cfg.copies:
                rng = rng_for(self.seed, kind, base)
                if rng.random() < self.cfg.prob:
                    out.append((*self._write(f"{base}-{kind}", base_spk, lambda: KINDS[kind](wave, rng, self)),
                                Origin(utt, f, kind)))
        return out

    def _write(self, utt: str, spk: str, make: Callable[[], torch.Tensor]) -> Tuple[str, str, Path, int]:
        path = (self.wav_dir / f"{utt}.wav").resolve()
        if self.reuse and path.is_file():
            return utt, spk, path, sf.info(str(path)).frames
        y = make().numpy()
        write_wav(path, y, self.cfg.rate)
        return utt, spk, path, len(y)


def _keep(aug: Augmenter) -> Augmenter:
    return aug


def _augment_job(ctx: Context, utt: str) -> List[Tuple[str, str, Path, int]]:
    return ctx.state(utt)


def augment_data_dir(
    in_dir: PathLike,
    out_dir: PathLike,
    rir_dir: Optional[PathLike] = None,
    noise_dir: Optional[PathLike] = None,
    speed_perturb: bool = False,
    seed: int = 0,
    cfg: AugmentConfig = AugmentConfig(),
    nj: int = 1,
) -> DataDir:
    """Write augmented copies of every utterance of IN as 16-bit WAVs under OUT/wav, and the data dir
    OUT with the clean and the augmented utterances (the clean audio is referenced, not copied) and
    its `utt2source`.

    RIR_DIR and NOISE_DIR are Kaldi-style lists: `wav.scp` (`id path`), plus `utt2type`
    (`id noise|music|babble|speech`) for the noises; babble sums 3–7 babble or speech items.
    A rerun with the same settings reuses the WAVs already written.
    """
    in_dir, out = Path(in_dir), Path(out_dir)
    cfg.check()
    data = validate_data_dir(in_dir, check_audio=False, rate=cfg.rate)
    needs_noise = [k for k in cfg.copies if k != "reverb"]
    if "reverb" in cfg.copies and rir_dir is None:
        raise InputError(None, "copies include reverb: give --rir-dir (or leave reverb out of --copies)")
    if needs_noise and noise_dir is None:
        raise InputError(None, f"copies include {', '.join(needs_noise)}: give --noise-dir")
    rirs = NoiseBank(rir_dir, cfg.rate, typed=False) if "reverb" in cfg.copies else None
    noises = NoiseBank(noise_dir, cfg.rate, typed=True, need=needs_noise) if needs_noise else None
    settings = {"seed": seed, "speed_perturb": speed_perturb, "rir_dir": str(rir_dir),
                "noise_dir": str(noise_dir), **dataclasses.asdict(cfg)}
    reuse = write_stamp(out / "conf" / "augment.yaml", settings)
    remove_stale_under(out / "wav")  # WAVs half written by a killed run
    aug = Augmenter(in_dir, data, out / "wav", cfg, seed, rirs, noises, speed_perturb, reuse)
    results = run_all("augment", _augment_job, [(u,) for u in data.utts], nj, out / "log", setup=(_keep, (aug,)),
                      chunksize=4, desc=f"augment {in_dir}", unit="utt")
    copies = [c for r in results for c in r]
    result = _combined(data, copies, cfg.rate)
    write_data_dir(out, result)
    write_utt2source(out / "utt2source", {**{u: Origin(u, 1.0) for u in data.utts}, **{c[0]: c[4] for c in copies}})
    return result


def _combined(data: DataDir, copies: List[Tuple[str, str, Path, int, Origin]], rate: int) -> DataDir:
    """The clean data dir plus the copies; with segments, each copy is one segment of its own WAV."""
    wav, u2s, seg = dict(data.wav_scp), dict(data.utt2spk), dict(data.segments)
    for utt, spk, path, n, _ in copies:
        if utt in u2s or utt in wav:
            raise InputError(None, f"augmented id {utt!r} already exists in the input data dir")
        wav[utt], u2s[utt] = str(path), spk
        if data.segments:
            seg[utt] = (utt, 0.0, np.floor(n / rate * 1000) / 1000)
    return DataDir(wav, u2s, seg)
