"""Rows of a Kaldi compressed matrix (`CM`, `CM2`, `CM3`) without decoding the rest.

The layout after the token (`CM `, `CM2 `, `CM3 `): a global header (min, range: float32; rows,
cols: int32), then for `CM` (kSpeechFeature) one header per column (four uint16 percentiles
p0, p25, p75, p100, quantised with the global min and range) and one byte per value, column by
column; `CM2` stores a uint16 and `CM3` a uint8 per value, row by row, quantised with the global
min and range alone.

A training chunk needs a few hundred of an utterance's rows, so only those are decoded, read
with `os.pread` from an open file (two system calls a chunk: the head, then the values). The
arithmetic is kaldiio's, in the same float32 operations and order, so the rows are bit for bit
those of `kaldiio.load_mat` on the whole matrix. A `CM` byte is looked up in a table of the 256
values of its column (built with those operations): one gather per value instead of kaldiio's
three branches and two selections over every value.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import NamedTuple, Optional

import numpy as np

from trkd.errors import InputError

TOKENS = ("CM", "CM2", "CM3")
# Kaldi's CompressionMethod values (kaldiio's compression_method) by the format each writes for a
# feature matrix: 1 (kAutomaticMethod, Kaldi's default) writes CM above 8 rows; 5 (kOneByteAuto)
# writes CM3, as small as CM and read about twice as fast (bench/loader.py).
METHOD_FORMATS = {1: "CM", 2: "CM", 3: "CM2", 4: "CM2", 5: "CM3", 6: "CM3", 7: "CM3"}


def check_method(method: Optional[int], option: str = "--compression-method") -> Optional[int]:
    """`method` if it is one of Kaldi's compression methods (None: float32); else an InputError."""
    if method is not None and method not in METHOD_FORMATS:
        raise InputError(None, f"{option} {method}: Kaldi's compression methods are "
                               f"{min(METHOD_FORMATS)} (automatic) to {max(METHOD_FORMATS)}")
    return method


_GLOBAL = struct.Struct("<ffii")
# "\0B", the longest token and its space ("CM2 "), the global header: what `header_of` needs.
HEAD_BYTES = 2 + 4 + _GLOBAL.size
# Quantisation steps of the global header: 16 bits for CM / CM2 (and CM's column headers), 8 for CM3.
_STEPS = {"CM": 65535.0, "CM2": 65535.0, "CM3": 255.0}
_BYTES = {"CM": 1, "CM2": 2, "CM3": 1}


class CompressedHeader(NamedTuple):
    """The global header, and where the rest starts (for `CM` the column headers, then the values)."""

    token: str
    min_value: float
    range: float
    rows: int
    cols: int
    values_at: int   # bytes from the matrix's "\0B" to what follows the global header

    def dequantise(self, values: np.ndarray) -> np.ndarray:
        """kaldiio's `GlobalHeader.uint_to_float`: float32 `min + value · range / steps`."""
        return self.min_value + values.astype(np.float32) * self.range / _STEPS[self.token]


def header_of(head: bytes) -> Optional[CompressedHeader]:
    """The header of the compressed matrix whose first bytes (`\\0B` on, `HEAD_BYTES` of them or the
    whole matrix) are `head`; None if it is not a compressed matrix."""
    token = head[2:6].split(b" ", 1)[0] if head[:2] == b"\0B" else b""
    if token.decode("latin-1") not in TOKENS:
        return None
    at = 3 + len(token)
    if len(head) < at + _GLOBAL.size:
        raise ValueError("truncated compressed matrix header")
    min_value, range_, rows, cols = _GLOBAL.unpack_from(head, at)
    if rows < 0 or cols < 0:
        raise ValueError(f"compressed matrix of {rows} x {cols}")
    return CompressedHeader(token.decode(), min_value, range_, rows, cols, at + _GLOBAL.size)


def _pread(fd: int, nbytes: int, at: int) -> np.ndarray:
    """`nbytes` bytes at `at`, straight into a uint8 array (no Python bytes in between)."""
    out = np.empty(nbytes, dtype=np.uint8)
    if os.preadv(fd, [out], at) != nbytes:
        raise ValueError(f"truncated compressed matrix: fewer than {nbytes} bytes at {at}")
    return out


# kaldiio's `char_to_float` splits the bytes in three ranges: 0–64 between p0 and p25, 65–192
# between p25 and p75, 193–255 between p75 and p100; per byte: its range, its offset in the range
# (a float32, as kaldiio's `value - 64.0`), and the range's step (kaldiio's `1 / 64.0` …, in float32).
_RANGE = np.repeat(np.arange(3), [65, 128, 63])


@functools.lru_cache(maxsize=8)
def _offsets_steps(cols: int):
    """Each byte's offset and step, repeated across `cols` columns (same-shape operands are
    multiplied in one pass; a broadcast column is not)."""
    offset = (np.arange(256) - np.array([0, 64, 192])[_RANGE]).astype(np.float32)
    step = np.array([1 / 64.0, 1 / 128.0, 1 / 63.0], dtype=np.float32)[_RANGE]
    return np.repeat(offset[:, None], cols, axis=1), np.repeat(step[:, None], cols, axis=1)


def _byte_table(p: np.ndarray) -> np.ndarray:
    """(256, cols) float32: the value of each byte in each column, `p_lo + (p_hi − p_lo) · offset ·
    step` in kaldiio's order of float32 operations (so its values bit for bit); `p`: (4, cols)."""
    offset, step = _offsets_steps(p.shape[1])
    table = np.subtract(p[1:], p[:-1]).take(_RANGE, axis=0)
    table *= offset
    table *= step
    table += p.take(_RANGE, axis=0)
    return table


def read_rows(fd: int, at: int, header: CompressedHeader, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """Rows [start, stop) as a (stop − start, cols) float32 array of the compressed matrix whose `\\0B`
    is at byte `at` of the open file `fd`. The array is laid out in memory as kaldiio's is
    (column-major for `CM`), since a mean over frames rounds differently in the other."""
    stop = header.rows if stop is None else stop
    if not 0 <= start <= stop <= header.rows:
        raise ValueError(f"rows [{start}, {stop}) outside the {header.rows} rows of the matrix")
    cols = header.cols
    if header.token == "CM":
        # column headers, then column-major values: every column's run is needed, so all are read
        raw = _pread(fd, 8 * cols + header.rows * cols, at + header.values_at)
        percentiles = header.dequantise(raw[:8 * cols].view("<u2")).reshape(cols, 4).T
        data = raw[8 * cols:].reshape(cols, header.rows)[:, start:stop]
        # the flat index of (byte, column) in the table; 16 bits while they suffice. Every index is
        # inside the table by construction, so `take` need not check each one ("clip" does not).
        kind = np.uint16 if cols <= 256 else np.intp
        index = np.multiply(data, kind(cols), dtype=kind)
        index += _column_numbers(cols, kind)
        return _byte_table(percentiles).take(index, mode="clip").T
    width = cols * _BYTES[header.token]
    raw = _pread(fd, (stop - start) * width, at + header.values_at + start * width)
    values = raw.view("<u2") if header.token == "CM2" else raw
    return header.dequantise(values).reshape(stop - start, cols)


@functools.lru_cache(maxsize=8)
def _column_numbers(cols: int, kind) -> np.ndarray:
    return np.arange(cols, dtype=kind)[:, None]
