"""Kaldi tables (scp, ark, `scp:`/`ark:`/`ark,t:` rspecifiers): the one reader of every table and
ark trkd reads (features, embeddings, teacher dumps), with errors that name the file and line.

An scp value is parsed strictly as Kaldi's `path[:offset][range]`; a value holding a `|` follows
the command policy of `trkd.data.pipes`; the value at the offset is decoded by
`trkd.data.ark_values` only once its type is known to be a matrix or vector of numbers, and it
must be finite (the policy stated there). Standard input (`ark:-`) is not read: a table is a file,
or, with the opt-in, a command's output.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from trkd.data.ark_values import NonFinite, RefusedValue, read_key, read_value
from trkd.data.kaldi_dir import table_lines
from trkd.data.pipes import PIPE_ENV, check_command, command_output, is_command, run_command
from trkd.errors import InputError
from trkd.utils import PathLike

# The rspecifier options of Kaldi's table readers; any other prefix before ':' is part of a path.
RSPECIFIER_OPTIONS = {"ark", "scp", "t", "b", "o", "s", "cs", "p", "f"}
_OFFSET = re.compile(r"(.*):([0-9]+)")
STDIN = (f"standard input is not read as a table: write it to a file first, or give the command that "
         f"writes it ('ark:CMD |', with {PIPE_ENV}=1)")


class BadEntry(ValueError):
    """An scp value that is not Kaldi's `path[:offset][range]` (the message is complete)."""


@dataclass(frozen=True)
class Rx:
    """A parsed scp value: a file (and the byte offset of its value) or a command, and Kaldi's
    inclusive `[first:last]` / `[first:last,first:last]` range as slices."""

    path: str
    offset: Optional[int]
    ranges: Tuple[slice, ...]
    command: bool


def parse_rx(rx: str) -> Rx:
    """`path[:offset][range]`, as Kaldi's readers split it (a command takes a range, no offset)."""
    s = rx.strip()
    ranges: Tuple[slice, ...] = ()
    if s.endswith("]") and "[" in s:
        at = s.rindex("[")
        s, ranges = s[:at], _ranges(rx, s[at + 1:-1])
    if is_command(s):
        return Rx(s, None, ranges, True)
    m = _OFFSET.fullmatch(s)
    path, offset = (m[1], int(m[2])) if m else (s, None)
    if is_command(path):
        raise BadEntry(f"{rx.strip()!r}: a command's output has no byte offset (Kaldi would open a file "
                       f"named {path.strip()!r}); write 'CMD |' or 'CMD |[RANGE]'")
    if not path.strip():
        raise BadEntry(f"{rx.strip()!r} names no file")
    return Rx(path, offset, ranges, False)


def _ranges(rx: str, spec: str) -> Tuple[slice, ...]:
    out = []
    for part in spec.split(","):
        first, sep, last = part.strip().partition(":")
        if part.strip() in ("", ":"):
            out.append(slice(None))
        elif sep and first.isdigit() and last.isdigit() and int(first) <= int(last):
            out.append(slice(int(first), int(last) + 1))
        else:
            break
    if len(out) != len(spec.split(",")) or len(out) > 2:
        raise BadEntry(f"{rx.strip()!r}: bad range [{spec}]: Kaldi's are [FIRST:LAST] (rows) and "
                       "[FIRST:LAST,FIRST:LAST] (rows, columns), inclusive")
    return tuple(out)


def _in_range(value: np.ndarray, spec: Rx, rx: str) -> np.ndarray:
    if not spec.ranges:
        return value
    outside = len(spec.ranges) > value.ndim or any(
        r.stop is not None and r.stop > n for r, n in zip(spec.ranges, value.shape))
    if outside:
        raise BadEntry(f"{rx.strip()!r}: the range lies outside the value, of shape {value.shape}")
    return value[spec.ranges]


@dataclass(frozen=True)
class ScpEntry:
    key: str
    rx: str
    line: int


