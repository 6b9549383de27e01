"""What a refused run must leave as it found: every file of a folder, by content, and its links."""

from __future__ import annotations

import fcntl
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict

from trkd.utils.lock import LOCK_NAME


def digest(folder: Path) -> Dict[str, str]:
    """relative path -> sha256 of a file, `-> target` of a link, `dir` of a folder; {} if absent."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@contextmanager
def held_lock(folder: Path, line: str):
    """Hold FOLDER's trkd lock from this process, as a running trkd would."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, line.encode())
    try:
        yield folder / LOCK_NAME
    finally:
        os.close(fd)
        (folder / LOCK_NAME).unlink()
