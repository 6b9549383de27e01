"""Kaldi tables (scp, ark, `scp:`/`ark:`/`ark,t:` rspecifiers) read through kaldiio, with one
policy for shell commands and errors that name the file and line.

Kaldi and kaldiio run an entry that ends (or starts) with `|` as a shell command. Data dirs and
embedding scps are copied between machines and people, so trkd runs such a command only when the
user opts in with `TRKD_ALLOW_PIPES=1`; otherwise the entry is an error naming its file and line.
This holds for every table: wav.scp, feats.scp, xvector.scp and the paths of rspecifiers.

One command is trkd's own: `trkd augment-wav DIR UTT |`, the wav.scp entry of an augmented copy
that `trkd augment` did not write as a WAV (`trkd.data.virtual`). Kaldi tools and sox-style readers
run it; trkd's audio readers never do: they parse it (without a shell) and make the copy in-process
from DIR's recorded settings, lists and sources, which reads files as a WAV path does and runs
nothing, so the pipe policy does not apply to it there. Wherever trkd would hand it to a shell (a
feats.scp or ark read by kaldiio), it is a command like any other.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import kaldiio
import numpy as np

from trkd.errors import InputError
from trkd.utils import PathLike

PIPE_ENV = "TRKD_ALLOW_PIPES"
OWN_COMMAND = "trkd augment-wav"
# The rspecifier options of Kaldi's table readers; any other prefix before ':' is part of a path.
RSPECIFIER_OPTIONS = {"ark", "scp", "t", "b", "o", "s", "cs", "p", "f"}


def pipes_allowed() -> bool:
    return os.environ.get(PIPE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_command(rx: str) -> bool:
    """Kaldi's rxfile rule: `cmd |` is read from a command's output (`| cmd` is its wxfile twin)."""
    s = rx.strip()
    return s.endswith("|") or s.startswith("|")


def own_entry(rx: str) -> Optional[List[str]]:
    """The arguments after `trkd augment-wav` of such an entry (read in-process, never by a shell), else None."""
    s = rx.strip()
    if not (s.endswith("|") and s.startswith(OWN_COMMAND + " ")):
        return None
    try:
        return shlex.split(s[:-1])[2:]
    except ValueError:  # unbalanced quotes: not an entry trkd wrote
        return None


def check_command(rx: str, source: PathLike, line: Optional[int] = None, key: Optional[str] = None,
                  shell: bool = False) -> None:
    """Refuse a shell-command entry unless `TRKD_ALLOW_PIPES=1` is set; trkd's own audio entries pass
    unless the caller would run them in a shell (`shell`)."""
    if is_command(rx) and not pipes_allowed() and (shell or own_entry(rx) is None):
        who = f"{key}: " if key else ""
        raise InputError(source, f"{who}{rx.strip()!r} is a shell command (ends in '|'); trkd runs commands "
                                 f"from data files only with {PIPE_ENV}=1", line)


@dataclass(frozen=True)
class ScpEntry:
    key: str
    rx: str
    line: int


def read_scp(path: PathLike) -> List[ScpEntry]:
    """The entries of a Kaldi script file, in file order.

    As in Kaldi's readers, a blank line, a line without a value and a repeated key are errors;
    command entries follow `check_command`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    out: List[ScpEntry] = []
    seen: Dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            fields = raw.strip().split(None, 1)
            if not fields:
                raise InputError(path, "blank line (Kaldi's table readers refuse it too): remove it", n)
            if len(fields) < 2:
                raise InputError(path, f"expected 'key rxfile', got {raw.strip()!r}", n)
            key, rx = fields
            if key in seen:
                raise InputError(path, f"duplicate key {key!r} (first on line {seen[key]})", n)
            check_command(rx, path, n, key)
            seen[key] = n
            out.append(ScpEntry(key, rx, n))
    return out


def scp_dict(path: PathLike) -> Dict[str, str]:
    """key → rxfile of a script file (see `read_scp`)."""
    return {e.key: e.rx for e in read_scp(path)}


