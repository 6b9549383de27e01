"""Kaldi-style training-data augmentation, before features: reverb, noise, music, babble, speed.

Each clean utterance gets copies with suffixed ids (`-reverb`, `-noise`, `-music`, `-babble`);
`--speed-perturb` adds 0.9×/1.1× copies as new speakers (`sp0.9-<spk>`, `sp0.9-<utt>`), which are
augmented too. `utt2source` records where each utterance comes from (see `trkd.data.sampler`).
Every random choice comes from a stream keyed by (seed, kind, utterance id), so the output does not
depend on the number of workers or on which other kinds are asked for, and any copy can be made
again from the clean audio alone: by default the copies are not written but given wav.scp entries
that make them when read (`trkd.data.virtual`); `write_wavs` writes them as 16-bit WAVs.
"""

from __future__ import annotations

import logging
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
from trkd.data.sampler import CLEAN, Origin, write_utt2source
from trkd.data.validate import validate_data_dir
from trkd.data.virtual import STAMP, entry, lists_fingerprint, settings_of, write_sources
from trkd.errors import InputError
from trkd.jobs import Context, run_all
from trkd.utils.atomic import remove_stale_under
from trkd.utils.ids import inside
from trkd.utils.lock import folder_lock
from trkd.utils.stamp import generation, write_stamp

log = logging.getLogger(__name__)


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
    """Which copies a clean utterance gets, and each copy's waveform (picklable, for worker processes)."""

    def __init__(self, cfg: AugmentConfig, seed: int, rirs: Optional[NoiseBank], noises: Optional[NoiseBank],
                 speed_perturb: bool):
        self.cfg, self.seed, self.rirs, self.noises, self.speed_perturb = cfg, seed, rirs, noises, speed_perturb

    def origins(self, utt: str) -> List[Origin]:
        """The copies of source `utt`, in the order they are made: speed copies, then augmented ones."""
        speeds = list(self.cfg.speed_factors) if self.speed_perturb else []
        bases = [1.0] + (speeds if self.cfg.augment_speed else [])
        return [Origin(utt, f) for f in speeds] + [Origin(utt, f, kind) for f in bases for kind in self.cfg.copies
                                                   if self._stream(kind, base_id(Origin(utt, f))) is not None]

    def make(self, clean: torch.Tensor, o: Origin, speeds: Optional[Dict[float, torch.Tensor]] = None) -> torch.Tensor:
        """The waveform of copy `o` of `clean` (float, before the WAV's 16-bit rounding); `speeds`
        keeps the speed-changed waves between the copies of one source."""
        speeds = {} if speeds is None else speeds
        wave = clean
        if o.speed != 1.0:
            if o.speed not in speeds:
                speeds[o.speed] = speed(clean, o.speed, self.cfg.rate)
            wave = speeds[o.speed]
        if o.copy == CLEAN:
            return wave
        rng = self._stream(o.copy, base_id(o))
        if rng is None:
            raise InputError(None, f"{copy_id(o)!r} is not a copy these settings make")
        return KINDS[o.copy](wave, rng, self)

    def _stream(self, kind: str, base: str) -> Optional[np.random.Generator]:
        """The random stream of the `kind` copy of `base`, or None when the draw leaves it out."""
        rng = rng_for(self.seed, kind, base)
        return rng if rng.random() < self.cfg.prob else None


def base_id(o: Origin) -> str:
    """The id of the (speed-changed) utterance that copy `o` augments."""
    return o.source if o.speed == 1.0 else f"sp{o.speed:g}-{o.source}"


def copy_id(o: Origin) -> str:
    return base_id(o) if o.copy == CLEAN else f"{base_id(o)}-{o.copy}"


def copy_speaker(spk: str, o: Origin) -> str:
    return spk if o.speed == 1.0 else f"sp{o.speed:g}-{spk}"


def open_lists(cfg: AugmentConfig, rir_dir: Optional[PathLike], noise_dir: Optional[PathLike]):
    """(RIR bank, noise bank) that `cfg.copies` need (None where not needed)."""
    needs_noise = [k for k in cfg.copies if k != "reverb"]
    if "reverb" in cfg.copies and rir_dir is None:
        raise InputError(None, "copies include reverb: give --rir-dir (or leave reverb out of --copies)")
    if needs_noise and noise_dir is None:
        raise InputError(None, f"copies include {', '.join(needs_noise)}: give --noise-dir")
    rirs = NoiseBank(rir_dir, cfg.rate, typed=False) if "reverb" in cfg.copies else None
    noises = NoiseBank(noise_dir, cfg.rate, typed=True, need=needs_noise) if needs_noise else None
    return rirs, noises


