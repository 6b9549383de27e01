"""Synthetic room impulse responses: direct path, sparse early reflections, exponential tail.

The tail is noise decaying to -60 dB at RT60, faster in the high band than in the low band
(air and wall absorption), and starts where the early reflections thin out.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from trkd.corpus.config import FS


def make_rir(rng: np.random.Generator, rt60_s: Tuple[float, float]) -> np.ndarray:
    """A float32 RIR normalised so that its direct path has unit amplitude."""
    rt60 = rng.uniform(*rt60_s)
    n = int(min(rt60, 1.0) * FS)
    t = np.arange(n) / FS
    h = np.zeros(n)
    d0 = int(rng.uniform(0.001, 0.004) * FS)
    h[d0] = 1.0
    n_early = rng.integers(4, 12)
    taps = d0 + (rng.uniform(0.002, 0.05, n_early) * FS).astype(int)
    h[np.minimum(taps, n - 1)] += rng.uniform(0.15, 0.7, n_early) * rng.choice([-1.0, 1.0], n_early)
    white = rng.standard_normal(n)
    low = np.convolve(white, np.ones(4) / 2.0, mode="same")  # a crude low band
    high = white - low / 2.0
    decay = -6.9 / rt60  # ln(1000): 60 dB of decay over RT60
    onset = np.clip((t - d0 / FS) / 0.01, 0.0, 1.0)
    tail = (low * np.exp(decay * t) + 0.6 * high * np.exp(1.6 * decay * t)) * onset
    drr_db = rng.uniform(-6.0, 8.0)  # direct-to-reverberant ratio, distant to close microphone
    tail *= 10 ** (-drr_db / 20.0) / np.sqrt(np.sum(tail * tail))
    return (h + tail).astype(np.float32)
