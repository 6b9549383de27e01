"""Settings stamps: what made an output, so that a rerun reuses it only when nothing changed.

A stamp is the settings as yaml (readable, diffable); its generation is a short hash of that text,
which names the files made with those settings, so that outputs of other settings never mix with
them and every job of a cluster array computes the same names without talking to the others.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict

import yaml

from trkd.utils.atomic import PathLike, write_text_atomic


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
