"""Typed settings from yaml: dataclasses filled from nested dicts, every key and type checked.

An unknown key, a wrong type or a value out of its field's range (`bounded`) is an `InputError`
naming the file, the yaml line and the key path, so that a typo never falls back to a default
silently; a key set on the command line (`Lines.overrides`) is blamed on the command line. Shared
by the training config, the data tools' options, the `kd:` block and the corpus difficulty.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import yaml

from trkd.errors import InputError


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: YAML 1.1, which PyYAML follows, reads `1e-3`
    (no dot) as a string while `1.0e-3` is a number, a trap for anyone writing a learning rate."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` with YAML 1.2 floats (see `_Loader`): the one reader of user yaml."""
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: Union[str, Path], _chain: Tuple[Path, ...] = ()) -> Tuple[Dict[str, Any], Dict[str, int]]:
    """The mapping in a yaml file and the 1-based line of every key path ('optim.lr').

    `extends: base.yaml` (or a list, later files winning; paths relative to the file) merges the
    file over its bases, block by block; a key that only a base sets is reported at the line of
    `extends:`.
    """
    path = Path(path)
    if path.resolve() in _chain:
        raise InputError(path, "extends itself (through " + " -> ".join(str(p) for p in _chain) + ")")
    if not path.is_file():
        raise InputError(path, "no such config file")
    text = path.read_text()
    try:
        data = load_yaml(text) or {}
        lines = key_lines(yaml.compose(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(path, f"not valid yaml: {getattr(err, 'problem', err)}",
                         None if mark is None else mark.line + 1) from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of keys")
    if "extends" not in data:
        return data, lines
    bases = data.pop("extends")
    line = lines.get("extends")
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise InputError(path, f"'extends' must be a file name or a list of them, got {bases!r}", line)
    merged: Dict[str, Any] = {}
    for base in bases:
        merged = _merge(merged, read_yaml(path.parent / base, _chain + (path.resolve(),))[0])
    merged = _merge(merged, data)
    return merged, {**{k: line for k in _key_paths(merged)}, **lines}


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    """`over` on top of `base`: mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def _key_paths(d: Dict[str, Any], prefix: str = ""):
    for key, value in d.items():
        yield prefix + str(key)
        if isinstance(value, dict):
            yield from _key_paths(value, f"{prefix}{key}.")


class Lines(dict):
    """Key path -> yaml line, plus the key paths that the command line set (path -> value)."""

    def __init__(self, lines: Dict[str, int], overrides: Optional[Dict[str, Any]] = None):
        super().__init__(lines)
        self.overrides = dict(overrides or {})


def key_error(source, key: str, message: str, lines) -> InputError:
    """`FILE:LINE: message`, or `command line: KEY=VALUE: message` for a key set there."""
    for path, value in getattr(lines, "overrides", {}).items():
        if key == path or key.startswith(path + "."):
            return InputError(None, f"command line: {path}={value!r}: {message}")
    return InputError(source, message, lines.get(key))


def bounded(default: Any, **limits: Any):
    """A dataclass field with a range: `min`/`max` (inclusive), `above` (exclusive), `choices`."""
    return dataclasses.field(default=default, metadata=limits)


def check_range(value: Any, limits: Dict[str, Any], source, key: str, lines) -> None:
    if value is None or not limits:
        return
    if "choices" in limits and value not in limits["choices"]:
        raise key_error(source, key, f"key '{key}' must be one of {', '.join(map(str, limits['choices']))}, "
                                     f"got {value!r}", lines)
    if "min" in limits and value < limits["min"]:
        raise key_error(source, key, f"key '{key}' must be >= {limits['min']}, got {value!r}", lines)
    if "max" in limits and value > limits["max"]:
        raise key_error(source, key, f"key '{key}' must be <= {limits['max']}, got {value!r}", lines)
    if "above" in limits and value <= limits["above"]:
        raise key_error(source, key, f"key '{key}' must be > {limits['above']}, got {value!r}", lines)


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
               dict: "a mapping"}


def type_name(kind: type) -> str:
    return _TYPE_NAMES.get(kind, f"a {getattr(kind, '__name__', kind)}")


def check_type(value: Any, hint: Any, source, key: str, lines) -> Any:
    """Coerce ints to floats where a float is expected; reject anything else of the wrong type."""
    if typing.get_origin(hint) is Union:  # Optional[X]
        if value is None:
            return None
        hint = [a for a in typing.get_args(hint) if a is not type(None)][0]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    base = typing.get_origin(hint) or hint
    ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
    if not ok:
        raise key_error(source, key, f"key '{key}' must be {type_name(base)}, got {value!r}", lines)
    return value


def from_dict(cls, d: Dict[str, Any], source, prefix: str, lines):
    if not isinstance(d, dict):
        raise InputError(source, f"'{prefix.rstrip('.') or 'config'}' must be a mapping", lines.get(prefix.rstrip(".")))
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    kwargs = {}
    for key, value in d.items():
        path = prefix + str(key)
        if key not in names:
            raise key_error(source, path, f"unknown key '{path}' (valid: {', '.join(sorted(names))})", lines)
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, source, path + ".", lines)
        else:
            kwargs[key] = check_type(value, hint, source, path, lines)
            check_range(kwargs[key], fields[key].metadata, source, path, lines)
    return cls(**kwargs)


def key_lines(node, prefix: str = "", out=None) -> Dict[str, int]:
    """1-based line of every key path in a composed yaml mapping."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = prefix + str(k.value)
            out[path] = k.start_mark.line + 1
            key_lines(v, path + ".", out)
    return out
