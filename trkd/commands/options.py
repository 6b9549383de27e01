"""Option spellings shared by the commands: one name per concept, old names kept as hidden aliases.

`--model DIR` is a model dir a command reads (`--exp DIR` the one `trkd train`/`distill` write);
`--out FILE` is always a file (or a Kaldi wspecifier), `--out-dir DIR` always a folder.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, TypeVar

import yaml

from trkd.errors import InputError

T = TypeVar("T")


def either(value: Optional[T], old_value: Optional[T], name: str, old: str, required: bool = True) -> Optional[T]:
    """The value given as `name` or as its old spelling `old` (both at once is an error)."""
    if value is not None and old_value is not None:
        raise InputError(None, f"give {name} only ({old} is its old spelling)")
    chosen = value if value is not None else old_value
    if chosen is None and required:
        raise InputError(None, f"missing option {name}")
    return chosen


def parse_sets(sets: Sequence[str]) -> Dict[str, Any]:
    """`--set block.key=VALUE` items (VALUE read as yaml: 0.05, [1, 2], {tm: 1, cf: 8})."""
    out = {}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or "." not in key or not key.strip():
            raise InputError(None, f"--set {item!r}: expected BLOCK.KEY=VALUE, e.g. kd.trkd.tau1=0.1")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise InputError(None, f"--set {item!r}: value is not valid yaml ({err})") from None
    return out
