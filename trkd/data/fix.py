"""`fix_data_dir`: keep the consistent subset of a data dir, as Kaldi's `fix_data_dir.sh`."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from trkd.data.kaldi_dir import DataDir, PathLike, table_lines, write_data_dir, write_kv
from trkd.data.validate import PER_UTT_TABLES
from trkd.errors import InputError


@dataclass
class FixReport:
    """What `fix_data_dir` kept, and one line per dropped entry (`file:line: why`)."""

    kept: int
    total: int
    dropped: List[str] = field(default_factory=list)


def fix_data_dir(path: PathLike) -> FixReport:
    """Keep the utterances present and well-formed in every table; back up the originals in DIR/.backup.

    Malformed lines and repeated keys are dropped (the first entry of a key is kept), tables are
    sorted, spk2utt is rebuilt from utt2spk, and recordings no utterance uses leave wav.scp.
    Audio is not opened: `trkd validate-data` checks it.
    """
    d = Path(path)
    if not d.is_dir():
        raise InputError(d, "not a data directory")
    dropped: List[str] = []
    wav = _read(d / "wav.scp", 2, dropped)
    u2s = _read(d / "utt2spk", 2, dropped, one_value=True)
    seg = _read(d / "segments", 4, dropped, optional=True, exact=4)
    extra = {name: _read(d / name, 2, dropped, optional=True) for name in PER_UTT_TABLES}
    total = len(u2s)
    keep = set(u2s)
    need = [("segments", seg)] if seg is not None else [("wav.scp", wav)]
    need += [(name, t) for name, t in extra.items() if t is not None]
    for name, table in need:
        for utt in sorted(keep - set(table)):
            dropped.append(f"{d / 'utt2spk'}:{u2s[utt][0]}: dropped {utt!r} (no entry in {name})")
        keep &= set(table)
    segments: Dict[str, Tuple[str, float, float]] = {}
    if seg is not None:
        for utt in sorted(keep):
            n, (rec, t0, t1) = seg[utt]
            try:
                start, end = float(t0), float(t1)
            except ValueError:
                start = end = -1.0
            if rec not in wav or not 0 <= start < end:
                why = "recording not in wav.scp" if rec not in wav else "bad start/end"
                dropped.append(f"{d / 'segments'}:{n}: dropped {utt!r} ({why})")
                keep.discard(utt)
            else:
                segments[utt] = (rec, start, end)
    used = {segments[u][0] for u in keep} if seg is not None else keep
    for rec in sorted(set(wav) - used):
        if seg is not None:
            dropped.append(f"{d / 'wav.scp'}:{wav[rec][0]}: dropped {rec!r} (no segment uses it)")
        elif rec not in u2s:  # otherwise already reported under its utterance
            dropped.append(f"{d / 'wav.scp'}:{wav[rec][0]}: dropped {rec!r} (missing from utt2spk)")
    _backup(d)
    data = DataDir(
        {r: wav[r][1] for r in used},
        {u: u2s[u][1] for u in keep},
        segments,
        {u: int(extra["utt2num_frames"][u][1]) for u in keep} if extra["utt2num_frames"] is not None else {},
    )
    write_data_dir(d, data)
    for name in ("feats.scp", "utt2dur"):
        if extra[name] is not None:
            write_kv(d / name, {u: extra[name][u][1] for u in keep})
    return FixReport(len(keep), total, dropped)


def _read(path: Path, min_fields: int, dropped: List[str], optional: bool = False,
          one_value: bool = False, exact: Optional[int] = None):
    """Lenient table reader: `{key: (line, value or fields)}`, with malformed lines logged in `dropped`."""
    if not path.is_file():
        if optional:
            return None
        raise InputError(path, "no such file")
    out = {}
    for n, raw in table_lines(path):
        fields = raw.split() if exact else raw.strip().split(None, 1)
        if not fields:
            continue
        bad = len(fields) < min_fields or (exact and len(fields) != exact) or (one_value and len(fields[1].split()) != 1)
        if bad:
            dropped.append(f"{path}:{n}: dropped {fields[0]!r} (malformed line)")
        elif fields[0] in out:
            dropped.append(f"{path}:{n}: dropped {fields[0]!r} (repeated key; kept line {out[fields[0]][0]})")
        else:
            out[fields[0]] = (n, fields[1:] if exact else fields[1])
    return out


def _backup(d: Path) -> None:
    """Copy the tables about to be rewritten into DIR/.backup (replacing an older backup)."""
    backup = d / ".backup"
    backup.mkdir(exist_ok=True)
    for name in ("wav.scp", "utt2spk", "spk2utt", "segments") + PER_UTT_TABLES:
        if (d / name).is_file():
            shutil.copy2(d / name, backup / name)
