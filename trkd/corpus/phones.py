"""The phone inventory and how an utterance becomes a phone string with durations and stress.

Formant targets are adult-male reference values (Peterson & Barney style, Hz); a speaker scales
them by its vocal-tract factor and shifts each vowel by its accent. Consonants carry formant
loci, so the smoothing of the formant tracks makes consonant-vowel transitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

Formants = Tuple[float, float, float]


@dataclass(frozen=True)
class Phone:
    kind: str  # vowel, nasal, approx, fric, plosive, h
    targets: Tuple[Formants, ...]  # one target, or start and end of a diphthong
    dur_ms: float
    voice: float = 1.0  # voicing amplitude (voiced fricatives, voice bars are partial)
    fric: float = 0.0  # frication amplitude
    fric_hz: float = 0.0  # centre of the frication / burst spectrum
    fric_oct: float = 1.0  # its width in octaves
    nasal: float = 0.0  # velum opening
    zero_hz: float = 0.0  # nasal anti-resonance of nasal consonants
    aspirated: bool = False


VOWELS = {
    "iy": Phone("vowel", ((270, 2290, 3010),), 95),
    "ih": Phone("vowel", ((390, 1990, 2550),), 75),
    "eh": Phone("vowel", ((530, 1840, 2480),), 85),
    "ae": Phone("vowel", ((660, 1720, 2410),), 110),
    "aa": Phone("vowel", ((730, 1090, 2440),), 110),
    "ao": Phone("vowel", ((570, 840, 2410),), 105),
    "uh": Phone("vowel", ((440, 1020, 2240),), 75),
    "uw": Phone("vowel", ((300, 870, 2240),), 95),
    "ah": Phone("vowel", ((640, 1190, 2390),), 80),
    "er": Phone("vowel", ((490, 1350, 1690),), 100),
    "ax": Phone("vowel", ((500, 1500, 2500),), 55),
    "ay": Phone("vowel", ((730, 1090, 2440), (350, 2100, 2800)), 150),
    "aw": Phone("vowel", ((730, 1090, 2440), (380, 900, 2300)), 150),
    "ey": Phone("vowel", ((480, 1900, 2500), (330, 2200, 2850)), 130),
    "ow": Phone("vowel", ((560, 900, 2400), (360, 850, 2250)), 130),
    "oy": Phone("vowel", ((570, 840, 2410), (380, 2000, 2700)), 160),
}
VOWEL_NAMES = sorted(VOWELS)

CONSONANTS = {
    "m": Phone("nasal", ((250, 1000, 2200),), 65, voice=0.55, nasal=1.0, zero_hz=1000),
    "n": Phone("nasal", ((250, 1600, 2500),), 60, voice=0.55, nasal=1.0, zero_hz=1700),
    "ng": Phone("nasal", ((250, 2000, 2700),), 70, voice=0.55, nasal=1.0, zero_hz=3000),
    "l": Phone("approx", ((360, 1050, 2700),), 55, voice=0.75),
    "r": Phone("approx", ((420, 1250, 1600),), 60, voice=0.75),
    "w": Phone("approx", ((300, 700, 2200),), 55, voice=0.7),
    "y": Phone("approx", ((270, 2150, 2900),), 50, voice=0.7),
    "s": Phone("fric", ((350, 1700, 2600),), 95, voice=0.0, fric=0.55, fric_hz=6000, fric_oct=0.7),
    "sh": Phone("fric", ((300, 1900, 2500),), 100, voice=0.0, fric=0.6, fric_hz=3300, fric_oct=0.8),
    "f": Phone("fric", ((300, 1000, 2300),), 90, voice=0.0, fric=0.18, fric_hz=5000, fric_oct=1.8),
    "th": Phone("fric", ((300, 1400, 2600),), 85, voice=0.0, fric=0.15, fric_hz=5500, fric_oct=2.0),
    "z": Phone("fric", ((350, 1700, 2600),), 80, voice=0.35, fric=0.35, fric_hz=6000, fric_oct=0.7),
    "zh": Phone("fric", ((300, 1900, 2500),), 85, voice=0.35, fric=0.4, fric_hz=3300, fric_oct=0.8),
    "v": Phone("fric", ((300, 1000, 2300),), 70, voice=0.4, fric=0.12, fric_hz=5000, fric_oct=1.8),
    "dh": Phone("fric", ((300, 1400, 2600),), 55, voice=0.45, fric=0.1, fric_hz=5500, fric_oct=2.0),
    "h": Phone("h", ((500, 1500, 2500),), 65, voice=0.0),
    "p": Phone("plosive", ((300, 800, 2200),), 70, voice=0.0, fric=0.9, fric_hz=1100, fric_oct=2.2, aspirated=True),
    "t": Phone("plosive", ((300, 1750, 2600),), 70, voice=0.0, fric=1.0, fric_hz=4000, fric_oct=1.2, aspirated=True),
    "k": Phone("plosive", ((300, 2000, 2400),), 75, voice=0.0, fric=1.0, fric_hz=2300, fric_oct=0.9, aspirated=True),
    "b": Phone("plosive", ((300, 800, 2200),), 60, voice=0.12, fric=0.5, fric_hz=1100, fric_oct=2.2),
    "d": Phone("plosive", ((300, 1750, 2600),), 60, voice=0.12, fric=0.6, fric_hz=4000, fric_oct=1.2),
    "g": Phone("plosive", ((300, 2000, 2400),), 65, voice=0.12, fric=0.6, fric_hz=2300, fric_oct=0.9),
}
# Rough English-like frequencies, so that an utterance has a natural mix of sound classes.
_ONSETS = ["t", "n", "s", "r", "d", "l", "k", "m", "dh", "w", "h", "b", "p", "f", "y", "g", "v", "sh", "z", "th"]
_ONSET_P = np.array([9, 8, 8, 6, 6, 6, 5, 5, 5, 4, 4, 3, 3, 3, 2, 2, 2, 2, 1, 1], float)
_CODAS = ["n", "t", "s", "r", "d", "l", "k", "m", "z", "ng", "v", "p", "th", "f"]
_CODA_P = np.array([9, 8, 7, 5, 5, 5, 4, 4, 4, 3, 2, 2, 1, 1], float)
_CLUSTER_2ND = ["r", "l", "w", "y"]
_VOWEL_P = np.array([3 if v in ("ax", "ih", "ah") else 2 if v in ("eh", "iy", "ae", "aa", "er") else 1 for v in VOWEL_NAMES], float)


@dataclass
class Segment:
    """One phone token: what to say, for how long, and with what prominence."""

    name: str
    ms: float
    stress: float = 0.0  # 0 unstressed, 1 stressed, >1 pitch-accented
    phrase: int = -1  # index of the phrase (pauses: -1)
    word_end: bool = False


def _syllable(rng: np.random.Generator, stressed: bool) -> List[str]:
    out: List[str] = []
    r = rng.random()
    if r < 0.75:
        c = _ONSETS[rng.choice(len(_ONSETS), p=_ONSET_P / _ONSET_P.sum())]
        out.append(c)
        if r < 0.12 and CONSONANTS[c].kind in ("plosive", "fric") and c not in ("h", "z", "zh"):
            out.append(_CLUSTER_2ND[rng.integers(4)])
    v = VOWEL_NAMES[rng.choice(len(VOWEL_NAMES), p=_VOWEL_P / _VOWEL_P.sum())]
    out.append("ax" if not stressed and rng.random() < 0.5 else v)
    if rng.random() < 0.45:
        out.append(_CODAS[rng.choice(len(_CODAS), p=_CODA_P / _CODA_P.sum())])
    return out


def phone(name: str) -> Phone:
    return VOWELS[name] if name in VOWELS else CONSONANTS[name]


def _fit(word: List[Segment], budget_ms: float) -> None:
    """Shorten every segment of `word` by one factor so that it lasts at most `budget_ms`."""
    scale = max(budget_ms, 1.0) / sum(s.ms for s in word)
    for seg in word:
        seg.ms *= scale


def utterance_segments(rng: np.random.Generator, total_ms: float, rate: float) -> List[Segment]:
    """Lead silence, phrases of words (with pauses between phrases), trailing silence to `total_ms`.

    Durations scale with 1/rate and vary token by token; stressed syllables are longer and some
    carry a pitch accent; the last syllable of a phrase is lengthened.
    """
    segs = [Segment("sil", rng.uniform(80, 350))]
    used = segs[0].ms + rng.uniform(80, 300)  # reserve the trailing silence
    phrase = 0
    while True:
        words = []
        for _ in range(rng.integers(2, 7)):
            n_syl = 1 + min(int(rng.geometric(0.55)) - 1, 3)
            stress_at = rng.integers(n_syl)
            accent = rng.random() < 0.45
            word: List[Segment] = []
            for s in range(n_syl):
                stressed = s == stress_at
                for name in _syllable(rng, stressed):
                    p = phone(name)
                    ms = p.dur_ms / rate * np.exp(rng.normal(0, 0.18))
                    level = 0.0
                    if p.kind == "vowel" and stressed:
                        ms *= 1.35
                        level = 1.0 + accent
                    word.append(Segment(name, ms, level, phrase))
            word[-1].word_end = True
            words.append(word)
        while words and used + sum(s.ms for w in words for s in w) > total_ms:
            if phrase == 0 and len(words) == 1:
                # A slow speaker in a short recording: say the first word faster rather than
                # write an utterance of silence alone.
                _fit(words[0], total_ms - used)
                break
            words.pop()  # trim the phrase to what still fits
        if not words:
            break
        vowels = [s for s in words[-1] if phone(s.name).kind == "vowel"]
        if vowels:
            vowels[-1].ms *= 1.4  # phrase-final lengthening
        phrase_ms = sum(s.ms for w in words for s in w)
        if vowels and used + phrase_ms > total_ms:
            vowels[-1].ms /= 1.4
            phrase_ms = sum(s.ms for w in words for s in w)
        for w in words[:-1]:
            segs.extend(w)
            gap = rng.uniform(30, 120)
            if rng.random() < 0.15 and used + phrase_ms + gap <= total_ms:  # a short hesitation
                segs.append(Segment("sil", gap))
                used += gap
        segs.extend(words[-1])
        used += phrase_ms
        pause = rng.uniform(150, 600)
        if used + pause > total_ms:
            break
        segs.append(Segment("sil", pause))
        used += pause
        phrase += 1
    tail = total_ms - sum(s.ms for s in segs)
    segs.append(Segment("sil", max(tail, 0.0)))
    return segs


def vowel_index(name: str) -> Optional[int]:
    return VOWEL_NAMES.index(name) if name in VOWELS else None
