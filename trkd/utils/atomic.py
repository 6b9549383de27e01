"""Outputs appear whole or not at all: write to a temporary name beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Union


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` only on success.

    The temporary name keeps the suffix (kaldiio and torch look at it) and a failure leaves the
    previous `path`, if any, untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Union[str, Path], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_lines_atomic(path: Union[str, Path], lines) -> None:
    """Write `lines` (strings without newline) with a trailing newline each."""
    write_text_atomic(path, "".join(f"{line}\n" for line in lines))
