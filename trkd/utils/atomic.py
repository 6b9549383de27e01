"""Outputs appear whole or not at all: write to a temporary name beside the target, then rename.

This is also the one place where the operating system's refusal to write (read-only folder, full
disk, quota) becomes an `InputError` naming the path and the cause, so every writer reports it as
one line and leaves the previous output as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator

from trkd.errors import InputError
from trkd.utils import PathLike

TMP_MARK = ".tmp"


def os_error(err: OSError, target: PathLike) -> InputError:
    """`err` as one line; a temporary file is named by its target, which is what the user knows."""
    return InputError(target_of(err.filename or target), f"cannot write: {err.strerror or err}")


def target_of(path: PathLike) -> Path:
    """The output that a temporary name (`temp_name`, of a temporary too) stands for; else `path`."""
    path = Path(path)
    while True:
        m = re.fullmatch(rf"\.(.+){re.escape(TMP_MARK)}[^./]*(\.[^./]*)?", path.name)
        if m is None:
            return path
        path = path.with_name(m.group(1) + (m.group(2) or ""))


def temp_name(path: PathLike, tag: str = "") -> Path:
    """The temporary name of `path` (hidden, same folder, same suffix: kaldiio and torch look at it)."""
    path = Path(path)
    # pid and a random part: jobs of a cluster array on several hosts may share a pid. (os.urandom,
    # which is what `secrets.token_hex` reads, without `secrets`' imports at every CLI start.)
    return path.with_name(f".{path.stem}{TMP_MARK}{tag or f'{os.getpid()}-{os.urandom(3).hex()}'}{path.suffix}")


def remove_stale(path: PathLike) -> None:
    """Remove temporaries of `path` left by a killed run (call only for outputs this run owns)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.stem}{TMP_MARK}*{path.suffix}"):
        tmp.unlink(missing_ok=True)


def remove_stale_under(folder: PathLike) -> None:
    """Remove every temporary below `folder`, a folder whose files one step alone writes."""
    for tmp in Path(folder).rglob(f".*{TMP_MARK}*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def make_dirs(path: PathLike) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise os_error(err, path) from None
    return path


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` only on success.

    A failure leaves the previous `path`, if any, untouched, and no temporary behind.
    """
    path = Path(path)
    make_dirs(path.parent)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise os_error(err, path) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes_atomic(path: PathLike, data) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text_atomic(path: PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_lines_atomic(path: PathLike, lines) -> None:
    """Write `lines` (strings without newline) with a trailing newline each."""
    write_text_atomic(path, "".join(f"{line}\n" for line in lines))


class Staged:
    """Outputs that are replaced together: each is written under its temporary name (`path`), and
    none is renamed onto its target until every one is written (`staged`)."""

    def __init__(self):
        self.pending: list = []

    def path(self, target: PathLike) -> Path:
        tmp = temp_name(target)
        make_dirs(tmp.parent)
        self.pending.append((tmp, Path(target)))
        return tmp


@contextlib.contextmanager
def staged() -> Iterator[Staged]:
    """Yield a `Staged`; on success rename its outputs onto their targets, else remove them all."""
    group = Staged()
    try:
        yield group
        for tmp, target in group.pending:
            os.replace(tmp, target)
    except OSError as err:
        raise os_error(err, err.filename) from None
    finally:
        for tmp, _ in group.pending:
            with contextlib.suppress(OSError):
                tmp.unlink()
