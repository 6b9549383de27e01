"""Random fixed-length chunks of stored fbank for training, and the epoch's global batches.

An epoch has one item per utterance, or, in a data dir with `utt2source` (`trkd augment`), one
per source utterance (see `trkd.data.sampler`). A chunk of an ark reads and decodes only its own
rows, float32 or compressed (`trkd fbank --compress`).
Everything random about an epoch (utterance order, chunk offsets, SpecAugment draws) is planned
up front from `(seed, epoch)`: the plan is a list of items, a worker turns an item into a tensor
as a pure function of it. So the data order does not depend on the number of loader workers or
ranks, and a resumed run sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from trkd.data.kaldi_dir import iter_table, read_kv
from trkd.data.sampler import SourceSampler, read_utt2source
from trkd.data.tables import load_matrix, scp_dict
from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.atomic import write_lines_atomic
from trkd.utils.compressed import HEAD_BYTES, header_of, read_rows



def make_spk2id(speakers) -> Dict[str, int]:
    """Class index of each speaker: sorted order, so it is a function of the speaker set alone."""
    return {spk: i for i, spk in enumerate(sorted(set(speakers)))}


def write_spk2id(path: PathLike, spk2id: Dict[str, int]) -> None:
    write_lines_atomic(path, (f"{s} {i}" for s, i in sorted(spk2id.items(), key=lambda kv: kv[1])))


def read_spk2id(path: PathLike) -> Dict[str, int]:
    out = {}
    for n, (spk, idx) in iter_table(path):
        if not idx.isdigit():
            raise InputError(path, f"class index is not an integer: {idx!r}", n)
        out[spk] = int(idx)
    return out


def load_feats(rxfile: str, source: PathLike = "feats.scp") -> np.ndarray:
    """One (T, F) float32 matrix from a kaldiio rxfile (`foo.ark:123`); a bad one is an InputError
    naming `source` and the entry's line."""
    return np.asarray(load_matrix(rxfile, source), dtype=np.float32)


@dataclass(frozen=True)
class SpecAugment:
    """Zero (= the mean, after mean normalisation) random time and frequency bands of a chunk."""

    prob: float = 0.6
    time_masks: int = 1
    max_time: int = 10
    freq_masks: int = 1
    max_freq: int = 8

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if torch.rand((), generator=gen).item() >= self.prob:
            return x
        x = x.clone()
        for axis, count, width in ((0, self.time_masks, self.max_time), (1, self.freq_masks, self.max_freq)):
            size = x.shape[axis]
            for _ in range(count):
                w = int(torch.randint(1, max(min(width, size), 1) + 1, (), generator=gen))
                s = int(torch.randint(0, size - w + 1, (), generator=gen))
                x.narrow(axis, s, w).zero_()
        return x

    @classmethod
    def from_config(cls, d) -> "Optional[SpecAugment]":
        """From a `DataConfig`; None when `spec_aug` is off."""
        if not d.spec_aug:
            return None
        return cls(d.spec_aug_prob, d.spec_aug_time_masks, d.spec_aug_max_time, d.spec_aug_freq_masks, d.spec_aug_max_freq)


def mean_normalise(x):
    """The features less their mean over frames (the second-last axis), numpy or torch: the
    per-chunk (per-utterance at extraction) normalisation that training, the dump, extraction and
    export all apply, so it lives here once."""
    if isinstance(x, np.ndarray):
        return x - x.mean(axis=-2, keepdims=True)
    return x - x.mean(dim=-2, keepdim=True)


def normalised_chunk(mat: np.ndarray, rxfile: str, source: PathLike = "feats.scp") -> np.ndarray:
    """`mean_normalise` of a (T, F) chunk from `read_chunk`, refused if not finite: the column means
    it subtracts are finite unless a value is NaN or Inf (or they overflow), so the reader's finite
    policy costs the loader nothing; `load_feats` then reads the whole matrix and names the value."""
    mean = mat.mean(axis=0, keepdims=True)
    if not np.isfinite(mean).all():
        load_feats(rxfile, source)  # raises, unless huge finite values overflowed the mean
    return mat - mean


