"""Ids are names, not paths: the one rule for any id that may become part of a file name.

Kaldi allows any id without whitespace; trkd writes some of them as file names (the WAVs of
`trkd augment --write-wavs`) and deletes such files again. An id that holds `/`, starts with `.`
(`..`, or a hidden name like trkd's temporaries) or holds a control character would reach outside
the folder it is meant for, so `trkd validate-data` and every writer that names a file by an id
refuse it. `safe_key` makes such a name of a path (the keys of
`trkd embed`), the way VoxCeleb's data prep turns `id10270/x6uYqmx31kE/00001.wav` into
`id10270-x6uYqmx31kE-00001`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from trkd.errors import InputError
from trkd.utils import PathLike

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
AUDIO_SUFFIXES = (".wav", ".flac", ".sph", ".ogg", ".mp3")


def id_problem(name: str) -> Optional[str]:
    """Why `name` cannot name a file inside a folder, or None when it can."""
    if not name:
        return "is empty"
    if "/" in name or "\\" in name:
        return "holds a path separator ('/' or '\\')"
    if name.startswith("."):  # '..' steps out; a hidden name is what trkd's temporaries look like
        return "starts with '.'"
    if _CONTROL.search(name):
        return "holds a control character"
    return None


def check_id(name: str, source: Optional[PathLike] = None, line: Optional[int] = None, what: str = "id") -> str:
    """`name`, or an `InputError` naming `source:line` when it cannot be a file name."""
    problem = id_problem(name)
    if problem is not None:
        raise InputError(source, f"{what} {name!r} {problem}: ids are names, not paths (trkd names files by "
                                 "them); use e.g. '-' instead of '/'", line)
    return name


def inside(folder: PathLike, name: str, suffix: str = "") -> Path:
    """FOLDER/NAME+SUFFIX for an id checked to be a name. Not resolved: a link planted there is
    replaced by an atomic write or removed, never followed to its target."""
    return Path(folder) / f"{check_id(name)}{suffix}"


def safe_key(path: str) -> str:
    """The id of an audio file given by path: the path without its audio suffix, its folders joined
    by '-', '.' and '..' parts dropped, whitespace and control characters made '_'."""
    text = path.replace("\\", "/")
    for suffix in AUDIO_SUFFIXES:
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
            break
    parts = [p for p in text.split("/") if p not in ("", ".", "..")]
    key = re.sub(r"[\s\x00-\x1f\x7f]", "_", "-".join(parts))
    return key.lstrip(".") or "_"
