"""Training loader throughput, one worker: chunks/s of `ChunkDataset` (200-frame chunks, batches of
128 collated as the DataLoader does, warm page cache) for each way of storing and reading fbank,
with the ratio to the float32 arks' reader (rows read in place) measured in the same run, and the
disk bytes per hour of audio of each.

    tools/venv/bin/python bench/loader.py [--utts 120] [--seconds 8] [--batches 6] [--repeats 9] [--clock cpu]

Each repeat times every case once, in turn, so that the load of other processes falls on all of
them alike; a ratio is taken within a repeat, and the table gives the median and the spread
(min-max) over the repeats. `whole` rows are kaldiio's read of the whole matrix, then the crop
(the compressed arks' reader before rows were decoded in place). Times are the process's CPU time
(`--clock cpu`, the default): what a loader worker with a core to itself reads, which the load of
other jobs on a shared machine changes far less than the wall clock (`--clock wall`).

Features are real fbank (`trkd.features.fbank_of`, 80 bins) of generated voice-like audio, written
with kaldiio under bench/out/loader/. 8 s is about VoxCeleb2-dev's mean utterance length.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import kaldiio
import numpy as np
import torch
from torch.utils.data import default_collate

import trkd.data.chunks as chunks
from machine import describe, median_spread
from trkd.data.kaldi_dir import write_kv
from trkd.features import FbankOptions, fbank_of

RATE, SHIFT_S = 16000, 0.01
OUT = Path(__file__).resolve().parent / "out" / "loader"


def whole_then_crop(rx, start, length, source="feats.scp"):
    """The reader before row seeks: the whole matrix, then the chunk."""
    return chunks.crop_or_repeat(chunks.load_feats(rx, source), start, length)


_MAPS = {}


def memmap_rows(rx, start, length, source="feats.scp"):
    """Rows of a float32 ark through one np.memmap per ark file, kept open by the worker."""
    path, offset = rx.rsplit(":", 1)
    if path not in _MAPS:
        _MAPS[path] = np.memmap(path, dtype=np.uint8, mode="r")
    buf = _MAPS[path]
    at = int(offset)
    rows, cols = chunks.FM_HEADER.unpack(buf[at:at + chunks.FM_HEADER.size].tobytes())[3::2]
    if rows < length:
        return whole_then_crop(rx, start, length, source)
    first = at + chunks.FM_HEADER.size + start * cols * 4
    return np.frombuffer(buf[first:first + length * cols * 4], dtype="<f4").reshape(length, cols).copy()


def voice(rng, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = rng.uniform(90, 250) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t) ** 2  # syllable-like loudness
    x = env * sum(np.sin(h * phase) / h for h in range(1, 12))
    return (0.2 * x / np.abs(x).max() + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


def make_feats(utts: int, seconds: float):
    rng = np.random.default_rng(0)
    return {f"spk{i % 8}-utt{i:04d}": fbank_of(torch.from_numpy(voice(rng, seconds * rng.uniform(0.5, 1.5))),
                                              RATE, FbankOptions(), seed=i).numpy() for i in range(utts)}


def write_dir(d: Path, feats, method) -> int:
    """A data dir of `feats` written with kaldiio (compression_method `method`); the ark's bytes."""
    d.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp", compression_method=method) as w:
        for utt, mat in feats.items():
            w(utt, mat)
    write_kv(d / "utt2spk", {u: u.split("-")[0] for u in feats})
    write_kv(d / "utt2num_frames", {u: m.shape[0] for u, m in feats.items()})
    return os.path.getsize(d / "feats.ark")


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def time_batches(ds, reader, items, batch: int, clock=time.process_time, normalise=None) -> float:
    """Seconds for one worker's batches: items through `ds[item]`, collated; `normalise` replaces
    the chunk normalisation when given."""
    chunks.read_chunk = reader
    if normalise is not None:
        chunks.normalised_chunk = normalise
    t0 = clock()
    for b in range(0, len(items), batch):
        default_collate([ds[it] for it in items[b:b + batch]])
    return clock() - t0


def time_reads(ds, reader, items, clock=time.process_time) -> float:
    """Seconds for the reads alone (no normalisation, tensors or collation)."""
    t0 = clock()
    for u, start, _ in items:
        reader(ds.rx[u], start, ds.num_frms)
    return clock() - t0


