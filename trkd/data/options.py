"""Option dataclasses of the data tools (fbank, augmentation) from a yaml file plus command-line flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Type, TypeVar, Union

import yaml

from trkd.config import _from_dict, _key_lines
from trkd.errors import InputError

T = TypeVar("T")


def load_options(cls: Type[T], path: Union[str, Path, None] = None, overrides: Optional[Dict[str, Any]] = None) -> T:
    """`cls` from the yaml at `path` (flat `key: value`), then `overrides` whose value is not None.

    Flags win over the file; an unknown key or a wrong type is an `InputError` naming file and line.
    """
    data: Dict[str, Any] = {}
    lines: Dict[str, int] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "no such config file")
        text = path.read_text()
        try:
            data = yaml.safe_load(text) or {}
            lines = _key_lines(yaml.compose(text))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            raise InputError(path, f"not valid yaml: {getattr(err, 'problem', err)}",
                             None if mark is None else mark.line + 1) from None
    opts = _from_dict(cls, data, path, "", lines)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return _from_dict(cls, {**dataclasses.asdict(opts), **given}, "command line", "", {})
