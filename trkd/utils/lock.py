"""One writer per output folder: `OUT/.trkd.lock`, held with `flock` while a command writes OUT.

A second run into the same folder is refused at once, naming the process that holds it, instead of
both writing (the loser used to fail later on a file the winner had renamed away). The kernel
releases a `flock` when its process dies however it dies, so a lock file left by a killed run
holds no lock and the next run takes it over. The lock file is removed on release, so a finished
or refused run leaves the folder as it found it; a folder that the lock had to create and that is
still empty when a run fails is removed again, so a refused run on a new folder leaves no folder.

Under `torchrun` only global rank 0 locks (every rank runs the same command on the same folder).
On NFS, Linux emulates `flock` with POSIX locks, which the server keeps; a filesystem without
locks refuses with its own error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Dict, Iterator, List

from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.atomic import make_dirs, os_error

LOCK_NAME = ".trkd.lock"
log = logging.getLogger(__name__)
_HELD: Dict[Path, int] = {}  # folder -> depth: a library call nested in a command takes its lock once


def _missing(folder: Path) -> List[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    out = []
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


def _acquire(path: Path, command: str) -> int:
    """An open descriptor of `path` holding its exclusive lock, the holder's line written in it."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise InputError(path, "is a symbolic link: remove it (trkd's lock of this folder)") from None
            raise os_error(err, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise InputError(path.parent, f"is in use: {holder} writes here (lock {path}); wait for it to "
                                          "finish or write elsewhere") from None
        except OSError as err:
            os.close(fd)
            raise os_error(err, path) from None
        try:  # the holder may have removed the file between our open and our lock: lock the new one
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = os.read(fd, 512).decode("utf-8", "replace").strip()
    if stale:
        log.info("%s: took over the lock of a run that no longer holds it (%s)", path.parent, stale)
    with contextlib.suppress(OSError):  # the holder's line only informs: a full disk still locks
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} ({command}, started {time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
    return fd


@contextlib.contextmanager
def folder_lock(folder: PathLike, command: str) -> Iterator[Path]:
    """Hold OUT's lock (creating OUT) while the block writes it; see the module doc."""
    folder = Path(folder)
    key = folder.resolve()
    if os.environ.get("RANK", "0") != "0" or key in _HELD:
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    created = _missing(folder)
    make_dirs(folder)
    path = folder / LOCK_NAME
    try:
        fd = _acquire(path, command)
    except BaseException:
        _remove_empty(created)
        raise
    _HELD[key] = 1
    ok = False
    try:
        yield folder
        ok = True
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        if not ok:
            _remove_empty(created)


def _remove_empty(created: List[Path]) -> None:
    for d in created:
        try:
            d.rmdir()
        except OSError:  # not empty: the run wrote something there, kept for the user to see
            break
