"""Option spellings shared by the commands: one name per concept, old names kept as hidden aliases.

`--model DIR` is a model dir a command reads (`--exp DIR` the one `trkd train`/`distill` write);
`--out FILE` is always a file (or a Kaldi wspecifier), `--out-dir DIR` always a folder.
"""

from __future__ import annotations

from typing import Optional, TypeVar

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
