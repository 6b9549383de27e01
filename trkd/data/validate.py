"""`validate_data_dir`: the checks of Kaldi's `validate_data_dir.sh`, as a library call.

Every subcommand that reads a data dir calls it first; the first problem found is raised as an
`InputError` naming the file and line, so a bad data dir fails before any output is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from tqdm import tqdm

from trkd.data.audio import audio_info
from trkd.data.kaldi_dir import DataDir, PathLike, iter_table, read_data_dir
from trkd.data.tables import load_matrix, read_scp
from trkd.errors import InputError
from trkd.utils.ids import check_id

Table = Dict[str, Tuple[int, List[str]]]  # key -> (line, fields)

# Per-utterance tables that must, when present, cover exactly the utterances of utt2spk.
PER_UTT_TABLES = ("feats.scp", "utt2num_frames", "utt2dur")


def read_sorted_table(path: Path, min_fields: int = 2, max_fields: Optional[int] = 2) -> Table:
    """A table whose keys must be unique and in `LC_ALL=C sort` order (Python's str order)."""
    out: Table = {}
    prev = None
    for n, fields in iter_table(path, min_fields, max_fields):
        key = fields[0]
        if key in out:
            raise InputError(path, f"duplicate key {key!r} (first on line {out[key][0]})", n)
        if prev is not None and key < prev:
            raise InputError(path, f"key {key!r} is not sorted (it follows {prev!r}); sort with LC_ALL=C sort", n)
        out[key], prev = (n, fields), key
    return out


def validate_data_dir(path: PathLike, check_audio: bool = True, rate: Optional[int] = 16000,
                      check_feats: bool = False) -> DataDir:
    """Check a Kaldi data dir and return its tables; raise `InputError` (file, line) on the first problem.

    Checks: at least one utterance; sorted unique keys in every table; utterance and recording
    ids that can name a file (`trkd.utils.ids`); one speaker id per utt2spk line; spk2utt agrees with
    utt2spk; every utterance has audio (wav.scp, or segments into wav.scp) and nothing else does;
    feats.scp / utt2num_frames / utt2dur, if present, cover the same utterances; with `check_audio`
    (the deep check), every recording is readable, not truncated, mono and at `rate` Hz, and every
    feature matrix is readable with the dims of the first; with `check_feats`, every feature matrix
    is also finite (a NaN or Inf names the utterance, its ark and the scp line).
    """
    d = Path(path)
    if not d.is_dir():
        raise InputError(d, "not a data directory")
    if not (d / "spk2utt").is_file() and (d / "utt2spk").is_file():
        raise InputError(d / "spk2utt", "no such file (`trkd fix-data DIR` writes it from utt2spk)")
    wav = read_sorted_table(d / "wav.scp")
    u2s = read_sorted_table(d / "utt2spk")
    s2u = read_sorted_table(d / "spk2utt", max_fields=None)
    if not u2s:
        raise InputError(d / "utt2spk", "no utterances: the data dir is empty")
    for name, table in (("wav.scp", wav), ("utt2spk", u2s)):  # recording and utterance ids name files
        for key, (n, _) in table.items():
            check_id(key, d / name, n, "recording id" if name == "wav.scp" else "utterance id")
    for utt, (n, (_, spk)) in u2s.items():
        if len(spk.split()) != 1:
            raise InputError(d / "utt2spk", f"expected 2 fields (utterance speaker), got {1 + len(spk.split())}", n)
    _check_spk2utt(d, u2s, s2u)
    if (d / "segments").is_file():
        seg = read_sorted_table(d / "segments", min_fields=4, max_fields=None)
        _check_segments(d, seg, wav)
        _check_same_keys(d, "segments", seg, u2s)
    else:
        _check_same_keys(d, "wav.scp", wav, u2s)
    for name in PER_UTT_TABLES:
        if (d / name).is_file():
            _check_same_keys(d, name, read_sorted_table(d / name), u2s)
    for name in ("wav.scp", "feats.scp"):  # Kaldi script files: blank lines, commands, bad values
        if (d / name).is_file():
            read_scp(d / name, audio=name == "wav.scp")
    data = read_data_dir(d)
    if (check_audio or check_feats) and (d / "feats.scp").is_file():
        check_feats_table(d / "feats.scp", finite=check_feats)
    if check_audio:
        for rec in tqdm(sorted(data.wav_scp), desc=f"validate {d}", unit="wav", leave=False, disable=None):
            audio_info(data.wav_scp[rec], d / "wav.scp", rec, rate)
    return data


def check_feats_table(scp: Path, finite: bool) -> None:
    """Read every matrix of feats.scp once: each has the first one's number of columns (a mixed
    table trains garbage) and, with `finite`, no NaN or Inf (named by utterance, ark and scp line)."""
    dim = None
    fds: dict = {}
    try:
        for n, (utt, rx) in tqdm(list(iter_table(scp)), desc=f"validate {scp}", unit="utt", leave=False, disable=None):
            mat = load_matrix(rx, scp, n, utt, fds, finite)
            if mat.ndim != 2:
                raise InputError(scp, f"{utt}: {rx!r} is a vector, not a feature matrix", n)
            dim = mat.shape[1] if dim is None else dim
            if mat.shape[1] != dim:
                raise InputError(scp, f"{utt}: {mat.shape[1]}-dim features, the lines above have {dim}", n)
    finally:
        for fd in fds.values():
            fd.close()


def _check_spk2utt(d: Path, u2s: Table, s2u: Table) -> None:
    expected: Dict[str, List[str]] = {}
    for utt, (_, (_, spk)) in u2s.items():
        expected.setdefault(spk, []).append(utt)
    for spk, (n, fields) in s2u.items():
        for utt in fields[1:]:
            if utt not in u2s:
                raise InputError(d / "spk2utt", f"utterance {utt!r} of speaker {spk!r} is not in utt2spk", n)
            if u2s[utt][1][1] != spk:
                raise InputError(d / "spk2utt", f"utterance {utt!r} is listed under speaker {spk!r}, "
                                                f"but utt2spk gives speaker {u2s[utt][1][1]!r}", n)
        if spk not in expected:
            raise InputError(d / "spk2utt", f"speaker {spk!r} has no utterances in utt2spk", n)
        if fields[1:] != expected[spk]:
            missing = sorted(set(expected[spk]) - set(fields[1:]))
            what = f"is missing utterance {missing[0]!r}" if missing else "lists its utterances unsorted or twice"
            raise InputError(d / "spk2utt", f"speaker {spk!r} {what} (see utt2spk)", n)
    for spk, utts in expected.items():
        if spk not in s2u:
            raise InputError(d / "utt2spk", f"speaker {spk!r} is missing from spk2utt", u2s[utts[0]][0])


def _check_segments(d: Path, seg: Table, wav: Table) -> None:
    for utt, (n, fields) in seg.items():
        if len(fields) != 4:
            raise InputError(d / "segments", f"expected 4 fields (utterance recording start end), got {len(fields)}", n)
        try:
            start, end = float(fields[2]), float(fields[3])
        except ValueError:
            raise InputError(d / "segments", f"start/end are not numbers: {' '.join(fields)!r}", n) from None
        if not 0 <= start < end:
            raise InputError(d / "segments", f"need 0 <= start < end, got {start:g} {end:g}", n)
        if fields[1] not in wav:
            raise InputError(d / "segments", f"recording {fields[1]!r} of utterance {utt!r} is not in wav.scp", n)


def _check_same_keys(d: Path, name: str, table: Table, u2s: Table) -> None:
    """Both directions: an utterance of `name` missing from utt2spk, and one of utt2spk missing from `name`."""
    for utt, (n, _) in table.items():
        if utt not in u2s:
            raise InputError(d / name, f"utterance {utt!r} is missing from utt2spk", n)
    for utt, (n, _) in u2s.items():
        if utt not in table:
            raise InputError(d / "utt2spk", f"utterance {utt!r} has no entry in {name}", n)