def _locate(source: PathLike, rx: str) -> Tuple[Optional[int], Optional[str]]:
    """Line and key of the entry whose value is `rx` (searched only when reporting an error)."""
    try:
        with open(source, encoding="utf-8") as f:
            for n, raw in enumerate(f, start=1):
                fields = raw.strip().split(None, 1)
                if len(fields) == 2 and fields[1] == rx.strip():
                    return n, fields[0]
    except (OSError, UnicodeDecodeError):
        pass
    return None, None


def _arkpath(rx: str) -> Tuple[str, str]:
    """(ark, offset digits or '') of an rxfile `foo.ark:123[0:9]`."""
    base = rx.strip().split("[", 1)[0] if rx.strip().endswith("]") else rx.strip()
    ark, sep, offset = base.rpartition(":")
    return (ark, offset) if sep and offset.isdigit() else (base, "")


def _why(rx: str, err: Exception) -> str:
    """A reason that names the ark and the offset; kaldiio's own is often an empty AssertionError."""
    if is_command(rx):
        return f"the command failed or did not write one Kaldi matrix{_detail(err)}"
    ark, offset = _arkpath(rx)
    try:
        size = os.path.getsize(ark)
    except OSError as os_err:
        return f"{ark}: {(os_err.strerror or 'cannot open').lower()}"
    detail = _detail(err)
    if offset and int(offset) >= size:
        return f"offset {offset} is past the end of {ark} ({size} bytes): the ark is truncated or was rewritten"
    where = f" at byte {offset}" if offset else ""
    return f"truncated or corrupt data{where} of {ark} ({size} bytes){detail}"


