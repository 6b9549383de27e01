"""Embeddings as one matrix with a key → row index, read from any Kaldi table (`trkd.data.tables`).

Scoring gathers rows of this matrix, so its memory is that of the embeddings, whatever the number
of trials. Keys match as written, or else in their other VoxCeleb form (`id/video/n.wav` ↔
`id-video-n`), so a WeSpeaker scp scores against Kaldi-form trials and the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from trkd.data.tables import read_table
from trkd.data.trials import voxceleb_utt_id
from trkd.errors import InputError
from trkd.utils import PathLike



class _RowIndex(dict):
    """key → row, so that `map(index.__getitem__, keys)` runs in C; a key absent as written is
    looked up in its Kaldi form among the keys' Kaldi forms; -1 if absent in both."""

    _kaldi: Optional[Dict[str, int]] = None

    def __missing__(self, key: str) -> int:
        if self._kaldi is None:
            kaldi: Dict[str, int] = {}
            for k, row in self.items():
                # Two keys with one Kaldi form would make the match a guess: neither matches then.
                kaldi[voxceleb_utt_id(k)] = -1 if voxceleb_utt_id(k) in kaldi else row
            self._kaldi = kaldi
        row = self._kaldi.get(voxceleb_utt_id(key), -1)
        if row >= 0:
            self[key] = row  # a trial list names each utterance many times
        return row


@dataclass
class EmbeddingTable:
    """`matrix[i]` is the embedding of `keys[i]`; `source` names the file for error messages."""

    keys: List[str]
    matrix: np.ndarray  # (N, D) float32
    source: str = ""

    def __post_init__(self) -> None:
        self.index: Dict[str, int] = _RowIndex((k, i) for i, k in enumerate(self.keys))

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def rows(self, keys: Sequence[str]) -> np.ndarray:
        """Row of each key, -1 where absent (one dict lookup per key)."""
        return np.fromiter(map(self.index.__getitem__, keys), dtype=np.int64, count=len(keys))


def load_embeddings(spec: PathLike) -> EmbeddingTable:
    """Every vector of an embedding table (scp, ark, text ark, `scp:`/`ark:` rspecifier) in file
    order; one dimension for all."""
    keys: List[str] = []
    vectors: List[np.ndarray] = []
    seen = set()
    source = str(spec)
    for n, (key, value, source, line) in enumerate(read_table(spec), start=1):
        where = "" if line is not None else f"entry {n}: "
        vec = np.asarray(value)
        if vec.ndim == 2 and vec.shape[0] == 1:  # some toolkits store a 1 × D matrix
            vec = vec[0]
        if vec.ndim != 1:
            raise InputError(source, f"{where}embedding of {key!r} has shape {vec.shape}, expected a vector", line)
        if vectors and vec.shape[0] != vectors[0].shape[0]:
            raise InputError(source, f"{where}embedding of {key!r} has dim {vec.shape[0]}, the first has {vectors[0].shape[0]}", line)
        if key in seen:
            raise InputError(source, f"{where}duplicate key {key!r}", line)
        seen.add(key)
        keys.append(key)
        vectors.append(vec)
    if not vectors:
        raise InputError(source, "no embeddings")
    return EmbeddingTable(keys, np.stack(vectors).astype(np.float32, copy=False), source)


def check_same_dim(tables: Sequence[EmbeddingTable]) -> None:
    """All tables must share the first one's dimension (e.g. enroll, test and cohort scps)."""
    first = tables[0]
    for t in tables[1:]:
        if t.dim != first.dim:
            raise InputError(t.source, f"embedding dim {t.dim} differs from dim {first.dim} of {first.source}")


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero instead of becoming NaN."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, np.finfo(matrix.dtype).tiny)


def prepare(table: EmbeddingTable, mean: Optional[np.ndarray] = None) -> EmbeddingTable:
    """Subtract `mean` (the cohort mean, when given) and length-normalise: cosine becomes a dot product."""
    m = table.matrix if mean is None else table.matrix - mean
    return EmbeddingTable(table.keys, l2_normalize(m).astype(np.float32, copy=False), table.source)


def speaker_average(table: EmbeddingTable, spk2utt: Dict[str, List[str]], spk2utt_path: str = "") -> Tuple[EmbeddingTable, List[str]]:
    """One unit-length embedding per speaker: the mean of its (normalised) utterances, normalised.

    Returns the table and the speakers left out because none of their utterances has an
    embedding; a speaker with some utterances missing is averaged over the present ones.
    """
    speakers: List[str] = []
    groups: List[np.ndarray] = []
    absent: List[str] = []
    for spk, utts in spk2utt.items():
        rows = table.rows(utts)
        rows = rows[rows >= 0]
        if rows.size == 0:
            absent.append(spk)
            continue
        speakers.append(spk)
        groups.append(rows)
    if not speakers:
        raise InputError(spk2utt_path or None, f"no speaker has an utterance in {table.source}")
    # One segmented sum over all utterances instead of a Python loop of means.
    sizes = np.asarray([g.size for g in groups])
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    sums = np.add.reduceat(table.matrix[np.concatenate(groups)].astype(np.float64), starts, axis=0)
    means = sums / sizes[:, None]
    return EmbeddingTable(speakers, l2_normalize(means).astype(np.float32), spk2utt_path or table.source), absent
