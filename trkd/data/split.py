"""Splitting a data dir into `nj` parts, as Kaldi's `split_data.sh --per-utt`, and `--split K/N`.

Parts are contiguous blocks of the sorted utterance list with sizes differing by at most one, so
that concatenating the parts' outputs in order gives a sorted table again.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

from trkd.data.kaldi_dir import DataDir, PathLike, read_data_dir, subset, write_data_dir
from trkd.errors import InputError


def parse_split(spec: str) -> Tuple[int, int]:
    """`"K/N"` → `(K, N)` with 1 ≤ K ≤ N (K is 1-based, like Kaldi's JOB)."""
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise InputError(None, f"--split {spec!r}: expected K/N, e.g. 3/8") from None
    if not 1 <= k <= n:
        raise InputError(None, f"--split {spec!r}: need 1 <= K <= N")
    return k, n


def split_list(items: Sequence[str], n: int) -> List[List[str]]:
    """`n` contiguous blocks of `items`, the first `len % n` one longer; none empty unless n > len."""
    if n < 1:
        raise ValueError(f"number of parts must be >= 1, got {n}")
    q, r = divmod(len(items), n)
    out, start = [], 0
    for k in range(n):
        stop = start + q + (k < r)
        out.append(list(items[start:stop]))
        start = stop
    return out


def split_data(data: DataDir, n: int) -> List[DataDir]:
    """The data dir cut into `n` parts by sorted utterance order."""
    return [subset(data, part) for part in split_list(data.utts, n)]


def split_data_dir(d: PathLike, n: int) -> List[Path]:
    """Write `d/split<n>/<k>` (k = 1..n) like Kaldi's `split_data.sh --per-utt`; return their paths."""
    d = Path(d)
    data = read_data_dir(d)
    if n > len(data.utts):
        raise InputError(d / "utt2spk", f"cannot split {len(data.utts)} utterances into {n} parts")
    out = []
    for k, part in enumerate(split_data(data, n), start=1):
        write_data_dir(d / f"split{n}" / str(k), part)
        out.append(d / f"split{n}" / str(k))
    return out