def feature_sets(feats, methods, batches: int):
    """`feats` written once per kaldiio compression method (None: float32) as a ChunkDataset: the
    sets, ark bytes and largest decoding error per method, items per epoch, and `batches` batches
    of 128 chunks drawn from the float32 set's epochs (the same items for every set)."""
    sets, sizes, error = {}, {}, {}
    for method in methods:
        d = OUT / f"cm{method or 0}"
        sizes[method] = write_dir(d, feats, method)
        sets[method] = chunks.ChunkDataset(d, 200, seed=1)
        error[method] = max(float(np.abs(chunks.load_feats(rx) - feats[u]).max()) for u, rx in zip(sets[method].utts, sets[method].rx))
    per_epoch = len(next(iter(sets.values())).epoch_items(1))
    items = [it for e in range(1, 100) for it in sets[None].epoch_items(e)][:batches * 128]
    return sets, sizes, error, per_epoch, items


def feature_set_args(doc: str, repeats: int) -> argparse.ArgumentParser:
    """The options of a bench over `make_feats`'s feature set: its size and the repeats."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--utts", type=int, default=120)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=repeats)
    return ap


def main() -> None:
    ap = feature_set_args(__doc__, repeats=9)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="CPU time (default) or wall clock")
    args = ap.parse_args()
    clock = CLOCKS[args.clock]
    torch.set_num_threads(1)
    print(f"machine: {describe()}")
    feats = make_feats(args.utts, args.seconds)
    hours = sum(m.shape[0] for m in feats.values()) * SHIFT_S / 3600
    rows = chunks.read_chunk
    # name: (kaldiio compression_method, reader); the first is the reference of the ratios.
    # `trkd fbank --compress` writes method 1, kaldiio's automatic choice: CM, or CM2 below 9 rows.
    cases = {
        "float32, rows (reference)": (None, rows),
        "float32, whole then crop": (None, whole_then_crop),
        "float32, np.memmap rows": (None, memmap_rows),
        "CM (fbank --compress), rows": (1, rows),
        "CM (fbank --compress), whole": (1, whole_then_crop),
        "CM2 (2 B a value), rows": (3, rows),
        "CM2 (2 B a value), whole": (3, whole_then_crop),
        "CM3 (1 B, global range), rows": (5, rows),
    }
    spread = max(float(np.ptp(m)) for m in feats.values())
    sets, sizes, error, per_epoch, items = feature_sets(feats, {m for m, _ in cases.values()}, args.batches)
    loader = {name: [] for name in cases}
    reads = {name: [] for name in cases}
    for name, (method, reader) in cases.items():  # warm the page cache and the memmaps
        time_batches(sets[method], reader, items[:128], 128)
    for _ in range(args.repeats):
        for name, (method, reader) in cases.items():
            loader[name].append(len(items) / time_batches(sets[method], reader, items, 128, clock))
            reads[name].append(len(items) / time_reads(sets[method], reader, items, clock))
    chunks.read_chunk = rows
    ref = next(iter(cases))
    print(f"{len(feats)} utterances ({hours * 60:.1f} min of audio, {per_epoch} items per epoch), "
          f"{len(items)} chunks of 200 frames in batches of 128; median [min-max] of {args.repeats} repeats; "
          f"{args.clock} time")
    print(f"{'storage, reader':31s} {'loader chunks/s':>19s} {'x float32 rows':>18s} {'reads alone/s':>21s} "
          f"{'x float32 rows':>18s} {'MB per hour':>11s} {'max |error|':>11s}")
    for name, (method, _) in cases.items():
        ratio = np.array(loader[name]) / np.array(loader[ref])
        read_ratio = np.array(reads[name]) / np.array(reads[ref])
        print(f"{name:31s} {median_spread(loader[name]):>19s} {median_spread(ratio, 2):>18s} "
              f"{median_spread(reads[name]):>21s} {median_spread(read_ratio, 2):>18s} "
              f"{sizes[method] / hours / 1e6:11.1f} {error[method]:11.2g}")
    print(f"(error: largest difference to the float32 matrix; the features span {spread:.1f})")
    print(f"machine at the end: {describe()}")


if __name__ == "__main__":
    main()