def read_scp(path: PathLike, audio: bool = False) -> List[ScpEntry]:
    """The entries of a Kaldi script file, in file order.

    As in Kaldi's readers, a blank line, a line without a value and a repeated key are errors;
    each value is checked as `load_matrix` will read it (an `audio` table, wav.scp, only for the
    command policy: trkd's own entries pass).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    out: List[ScpEntry] = []
    seen: Dict[str, int] = {}
    for n, raw in table_lines(path):
        fields = raw.strip().split(None, 1)
        if not fields:
            raise InputError(path, "blank line (Kaldi's table readers refuse it too): remove it", n)
        if len(fields) < 2:
            raise InputError(path, f"expected 'key rxfile', got {raw.strip()!r}", n)
        key, rx = fields
        if key in seen:
            raise InputError(path, f"duplicate key {key!r} (first on line {seen[key]})", n)
        check_command(rx, path, n, key, shell=not audio)
        if not audio:
            try:
                parse_rx(rx)
            except BadEntry as err:
                raise InputError(path, f"{key}: {err}", n) from None
        seen[key] = n
        out.append(ScpEntry(key, rx, n))
    return out


def scp_dict(path: PathLike) -> Dict[str, str]:
    """key → rxfile of a script file (see `read_scp`)."""
    return {e.key: e.rx for e in read_scp(path)}


def _locate(source: PathLike, rx: str) -> Tuple[Optional[int], Optional[str]]:
    """Line and key of the entry whose value is `rx` (searched only when reporting an error)."""
    try:
        with open(source, encoding="utf-8", errors="replace") as f:
            for n, raw in enumerate(f, start=1):
                fields = raw.strip().split(None, 1)
                if len(fields) == 2 and fields[1] == rx.strip():
                    return n, fields[0]
    except OSError:
        pass
    return None, None


def _why(rx: str, err: Exception) -> str:
    """A reason that names the ark and the offset (a damaged value's own error is often terse)."""
    spec = parse_rx(rx)
    if spec.command:
        return f"the command failed or did not write one Kaldi matrix{_detail(err)}"
    try:
        size = os.path.getsize(spec.path)
    except OSError as os_err:
        return f"{spec.path}: {(os_err.strerror or 'cannot open').lower()}"
    where = f" at byte {spec.offset}" if spec.offset is not None else ""
    if isinstance(err, RefusedValue):
        return f"the value{where} of {spec.path} is {err}"
    if spec.offset is not None and spec.offset >= size:
        return f"offset {spec.offset} is past the end of {spec.path} ({size} bytes): the ark is truncated or was rewritten"
    return f"truncated or corrupt data{where} of {spec.path} ({size} bytes){_detail(err)}"


def _detail(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f" ({type(err).__name__}: {text})" if text else ""


def _reason(rx: str, err: Exception) -> str:
    if isinstance(err, BadEntry):
        return str(err)
    if isinstance(err, NonFinite):
        return f"{rx.strip()!r} holds {err}: trkd reads only finite numbers"
    return f"cannot read {rx.strip()!r}: {_why(rx, err)}"


def load_matrix(rx: str, source: PathLike, line: Optional[int] = None, key: Optional[str] = None,
                fds: Optional[dict] = None, finite: bool = True) -> np.ndarray:
    """The matrix or vector behind one scp value (`foo.ark:123`), finite unless `finite` is False
    (whose caller checks it); any failure is one `InputError` naming `source` and the entry's line.
    `fds` keeps arks open across calls."""
    if "|" in rx and line is None:
        line, key = _locate(source, rx)
    check_command(rx, source, line, key, shell=True)
    own = fds is None
    fds = {} if own else fds
    try:
        spec = parse_rx(rx)
        if spec.command:
            value = read_value(run_command(spec.path, source, line, key), finite)
        else:
            f = fds.get(spec.path)
            if f is None:
                f = fds[spec.path] = open(spec.path, "rb")
            f.seek(spec.offset or 0)
            value = read_value(f, finite)
        return _in_range(value, spec, rx)
    except InputError:
        raise
    except Exception as err:  # a damaged value raises many types (EOFError, ValueError, struct.error)
        if line is None:
            line, key = _locate(source, rx)
        who = f"{key}: " if key else ""
        raise InputError(source, f"{who}{_reason(rx, err)}", line) from None
    finally:
        if own:
            for fd in fds.values():
                fd.close()


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


def read_ark(path: str, source: PathLike, finite: bool = True) -> Iterator[Tuple[str, np.ndarray]]:
    """The entries of an archive (a file, or an allowed `cmd |`'s output) in order; an entry cut
    off or damaged is an error, not a shorter table."""
    if path.strip() == "-":
        raise InputError(source, STDIN)
    check_command(path, source, shell=True)
    if is_command(path):
        with command_output(path, source) as f:
            yield from _entries(f, path, None, finite)
        return
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    with open(path, "rb") as f:
        yield from _entries(f, path, os.path.getsize(path), finite)


def _entries(f, path: str, size: Optional[int], finite: bool) -> Iterator[Tuple[str, np.ndarray]]:
    n, prev = 0, None
    while True:
        start, key = (f.tell() if size is not None else None), None
        try:
            key = read_key(f)
            if key is None:
                return
            value = read_value(f, finite)
        except Exception as err:  # a damaged entry raises many types (EOFError, ValueError, struct.error)
            what = f"entry {n + 1}" + (f" {key!r}" if key is not None else f" (after {prev!r})" if prev else "")
            at = f" at byte {start} of {size}" if size is not None else ""
            if isinstance(err, NonFinite):
                raise InputError(path, f"{what}{at} holds {err}: trkd reads only finite numbers") from None
            if isinstance(err, RefusedValue):
                raise InputError(path, f"{what}{at} is {err}") from None
            raise InputError(path, f"{what} is truncated or corrupt: it starts{at}{_detail(err)}") from None
        n, prev = n + 1, key
        yield key, value


def read_table(spec: PathLike, finite: bool = True) -> Iterator[Tuple[str, np.ndarray, str, Optional[int]]]:
    """`(key, value, file, line)` of every entry of a table given as an rspecifier or a path.

    A plain path is read as an archive when it looks like one (so a text ark named `.txt` works),
    else as a script file; `line` is None for archive entries.
    """
    kind, path = parse_rspecifier(spec)
    if path.strip() == "-":
        raise InputError(spec, STDIN)
    if kind == "scp" and is_command(path):
        check_command(path, spec, shell=True)
        raise InputError(spec, "a script file is read from a file, not from a command's output: write it to a file")
    if kind == "auto":
        if not os.path.isfile(path):
            raise InputError(path, "no such file")
        kind = _sniff(Path(path))
    if kind == "ark":
        for key, value in read_ark(path, spec, finite):
            yield key, value, path, None
        return
    fds: Dict[str, object] = {}
    try:
        for e in read_scp(path):
            yield e.key, load_matrix(e.rx, path, e.line, e.key, fds, finite), path, e.line
    finally:
        for fd in fds.values():
            fd.close()
