"""Distillation losses: pure functions of logits or embeddings.

Logit-level losses return (batch-mean loss, NamedTuple of parts) and share one engine
(`terms.logit_kd`); embedding-level losses return the loss. kd_loss, dkd_loss, enskd_loss and
trkd_loss (and PRESETS) live beside their method's settings in `trkd/distill/methods/` and are
re-exported here, on first use, for notebooks and other toolkits.
"""

from importlib import import_module

from trkd.losses.confusion import CUTOFFS, confusion_mask
from trkd.losses.emb import DISTANCES, emb_loss, embedding_distance
from trkd.losses.imlkd import IMLKDParts, imlkd_objective, integrated_gradients, integrated_input
from trkd.losses.mlkd import mlkd_loss, mlkd_target
from trkd.losses.stats import LogitStats
from trkd.losses.terms import TERMS, Preset, logit_kd, term_values

# Imported on first use: the method modules import this package's submodules.
_FROM_METHODS = {"KDParts": "kd", "kd_loss": "kd", "DKDParts": "dkd", "dkd_loss": "dkd",
                 "enskd_loss": "dkd", "TRKDParts": "trkd", "trkd_loss": "trkd", "PRESETS": ""}


def __getattr__(name):
    if name not in _FROM_METHODS:
        raise AttributeError(f"module 'trkd.losses' has no attribute {name!r}")
    module = "trkd.distill.methods" + (f".{_FROM_METHODS[name]}" if _FROM_METHODS[name] else "")
    return getattr(import_module(module), name)


__all__ = [
    "CUTOFFS", "DISTANCES", "PRESETS", "TERMS", "DKDParts", "IMLKDParts", "KDParts", "LogitStats",
    "Preset", "TRKDParts", "confusion_mask", "dkd_loss", "emb_loss", "embedding_distance",
    "enskd_loss", "imlkd_objective", "integrated_gradients", "integrated_input", "kd_loss",
    "logit_kd", "mlkd_loss", "mlkd_target", "term_values", "trkd_loss",
]
