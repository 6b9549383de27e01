"""The fixed chunk grid that teacher outputs are dumped on, and the student's dataset over it.

Every utterance is cut once into `num_frms` chunks (the `chunks` file: `chunk-id utt start
length`); a student epoch takes one grid chunk of each utterance (of one copy of each source
utterance where the dir has `utt2source`), drawn from (seed, epoch), so an epoch has as many steps
as a `trkd train` epoch and the yaml's epoch schedules mean the same for
teacher and student. With a dump, each item carries the teacher's outputs on that very chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from trkd.data.chunks import ChunkDataset, normalised_chunk, read_chunk
from trkd.data.kaldi_dir import iter_table
from trkd.errors import InputError
from trkd.utils.atomic import write_lines_atomic


def grid_starts(length: int, num_frms: int) -> List[int]:
    """Chunk starts of one utterance: round(L / num_frms) chunks (at least one) spread evenly
    from 0 to L − num_frms, so chunks overlap little and less than half a chunk of frames is left
    out in all; a short utterance is one chunk at 0 (repeated to `num_frms` when read)."""
    if length <= num_frms:
        return [0]
    n = max(1, int(length / num_frms + 0.5))
    if n == 1:
        return [(length - num_frms) // 2]
    return [i * (length - num_frms) // (n - 1) for i in range(n)]


def chunk_id(utt: str, start: int) -> str:
    return f"{utt}-{start:07d}"


def write_chunks(path, utts: Sequence[str], grid: Sequence[Tuple[int, int]], lengths, num_frms: int) -> None:
    """The `chunks` file; `length` is the number of real frames (less than num_frms: padded)."""
    write_lines_atomic(path, (f"{chunk_id(utts[u], s)} {utts[u]} {s} {min(num_frms, int(lengths[u]) - s)}"
                              for u, s in grid))


def read_chunks(path) -> List[Tuple[str, str, int]]:
    """(chunk-id, utt, start) of each line of a `chunks` file."""
    out = []
    for n, fields in iter_table(path, min_fields=4, max_fields=None):
        if len(fields) != 4 or not fields[2].isdigit() or not fields[3].isdigit():
            raise InputError(path, "expected 'chunk-id utt start length'", n)
        out.append((fields[0], fields[1], int(fields[2])))
    return out


class GridDataset(ChunkDataset):
    """The chunk grid of a data dir (feats.scp + utt2spk) under a given class map.

    Items are `(utt index, grid row, augmentation seed)`; an item gives `feats`, `target`,
    `index` and `chunk` (its grid row), plus whatever `teacher` (a `Dump`) holds for the chunk:
    `teacher_logits` (C,), `teacher_embedding`, `teacher_levels` (all levels, concatenated).
    The class map must hold exactly the data's speakers.
    """

    def __init__(self, data_dir, num_frms: int, seed: int, spk2id: Dict[str, int],
                 spk2id_source=None, spec_aug=None, teacher=None, aug_prob: Optional[float] = None):
        super().__init__(data_dir, num_frms, seed, spk2id=spk2id, spec_aug=spec_aug, aug_prob=aug_prob)
        speakers = set(np.unique(self.targets).tolist())
        missing = sorted(s for s, i in spk2id.items() if i not in speakers)
        if missing:
            raise InputError(spk2id_source, f"class {missing[0]!r} of the teacher has no utterance in "
                             f"{Path(data_dir) / 'utt2spk'} ({len(missing)} such classes): the student's "
                             f"classes must be the teacher's")
        self.grid: List[Tuple[int, int]] = [(u, s) for u in range(len(self.utts))
                                            for s in grid_starts(int(self.lengths[u]), num_frms)]
        counts = np.bincount([u for u, _ in self.grid], minlength=len(self.utts))
        self.first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.counts = counts.astype(np.int64)
        self.teacher = teacher
        if teacher is not None:
            teacher.check_grid([chunk_id(self.utts[u], s) for u, s in self.grid])

    def chunk_ids(self) -> List[str]:
        return [chunk_id(self.utts[u], s) for u, s in self.grid]

    def write_chunks(self, path) -> None:
        write_chunks(path, self.utts, self.grid, self.lengths, self.num_frms)

    def epoch_items(self, epoch: int) -> List[Tuple[int, int, int]]:
        """One grid chunk of each utterance (with `utt2source` and `aug_prob`: of one copy of each
        source utterance), in a random order; a pure function of (seed, epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = self.sources.draw(rng) if self.sources is not None else rng.permutation(len(self.utts))
        rows = self.first[order] + (rng.random(len(order)) * self.counts[order]).astype(np.int64)
        seeds = rng.integers(0, 2**31 - 1, size=len(order))
        return [(int(u), int(r), int(a)) for u, r, a in zip(order, rows, seeds)]

    def chunk_feats(self, row: int) -> np.ndarray:
        """The mean-normalised (num_frms, F) chunk of grid row `row`, as training sees it."""
        u, start = self.grid[row]
        return normalised_chunk(read_chunk(self.rx[u], start, self.num_frms, self.scp_path), self.rx[u], self.scp_path)

    def __getitem__(self, item: Tuple[int, int, int]) -> Dict[str, torch.Tensor]:
        u, row, aug_seed = item
        x = torch.from_numpy(self.chunk_feats(row))
        if self.spec_aug is not None:
            x = self.spec_aug(x, torch.Generator().manual_seed(aug_seed))
        out = {"feats": x, "target": torch.tensor(self.targets[u]), "index": torch.tensor(u),
               "chunk": torch.tensor(row)}
        if self.teacher is not None:
            out.update(self.teacher.item(row))
        return out
