"""Speakers as points in a voice-parameter space, drawn with structure: accents > families > speakers.

A family is a group of similar voices (same sex, near-identical latent parameters, shared vowel
habits): its members are the hard impostors of each other. An accent shifts vowel targets and
speaking style for many families, train and test alike. Members differ from their family centre
by `Difficulty.family_spread` of the population spread, so each speaker has a few genuinely
confusable neighbours and many easy ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Tuple

import numpy as np

from trkd.corpus.config import Difficulty
from trkd.corpus.phones import VOWEL_NAMES
from trkd.corpus.rng import rng_for

# Latent dimensions, each a standard normal mapped to a physical parameter in `_voice`.
_LATENT = ("f0", "f0_range", "vtl", "tilt", "oq", "breath", "jitter", "shimmer", "nasality", "rate",
           "bw", "f4", "f5", "fric")
_N_VOWEL_OFFSETS = len(VOWEL_NAMES) * 3


@dataclass(frozen=True, eq=False)
class Voice:
    """One speaker's (or one session's) voice parameters."""

    female: bool
    f0_hz: float  # mean f0
    f0_range_st: float  # prosodic excursion, semitones
    vtl: float  # formant scale (shorter vocal tract -> larger)
    tilt_db: float  # extra source tilt, dB per octave
    oq: float  # glottal open quotient
    breath: float  # aspiration noise in the open phase
    jitter: float  # relative cycle-to-cycle f0 perturbation
    shimmer: float  # relative cycle-to-cycle amplitude perturbation
    nasality: float  # velum leakage in oral sounds
    rate: float  # speaking-rate factor
    bw: float  # formant bandwidth scale
    f45: Tuple[float, float]  # F4, F5 in Hz (speaker-specific, nearly vowel-independent)
    fric: float  # frication centre shift (relative)
    vowel_shift: np.ndarray  # (n_vowels, 3) relative shift of F1-F3 targets


@dataclass(frozen=True)
class Speaker:
    spk: str
    family: str
    accent: int
    voice: Voice


def _voice(female: bool, z: np.ndarray, vowel_shift: np.ndarray) -> Voice:
    g = dict(zip(_LATENT, z))
    vtl = (1.17 if female else 1.0) * np.exp(0.055 * g["vtl"])
    return Voice(
        female=female,
        f0_hz=float((205.0 if female else 118.0) * np.exp(0.14 * g["f0"])),
        f0_range_st=float(2.6 * np.exp(0.3 * g["f0_range"])),
        vtl=float(vtl),
        tilt_db=float(1.5 * g["tilt"]),
        oq=float(np.clip((0.66 if female else 0.56) + 0.07 * g["oq"], 0.35, 0.85)),
        breath=float(np.clip((0.1 if female else 0.07) * np.exp(0.6 * g["breath"]), 0.01, 0.45)),
        jitter=float(0.007 * np.exp(0.4 * g["jitter"])),
        shimmer=float(0.04 * np.exp(0.4 * g["shimmer"])),
        nasality=float(0.6 / (1 + np.exp(-(g["nasality"] - 1.0)))),
        rate=float(np.exp(0.12 * g["rate"])),
        bw=float(np.exp(0.15 * g["bw"])),
        f45=(float(3500 * vtl * np.exp(0.04 * g["f4"])), float(4500 * vtl * np.exp(0.04 * g["f5"]))),
        fric=float(0.1 * g["fric"]),
        vowel_shift=vowel_shift,
    )


def accent_shift(seed: int, accent: int, diff: Difficulty) -> np.ndarray:
    """The relative F1-F3 offsets of each vowel shared by every speaker of an accent."""
    return rng_for(seed, "accent", accent).normal(0.0, diff.accent_spread, (len(VOWEL_NAMES), 3))


def family_sizes(seed: int, split: str, n_speakers: int, diff: Difficulty) -> List[int]:
    """Long-tailed family sizes summing to `n_speakers`.

    Test families have >= 3 members so that the trial list can hold enough same-family impostors.
    """
    rng = rng_for(seed, "layout", split)
    low = 3 if split == "test" else 1
    sizes: List[int] = []
    while sum(sizes) < n_speakers:
        sizes.append(int(np.clip(1 + rng.poisson(diff.family_extra_mean), low, diff.family_max)))
    excess = sum(sizes) - n_speakers
    sizes[-1] -= excess
    if sizes[-1] < low and len(sizes) > 1:  # fold a too-small last family into the previous one
        last = sizes.pop()
        sizes[-1] += last
    return sizes


def population(seed: int, split: str, n_speakers: int, diff: Difficulty, prefix: str) -> List[Speaker]:
    """The speakers of one split: ids `<prefix><n>` (zero-padded), families `<split>-f<n>`."""
    width = max(4, len(str(n_speakers)))
    sizes = family_sizes(seed, split, n_speakers, diff)
    fwidth = max(3, len(str(len(sizes))))
    out: List[Speaker] = []
    for f, size in enumerate(sizes):
        frng = rng_for(seed, "family", split, f)
        female = bool(frng.random() < 0.5)
        accent = int(frng.integers(diff.accents))
        z_fam = frng.standard_normal(len(_LATENT))
        v_fam = frng.normal(0.0, 0.03, (len(VOWEL_NAMES), 3))
        base_shift = accent_shift(seed, accent, diff)
        for _ in range(size):
            i = len(out)
            srng = rng_for(seed, "speaker", split, i)
            z = z_fam + diff.family_spread * srng.standard_normal(len(_LATENT))
            shift = base_shift + v_fam + diff.family_spread * srng.normal(0.0, 0.03, (len(VOWEL_NAMES), 3))
            spk = f"{prefix}{i + 1:0{width}d}"
            out.append(Speaker(spk, f"{split}-f{f + 1:0{fwidth}d}", accent, _voice(female, z, shift)))
    return out


def session_voice(voice: Voice, rng: np.random.Generator, within: float) -> Voice:
    """The speaker on one day: mood, effort and health move f0, rate, tilt and phonation a bit."""
    n = rng.standard_normal(6) * within
    return replace(
        voice,
        f0_hz=voice.f0_hz * float(np.exp(0.05 * n[0])),
        rate=voice.rate * float(np.exp(0.06 * n[1])),
        tilt_db=voice.tilt_db + 1.0 * float(n[2]),
        oq=float(np.clip(voice.oq + 0.03 * n[3], 0.3, 0.9)),
        breath=float(np.clip(voice.breath * np.exp(0.25 * n[4]), 0.005, 0.5)),
        vtl=voice.vtl * float(np.exp(0.01 * n[5])),
    )
