"""Random streams keyed by what they are for, never by the order in which work is done.

Every speaker, utterance, noise clip and RIR gets its own `numpy.random.Generator` derived from
(seed, purpose, ids), so a corpus is byte-identical whatever the number of workers.
"""

from __future__ import annotations

import zlib

import numpy as np


def _word(key) -> int:
    if isinstance(key, (int, np.integer)):
        return int(key)
    return zlib.crc32(str(key).encode("utf-8"))


def rng_for(seed: int, *keys) -> np.random.Generator:
    """A generator for (seed, *keys); keys are ints or strings (strings hashed with CRC-32)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed)] + [_word(k) for k in keys]))