class _Job:
    """One source utterance's copies: WAVs under OUT/wav, or `trkd augment-wav` entries."""

    def __init__(self, aug: Augmenter, in_dir: Path, data: DataDir, out: Path, gen: Optional[str], reuse: bool):
        self.aug, self.in_dir, self.data, self.out, self.gen, self.reuse = aug, in_dir, data, out, gen, reuse

    def __call__(self, utt: str) -> List[Tuple[str, str, str, Optional[int], Origin]]:
        """`(copy id, speaker, wav.scp value, samples or None, origin)` of every copy of `utt`."""
        spk, rate, speeds = self.data.utt2spk[utt], self.aug.cfg.rate, {}
        clean = None
        out = []
        for o in self.aug.origins(utt):
            cid, n = copy_id(o), None
            path = inside(self.out / "wav", cid, ".wav")
            if self.gen is None and self.reuse and path.is_file():
                n = sf.info(str(path)).frames
            elif self.gen is None or self.data.segments:  # a WAV to write, or a segment's length to know
                clean = torch.from_numpy(load_utt(self.in_dir, self.data, utt, rate)) if clean is None else clean
                if self.gen is None:
                    y = self.aug.make(clean, o, speeds).numpy()
                    write_wav(path, y, rate)
                else:
                    y = clean if o.speed == 1.0 else self.aug.make(clean, Origin(utt, o.speed), speeds)
                n = len(y)
            out.append((cid, copy_speaker(spk, o), str(path) if self.gen is None else entry(self.out, cid, self.gen),
                        n, o))
        return out


def _keep(job: _Job) -> _Job:
    return job


def _augment_job(ctx: Context, utt: str) -> List[Tuple[str, str, str, Optional[int], Origin]]:
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
    write_wavs: bool = False,
) -> DataDir:
    """The data dir OUT: the clean utterances of IN (their audio referenced, not copied), their
    augmented copies, and `utt2source`.

    A copy's wav.scp entry is `trkd augment-wav --gen G OUT COPY |` (`trkd.data.virtual`): nothing
    is written but tables; readers make the copy again when they read it. With `write_wavs`, the
    copies are 16-bit WAVs under OUT/wav instead, and a rerun with the same settings reuses those
    already written. RIR_DIR and NOISE_DIR are Kaldi-style lists: `wav.scp` (`id path`), plus
    `utt2type` (`id noise|music|babble|speech`) for the noises; babble sums 3–7 babble or speech items.
    """
    in_dir, out = Path(in_dir), Path(out_dir).resolve()
    cfg.check()
    data = validate_data_dir(in_dir, check_audio=False, rate=cfg.rate)
    rirs, noises = open_lists(cfg, rir_dir, noise_dir)
    settings = settings_of(cfg, seed, speed_perturb, rir_dir, noise_dir, lists_fingerprint(rirs, noises))
    with folder_lock(out, "trkd augment"):
        return _write(in_dir, out, data, Augmenter(cfg, seed, rirs, noises, speed_perturb), settings, nj, write_wavs)


def _write(in_dir: Path, out: Path, data: DataDir, aug: Augmenter, settings: Dict, nj: int,
           write_wavs: bool) -> DataDir:
    """`augment_data_dir`'s writing, once its inputs are checked and OUT is locked."""
    cfg = aug.cfg
    reuse = write_stamp(out / STAMP, settings)
    remove_stale_under(out / "wav")  # WAVs half written by a killed run
    job = _Job(aug, in_dir, data, out, None if write_wavs else generation(settings), reuse)
    results = run_all("augment", _augment_job, [(u,) for u in data.utts], nj, out / "log", setup=(_keep, (job,)),
                      chunksize=4, desc=f"augment {in_dir}", unit="utt")
    copies = [c for r in results for c in r]
    result = _combined(data, copies, cfg.rate)
    if not write_wavs:
        write_sources(out, data)
    write_data_dir(out, result)
    write_utt2source(out / "utt2source", {**{u: Origin(u, 1.0) for u in data.utts}, **{c[0]: c[4] for c in copies}})
    if not write_wavs:
        _remove_wavs(out / "wav", [c[0] for c in copies])
    return result


def _remove_wavs(wav_dir: Path, utts: List[str]) -> None:
    """Delete the copies' WAVs of an earlier --write-wavs run, now that wav.scp no longer names them."""
    gone = 0
    for utt in utts:
        path = inside(wav_dir, utt, ".wav")
        if path.is_file():
            path.unlink()
            gone += 1
    if gone:
        log.info("removed %d WAVs of an earlier --write-wavs run from %s", gone, wav_dir)


def _combined(data: DataDir, copies: List[Tuple[str, str, str, Optional[int], Origin]], rate: int) -> DataDir:
    """The clean data dir plus the copies; with segments, each copy is one segment of its own audio."""
    wav, u2s, seg = dict(data.wav_scp), dict(data.utt2spk), dict(data.segments)
    for utt, spk, value, n, _ in copies:
        if utt in u2s or utt in wav:
            raise InputError(None, f"augmented id {utt!r} already exists in the input data dir")
        wav[utt], u2s[utt] = value, spk
        if data.segments:
            seg[utt] = (utt, 0.0, np.floor(n / rate * 1000) / 1000)
    return DataDir(wav, u2s, seg)
