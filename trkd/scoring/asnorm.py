"""Adaptive symmetric score normalisation (AS-norm) with a top-N cohort.

For each side x of a trial, the scores of x against every cohort embedding are computed and only
the N highest kept (the cohort closest to x); their mean μ_x and standard deviation σ_x
(population, ddof 0) normalise the raw score s:

    s' = ½ · ((s − μ_e) / σ_e + (s − μ_t) / σ_t)

(Matějka et al., "Analysis of score normalization in multilingual speaker recognition", 2017.)
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

DEFAULT_TOP_N = 300
# Elements of one (rows × cohort) score block: 32 M float32 = 128 MB, whatever the cohort size.
BLOCK_ELEMENTS = 1 << 25


def cohort_stats(matrix: np.ndarray, cohort: np.ndarray, top_n: int = DEFAULT_TOP_N) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and std (float64) of each row's `top_n` highest dot products with the cohort rows."""
    import torch

    if top_n < 1:
        raise ValueError(f"top_n must be positive, got {top_n}")
    n = min(top_n, cohort.shape[0])
    c = torch.from_numpy(np.ascontiguousarray(cohort, dtype=np.float32))
    rows = max(1, BLOCK_ELEMENTS // cohort.shape[0])
    mean = np.empty(matrix.shape[0], dtype=np.float64)
    std = np.empty(matrix.shape[0], dtype=np.float64)
    for start in range(0, matrix.shape[0], rows):
        x = torch.from_numpy(np.ascontiguousarray(matrix[start : start + rows], dtype=np.float32))
        top = torch.topk(x @ c.T, n, dim=1, sorted=False).values.double()
        mean[start : start + rows] = top.mean(dim=1).numpy()
        std[start : start + rows] = top.std(dim=1, correction=0).numpy()
    return mean, std


def as_norm(
    scores: np.ndarray,
    enroll: np.ndarray,
    test: np.ndarray,
    enroll_rows: np.ndarray,
    test_rows: np.ndarray,
    cohort: np.ndarray,
    top_n: int = DEFAULT_TOP_N,
) -> np.ndarray:
    """AS-norm of raw trial `scores`; statistics are computed once per distinct embedding used."""
    e_used, e_inv = np.unique(enroll_rows, return_inverse=True)
    t_used, t_inv = np.unique(test_rows, return_inverse=True)
    mu_e, sd_e = cohort_stats(enroll[e_used], cohort, top_n)
    mu_t, sd_t = cohort_stats(test[t_used], cohort, top_n)
    # A cohort of identical scores has σ = 0; the floor keeps the score finite.
    tiny = np.finfo(np.float64).tiny
    sd_e, sd_t = np.maximum(sd_e, tiny), np.maximum(sd_t, tiny)
    return 0.5 * ((scores - mu_e[e_inv]) / sd_e[e_inv] + (scores - mu_t[t_inv]) / sd_t[t_inv])
