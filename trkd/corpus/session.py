"""One recording session: microphone/room channel, reverberation, additive noise, level.

Everything here is drawn from the utterance's own random stream and never looks at the speaker,
so channel and speaker are independent by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from trkd.corpus.config import FS, Difficulty
from trkd.corpus.rir import make_rir

_FRAME = 320  # 20 ms, for the active-speech level


@dataclass
class Session:
    snr_db: float
    noise_idx: int
    noise_offset: float
    reverb: bool
    hp_hz: float
    lp_hz: float
    lp_order: int
    tilt_db: float  # dB per octave around 1 kHz
    peaks: List[Tuple[float, float, float]] = field(default_factory=list)  # (Hz, dB, width oct)
    level_dbfs: float = -25.0


def draw_session(rng: np.random.Generator, diff: Difficulty, n_noise: int) -> Session:
    s = diff.channel_strength
    telephone = rng.random() < 0.15 * s
    return Session(
        snr_db=float(rng.uniform(*diff.snr_db)),
        noise_idx=int(rng.integers(n_noise)),
        noise_offset=float(rng.random()),
        reverb=bool(rng.random() < diff.reverb_prob),
        hp_hz=float(np.exp(rng.uniform(np.log(40.0), np.log(40.0 + 260.0 * s)))),
        lp_hz=float(rng.uniform(3400, 4200) if telephone else rng.uniform(8000 - 3000 * s, 8000)),
        lp_order=int(rng.integers(2, 9)),
        tilt_db=float(rng.normal(0.0, 1.5 * s)),
        peaks=[(float(np.exp(rng.uniform(np.log(200), np.log(6000)))), float(rng.normal(0, 4.0 * s)),
                float(rng.uniform(0.2, 1.0))) for _ in range(rng.integers(1, 5))],
        level_dbfs=float(rng.normal(diff.level_dbfs, diff.level_sd_db)),
    )


def channel_db(session: Session, freq: np.ndarray) -> np.ndarray:
    """The channel's magnitude response in dB at `freq` (Hz)."""
    f = np.maximum(np.asarray(freq, float), 1.0)
    db = -10 * np.log10(1 + (session.hp_hz / f) ** 4)
    db -= 10 * np.log10(1 + (f / session.lp_hz) ** (2 * session.lp_order))
    db += session.tilt_db * np.log2(f / 1000.0)
    for hz, gain, width in session.peaks:
        db += gain * np.exp(-0.5 * (np.log2(f / hz) / width) ** 2)
    return db


def channel_tilt(session: Session) -> float:
    """Least-squares slope (dB per octave) of the channel over the speech band, 300-3400 Hz."""
    f = np.geomspace(300, 3400, 64)
    return float(np.polyfit(np.log2(f), channel_db(session, f), 1)[0])


def fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: FFT sizes that pocketfft handles fast."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


_GRID = np.linspace(0.0, FS / 2, 2049)  # the channel is smooth: evaluate coarsely, interpolate


def _filter_noise(x: np.ndarray, session: Session) -> np.ndarray:
    size = fast_len(len(x))
    db = np.interp(np.fft.rfftfreq(size, 1.0 / FS), _GRID, channel_db(session, _GRID))
    return np.fft.irfft(np.fft.rfft(x, size) * 10 ** (db / 20.0), size)[: len(x)]


def _active_power(x: np.ndarray) -> float:
    """Mean power over frames within 30 dB of the loudest: speech level ignoring pauses."""
    e = np.mean(x[: len(x) // _FRAME * _FRAME].reshape(-1, _FRAME) ** 2, axis=1)
    return float(np.mean(e[e > e.max() * 1e-3]))


def render(speech: np.ndarray, session: Session, noise: np.ndarray, rng: np.random.Generator,
           diff: Difficulty) -> np.ndarray:
    """Recorded signal as int16: `speech` (already through the channel) reverberated, plus the
    channel-filtered `noise` at the session's SNR, scaled to its level without clipping."""
    n = len(speech)
    x = speech.astype(np.float64)
    if session.reverb:
        rir = make_rir(rng, diff.rt60_s)
        size = fast_len(n + len(rir))
        x = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(rir, size), size)[:n]
    noise = _filter_noise(noise.astype(np.float64), session)
    p_speech = _active_power(x)
    p_noise = float(np.mean(noise * noise)) + 1e-20
    y = x + noise * np.sqrt(p_speech / p_noise * 10 ** (-session.snr_db / 10))
    gain = 10 ** (session.level_dbfs / 20) / (np.sqrt(np.mean(y * y)) + 1e-20)
    peak = np.max(np.abs(y)) * gain
    if peak > 0.89:  # keep 1 dB of headroom rather than clip
        gain *= 0.89 / peak
    return np.round(y * gain * 32767).astype(np.int16)
