"""Which source each speed or augmented copy comes from, and an epoch's draw of one copy per source.

`trkd augment` writes `utt2source` into its output data dir, one line per utterance:
`utt source speed copy`, e.g. `sp0.9-u1-noise u1 0.9 noise`; the clean utterance is `u1 u1 1 clean`.
With it, an epoch draws one item per SOURCE utterance, as the seed paper and WeSpeaker count epochs
(WeSpeaker draws speed and augmentation on the fly): a speed uniformly among the source's speeds,
then one of that speed's augmented copies (uniformly) with probability `aug_prob`, else its clean
copy. Speed copies stay separate speaker classes; only the epoch's length and mix change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Union

import numpy as np

from trkd.data.kaldi_dir import iter_table
from trkd.errors import InputError
from trkd.utils.atomic import write_lines_atomic

CLEAN = "clean"


@dataclass(frozen=True)
class Origin:
    """Where one utterance comes from: its source utterance, speed factor and copy kind."""

    source: str
    speed: float
    copy: str = CLEAN


def write_utt2source(path: Union[str, Path], origins: Dict[str, Origin]) -> None:
    write_lines_atomic(path, (f"{u} {o.source} {o.speed:g} {o.copy}" for u, o in sorted(origins.items())))


def read_utt2source(path: Union[str, Path]) -> Dict[str, Origin]:
    out: Dict[str, Origin] = {}
    for n, fields in iter_table(path, min_fields=4, max_fields=None):
        if len(fields) != 4:
            raise InputError(path, "expected 'utt source speed copy'", n)
        utt, source, speed, copy = fields
        try:
            factor = float(speed)
        except ValueError:
            raise InputError(path, f"speed is not a number: {speed!r}", n) from None
        if not factor > 0:
            raise InputError(path, f"speed must be positive, got {speed}", n)
        if utt in out:
            raise InputError(path, f"duplicate key {utt!r}", n)
        out[utt] = Origin(source, factor, copy)
    return out


class SourceSampler:
    """Draws one of `utts` per source (see the module docstring); utterances are indices into `utts`.

    Every draw takes the same numbers from the generator whatever it picks, so an epoch's items
    are a pure function of the generator's seed.
    """

    def __init__(self, utts: Sequence[str], origins: Dict[str, Origin], aug_prob: float,
                 where: Union[str, Path, None] = "utt2source"):
        if not 0.0 <= aug_prob <= 1.0:
            raise InputError(None, f"data.aug_prob must lie in [0, 1], got {aug_prob}")
        missing = [u for u in utts if u not in origins]
        if missing:
            raise InputError(where, f"utterance {missing[0]!r} of feats.scp has no line here "
                                    f"({len(missing)} such utterances)")
        groups: Dict[tuple, List[List[int]]] = {}  # (source, speed) -> [clean], [augmented]
        for i, u in enumerate(utts):
            o = origins[u]
            clean, aug = groups.setdefault((o.source, o.speed), ([], []))
            (clean if o.copy == CLEAN else aug).append(i)
        keys = sorted(groups)
        dup = next((k for k in keys if len(groups[k][0]) > 1), None)
        if dup is not None:
            names = ", ".join(utts[i] for i in groups[dup][0])
            raise InputError(where, f"source {dup[0]!r} has several clean copies at speed {dup[1]:g}: {names}")
        self.aug_prob = float(aug_prob)
        self.clean = np.array([groups[k][0][0] if groups[k][0] else -1 for k in keys], dtype=np.int64)
        aug = [groups[k][1] for k in keys]
        self.aug_count = np.array([len(a) for a in aug], dtype=np.int64)
        self.aug_first = np.concatenate([[0], np.cumsum(self.aug_count)[:-1]]).astype(np.int64)
        self.aug_flat = np.array([i for a in aug for i in a] or [0], dtype=np.int64)
        sources = [k[0] for k in keys]  # sorted, so each source's groups are contiguous
        starts = [g for g in range(len(keys)) if g == 0 or sources[g] != sources[g - 1]]
        self.group_first = np.array(starts, dtype=np.int64)
        self.group_count = np.diff(np.append(self.group_first, len(keys))).astype(np.int64)

    def __len__(self) -> int:
        return len(self.group_first)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One utterance index per source, the sources in a random order."""
        order = rng.permutation(len(self))
        group = self.group_first[order] + (rng.random(len(order)) * self.group_count[order]).astype(np.int64)
        wants_aug = rng.random(len(order)) < self.aug_prob
        count = self.aug_count[group]
        which = self.aug_first[group] + (rng.random(len(order)) * count).astype(np.int64)
        clean = self.clean[group]
        use_aug = (count > 0) & (wants_aug | (clean < 0))  # a source without its clean copy: an augmented one
        return np.where(use_aug, self.aug_flat[np.minimum(which, len(self.aug_flat) - 1)], clean)
