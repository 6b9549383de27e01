"""Equal error rate and minimum detection cost, in the convention of NIST's SRE tools and WeSpeaker.

Scores are sorted ascending (stable: ties keep trial order, so results never depend on the sort
algorithm); after each position k the miss rate `fnr_k` counts targets at or below k and the
false-alarm rate `fpr_k` non-targets above k. EER interpolates linearly between the last k with
`fnr < fpr` and the first with `fnr ≥ fpr`; minDCF is the minimum of
`C_miss·fnr_k·p + C_fa·fpr_k·(1 − p)` over the same points, normalised by `min(C_miss·p, C_fa·(1 − p))`.
"""

from __future__ import annotations

from typing import Dict, Iterable, Tuple

import numpy as np


def error_rates(scores, labels) -> Tuple[np.ndarray, np.ndarray]:
    """`(fnr, fpr)` after each position of the ascending, stable sort of `scores` (float64)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    is_target = labels[np.argsort(scores, kind="stable")] == 1
    n_target = int(is_target.sum())
    n_nontarget = is_target.size - n_target
    if n_target == 0 or n_nontarget == 0:
        raise ValueError(f"need both targets and non-targets, got {n_target} and {n_nontarget}")
    fnr = np.cumsum(is_target) / n_target
    fpr = (n_nontarget - np.cumsum(~is_target)) / n_nontarget
    return fnr, fpr


def eer_from_rates(fnr: np.ndarray, fpr: np.ndarray) -> float:
    """EER (fraction) by linear interpolation where `fnr − fpr` changes sign."""
    b = int(np.argmax(fnr >= fpr))  # exists: the last point has fnr = 1, fpr = 0
    # Before the first position nothing is rejected (fnr 0, fpr 1): the left end when b == 0.
    fnr_a, fpr_a = (fnr[b - 1], fpr[b - 1]) if b > 0 else (0.0, 1.0)
    gap_a = fpr_a - fnr_a  # > 0
    gap_b = fpr[b] - fnr[b]  # <= 0
    t = gap_a / (gap_a - gap_b)
    return float(fnr_a + t * (fnr[b] - fnr_a))


def min_dcf_from_rates(fnr: np.ndarray, fpr: np.ndarray, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost at prior `p_target`."""
    dcf = c_miss * fnr * p_target + c_fa * fpr * (1.0 - p_target)
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def eer_mindcf(scores, labels, p_target: float = 0.01) -> Tuple[float, float]:
    """`(eer_fraction, mindcf)` of scores with labels 1 (target) / 0 (non-target); numpy or torch input."""
    fnr, fpr = error_rates(scores, labels)
    return eer_from_rates(fnr, fpr), min_dcf_from_rates(fnr, fpr, p_target)


def compute_metrics(scores, labels, p_targets: Iterable[float] = (0.01, 0.05)) -> Dict[str, float]:
    """EER and minDCF at each prior from one sort: `{"eer": …, "mindcf_p0_01": …, …}`."""
    fnr, fpr = error_rates(scores, labels)
    out = {"eer": eer_from_rates(fnr, fpr)}
    for p in p_targets:
        out[mindcf_key(p)] = min_dcf_from_rates(fnr, fpr, p)
    return out


def mindcf_key(p_target: float) -> str:
    """`0.01` → `mindcf_p0_01`, the field name of the shared test vectors and of metrics.json."""
    return "mindcf_p" + f"{p_target:g}".replace(".", "_")
