"""Option dataclasses of the data tools (fbank, augmentation) from a config file plus command-line flags.

The file is flat yaml (`num_mel_bins: 80`) or a Kaldi config (`--num-mel-bins=80` lines, as in a
recipe's `conf/fbank.conf`), told apart by its first line; Kaldi names map onto fields with `-` → `_`.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type, TypeVar, Union

from trkd.data.kaldi_dir import table_lines
from trkd.errors import InputError
from trkd.utils.typed_yaml import from_dict, read_yaml

T = TypeVar("T")
# Kaldi's ParseOptions spellings of a bool.
KALDI_BOOLS = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}


def load_options(cls: Type[T], path: Union[str, Path, None] = None, overrides: Optional[Dict[str, Any]] = None) -> T:
    """`cls` from the yaml or Kaldi config at `path`, then `overrides` whose value is not None.

    Flags win over the file; an unknown key or a wrong type is an `InputError` naming file and line.
    """
    if path is None:
        data, lines = {}, {}
    elif _is_kaldi_conf(path):
        data, lines = read_kaldi_conf(cls, path)
    else:
        data, lines = read_yaml(path)
    opts = from_dict(cls, data, path, "", lines)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return from_dict(cls, {**dataclasses.asdict(opts), **given}, "command line", "", {})


def _content(raw: str) -> str:
    return raw.split("#", 1)[0].strip()


def _is_kaldi_conf(path: Union[str, Path]) -> bool:
    try:
        first = next((c for c in (_content(raw) for _, raw in table_lines(path)) if c), "")
    except OSError:
        return False  # read_yaml names the missing file
    return first.startswith("--") and not first.startswith("---")  # `---` starts a yaml document


def read_kaldi_conf(cls: type, path: Union[str, Path]) -> Tuple[Dict[str, Any], Dict[str, int]]:
    """The `--name=value` lines of a Kaldi config as `cls` fields, and the line of each."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    data: Dict[str, Any] = {}
    lines: Dict[str, int] = {}
    for n, raw in table_lines(path):
        text = _content(raw)
        if not text:
            continue
        if not text.startswith("--"):
            raise InputError(path, f"expected '--name=value' (Kaldi config), got {text!r}", n)
        name, sep, value = text[2:].partition("=")
        key = name.strip().replace("-", "_")
        if key not in names:
            known = ", ".join("--" + k.replace("_", "-") for k in sorted(names))
            raise InputError(path, f"unknown option --{name.strip()} (known: {known})", n)
        data[key] = _kaldi_value(value.strip() if sep else "true", hints[key], path, n, name.strip())
        lines[key] = n
    return data, lines


def _kaldi_value(text: str, hint: Any, path, line: int, name: str) -> Any:
    try:
        if hint is bool:
            return KALDI_BOOLS[text.lower()]
        return hint(text) if hint in (int, float, str) else text
    except (KeyError, ValueError):
        kind = "true or false" if hint is bool else f"a {getattr(hint, '__name__', hint)}"
        raise InputError(path, f"--{name} must be {kind}, got {text!r}", line) from None
