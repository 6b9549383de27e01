"""The values of Kaldi archives, decoded only after their type is known to be numbers.

An ark entry is `key `, then a value whose first bytes name its type. trkd reads Kaldi's binary
float and double matrices and vectors (`FM`, `FV`, `DM`, `DV`), its compressed matrices (`CM`,
`CM2`, `CM3`), kaldiio's numpy form (`NPY`, which trkd's teacher dumps use; read without pickle)
and Kaldi's text form (`[ … ]`). Any other value is refused before a byte of it is decoded: above
all kaldiio's `PKL` form, which kaldiio would unpickle (a pickle runs whatever code it names),
and also audio and int32 vectors, which no table trkd reads holds. The float forms are read here
so that a value cut short is an error rather than a shorter vector; a compressed one is decoded
by kaldiio once its token is checked.

Finite or refused (`check_finite`): every number trkd reads from an ark must be finite. A NaN or
Inf in features, an embedding or a teacher's output would surface far from its cause, as NaN
scores or a diverged run, so the table readers refuse it where it is read, naming the table, the
line and the key. The one value that may hold −inf, the empty rest of a top-K teacher row, is
read unchecked and checked by that dump's own row check.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from typing import Optional, Tuple

import numpy as np
from kaldiio.matio import read_matrix_or_vector
from kaldiio.utils import MultiFileDescriptor

FLOAT_TYPES = {b"FM": "<f4", b"FV": "<f4", b"DM": "<f8", b"DV": "<f8"}
COMPRESSED_TYPES = (b"CM", b"CM2", b"CM3")
# What other values are, for the message that refuses them (kaldiio's and Kaldi's other forms).
REFUSED = {b"PKL": "a pickled Python object (kaldiio's PKL form), which trkd never loads: unpickling can "
                   "run any code", b"RIFF": "audio (RIFF)", b"fLaC": "audio (FLAC)", b"AUDIO": "audio (kaldiio's form)"}
BIG = 1 << 24  # bytes: a value this large is checked against the file's size before it is allocated
MAX_KEY = 4096  # bytes: more without a space is not a key but another file's bytes
_SIZES = {b"M": struct.Struct("<bibi"), b"V": struct.Struct("<bi")}
_RANGE = struct.Struct("<ff")  # a compressed matrix's global header begins with its min and range


class RefusedValue(ValueError):
    """A value of a type trkd does not read (as opposed to damaged bytes of one it does); the
    message says what the value is."""


class NonFinite(ValueError):
    """A value holding NaN or Inf; the message says how many and where the first one is."""


def read_exact(f, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError(f"the file ends {len(data)} bytes into a {n}-byte field")
    return data


def read_key(f) -> Optional[str]:
    """The key of the next entry of an archive (up to its space; whitespace before it is skipped, as
    Kaldi does), or None at the end of the file."""
    key = bytearray()
    while True:
        c = f.read(1)
        if not key and c.isspace():
            continue
        if c == b" " or (not c and not key):
            break
        if not c:
            raise EOFError(f"the file ends inside the key {bytes(key)[:40]!r}")
        key += c
        if len(key) > MAX_KEY:
            raise ValueError(f"no key: {MAX_KEY} bytes without a space")
    if not key:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"the key {bytes(key)[:40]!r} is not UTF-8") from None


def read_value(f, finite: bool = True) -> np.ndarray:
    """The matrix or vector at the position of binary stream `f` (a file or a pipe), with `f` left
    just past it; a value of another type is a `RefusedValue`, one holding a NaN or an Inf (with
    `finite`) a `NonFinite`, damaged or cut-off bytes another error."""
    value, bounded = _decode(f)
    if finite and not bounded:
        check_finite(value)
    return value


def _decode(f) -> Tuple[np.ndarray, bool]:
    """The value, and whether its header alone shows it finite (a compressed matrix's does)."""
    head = read_exact(f, 2)
    if head == b"\0B":
        return _binary(f)
    text = head.lstrip() or _skip_space(f)  # Kaldi writes a text value as ` [ … ]`
    if text[:1] == b"[":
        return _text(f, text[1:]), False
    head += f.read(1)
    if head == b"NPY":
        return _npy(f), False
    head += f.read(2)
    for token, what in REFUSED.items():
        if head.startswith(token):
            raise RefusedValue(what)
    raise RefusedValue(f"not a Kaldi matrix or vector (it starts with {head!r})")


def _binary(f) -> Tuple[np.ndarray, bool]:
    token = read_exact(f, 3)  # `FM `: two letters and a space; `CM2 `, `CM3 `: three
    if token[:1] == b"\4":
        raise RefusedValue("an int32 vector, not a float matrix or vector")
    if token[2:] != b" ":
        token += read_exact(f, 1)
    token = token[:-1]
    if token in COMPRESSED_TYPES:
        return _compressed(f, token)
    if token not in FLOAT_TYPES:
        raise ValueError(f"unknown Kaldi binary type {token!r}: trkd reads "
                         f"{', '.join(t.decode() for t in (*FLOAT_TYPES, *COMPRESSED_TYPES))}")
    sizes = _SIZES[token[1:]]
    fields = sizes.unpack(read_exact(f, sizes.size))  # (4, rows[, 4, cols]): each int32 after its byte width
    shape = fields[1::2]
    if fields[::2] != (4,) * len(shape) or min(shape) < 0:
        raise ValueError(f"bad matrix sizes {fields}")
    out = np.empty(shape, dtype=FLOAT_TYPES[token])
    _fill(f, out)
    return out, False


def _compressed(f, token: bytes) -> Tuple[np.ndarray, bool]:
    """A compressed matrix, decoded by kaldiio once its token is checked. Every number kaldiio
    computes from it is `min + u · range / 65535` (u a stored integer, or a value interpolated
    between such quantiles with weights up to 255/64), so a header with |min| + 65535 |range| below
    1e35 proves the whole matrix finite in float32 without a pass over it; any other header (a NaN
    range included) leaves the pass to `check_finite`."""
    head = b"\0B" + token + b" " + read_exact(f, 8)
    low, span = _RANGE.unpack(head[-8:])
    bounded = abs(low) + 65535 * abs(span) < 1e35
    if f.seekable():
        f.seek(-len(head), io.SEEK_CUR)
        return read_matrix_or_vector(f), bounded
    return read_matrix_or_vector(MultiFileDescriptor(io.BytesIO(head), f)), bounded


def _fill(f, out: np.ndarray) -> None:
    """Read `out`'s bytes into it; a file that holds fewer is refused before a large value is allocated."""
    if out.nbytes > BIG and isinstance(f, io.BufferedReader) and f.seekable():
        left = os.fstat(f.fileno()).st_size - f.tell()
        if left < out.nbytes:
            raise EOFError(f"the value needs {out.nbytes} bytes, the file holds {left} after its header")
    if not out.nbytes:
        return
    view = memoryview(out).cast("B")
    done = f.readinto(view)
    while done < out.nbytes:  # a pipe gives what it has
        n = f.readinto(view[done:])
        if not n:
            raise EOFError(f"the value ends after {done} of {out.nbytes} bytes")
        done += n


def _npy(f) -> np.ndarray:
    """kaldiio's numpy form after `NPY`: a one-byte width, the .npy file's length in that many bytes,
    the .npy file (numpy refuses one of Python objects without `allow_pickle`)."""
    width = read_exact(f, 1)[0]
    if not 1 <= width <= 8:
        raise ValueError(f"bad NPY length width {width}")
    value = np.lib.format.read_array(io.BytesIO(read_exact(f, int.from_bytes(read_exact(f, width), "little"))),
                                     allow_pickle=False)
    if value.dtype.kind != "f" or value.ndim not in (1, 2):
        raise RefusedValue(f"a {value.ndim}-dim {value.dtype} numpy array, not a float matrix or vector")
    return value


def _skip_space(f) -> bytes:
    """The first byte after the whitespace that may precede a text value."""
    while True:
        c = read_exact(f, 1)
        if not c.isspace():
            return c


def _text(f, start: bytes) -> np.ndarray:
    """Kaldi's text form after its `[`: a vector on one line, a matrix a row per line, then `]`."""
    body = bytearray(start)
    while not body.endswith(b"]"):
        c = f.read(1)
        if not c:
            raise EOFError("the file ends before the text value's ']'")
        body += c
    if f.read(1) not in (b"\n", b""):
        raise ValueError("no newline after the text value's ']'")
    rows = [line.split() for line in body[:-1].decode("ascii").splitlines() if line.strip()]
    if b"\n" not in body:
        return np.array(rows[0] if rows else [], dtype=np.float32)
    if len({len(r) for r in rows}) > 1:
        raise ValueError("the rows of a text matrix have different lengths")
    return np.array(rows, dtype=np.float32).reshape(len(rows), -1)


# x·x of a NaN or an Inf, or of a huge value, sets numpy's flags; `all_finite` then decides exactly.
warnings.filterwarnings("ignore", "(overflow|invalid value) encountered in dot", RuntimeWarning, __name__)


def all_finite(value: np.ndarray) -> bool:
    """Whether `value` holds no NaN and no Inf: one BLAS pass, x·x, finite for finite values unless
    they are huge (the exact test decides then, and for float16, which has no BLAS)."""
    flat = value.reshape(-1)
    if flat.dtype.kind != "f":
        return True
    if flat.dtype.itemsize >= 4 and np.isfinite(np.dot(flat, flat)):
        return True
    return bool(np.isfinite(flat).all())


def check_finite(value: np.ndarray) -> None:
    """Raise `NonFinite` where `value` holds a NaN or an Inf."""
    if all_finite(value):
        return
    bad = ~np.isfinite(value)
    first = tuple(int(i[0]) for i in np.nonzero(bad))
    where = f"row {first[0]}, column {first[1]}" if value.ndim == 2 else f"element {first[0]}"
    count = int(bad.sum())
    raise NonFinite(f"{count} non-finite value{'s' if count > 1 else ''} ({value[first]} at {where})")
