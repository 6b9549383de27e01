"""Plain, loop-based references for the scoring tests, and real ark/scp writing through kaldiio."""

from pathlib import Path
from typing import Dict

import kaldiio
import numpy as np


def reference_eer_mindcf(scores, labels, p_target):
    """The README's convention written as directly as possible, one threshold at a time."""
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    lab = [int(labels[i]) for i in order]
    n_t = sum(lab)
    n_n = len(lab) - n_t
    fnr, fpr = [], []
    for k in range(len(lab)):
        fnr.append(sum(lab[: k + 1]) / n_t)
        fpr.append(sum(1 - x for x in lab[k + 1 :]) / n_n)
    b = next(k for k in range(len(lab)) if fnr[k] >= fpr[k])
    fa, pa = (fnr[b - 1], fpr[b - 1]) if b > 0 else (0.0, 1.0)
    t = (pa - fa) / ((pa - fa) - (fpr[b] - fnr[b]))
    eer = fa + t * (fnr[b] - fa)
    dcf = min(fnr[k] * p_target + fpr[k] * (1 - p_target) for k in range(len(lab)))
    return eer, dcf / min(p_target, 1 - p_target)


def reference_asnorm(score, e, t, cohort, top_n):
    """AS-norm of one trial, by sorting each side's cohort scores."""
    def stats(x):
        s = sorted((float(np.dot(x, c)) for c in cohort), reverse=True)[:top_n]
        return np.mean(s), np.std(s)

    (mu_e, sd_e), (mu_t, sd_t) = stats(e), stats(t)
    return 0.5 * ((score - mu_e) / sd_e + (score - mu_t) / sd_t)


def unit(x):
    return x / np.linalg.norm(x)


def write_embeddings(stem: Path, table: Dict[str, np.ndarray]) -> Path:
    """Write `stem.ark` + `stem.scp` with kaldiio, as `trkd extract` does; return the scp."""
    ark, scp = stem.with_suffix(".ark"), stem.with_suffix(".scp")
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for key, vec in table.items():
            writer(key, np.asarray(vec, dtype=np.float32))
    return scp