def _detail(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f" ({type(err).__name__}: {text})" if text else ""


def load_matrix(rx: str, source: PathLike, line: Optional[int] = None, key: Optional[str] = None,
                fds: Optional[dict] = None) -> np.ndarray:
    """The matrix or vector behind one rxfile (`foo.ark:123`); any failure is one `InputError`
    naming `source` and the entry's line. `fds` keeps arks open across calls (kaldiio's fd_dict)."""
    if is_command(rx) and not pipes_allowed():
        if line is None:
            line, key = _locate(source, rx)
        check_command(rx, source, line, key, shell=True)
    own = fds is None
    fds = {} if own else fds
    try:
        value = kaldiio.load_mat(rx, fd_dict=fds)
        if getattr(value, "ndim", 0) == 1:
            _check_whole_vector(rx, fds)
        return value
    except Exception as err:  # kaldiio raises many types (AssertionError, ValueError, struct.error) on bad bytes
        if line is None:
            line, key = _locate(source, rx)
        who = f"{key}: " if key else ""
        raise InputError(source, f"{who}cannot read {rx.strip()!r}: {_why(rx, err)}", line) from None
    finally:
        if own:
            for fd in fds.values():
                fd.close()


def _check_whole_vector(rx: str, fds: dict) -> None:
    """kaldiio returns a shorter vector when the ark ends inside it (a matrix fails to reshape).

    A read comes up short only at the end of the file, so only a vector that ends there is checked.
    """
    ark, offset = _arkpath(rx)
    f = fds.get(ark)
    if f is None or not offset:
        return  # a command's output: nothing to compare with
    size = os.fstat(f.fileno()).st_size
    if f.tell() >= size and not _whole(f, int(offset), size):
        raise EOFError("the vector ends past the end of the file")


def run_command(rx: str, source: PathLike, line: Optional[int] = None, key: Optional[str] = None) -> BytesIO:
    """The standard output of an allowed `cmd |` entry (e.g. `ffmpeg … |` in wav.scp)."""
    check_command(rx, source, line, key, shell=True)
    proc = subprocess.run(rx.strip().rstrip("|"), shell=True, capture_output=True)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(source, f"{key + ': ' if key else ''}command {rx.strip()!r} failed with status "
                                 f"{proc.returncode}" + (f": {tail[-1]}" if tail else ""), line)
    return BytesIO(proc.stdout)


def parse_rspecifier(spec: PathLike) -> Tuple[str, str]:
    """(`scp` | `ark` | `auto`, path) of `scp:x`, `ark:x`, `ark,t:x`, or of a plain path."""
    text = str(spec)
    head, sep, rest = text.partition(":")
    opts = set(head.split(","))
    if sep and opts <= RSPECIFIER_OPTIONS and len(opts & {"ark", "scp"}) == 1:
        return ("scp" if "scp" in opts else "ark"), rest
    return "auto", text


def table_path(spec: PathLike) -> Path:
    """The file an rspecifier or path names (for output dirs beside it)."""
    return Path(parse_rspecifier(spec)[1])


def _sniff(path: Path) -> str:
    """`ark` for a binary or text archive (`key \\0B…` or `key  [ …`), else `scp`: whatever its name."""
    if path.suffix == ".ark":
        return "ark"
    with open(path, "rb") as f:
        head = f.read(4096)
    first = head.lstrip().split(b"\n", 1)[0]
    parts = first.split(None, 1)
    if len(parts) < 2:
        return "scp"
    return "ark" if first[len(parts[0]) + 1:].startswith(b"\0B") or parts[1].lstrip().startswith(b"[") else "scp"


def read_ark(path: str, source: PathLike) -> Iterator[Tuple[str, np.ndarray]]:
    """The entries of an archive in order; a truncated one is an error, not a shorter table.

    kaldiio returns a short vector, or a piece of a key, when an ark ends inside an entry; since
    truncation cuts the tail, the last entry is checked to be whole (`_whole`).
    """
    if is_command(path):
        check_command(path, source, shell=True)
        yield from kaldiio.load_ark(path)
        return
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    size = os.path.getsize(path)
    n, key, start, end = 0, None, 0, 0
    with open(path, "rb") as f:
        try:
            for key, value in kaldiio.load_ark(f):
                n, start, end = n + 1, end, f.tell()
                yield key, value
        except Exception as err:  # kaldiio raises many types on cut-off bytes
            after = f" (after {key!r})" if n else ""
            raise InputError(path, f"entry {n + 1}{after} is truncated or corrupt: it starts at byte {end} "
                                   f"of {size}{_detail(err)}") from None
        if n and not _whole(f, start + len(key.encode()) + 1, size):
            raise InputError(path, f"truncated: its last entry {key!r} (entry {n}, byte {start}) is cut off "
                                   f"at the end of the file ({size} bytes)")


def _whole(f, value_start: int, size: int) -> bool:
    """Whether the entry whose value starts at `value_start` ends within the file's `size` bytes."""
    if value_start >= size:
        return False  # the file ends inside the key or right after it
    f.seek(value_start)
    head = f.read(3)
    f.seek(value_start)
    if head[:2] != b"\0B":
        return f.read().rstrip().endswith(b"]")  # a text matrix or vector closes its bracket
    if head[2:3] in (b"\4", b"C"):
        return True  # int32 vectors and compressed matrices: kaldiio fails on their short reads
    try:
        _, declared = kaldiio.matio.read_matrix_or_vector(f, return_size=True)
    except Exception:  # a cut-off header
        return False
    return value_start + declared <= size


def read_table(spec: PathLike) -> Iterator[Tuple[str, np.ndarray, str, Optional[int]]]:
    """`(key, value, file, line)` of every entry of a table given as an rspecifier or a path.

    A plain path is read as an archive when it looks like one (so a text ark named `.txt` works),
    else as a script file; `line` is None for archive entries.
    """
    kind, path = parse_rspecifier(spec)
    if kind == "auto":
        if not os.path.isfile(path):
            raise InputError(path, "no such file")
        kind = _sniff(Path(path))
    if kind == "ark":
        for key, value in read_ark(path, spec):
            yield key, value, path, None
        return
    fds: Dict[str, object] = {}
    try:
        for e in read_scp(path):
            yield e.key, load_matrix(e.rx, path, e.line, e.key, fds), path, e.line
    finally:
        for fd in fds.values():
            fd.close()
