"""A foreign state dict renamed onto a trkd network, key by key, with every key checked.

Architectures differ from trkd's modules in names only (the numbers are the same), so a `KeyMap`
is a list of prefix rules that name, for each tensor of the trkd network, the key it has in the
foreign checkpoint. The expected foreign layout is derived from the trkd network itself, so a
missing, an unexpected or a misshapen key is reported by name before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Sequence, Tuple, Union

import torch

from trkd.errors import InputError

Rule = Tuple[str, Union[str, Callable[[re.Match], str]]]


@dataclass
class KeyMap:
    """`rules`: (regex on a trkd key's prefix, its foreign prefix) tried in order; `constant`: trkd
    keys the foreign network lacks because they are fixed there (a bias-free layer, an affine-free
    batch norm), each with the value that makes the two compute the same; `kernel_axis`: trkd
    linear weights stored abroad as 1x1 convolutions, with a trailing axis of size 1."""

    rules: Sequence[Rule]
    constant: Dict[str, float] = field(default_factory=dict)
    kernel_axis: Sequence[str] = ()

    def foreign(self, key: str) -> str:
        for pattern, repl in self.rules:
            renamed, n = re.subn(pattern, repl, key, count=1)
            if n:
                return renamed
        raise ValueError(f"no rule names the foreign key of {key!r}")  # a defect of the map, not of the input


def convert(theirs: Dict[str, torch.Tensor], target: Dict[str, torch.Tensor], keymap: KeyMap, source,
            what: str, optional: Iterable[str] = ()) -> Dict[str, torch.Tensor]:
    """`target`'s keys filled from `theirs` through `keymap`; `optional` foreign keys may be
    present beside the network's (a classifier). An InputError naming `source` and the first key
    that is missing, unexpected or of another shape, `what` saying which network was expected."""
    expected: Dict[str, Tuple[str, torch.Size]] = {}
    for key, tensor in target.items():
        if key in keymap.constant:
            continue
        shape = tensor.shape + ((1,) if key in keymap.kernel_axis else ())
        expected[keymap.foreign(key)] = (key, shape)
    for name in expected:
        if name not in theirs:
            raise InputError(source, f"missing key {name!r}: {what} has it ({len(expected)} keys expected)")
    optional = set(optional)
    for name in theirs:
        if name not in expected and name not in optional:
            raise InputError(source, f"unexpected key {name!r}: not part of {what}")
    out = {}
    for name, (key, shape) in expected.items():
        value = theirs[name]
        if not isinstance(value, torch.Tensor) or value.shape != shape:
            got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise InputError(source, f"key {name!r} has shape {got}, {what} has {list(shape)}")
        if value.is_floating_point() != target[key].is_floating_point():
            raise InputError(source, f"key {name!r} holds {value.dtype}, {what} has {target[key].dtype}")
        out[key] = value.reshape(target[key].shape).to(target[key].dtype)
    for key, fill in keymap.constant.items():
        out[key] = torch.full_like(target[key], fill)
    return {key: out[key] for key in target}


def load_state_dict_file(path) -> Dict[str, torch.Tensor]:
    """A checkpoint that is a flat {name: tensor} dict; an unreadable or other file is an InputError."""
    if not path.is_file():
        raise InputError(path, "no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise InputError(path, f"not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise InputError(path, "not a state dict (a mapping of parameter names to tensors)")
    return state
