"""Stamps: what made an output, so that a rerun reuses it only when nothing changed.

A stamp is a small yaml beside the output: the settings, and each input file as `path size
mtime` (`file_id`). It is written after the output is complete; an output without a matching
stamp is made again. Its generation, a short hash of its text, names the files made with those
settings where several may exist side by side (parts of a dump, of a fbank run), so that outputs
of other settings never mix with them and every job of a cluster array computes the same names
without talking to the others.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from trkd.utils import PathLike
from trkd.utils.atomic import write_text_atomic


def stamp_text(settings: Dict[str, Any]) -> str:
    return yaml.safe_dump(settings, sort_keys=False)


def generation(settings: Dict[str, Any]) -> str:
    return hashlib.sha1(stamp_text(settings).encode()).hexdigest()[:8]


def stamp_matches(path: PathLike, settings: Dict[str, Any]) -> bool:
    path = Path(path)
    return path.is_file() and path.read_text() == stamp_text(settings)


def write_stamp(path: PathLike, settings: Dict[str, Any]) -> bool:
    """Write the stamp; True when it was already there with these settings (the outputs may be reused)."""
    same = stamp_matches(path, settings)
    if not same:
        write_text_atomic(path, stamp_text(settings))
    return same


def read_stamp(path: PathLike) -> Dict[str, Any]:
    return yaml.safe_load(Path(path).read_text()) or {}


def file_id(path: Optional[PathLike]) -> Optional[str]:
    """`resolved-path size mtime_ns` of a file (None for None or a missing file)."""
    if path is None or not Path(path).is_file():
        return None
    st = Path(path).stat()
    return f"{Path(path).resolve()} {st.st_size} {st.st_mtime_ns}"


def is_current(stamp_path: PathLike, output: PathLike, settings: Dict[str, Any]) -> bool:
    """True when `output` exists and `stamp_path` records exactly `settings`."""
    stamp_path = Path(stamp_path)
    if not (Path(output).is_file() and stamp_path.is_file()):
        return False
    try:
        return yaml.safe_load(stamp_path.read_text()) == settings
    except yaml.YAMLError:
        return False
