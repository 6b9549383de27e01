"""Noise clips: stationary and non-stationary noises, music-like tones, babble of held-out voices.

Two disjoint pools come from the same generators: `env` corrupts the corpus itself, `aug` is
written to `OUT/noise` for augmentation, so augmenting never replays the exact test-time noise
(as MUSAN is not the noise of VoxCeleb).
"""

from __future__ import annotations

from functools import lru_cache
from typing import List

import numpy as np

from trkd.corpus.config import FS, Difficulty
from trkd.corpus.rng import rng_for
from trkd.corpus.synth import synthesize
from trkd.corpus.voices import Speaker, population

NOISE_TYPES = ("noise", "music", "babble")


def _coloured(rng: np.random.Generator, n: int) -> np.ndarray:
    """White noise with a random spectral slope (white to brown) and a few resonances."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / FS), 20.0)
    db = rng.uniform(-6.0, 0.0) * np.log2(f / 1000.0)
    for _ in range(rng.integers(0, 4)):
        db += rng.normal(0, 6.0) * np.exp(-0.5 * (np.log2(f / rng.uniform(100, 6000)) / rng.uniform(0.2, 1.0)) ** 2)
    x = np.fft.irfft(spec * 10 ** (db / 20.0), n)
    if rng.random() < 0.3:  # mains hum
        t = np.arange(n) / FS
        hum = sum(np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
        x = x / x.std() + hum * rng.uniform(0.5, 3.0)
    return x


def _nonstationary(rng: np.random.Generator, n: int) -> np.ndarray:
    """Coloured noise under a slow random envelope, with knocks and clicks."""
    x = _coloured(rng, n)
    t = np.arange(n) / FS
    env = sum(rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.1, 3.0) * t + rng.uniform(0, 6.3)) for _ in range(3))
    x = x / x.std() * np.exp(0.8 * env)
    for _ in range(rng.integers(2, 12)):
        at, dur = rng.integers(n), int(rng.uniform(0.005, 0.2) * FS)
        burst = _coloured(rng, dur) * np.exp(-np.arange(dur) / (dur / 5.0)) * rng.uniform(1.0, 8.0)
        x[at:at + dur] += burst[: n - at] / (burst.std() + 1e-9)
    return x


def _music(rng: np.random.Generator, n: int) -> np.ndarray:
    """Notes of a random scale as harmonic tones with decaying envelopes, chords and drums."""
    beat = int(FS * 60.0 / rng.uniform(60, 170))
    root = rng.uniform(110, 330)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16]) if rng.random() < 0.5 else np.array([0, 2, 3, 5, 7, 8, 10, 12, 14, 15])
    n_harm = rng.integers(2, 10)
    harm_amp = rng.uniform(0.3, 0.9) ** np.arange(n_harm)
    x = np.zeros(n + 4 * beat)
    for start in range(0, n, beat):
        for _ in range(rng.integers(1, 4)):
            length = beat * int(rng.choice([1, 1, 2, 4]))
            f0 = root * 2 ** (rng.choice(scale) / 12.0)
            t = np.arange(length) / FS
            k = np.arange(1, n_harm + 1)[:, None]
            tone = (harm_amp[:, None] * np.sin(2 * np.pi * f0 * k * t) * (f0 * k < FS / 2)).sum(0)
            x[start:start + length] += tone * np.exp(-t * rng.uniform(1.0, 8.0)) * np.minimum(t / 0.01, 1.0)
        if rng.random() < 0.5:  # a drum hit
            d = min(int(0.1 * FS), n - start)
            x[start:start + d] += rng.standard_normal(d) * np.exp(-np.arange(d) / (0.02 * FS)) * 2.0
    return x[:n]


@lru_cache(maxsize=4)
def _babble_voices(seed: int, pool: str) -> List[Speaker]:
    return population(seed, f"babble-{pool}", 32, Difficulty(), "bab")


def _babble(rng: np.random.Generator, n: int, seed: int, pool: str) -> np.ndarray:
    """Three to seven held-out talkers at once, none of them a corpus speaker."""
    voices = _babble_voices(seed, pool)
    x = np.zeros(n)
    for i in rng.choice(len(voices), rng.integers(3, 8), replace=False):
        y = synthesize(voices[i].voice, rng, n).astype(np.float64)
        x += y / (y.std() + 1e-9) * 10 ** (rng.uniform(-6, 3) / 20.0)
    room = _coloured(rng, n)  # a room never falls silent even when every talker pauses
    return x + room / room.std() * 0.1 * x.std()


def noise_kind(idx: int) -> str:
    return NOISE_TYPES[idx % len(NOISE_TYPES)]


@lru_cache(maxsize=256)
def noise_clip(seed: int, pool: str, idx: int, seconds: float) -> np.ndarray:
    """Clip `idx` of a pool (float32, unit RMS); the kind cycles through `NOISE_TYPES`."""
    rng = rng_for(seed, "noise", pool, idx)
    n = int(seconds * FS)
    kind = noise_kind(idx)
    if kind == "noise":
        x = _coloured(rng, n) if rng.random() < 0.5 else _nonstationary(rng, n)
    elif kind == "music":
        x = _music(rng, n)
    else:
        x = _babble(rng, n, seed, pool)
    x = x - x.mean()
    return (x / (np.sqrt(np.mean(x * x)) + 1e-12)).astype(np.float32)


def noise_segment(clip: np.ndarray, n: int, offset: float) -> np.ndarray:
    """`n` samples of a clip starting at fraction `offset`, looping when the clip is shorter."""
    start = int(offset * len(clip))
    reps = int(np.ceil((start + n) / len(clip)))
    return np.tile(clip, reps)[start:start + n] if reps > 1 else clip[start:start + n]
