"""Vectorised source-filter synthesis of one utterance.

The glottal source (Rosenberg pulses with the speaker's open quotient, cycle-wise jitter and
shimmer, breath noise in the open phase, aspiration) and a frication/burst noise are built at the
sample rate; the time-varying vocal tract (cascade of formant resonators, nasal pole-zero,
source tilt) and the frication spectra are applied frame by frame in the STFT domain and the
frames overlap-added. No per-sample Python loop: a 4 s utterance costs a few milliseconds.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from trkd.corpus.config import FS
from trkd.corpus.phones import utterance_segments
from trkd.corpus.tracks import HOP, Tracks, control_tracks
from trkd.corpus.voices import Voice

WIN = 512  # analysis window (32 ms)
NFFT = 1024  # zero padding leaves room for the resonators' ringing
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)).astype(np.float32)
STEP = 2 * HOP  # the filter is updated every other track frame (16 ms), cross-faded by the windows
_OLA_GAIN = WIN / (2 * STEP)  # periodic Hann windows at hop WIN/2 sum to 1
FREQ = np.arange(NFFT // 2 + 1) * FS / NFFT
_W = 2 * np.pi * FREQ / FS
_COS, _SIN = np.cos(_W).astype(np.float32), np.sin(_W).astype(np.float32)
_LOG2F = np.log2(np.maximum(FREQ, 20.0)).astype(np.float32)
# The glottis does not close abruptly (the LF model's return phase): a first-order low-pass on
# the Rosenberg source, which brings the long-term spectrum near the speech LTASS (Byrne 1994).
_RETURN_HZ = 2000.0
_FRIC_GAIN = 0.9  # frication against voicing, set on the same LTASS above 5 kHz


def _to_samples(track: np.ndarray, n: int) -> np.ndarray:
    return np.interp(np.arange(n), np.arange(len(track)) * HOP, track)


_TABLE = 2048


def _pulse_tables(oq: float):
    """Rosenberg glottal flow over one period, its derivative (per period) and the open phase."""
    t = (np.arange(_TABLE) + 0.5) / _TABLE
    tp, tn = 0.7 * oq, 0.3 * oq  # opening and closing parts of the open phase
    flow = np.where(t < tp, 0.5 - 0.5 * np.cos(np.pi * t / tp),
                    np.where(t < tp + tn, np.cos(np.pi * np.minimum(t - tp, tn) / (2 * tn)), 0.0))
    dflow = np.where(t < tp, 0.5 * np.pi / tp * np.sin(np.pi * t / tp),
                     np.where(t < tp + tn, -np.pi / (2 * tn) * np.sin(np.pi * np.minimum(t - tp, tn) / (2 * tn)), 0.0))
    # The derivative is taken per period, not per sample, so pulse strength does not grow with f0.
    return (0.25 * dflow).astype(np.float32), (flow > 0.05).astype(np.float32)


def glottal_source(tr: Tracks, voice: Voice, rng: np.random.Generator, n: int) -> np.ndarray:
    """Glottal flow derivative with jitter and shimmer, plus breath and aspiration noise."""
    f0 = _to_samples(tr.f0, n)
    cycles = np.floor(np.cumsum(f0 / FS)).astype(np.int64)
    per_cycle = rng.standard_normal((2, cycles[-1] + 2), dtype=np.float32)
    f0 *= 1.0 + voice.jitter * per_cycle[0][cycles]
    phase = np.cumsum(f0 / FS)
    cyc = phase.astype(np.int64)
    idx = ((phase - cyc) * _TABLE).astype(np.int64)
    dflow, open_phase = _pulse_tables(voice.oq)
    shimmer = 1.0 + voice.shimmer * per_cycle[1][np.minimum(cyc, cycles[-1] + 1)]
    noise = rng.standard_normal((2, n), dtype=np.float32)
    va = _to_samples(tr.voice, n).astype(np.float32)
    asp = _to_samples(tr.asp, n).astype(np.float32)
    return va * (dflow[idx] * shimmer + voice.breath * noise[0] * open_phase[idx]) + asp * noise[1]


def _windowed(x: np.ndarray, n_frames: int) -> np.ndarray:
    """Windowed frames zero-padded to NFFT (float64: numpy's float32 row FFT is slower here)."""
    pad = np.pad(x, (WIN // 2, WIN // 2 + n_frames * STEP))
    view = np.lib.stride_tricks.sliding_window_view(pad, WIN)[::STEP][:n_frames]
    buf = np.zeros((n_frames, NFFT))
    np.multiply(view, _WINDOW, out=buf[:, :WIN])
    return buf


def _overlap_add(spec: np.ndarray, n: int) -> np.ndarray:
    frames = np.fft.irfft(spec, NFFT, axis=1)
    n_frames = frames.shape[0]
    per = NFFT // STEP
    out = np.zeros((n_frames + per) * STEP)
    for k in range(per):
        out[k * STEP:k * STEP + n_frames * STEP] += frames[:, k * STEP:(k + 1) * STEP].reshape(-1)
    return (out[WIN // 2:WIN // 2 + n] / _OLA_GAIN).astype(np.float32)


def _resonance_power(freq: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """|H(w)|^2 of a two-pole resonator at `freq` (frames,) with unit gain at 0 Hz, (frames, bins)."""
    r = np.exp(-np.pi * bw / FS).astype(np.float32)
    th = (2 * np.pi * freq / FS).astype(np.float32)
    a = (1 + r * r)[:, None]
    p = np.outer(2 * r * np.cos(th), _COS)
    q = np.outer(2 * r * np.sin(th), _SIN)
    dc = (1 - 2 * r * np.cos(th) + r * r)[:, None]
    return dc * dc / ((a - p) ** 2 - q * q)


def _static_power(freq: float, bw: float) -> np.ndarray:
    return _resonance_power(np.array([freq]), np.array([bw]))[0]


def vocal_tract(tr: Tracks, voice: Voice, eq: Optional[np.ndarray]) -> np.ndarray:
    """Magnitude response per frame: formant cascade x nasal pole-zero x source tilt x `eq`.

    F1-F3 and the nasal zero move; F4, F5, the higher-pole stand-in, the nasal pole and the tilt
    are the speaker's and fixed over the utterance, so they cost one spectrum, not one per frame.
    """
    power = _resonance_power(tr.formants[:, 0], tr.bandwidths[:, 0])
    for k in (1, 2):
        power *= _resonance_power(tr.formants[:, k], tr.bandwidths[:, k])
    static = _static_power(tr.formants[0, 3], tr.bandwidths[0, 3]) * _static_power(tr.formants[0, 4], tr.bandwidths[0, 4])
    # A broad resonance stands for the higher poles that keep some energy above 5 kHz.
    static *= _static_power(min(6200.0 * voice.vtl, 7400.0), 900.0)
    tilt = 10.0 ** (voice.tilt_db * (_LOG2F - np.log2(500.0)) / 10.0)  # power, dB per octave
    tilt /= 1.0 + (FREQ / _RETURN_HZ) ** 2
    static = np.sqrt(static * tilt).astype(np.float32) * (1.0 if eq is None else eq.astype(np.float32))
    pole = np.sqrt(_static_power(270.0 * voice.vtl, 100.0))
    zero = 1.0 / np.sqrt(_resonance_power(tr.zero_hz, np.full(len(tr.f0), 150.0)))
    nasal = tr.nasal[:, None].astype(np.float32)
    return np.sqrt(power) * ((1 - nasal) + nasal * (0.6 * pole) * zero) * static


def frication_shape(tr: Tracks, rows: np.ndarray) -> np.ndarray:
    """Noise spectra of fricatives and bursts (frames `rows`): a band around the place's centre."""
    centre = np.log2(tr.fric_hz[rows])[:, None].astype(np.float32)
    d = (_LOG2F[None, :] - centre) / tr.fric_oct[rows][:, None].astype(np.float32)
    return np.exp(-0.5 * d * d) + 0.02


def synthesize(voice: Voice, rng: np.random.Generator, n: int, within: float = 1.0,
               eq: Optional[np.ndarray] = None) -> np.ndarray:
    """`n` samples of `voice` saying a random phrase sequence (float32, not level-normalised).

    `eq` is an optional magnitude response on the `FREQ` grid (a channel), applied for free in
    the STFT domain.
    """
    segs = utterance_segments(rng, n * 1000.0 / FS, voice.rate)
    n_frames = n // HOP + 1
    tr = control_tracks(segs, voice, rng, n_frames, within)
    src = glottal_source(tr, voice, rng, n)
    fric = rng.standard_normal(n, dtype=np.float32) * _to_samples(tr.fric, n).astype(np.float32)
    coarse = tr.every(2)
    n_steps = len(coarse.f0)
    spec = np.fft.rfft(_windowed(src, n_steps), axis=1) * vocal_tract(coarse, voice, eq)
    fric_frames = _windowed(fric, n_steps)
    rows = np.flatnonzero(np.any(fric_frames != 0.0, axis=1))  # most frames have no frication
    if len(rows):
        shape = _FRIC_GAIN * frication_shape(coarse, rows) * (1.0 if eq is None else eq.astype(np.float32))
        spec[rows] += np.fft.rfft(fric_frames[rows], axis=1) * shape
    return _overlap_add(spec, n)
