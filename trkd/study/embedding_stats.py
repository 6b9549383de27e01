"""What an embedding set looks like beside its EER: its norms, how many directions it uses, and how
alike the embeddings of different speakers are. A distillation term that pushes every student
embedding the same way shows up here (different-speaker cosine and the common direction grow)
before, or without, a change of the training loss.
"""

from __future__ import annotations

from typing import Dict, Mapping, Sequence

import numpy as np

from trkd.errors import InputError
from trkd.scoring.embeddings import EmbeddingTable, l2_normalize


def _mean_pair_cosine(x: np.ndarray, groups: np.ndarray) -> Dict[str, float]:
    """Mean cosine over pairs of distinct rows of unit rows `x`, same group and different group,
    from sums (Σ_{i≠j} x_i·x_j = ‖Σx‖² − N): no N × N matrix."""
    x = x.astype(np.float64)
    n = x.shape[0]
    total = float(np.square(x.sum(0)).sum()) - n
    sums = np.zeros((int(groups.max()) + 1, x.shape[1]))
    np.add.at(sums, groups, x)
    sizes = np.bincount(groups)
    same = float(np.square(sums).sum()) - n
    same_pairs = float((sizes * (sizes - 1)).sum())
    diff_pairs = float(n * (n - 1)) - same_pairs
    return {"cos_same": same / same_pairs if same_pairs else float("nan"),
            "cos_diff": (total - same) / diff_pairs if diff_pairs else float("nan")}


def effective_rank(x: np.ndarray) -> float:
    """exp of the entropy of the normalised singular values of the centred rows (Roy & Vetterli,
    2007): the number of directions the set really spreads over, at most its dimension."""
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def embedding_stats(table: EmbeddingTable, utt2spk: Mapping[str, str], source: str = "utt2spk") -> Dict[str, float]:
    """`norm` (mean length), `common` (length of the mean unit embedding: 0 when they spread evenly,
    1 when all point one way), `rank` (effective rank), `cos_same` and `cos_diff` (mean cosine of
    two utterances of one speaker, of two speakers) of the embeddings whose key has a speaker."""
    keys: Sequence[str] = [k for k in table.keys if k in utt2spk]
    if len(keys) < 2:
        raise InputError(source, f"fewer than 2 of the {len(table.keys)} embeddings of {table.source} have a speaker here")
    rows = table.matrix[table.rows(keys)]
    speakers = {s: i for i, s in enumerate(sorted({utt2spk[k] for k in keys}))}
    unit = l2_normalize(rows.astype(np.float64))
    return {"embeddings": len(keys), "speakers": len(speakers), "dim": table.dim,
            "norm": float(np.linalg.norm(rows, axis=1).mean()), "common": float(np.linalg.norm(unit.mean(0))),
            "rank": effective_rank(unit),
            **_mean_pair_cosine(unit, np.array([speakers[utt2spk[k]] for k in keys]))}
