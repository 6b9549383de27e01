"""Cosine scoring of trials: gather rows of two embedding matrices and take row-wise dot products."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from trkd.data.trials import Trials
from trkd.scoring.embeddings import EmbeddingTable

# Trials per gathered block: two (chunk × D) float32 copies stay near 100 MB at D = 256.
CHUNK = 1 << 16


def trial_rows(trials: Trials, enroll: EmbeddingTable, test: EmbeddingTable) -> Tuple[np.ndarray, np.ndarray]:
    """Row of each trial's enrollment and test key in their tables; -1 where absent."""
    return enroll.rows(trials.enroll), test.rows(trials.test)


def cosine_scores(enroll: np.ndarray, test: np.ndarray, enroll_rows: np.ndarray, test_rows: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """`enroll[enroll_rows[i]] · test[test_rows[i]]` for every i (float64); rows must be unit length.

    Blocks of `chunk` trials bound the memory by the embeddings, not by the number of trials.
    """
    out = np.empty(len(enroll_rows), dtype=np.float64)
    for start in range(0, len(out), chunk):
        stop = start + chunk
        e = enroll[enroll_rows[start:stop]]
        t = test[test_rows[start:stop]]
        out[start:stop] = np.einsum("ij,ij->i", e, t)
    return out
