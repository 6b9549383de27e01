"""Distillation losses (spec/losses.md): pure functions of logits or embeddings.

Logit-level losses return (batch-mean loss, NamedTuple of parts) and share one engine
(`terms.logit_kd`); embedding-level losses return the loss.
"""

from trkd.losses.confusion import CUTOFFS, confusion_mask
from trkd.losses.dkd import DKDParts, dkd_loss, enskd_loss
from trkd.losses.emb import DISTANCES, emb_loss, embedding_distance
from trkd.losses.imlkd import IMLKDParts, imlkd_objective, integrated_gradients, integrated_input
from trkd.losses.kd import KDParts, kd_loss
from trkd.losses.mlkd import mlkd_loss, mlkd_target
from trkd.losses.stats import LogitStats
from trkd.losses.terms import PRESETS, TERMS, Preset, logit_kd, term_values
from trkd.losses.trkd import TRKDParts, trkd_loss

__all__ = [
    "CUTOFFS", "DISTANCES", "PRESETS", "TERMS", "DKDParts", "IMLKDParts", "KDParts", "LogitStats",
    "Preset", "TRKDParts", "confusion_mask", "dkd_loss", "emb_loss", "embedding_distance",
    "enskd_loss", "imlkd_objective", "integrated_gradients", "integrated_input", "kd_loss",
    "logit_kd", "mlkd_loss", "mlkd_target", "term_values", "trkd_loss",
]
