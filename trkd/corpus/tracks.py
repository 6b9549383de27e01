"""From a phone string to frame-rate control tracks: formants with transitions, amplitudes, f0.

Tracks are sampled every `HOP` samples (8 ms). Formant targets are held per phone and smoothed
over ~56 ms, which turns consonant loci and vowel targets into transitions; f0 follows a phrase
declination with pitch accents on stressed syllables and a phrase-final fall (or rise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from trkd.corpus.config import FS
from trkd.corpus.phones import VOWELS, Segment, phone, vowel_index
from trkd.corpus.voices import Voice

HOP = 128
_BANDWIDTHS = np.array([60.0, 80.0, 150.0, 300.0, 400.0])
_NEUTRAL = np.array(VOWELS["ax"].targets[0], float)
_BURST_MS = 12.0
# A speaker far in the tail of a wide family_spread draws 1 + fric <= 0 (3 of 5 000 at egs/mini's
# difficulty): a frication centre at or below 0 Hz, whose log is NaN and whose WAV is garbage. The
# floor lies below the embedded corpus's lowest factor (0.003), so that corpus stays bit for bit.
_MIN_FRIC_SCALE = 1e-3


@dataclass
class Tracks:
    formants: np.ndarray  # (frames, 5) Hz
    bandwidths: np.ndarray  # (frames, 5) Hz
    voice: np.ndarray  # voicing amplitude
    asp: np.ndarray  # aspiration amplitude (h, after voiceless plosives)
    fric: np.ndarray  # frication / burst amplitude
    fric_hz: np.ndarray
    fric_oct: np.ndarray
    nasal: np.ndarray  # velum opening 0..1
    zero_hz: np.ndarray  # nasal anti-resonance
    f0: np.ndarray  # Hz

    def every(self, k: int) -> "Tracks":
        """Every k-th frame (the filter's coarser update rate)."""
        return Tracks(**{name: getattr(self, name)[::k] for name in self.__dataclass_fields__})


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    k = np.hanning(width + 2)[1:-1]
    k /= k.sum()
    pad = width // 2
    xp = np.pad(x, [(pad, width - 1 - pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    if x.ndim == 1:
        return np.convolve(xp, k, mode="valid")
    return np.stack([np.convolve(xp[:, j], k, mode="valid") for j in range(x.shape[1])], axis=1)


def _frame_bounds(segs: List[Segment], n_frames: int) -> np.ndarray:
    edges = np.round(np.cumsum([0.0] + [s.ms for s in segs]) * FS / 1000.0 / HOP).astype(int)
    return np.minimum(edges, n_frames)


def control_tracks(segs: List[Segment], voice: Voice, rng: np.random.Generator, n_frames: int,
                   within: float = 1.0) -> Tracks:
    """The frame-rate tracks of one utterance said by `voice`."""
    F = np.tile(_NEUTRAL * voice.vtl, (n_frames, 1))
    amp = {k: np.zeros(n_frames) for k in ("voice", "asp", "fric", "nasal")}
    fric_hz = np.full(n_frames, 4000.0)
    fric_oct = np.ones(n_frames)
    zero_hz = np.full(n_frames, 800.0 * voice.vtl)
    stress = np.zeros(n_frames)
    phrase_id = np.full(n_frames, -1)
    edges = _frame_bounds(segs, n_frames)
    for i, seg in enumerate(segs):
        a, b = edges[i], edges[i + 1]
        if b <= a or seg.name == "sil":
            continue
        p = phone(seg.name)
        phrase_id[a:b] = seg.phrase
        v = vowel_index(seg.name)
        tgt = np.array(p.targets, float) * voice.vtl
        if v is not None:
            tgt = tgt * (1.0 + voice.vowel_shift[v]) * (1.0 + rng.normal(0, 0.03 * within, 3))
        elif p.kind == "h" and i + 1 < len(segs) and segs[i + 1].name in VOWELS:
            tgt = np.array(VOWELS[segs[i + 1].name].targets[:1], float) * voice.vtl
        w = np.linspace(0.0, 1.0, b - a)[:, None]
        F[a:b] = tgt[0] * (1 - w) + tgt[-1] * w
        gain = (1.2 if seg.stress > 0 else 0.85) if p.kind == "vowel" else 1.0
        stress[a:b] = seg.stress
        if p.fric_hz:
            fric_hz[a:b] = p.fric_hz * voice.vtl * max(1 + voice.fric, _MIN_FRIC_SCALE)
        fric_oct[a:b] = p.fric_oct
        amp["nasal"][a:b] = max(p.nasal, voice.nasality * 0.5 if p.kind == "vowel" else 0.0)
        if p.zero_hz:
            zero_hz[a:b] = p.zero_hz * voice.vtl
        if p.kind == "plosive":
            burst = max(1, int(round(_BURST_MS * FS / 1000 / HOP)))
            asp = int(round((b - a) * 0.45)) if p.aspirated else 0
            close = max(1, b - a - burst - asp)
            amp["voice"][a:a + close] = p.voice
            amp["fric"][a + close:a + close + burst] = p.fric
            amp["asp"][a + close + burst:b] = 0.3
        elif p.kind == "h":
            amp["asp"][a:b] = 0.35
        else:
            amp["voice"][a:b] = p.voice * gain
            amp["fric"][a:b] = p.fric
    amp["voice"] *= _phrase_envelope(phrase_id)
    bw = np.tile(_BANDWIDTHS * voice.bw, (n_frames, 1))
    bw[:, 0] *= 1.0 + amp["nasal"]
    F = np.concatenate([_smooth(F, 7), np.tile(np.array(voice.f45), (n_frames, 1))], axis=1)
    F[:, 2] = np.minimum(F[:, 2], F[:, 3] - 250.0)  # keep formants ordered
    return Tracks(
        formants=F, bandwidths=bw, voice=_smooth(amp["voice"], 3), asp=_smooth(amp["asp"], 3),
        fric=_smooth(amp["fric"], 2), fric_hz=fric_hz, fric_oct=fric_oct, nasal=_smooth(amp["nasal"], 5),
        zero_hz=_smooth(zero_hz, 5), f0=_f0_track(voice, rng, phrase_id, stress, within),
    )


def _phrase_envelope(phrase_id: np.ndarray) -> np.ndarray:
    """Loudness falls by ~3 dB over a phrase."""
    env = np.ones(len(phrase_id))
    for p in np.unique(phrase_id[phrase_id >= 0]):
        idx = np.flatnonzero(phrase_id == p)
        env[idx[0]:idx[-1] + 1] = np.linspace(1.0, 0.7, idx[-1] + 1 - idx[0])
    return env


def _f0_track(voice: Voice, rng: np.random.Generator, phrase_id: np.ndarray, stress: np.ndarray,
              within: float) -> np.ndarray:
    """Declination, pitch accents and boundary tones in semitones around the speaker's mean."""
    n = len(phrase_id)
    r = voice.f0_range_st
    st = np.zeros(n)
    for p in np.unique(phrase_id[phrase_id >= 0]):
        idx = np.flatnonzero(phrase_id == p)
        a, b = idx[0], idx[-1] + 1
        st[a:b] += np.linspace(0.4, -0.5, b - a) * r * rng.uniform(0.6, 1.4)
        tail = min(b - a, 18)
        end = -0.8 if rng.random() > 0.15 else 1.2  # mostly statements, sometimes a question
        st[b - tail:b] += np.linspace(0.0, end, tail) * r
        st[b:] = st[b - 1]  # hold through the pause (f0 is inaudible there)
    accented = np.flatnonzero(np.diff(np.concatenate([[0], (stress > 1).astype(int), [0]])))
    for a, b in zip(accented[::2], accented[1::2]):
        lo, hi = max(a - 4, 0), min(b + 4, n)
        st[lo:hi] += np.hanning(hi - lo + 2)[1:-1] * r * rng.uniform(0.5, 1.3)
    st += _smooth(rng.normal(0, 0.6 * within, n), 15)  # slow micro-prosody
    return np.clip(voice.f0_hz * 2.0 ** (_smooth(st, 5) / 12.0), 55.0, 450.0)
