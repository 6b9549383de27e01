"""Verification scoring: cosine with optional mean subtraction and AS-norm, EER / minDCF, DET plots."""

from trkd.scoring.metrics import compute_metrics, eer_mindcf

__all__ = ["eer_mindcf", "compute_metrics"]
