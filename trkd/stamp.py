"""What an output was made from, so that a rerun skips outputs whose inputs have not changed.

A stamp is a small yaml beside the output: each input file as `path size mtime`, plus the settings.
It is written after the output is complete; an output without a matching stamp is made again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import yaml

from trkd.utils.atomic import write_text_atomic

PathLike = Union[str, Path]


def file_id(path: Optional[PathLike]) -> Optional[str]:
    """`resolved-path size mtime_ns` of a file (None for None or a missing file)."""
    if path is None or not Path(path).is_file():
        return None
    st = Path(path).stat()
    return f"{Path(path).resolve()} {st.st_size} {st.st_mtime_ns}"


def is_current(stamp_path: PathLike, output: PathLike, stamp: Dict[str, object]) -> bool:
    """True when `output` exists and `stamp_path` records exactly `stamp`."""
    stamp_path = Path(stamp_path)
    if not (Path(output).is_file() and stamp_path.is_file()):
        return False
    try:
        return yaml.safe_load(stamp_path.read_text()) == stamp
    except yaml.YAMLError:
        return False


def write_stamp(stamp_path: PathLike, stamp: Dict[str, object]) -> None:
    write_text_atomic(stamp_path, yaml.safe_dump(stamp, sort_keys=True))
