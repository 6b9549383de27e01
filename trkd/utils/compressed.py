"""Rows of a Kaldi compressed matrix (`CM`, `CM2`, `CM3`) without decoding the rest.

The layout after the token (`CM `, `CM2 `, `CM3 `): a global header (min, range: float32; rows,
cols: int32), then for `CM` (kSpeechFeature) one header per column (four uint16 percentiles
p0, p25, p75, p100, quantised with the global min and range) and one byte per value, column by
column; `CM2` stores a uint16 and `CM3` a uint8 per value, row by row, quantised with the global
min and range alone.

A training chunk needs a few hundred of an utterance's rows, so only those are decoded. The
arithmetic is kaldiio's, in the same float32 operations and order, so the rows are bit for bit
those of `kaldiio.load_mat` on the whole matrix. A `CM` byte is looked up in a table of the 256
values of its column (built with those operations): one gather per value instead of kaldiio's
three branches and two selections over every value.
"""

from __future__ import annotations

import functools
import struct
from typing import BinaryIO, NamedTuple, Optional

import numpy as np

TOKENS = ("CM", "CM2", "CM3")
_GLOBAL = struct.Struct("<ffii")
# Quantisation steps of the global header: 16 bits for CM / CM2 (and CM's column headers), 8 for CM3.
_STEPS = {"CM": 65535.0, "CM2": 65535.0, "CM3": 255.0}
_BYTES = {"CM": 1, "CM2": 2, "CM3": 1}


class CompressedHeader(NamedTuple):
    """What precedes the values: the global header and, for `CM`, the column percentiles."""

    token: str
    min_value: float
    range: float
    rows: int
    cols: int
    percentiles: Optional[np.ndarray] = None  # CM: (4, cols) float32, rows p0 p25 p75 p100

    @property
    def data_bytes(self) -> int:
        return self.rows * self.cols * _BYTES[self.token]

    def dequantise(self, values: np.ndarray) -> np.ndarray:
        """kaldiio's `GlobalHeader.uint_to_float`: float32 `min + value · range / steps`."""
        return self.min_value + values.astype(np.float32) * self.range / _STEPS[self.token]


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"truncated compressed matrix: {len(data)} of {n} bytes")
    return data


def read_header(f: BinaryIO, token: str) -> CompressedHeader:
    """The headers of a compressed matrix, `f` positioned just after its token and the space;
    leaves `f` at the first value."""
    if token not in TOKENS:
        raise ValueError(f"not a compressed matrix token: {token!r}")
    min_value, range_, rows, cols = _GLOBAL.unpack(_read_exactly(f, _GLOBAL.size))
    if rows < 0 or cols < 0:
        raise ValueError(f"compressed matrix of {rows} x {cols}")
    header = CompressedHeader(token, min_value, range_, rows, cols)
    if token != "CM":
        return header
    quantised = np.frombuffer(_read_exactly(f, 8 * cols), dtype="<u2")
    return header._replace(percentiles=np.ascontiguousarray(header.dequantise(quantised).reshape(cols, 4).T))


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


def read_rows(f: BinaryIO, header: CompressedHeader, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """Rows [start, stop) as a (stop − start, cols) float32 array, `f` at the first value (after
    `read_header`); `f` is left anywhere inside the values. The array is laid out in memory as
    kaldiio's is (column-major for `CM`), since a mean over frames rounds differently in the other."""
    stop = header.rows if stop is None else stop
    if not 0 <= start <= stop <= header.rows:
        raise ValueError(f"rows [{start}, {stop}) outside the {header.rows} rows of the matrix")
    if header.token == "CM":
        # column-major: every column's run of bytes is needed, so the values are read whole
        data = np.empty((header.cols, header.rows), dtype=np.uint8)
        if f.readinto(data) != data.nbytes:
            raise ValueError("truncated compressed matrix")
        # the flat index of (byte, column) in the table; 16 bits while they suffice
        kind = np.uint16 if header.cols <= 256 else np.intp
        index = np.multiply(data[:, start:stop], kind(header.cols), dtype=kind)
        index += np.arange(header.cols, dtype=kind)[:, None]
        return _byte_table(header.percentiles).take(index).T
    width = header.cols * _BYTES[header.token]
    f.seek(start * width, 1)
    dtype = "<u2" if header.token == "CM2" else np.uint8
    data = np.frombuffer(_read_exactly(f, (stop - start) * width), dtype=dtype)
    return header.dequantise(data).reshape(stop - start, header.cols)