def crop_or_repeat(mat: np.ndarray, start: int, length: int) -> np.ndarray:
    """`length` frames from `start`; a shorter utterance is repeated end to end to fill the chunk."""
    if mat.shape[0] < length:
        mat = np.tile(mat, (-(-length // mat.shape[0]), 1))
        start = 0
    return mat[start:start + length]


_ARK_OFFSET = re.compile(r"(?P<path>.+):(?P<offset>[0-9]+)")
# Kaldi's binary float matrix: "\0B", the token "FM ", then rows and cols as size-prefixed int32s.
FM_HEADER = struct.Struct("<2s3sbibi")


def _float_rows(fd: int, at: int, head: bytes, start: int, length: int, rxfile: str,
                source: PathLike) -> Optional[np.ndarray]:
    """Rows [start, start + length) of the float32 matrix at byte `at`, whose first bytes are
    `head`; None if it is not one."""
    if len(head) < FM_HEADER.size:
        return None
    binary, token, s1, rows, s2, cols = FM_HEADER.unpack_from(head)
    if (binary, token, s1, s2) != (b"\0B", b"FM ", 4, 4) or rows < length:
        return None
    if start < 0 or start + length > rows:
        raise InputError(source, f"chunk [{start}, {start + length}) lies outside the {rows} frames of "
                                 f"{rxfile!r} (stale utt2num_frames?)")
    mat = np.empty((length, cols), dtype="<f4")
    # straight into the array: one system call, no Python buffer in between
    if os.preadv(fd, [memoryview(mat).cast("B")], at + FM_HEADER.size + start * cols * 4) != mat.nbytes:
        raise InputError(source, f"cannot read features {rxfile!r}: truncated ark")
    return mat


def _compressed_rows(fd: int, at: int, head: bytes, start: int, length: int) -> Optional[np.ndarray]:
    """Rows [start, start + length) of the compressed matrix at byte `at`, whose first bytes are
    `head` (the whole matrix repeated when it is shorter); None if it is not one."""
    header = header_of(head)
    if header is None:
        return None
    if header.rows < length:
        return crop_or_repeat(read_rows(fd, at, header), start, length)
    return read_rows(fd, at, header, start, start + length)


def read_chunk(rxfile: str, start: int, length: int, source: PathLike = "feats.scp") -> np.ndarray:
    """`crop_or_repeat(load_feats(rxfile), start, length)`, reading only the chunk's rows where the
    matrix is a float32 or compressed one at `ark:offset`; anything else is read whole. Rows read
    alone are not checked to be finite here: `normalised_chunk` does, at no cost."""
    m = _ARK_OFFSET.fullmatch(rxfile)
    if m:
        try:
            fd = os.open(m["path"], os.O_RDONLY)
            try:
                at = int(m["offset"])
                head = os.pread(fd, max(FM_HEADER.size, HEAD_BYTES), at)
                mat = _float_rows(fd, at, head, start, length, rxfile, source)
                if mat is None:
                    mat = _compressed_rows(fd, at, head, start, length)
            finally:
                os.close(fd)
            if mat is not None:
                return mat
        except (OSError, ValueError):
            pass  # load_feats names the problem
    return crop_or_repeat(load_feats(rxfile, source), start, length)


class ChunkDataset(Dataset):
    """One random `num_frms` chunk of each utterance per epoch, from `feats.scp` + `utt2spk`; with
    `aug_prob` and a `utt2source` in the dir, of one copy of each source utterance instead.

    Items are `(utt index, start frame, augmentation seed)`; `__getitem__` returns
    `{"feats": (num_frms, F), "target": class, "index": utt index}`, mean-normalised per chunk.
    """

    def __init__(self, data_dir: PathLike, num_frms: int = 200, seed: int = 0,
                 spk2id: Optional[Dict[str, int]] = None, spec_aug: Optional[SpecAugment] = None,
                 min_frames: int = 0, aug_prob: Optional[float] = None):
        data_dir = Path(data_dir)
        self.scp_path = data_dir / "feats.scp"
        scp = scp_dict(self.scp_path)  # commands and blank lines are refused before training starts
        utt2spk = read_kv(data_dir / "utt2spk")
        for n, (utt, _) in iter_table(self.scp_path):
            if utt not in utt2spk:
                raise InputError(self.scp_path, f"utterance {utt!r} has no speaker in utt2spk", n)
        lengths = self._lengths(data_dir, scp)
        self.utts = [u for u in sorted(scp) if lengths[u] >= max(min_frames, 1)]
        if not self.utts:
            raise InputError(self.scp_path, f"no utterance has at least {max(min_frames, 1)} frames")
        self.spk2id = spk2id if spk2id is not None else make_spk2id(utt2spk[u] for u in self.utts)
        unknown = sorted({utt2spk[u] for u in self.utts} - set(self.spk2id))
        if unknown:
            raise InputError(data_dir / "utt2spk", f"speaker {unknown[0]!r} is not in the class map")
        self.rx = [scp[u] for u in self.utts]
        self.lengths = np.array([lengths[u] for u in self.utts], dtype=np.int64)
        self.targets = np.array([self.spk2id[utt2spk[u]] for u in self.utts], dtype=np.int64)
        self.num_frms, self.seed, self.spec_aug = num_frms, seed, spec_aug
        self.feat_dim = load_feats(self.rx[0], self.scp_path).shape[1]
        u2src = data_dir / "utt2source"
        self.sources = (SourceSampler(self.utts, read_utt2source(u2src), aug_prob, u2src)
                        if aug_prob is not None and u2src.is_file() else None)

    def _lengths(self, data_dir: Path, scp: Dict[str, str]) -> Dict[str, int]:
        """Frame counts from utt2num_frames when it covers feats.scp, else by reading each matrix."""
        u2nf = data_dir / "utt2num_frames"
        if u2nf.is_file():
            table = read_kv(u2nf)
            if all(u in table for u in scp):
                return {u: int(table[u]) for u in scp}
        return {u: load_feats(rx, self.scp_path).shape[0] for u, rx in scp.items()}

    @property
    def num_classes(self) -> int:
        return len(self.spk2id)

    def __len__(self) -> int:
        return len(self.sources) if self.sources is not None else len(self.utts)

    def describe(self) -> str:
        """What an epoch is, for the training log."""
        if self.sources is None:
            return f"an epoch: one chunk of each of {len(self.utts)} utterances"
        return (f"an epoch: one chunk of each of {len(self.sources)} source utterances, out of {len(self.utts)} "
                f"speed and augmented copies (an augmented one with probability {self.sources.aug_prob:g})")

    def epoch_items(self, epoch: int) -> List[Tuple[int, int, int]]:
        """This epoch's items in order, a pure function of (seed, epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = self.sources.draw(rng) if self.sources is not None else rng.permutation(len(self.utts))
        room = np.maximum(self.lengths[order] - self.num_frms, 0) + 1
        starts = (rng.random(len(order)) * room).astype(np.int64)
        seeds = rng.integers(0, 2**31 - 1, size=len(order))
        return [(int(i), int(s), int(a)) for i, s, a in zip(order, starts, seeds)]

    def __getitem__(self, item: Tuple[int, int, int]) -> Dict[str, torch.Tensor]:
        idx, start, aug_seed = item
        mat = read_chunk(self.rx[idx], start, self.num_frms, self.scp_path)
        x = torch.from_numpy(normalised_chunk(mat, self.rx[idx], self.scp_path))
        if self.spec_aug is not None:
            x = self.spec_aug(x, torch.Generator().manual_seed(aug_seed))
        return {"feats": x, "target": torch.tensor(self.targets[idx]), "index": torch.tensor(idx)}


class GlobalBatchSampler(Sampler):
    """This rank's share of each global batch of `dataset.epoch_items(epoch)`.

    Global batch g is items [g·B, (g+1)·B); rank r takes every `world`-th of them from r on, as
    DistributedSampler does, so the union over the ranks is the single-process batch. The last
    incomplete global batch is dropped, which keeps every rank's step count equal.
    """

    def __init__(self, dataset, global_batch: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size} ranks")
        self.dataset, self.global_batch, self.rank, self.world = dataset, global_batch, rank, world_size
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "seed": getattr(self.dataset, "seed", None)}

    def __len__(self) -> int:
        return len(self.dataset) // self.global_batch

    def __iter__(self) -> Iterator[Sequence]:
        items = self.dataset.epoch_items(self.epoch)
        for g in range(len(self)):
            yield items[g * self.global_batch:(g + 1) * self.global_batch][self.rank::self.world]
