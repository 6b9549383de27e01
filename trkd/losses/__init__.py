"""The distillation losses as plain functions of logits or embeddings, for notebooks and other
toolkits. Each lives with its method in `trkd/distill/methods/` (kd_loss in kd.py, dkd_loss and
enskd_loss in dkd.py, trkd_loss and its terms in trkd.py, ...), and is imported from there on
first use; this package itself holds what a teacher dump and every loss share (`sparse`,
`common`).
"""

from importlib import import_module

_FROM_METHODS = {
    "KDParts": "kd", "kd_loss": "kd", "DKDParts": "dkd", "dkd_loss": "dkd", "enskd_loss": "dkd",
    "TRKDParts": "trkd", "trkd_loss": "trkd", "terms_loss": "trkd", "term_values": "trkd", "TERMS": "trkd",
    "reference_partition": "trkd", "reference_terms": "trkd",
    "LogitStats": "trkd_fast.sets", "CUTOFFS": "trkd_fast.partition", "confusion_mask": "trkd_fast.partition",
    "IMLKDParts": "imlkd", "imlkd_objective": "imlkd", "integrated_gradients": "imlkd",
    "integrated_input": "imlkd",
    "DISTANCES": "emb", "emb_loss": "emb", "embedding_distance": "emb",
    "mlkd_loss": "mlkd", "mlkd_target": "mlkd",
}


def __getattr__(name):
    if name not in _FROM_METHODS:
        raise AttributeError(f"module 'trkd.losses' has no attribute {name!r}")
    return getattr(import_module(f"trkd.distill.methods.{_FROM_METHODS[name]}"), name)


__all__ = sorted(_FROM_METHODS)
