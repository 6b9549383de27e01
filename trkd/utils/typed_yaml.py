"""Typed settings from yaml: dataclasses filled from nested dicts, every key and type checked.

An unknown key or a wrong type is an `InputError` naming the file, the yaml line and the key path,
so that a typo never falls back to a default silently. Shared by the training config, the data
tools' options, the `kd:` block and the corpus difficulty.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import yaml

from trkd.errors import InputError


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
        data = yaml.safe_load(text) or {}
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
        name = getattr(base, "__name__", str(base))
        raise InputError(source, f"key '{key}' must be a {name}, got {value!r}", lines.get(key))
    return value


def from_dict(cls, d: Dict[str, Any], source, prefix: str, lines):
    if not isinstance(d, dict):
        raise InputError(source, f"'{prefix.rstrip('.') or 'config'}' must be a mapping", lines.get(prefix.rstrip(".")))
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in d.items():
        path = prefix + str(key)
        if key not in names:
            raise InputError(source, f"unknown key '{path}' (valid: {', '.join(sorted(names))})", lines.get(path))
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, source, path + ".", lines)
        else:
            kwargs[key] = check_type(value, hint, source, path, lines)
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
