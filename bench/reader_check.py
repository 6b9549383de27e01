"""What the checked reader costs: loader chunks/s of `ChunkDataset` (200-frame chunks, batches of
128 collated as the DataLoader does, warm page cache, one worker) for each way of storing and
reading fbank, with the ratio to kaldiio's unchecked whole-utterance read measured in the same run, and the disk
bytes per hour of audio of each. Each checked read (trkd's reader: type token, sizes, finite
values) is then compared with its unchecked twin (kaldiio, or row seeks without the finite check).

    tools/venv/bin/python bench/reader_check.py [--utts 120] [--seconds 8] [--batches 6] [--repeats 5] [--cpu-time]

`--cpu-time` times with this process's CPU clock instead of the wall clock: on a machine that other
work loads, the ratios then measure the readers rather than the share of the CPU they were given.

Features are real fbank (`trkd.features.fbank_of`, 80 bins) of generated voice-like audio, written
with kaldiio under bench/out/loader/. 8 s is about VoxCeleb2-dev's mean utterance length.
"""

from __future__ import annotations

import os

import kaldiio
import numpy as np
import torch

import trkd.data.chunks as chunks

from loader import (CLOCKS, SHIFT_S, feature_set_args, feature_sets, make_feats, memmap_rows,  # bench/ is on the path
                    time_batches, time_reads, whole_then_crop)


def kaldiio_whole(rx, start, length, source="feats.scp"):
    """The whole matrix through kaldiio, unchecked (trkd's reader before it checked values), then the chunk."""
    return chunks.crop_or_repeat(np.asarray(kaldiio.load_mat(rx), dtype=np.float32), start, length)


def rows_unchecked(rx, start, length, source="feats.scp"):
    """The chunk's rows by seek, else kaldiio's unchecked whole read (the reader before the checks)."""
    path, offset = rx.rsplit(":", 1)
    fd = os.open(path, os.O_RDONLY)
    try:
        at = int(offset)
        mat = chunks._float_rows(fd, at, os.pread(fd, chunks.FM_HEADER.size, at), start, length, rx, source)
    finally:
        os.close(fd)
    return mat if mat is not None else kaldiio_whole(rx, start, length, source)


def unchecked_mean_normalise(mat, rx, source="feats.scp"):
    """The normalisation before the finite check that rides on its column means."""
    return chunks.mean_normalise(mat)


def main() -> None:
    ap = feature_set_args(__doc__, repeats=5)
    ap.add_argument("--cpu-time", action="store_true", help="time with the process's CPU clock")
    args = ap.parse_args()
    clock = CLOCKS["cpu" if args.cpu_time else "wall"]
    torch.set_num_threads(1)
    feats = make_feats(args.utts, args.seconds)
    hours = sum(m.shape[0] for m in feats.values()) * SHIFT_S / 3600
    row_seek, checked = chunks.read_chunk, chunks.normalised_chunk
    unchecked = unchecked_mean_normalise
    # name: (kaldiio compression_method, reader, normalisation); "unchecked": the readers before the
    # type, size and finite checks, "checked": trkd's
    cases = {
        "float32, whole, kaldiio unchecked": (None, kaldiio_whole, unchecked),
        "float32, whole, checked": (None, whole_then_crop, checked),
        "float32, chunk rows, unchecked": (None, rows_unchecked, unchecked),
        "float32, chunk rows, checked (now)": (None, row_seek, checked),
        "float32, np.memmap rows": (None, memmap_rows, checked),
        "CM  (kSpeechFeature, 1 B), kaldiio": (2, kaldiio_whole, unchecked),
        "CM  (kSpeechFeature, 1 B), checked": (2, row_seek, checked),
        "CM2 (kTwoByteAuto, 2 B), kaldiio": (3, kaldiio_whole, unchecked),
        "CM2 (kTwoByteAuto, 2 B), checked": (3, row_seek, checked),
    }
    names = list(cases)
    pairs = [(names[i], names[i - 1]) for i in (1, 3, 6, 8)]  # (checked, its unchecked twin)
    spread = max(float(np.ptp(m)) for m in feats.values())
    sets, sizes, error, per_epoch, items = feature_sets(feats, {c[0] for c in cases.values()}, args.batches)
    best = {name: float("inf") for name in cases}
    reads = dict(best)
    for name, (method, reader, norm) in cases.items():  # warm the page cache and the memmaps
        time_batches(sets[method], reader, items[:128], 128, clock, norm)
    for _ in range(args.repeats):  # interleaved, so load from other processes hits every case alike
        for name, (method, reader, norm) in cases.items():
            best[name] = min(best[name], time_batches(sets[method], reader, items, 128, clock, norm))
            reads[name] = min(reads[name], time_reads(sets[method], reader, items, clock))
    chunks.read_chunk, chunks.normalised_chunk = row_seek, checked
    ref, ref_reads = best[next(iter(cases))], reads[next(iter(cases))]
    print(f"{len(feats)} utterances ({hours * 60:.1f} min of audio, {per_epoch} items per epoch), "
          f"{len(items)} chunks of 200 frames in batches of 128, best of {args.repeats}"
          f"{' (CPU time)' if args.cpu_time else ''}")
    print(f"{'storage, reader':42s} {'loader chunks/s':>15s} {'vs before':>9s} {'reads alone/s':>13s} "
          f"{'vs before':>9s} {'MB per hour':>11s} {'max |error|':>11s}")
    for name, (method, *_) in cases.items():
        print(f"{name:42s} {len(items) / best[name]:15.0f} {ref / best[name]:8.2f}x {len(items) / reads[name]:13.0f} "
              f"{ref_reads / reads[name]:8.2f}x {sizes[method] / hours / 1e6:11.1f} {error[method]:11.2g}")
    print(f"(error: largest difference to the float32 matrix; the features span {spread:.1f})")
    for checked, unchecked in pairs:
        print(f"{checked:42s} {best[unchecked] / best[checked]:8.3f}x the loader, {reads[unchecked] / reads[checked]:6.3f}x "
              f"the reads of {unchecked}")


if __name__ == "__main__":
    main()
