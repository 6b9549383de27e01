"""Option dataclasses of the data tools (fbank, augmentation) from a yaml file plus command-line flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Type, TypeVar, Union


from trkd.utils.typed_yaml import from_dict, read_yaml

T = TypeVar("T")


def load_options(cls: Type[T], path: Union[str, Path, None] = None, overrides: Optional[Dict[str, Any]] = None) -> T:
    """`cls` from the yaml at `path` (flat `key: value`), then `overrides` whose value is not None.

    Flags win over the file; an unknown key or a wrong type is an `InputError` naming file and line.
    """
    data, lines = read_yaml(path) if path is not None else ({}, {})
    opts = from_dict(cls, data, path, "", lines)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return from_dict(cls, {**dataclasses.asdict(opts), **given}, "command line", "", {})
