"""Kaldi data directories: `wav.scp`, `utt2spk`, `spk2utt`, optional `segments`, `utt2num_frames`.

Readers keep file order and report the first malformed line as `InputError(file, msg, line)`;
writers sort by key (Kaldi's `LC_ALL=C sort` order) and write atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.atomic import write_lines_atomic



def table_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """`(line_number, text)` of a text table; a line that is not UTF-8 is an error naming it (Kaldi
    tables are bytes, but ids, paths and labels must print and compare as text)."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(path, f"not UTF-8 text: byte 0x{raw[err.start]:02x} at column {err.start + 1} "
                                       f"(save the table as UTF-8)", n) from None


def iter_table(path: PathLike, min_fields: int = 2, max_fields: Optional[int] = 2) -> Iterator[Tuple[int, List[str]]]:
    """Yield `(line_number, fields)` of a whitespace-separated table, skipping blank lines.

    With `max_fields=2` the second field keeps any inner spaces (a wav path may hold them).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    for n, raw in table_lines(path):
        line = raw.strip()
        if not line:
            continue
        fields = line.split(None, max_fields - 1) if max_fields else line.split()
        if len(fields) < min_fields:
            raise InputError(path, f"expected at least {min_fields} fields, got {len(fields)}: {line!r}", n)
        yield n, fields


def read_kv(path: PathLike) -> Dict[str, str]:
    """A `key value` table (wav.scp, utt2spk, utt2num_frames, feats.scp); duplicate keys are errors."""
    out: Dict[str, str] = {}
    for n, (key, value) in iter_table(path):
        if key in out:
            raise InputError(path, f"duplicate key {key!r}", n)
        out[key] = value
    return out


def read_list_table(path: PathLike) -> Dict[str, List[str]]:
    """A `key v1 v2 …` table (spk2utt)."""
    out: Dict[str, List[str]] = {}
    for n, fields in iter_table(path, min_fields=2, max_fields=None):
        if fields[0] in out:
            raise InputError(path, f"duplicate key {fields[0]!r}", n)
        out[fields[0]] = fields[1:]
    return out


def write_kv(path: PathLike, table: Dict[str, object]) -> None:
    write_lines_atomic(path, (f"{k} {table[k]}" for k in sorted(table)))


def spk2utt_from_utt2spk(utt2spk: Dict[str, str]) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return out


@dataclass
class DataDir:
    """The tables of one Kaldi data dir; `segments` maps utt → (recording, start s, end s)."""

    wav_scp: Dict[str, str]
    utt2spk: Dict[str, str]
    segments: Dict[str, Tuple[str, float, float]] = field(default_factory=dict)
    utt2num_frames: Dict[str, int] = field(default_factory=dict)

    @property
    def utts(self) -> List[str]:
        return sorted(self.utt2spk)

    @property
    def spk2utt(self) -> Dict[str, List[str]]:
        return spk2utt_from_utt2spk(self.utt2spk)

    @property
    def speakers(self) -> List[str]:
        return sorted(set(self.utt2spk.values()))


def read_segments(path: PathLike) -> Dict[str, Tuple[str, float, float]]:
    out: Dict[str, Tuple[str, float, float]] = {}
    for n, fields in iter_table(path, min_fields=4, max_fields=None):
        try:
            start, end = float(fields[2]), float(fields[3])
        except ValueError:
            raise InputError(path, f"start/end are not numbers: {' '.join(fields)!r}", n) from None
        out[fields[0]] = (fields[1], start, end)
    return out


def read_data_dir(d: PathLike) -> DataDir:
    """Read the tables of a data dir (no cross-checks: see `trkd.data.validate`)."""
    d = Path(d)
    if not d.is_dir():
        raise InputError(d, "not a data directory")
    segments = read_segments(d / "segments") if (d / "segments").is_file() else {}
    u2nf = {}
    if (d / "utt2num_frames").is_file():
        for n, (utt, v) in iter_table(d / "utt2num_frames"):
            if not v.isdigit():
                raise InputError(d / "utt2num_frames", f"frame count is not an integer: {v!r}", n)
            u2nf[utt] = int(v)
    return DataDir(read_kv(d / "wav.scp"), read_kv(d / "utt2spk"), segments, u2nf)


def write_data_dir(d: PathLike, data: DataDir) -> None:
    """Write wav.scp, utt2spk, spk2utt (and segments / utt2num_frames when present), sorted."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    write_kv(d / "wav.scp", data.wav_scp)
    write_kv(d / "utt2spk", data.utt2spk)
    write_lines_atomic(d / "spk2utt", (f"{s} {' '.join(u)}" for s, u in data.spk2utt.items()))
    if data.segments:
        write_lines_atomic(d / "segments", (f"{u} {r} {s:.3f} {e:.3f}" for u, (r, s, e) in sorted(data.segments.items())))
    if data.utt2num_frames:
        write_kv(d / "utt2num_frames", data.utt2num_frames)


def subset(data: DataDir, utts: Iterable[str]) -> DataDir:
    """The data dir restricted to `utts` (e.g. one of `nj` splits)."""
    keep = set(utts)
    recs = {data.segments[u][0] for u in keep if u in data.segments}
    wav = {k: v for k, v in data.wav_scp.items() if k in keep or k in recs}
    return DataDir(
        wav,
        {u: s for u, s in data.utt2spk.items() if u in keep},
        {u: s for u, s in data.segments.items() if u in keep},
        {u: n for u, n in data.utt2num_frames.items() if u in keep},
    )


def line_of(path: PathLike, key: str) -> Optional[int]:
    """The line number of `key`'s first entry in a table, for error messages (None if absent)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, raw in enumerate(f, start=1):
                fields = raw.split(None, 1)
                if fields and fields[0] == key:
                    return n
    except OSError:
        pass
    return None
