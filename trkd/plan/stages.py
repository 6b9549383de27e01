"""The recipe's stages as arithmetic: items, bytes written, steps per epoch and compute of each.

Augmentation is counted in expectation (each copy kind is drawn with the config's probability);
an epoch draws one item per source utterance (as the paper and WeSpeaker count epochs), so steps per epoch follow
the source count whatever the number of stored copies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from trkd.plan.augment import copy_macs
from trkd.plan.loader import loader_note
from trkd.plan.sizes import (BYTES_PER_SAMPLE, FLOAT, WAV_HEADER, Corpus, Plan, entry_bytes, frames, human_count,
                             per_row)

# An scp line after its key: " /absolute/path/of/the.ark:offset\n". The ark paths are absolute,
# so their length is that of the recipe folder (where the plan runs) plus its own tail, about 50.
def scp_line() -> int:
    """Bytes of an scp line after its key, for arks under the current folder (read at each plan,
    not at import, so that a library caller's later `chdir` counts)."""
    return len(os.getcwd()) + 50 + 12


@dataclass
class Version:
    """One kind of stored copy of every source utterance: its speed, how many per source, and
    whether it is augmented (reverb, noise, …) or the plain waveform at its speed."""

    speed: float
    per_source: float
    augmented: bool

    @property
    def is_copy(self) -> bool:
        return self.augmented or self.speed != 1.0


def versions(aug, speed_perturb: bool) -> List[Version]:
    """The stored copies per source utterance that `trkd augment` makes with AugmentConfig `aug`."""
    speeds = [1.0] + (list(aug.speed_factors) if speed_perturb else [])
    out = []
    for s in speeds:
        out.append(Version(s, 1.0, False))
        if (s == 1.0 or aug.augment_speed) and aug.prob * len(aug.copies) > 0:  # none without --aug
            out.append(Version(s, aug.prob * len(aug.copies), True))
    return out


def _copy_rows(plan: Plan, train: Corpus, aug, speed_perturb: bool, vs: List[Version], write_wavs: bool,
               rate: int) -> None:
    """Stage 2's copies: WAVs (`trkd augment --write-wavs`), or wav.scp entries that fbank makes again."""
    copies = [v for v in vs if v.is_copy]
    if write_wavs:
        for label, group in (("speed copies (WAV)", [v for v in copies if not v.augmented]),
                             ("augmented copies (WAV)", [v for v in copies if v.augmented])):
            if group:
                n = sum(v.per_source for v in group) * len(train.durations)
                nbytes = sum(v.per_source * _wav_bytes(train.durations / v.speed, rate) for v in group)
                hours = sum(v.per_source * train.hours / v.speed for v in group)
                plan.add("2", f"augment: {label}", n, nbytes, hours)
    elif copies:
        n = sum(v.per_source for v in copies) * len(train.durations)
        hours = sum(v.per_source * train.hours / v.speed for v in copies)
        macs = copy_macs(aug, speed_perturb, train.durations)
        # `KEY trkd augment-wav --gen G /abs/data/train_aug KEY |`, the recipes' augmented dir
        line = 2 * (train.key_len + 6) + len(f" trkd augment-wav --gen {'0' * 8} {os.getcwd()}/data/train_aug  |\n")
        plan.add("2", "augment: copies as `trkd augment-wav` entries, no WAVs", n, n * line, hours, macs=macs,
                 note=f"made again at each fbank run: {human_count(macs / hours)} MACs per hour of copies")


def _wav_bytes(durations: np.ndarray, rate: int) -> float:
    return float(np.sum(np.round(durations * rate)) * BYTES_PER_SAMPLE + WAV_HEADER * len(durations))


def _grid_chunks(num_frames: np.ndarray, num_frms: int) -> np.ndarray:
    from trkd.distill.datasets import grid_starts

    return np.array([len(grid_starts(int(n), num_frms)) for n in num_frames], dtype=np.int64)


@dataclass
class Network:
    """What the plan needs of a training config: chunk, batch, epochs, size and compute."""

    name: str
    num_frms: int
    batch_size: int
    epochs: int
    params: int          # network + AAM head
    buffers: int
    embed_dim: int
    level_dims: Sequence[int]
    macs_per_second: int
    per_source: bool = True   # an epoch: one item per source utterance (data.aug_prob set), else every copy

    @classmethod
    def from_config(cls, name: str, cfg, num_classes: int) -> "Network":
        from trkd.models import build_model
        from trkd.models.complexity import count_params, macs_per_second

        model = build_model(dict(cfg.model))
        return cls(name, cfg.data.num_frms, cfg.data.batch_size, cfg.train.epochs,
                   count_params(model) + model.embed_dim * num_classes,
                   sum(b.numel() for b in model.buffers()), model.embed_dim, list(model.level_dims),
                   macs_per_second(model), cfg.data.aug_prob is not None)

    def checkpoint_bytes(self) -> float:
        """An epoch checkpoint: weights and SGD momentum in float32, and the buffers."""
        return FLOAT * (2 * self.params + self.buffers)


def data_rows(plan: Plan, train: Corpus, test: Optional[Corpus], aug, speed_perturb: bool, fbank,
              compression: Optional[int], write_wavs: bool = False, rate: int = 16000) -> Tuple[np.ndarray, np.ndarray]:
    """Stages 1-2. Returns (frames per utterance of every stored version, their weights)."""
    test_h = test.hours if test is not None else 0.0
    plan.add("1", "source WAVs (16-bit)", len(train.durations) + (len(test.durations) if test else 0),
             _wav_bytes(train.durations, rate) + (_wav_bytes(test.durations, rate) if test else 0),
             train.hours + test_h, note="what `prepare`/`synth-corpus` write; VoxCeleb2 m4a -> wav")
    vs = versions(aug, speed_perturb)
    _copy_rows(plan, train, aug, speed_perturb, vs, write_wavs, rate)
    mel = fbank.num_mel_bins
    all_frames, weights = [], []
    for v in vs:
        all_frames.append(frames(train.durations / v.speed, fbank.sample_frequency, fbank.frame_length,
                                 fbank.frame_shift))
        weights.append(np.full(len(train.durations), v.per_source))
    f, w = np.concatenate(all_frames), np.concatenate(weights)
    a, b = per_row(train.key_len + 6, mel, compression)   # copies' ids grow a suffix
    n = float(w.sum())
    nbytes = float(np.sum(w * (a + b * f))) + 2 * (scp_line() + train.key_len + 6) * n   # part and merged scps
    fmt = "float32" if compression is None else f"kaldi compressed (method {compression})"
    plan.add("2", f"fbank: training features, {fmt}", n, nbytes, float(np.sum(w * f)) / 360000,
             note=f"{nbytes / n / 1024:.1f} KiB per stored utterance")
    if test is not None:
        tf = frames(test.durations, fbank.sample_frequency, fbank.frame_length, fbank.frame_shift)
        a, b = per_row(test.key_len, mel)
        plan.add("2", "fbank: test features, float32", len(tf), float(np.sum(a + b * tf)) + scp_line() * len(tf),
                 test.hours)
    return f, w


def training_row(plan: Plan, stage: str, what: str, net: Network, sources: int, stored: float, hours: float,
                 extra_macs: float = 0.0, compression: Optional[int] = None):
    """`sources`: source utterances; `stored`: the stored copies of them (items of an epoch of
    every copy); `compression`: how the training features are stored (the loader's speed)."""
    steps = int(sources if net.per_source else round(stored)) // net.batch_size
    seconds = steps * net.batch_size * net.num_frms / 100
    average = FLOAT * (net.params + net.buffers)   # avg_model.pt: weights only
    plan.add(stage, what, steps * net.batch_size * net.epochs, net.checkpoint_bytes() * net.epochs + average, hours,
             steps_per_epoch=steps, macs=net.epochs * seconds * (3 * net.macs_per_second + extra_macs),
             note=f"{net.epochs} epochs x {steps} steps of {net.batch_size}; {net.epochs} checkpoints + average; "
                  + loader_note(net.num_frms, net.macs_per_second, compression))


def dump_row(plan: Plan, teacher: Network, f: np.ndarray, w: np.ndarray, num_classes: int, topk: int,
             temperatures: Sequence[float], tables: Sequence[str], key_len: float, hours: float) -> float:
    """Stage 4; returns the number of grid chunks."""
    from trkd.losses.sparse import row_length

    chunks = float(np.sum(w * _grid_chunks(f, teacher.num_frms)))
    key = key_len + 10   # a chunk id: the utterance's (a copy's suffix on some) and "-<start>"
    per = 0.0
    if "logits" in tables:
        # the dump writes its logits table as numpy entries (float16 is not a Kaldi type)
        if topk > 0:
            per += entry_bytes(key, (1, row_length(topk, temperatures)), write_function="numpy")
        else:
            per += entry_bytes(key, (1, num_classes), dtype=np.float16, write_function="numpy")
    if "embedding" in tables:
        per += entry_bytes(key, (teacher.embed_dim,))
    if "levels" in tables:
        per += entry_bytes(key, (sum(teacher.level_dims),))
    per += 2 * (scp_line() + key) * len(tables) + 2 * key + 6   # part and merged scps, the `chunks` file
    kind = f"top-{topk} sparse" if topk > 0 else "full float16"
    plan.add("4", f"teacher dump ({kind}: {', '.join(tables)})", chunks, chunks * per, hours,
             macs=chunks * teacher.num_frms / 100 * teacher.macs_per_second,
             note=f"{per:.0f} B per chunk")
    return chunks


def extract_row(plan: Plan, net: Network, test: Corpus) -> None:
    n = len(test.durations)
    plan.add("6", f"{net.name}: test embeddings", n, n * (entry_bytes(test.key_len, (net.embed_dim,)) + scp_line()),
             test.hours, macs=float(test.durations.sum()) * net.macs_per_second)
