"""The distillation methods, one file each: its settings (the `kd.<name>` block, defaults in one
place), its formula, its loss, and what it needs from a training step.

A method (`base.Method`) has `Settings` (a dataclass deriving from `base.Settings`), `level`
("logit" or "embedding"), `warm` (weighted by the KD warm-up), `needs` (the teacher outputs it
reads: "logits", "embedding", "levels"), `online_only`, and, built from its settings and a
`Context`, `__call__(batch, out, teacher, step) -> (loss, {name: value to log})`, `modules()`
(learned heads to train and checkpoint) and `describe(logs)` (a progress line, '' for none). It
reads the teacher's logits through `teacher.columns(...)`, the same view for an online teacher, a
dense dump and a top-K dump.

Adding a method: one file here and one line in REGISTRY (the README shows one). Everything else
(the `kd:` block, `--method`, the recipes' dump, `trkd plan`) reads this registry. `--method` is
one name, `none` (the student alone), or a logit-level and an embedding-level name joined by `+`
(`trkd+emb`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Optional, Sequence, Tuple

from trkd.errors import InputError

# The registry, the one list of methods: a name and its class, "module.Class" in this package,
# one line each. Names are known without importing torch (help texts); a class is imported when
# first used.
REGISTRY = {
    "kd": "kd.KD",
    "dkd": "dkd.DKD",
    "enskd": "dkd.ENSKD",
    "trkd": "trkd.TRKD",
    "imlkd": "imlkd.IMLKD",
    "emb": "emb.Emb",
    "mlkd": "mlkd.MLKD",
}
NONE = "none"


class _Methods(Mapping):
    """REGISTRY as {name: class}."""

    def __getitem__(self, name):
        module, cls = REGISTRY[name].rsplit(".", 1)
        return getattr(import_module(f"{__name__}.{module}"), cls)

    def __iter__(self):
        return iter(REGISTRY)

    def __len__(self):
        return len(REGISTRY)


METHODS = _Methods()


@dataclass
class Context:
    """What a method may need to be built."""

    kd: object                  # the whole `KDConfig` (kd.logits: which logits are distilled)
    student_dim: int
    level_dims: Sequence[int]   # the teacher's levels, the embedding last
    teacher: Optional[object]   # the loaded `Teacher`, for methods that run it themselves


def parse_method(spec: str) -> Tuple[str, ...]:
    """`none` -> (); `trkd` -> ('trkd',); `trkd+emb` -> ('trkd', 'emb'). InputError listing the choices."""
    valid = f"valid: {NONE}, {', '.join(METHODS)}, or LOGIT+EMBEDDING such as trkd+emb"
    if spec == NONE:
        return ()
    parts = spec.split("+")
    unknown = [p for p in parts if p not in METHODS]
    if unknown:
        raise InputError(None, f"--method {spec!r}: unknown method {unknown[0]!r} ({valid})")
    levels = [METHODS[p].level for p in parts]
    if len(parts) > 2 or len(set(levels)) != len(levels):
        def named(level):
            return ", ".join(n for n, m in METHODS.items() if m.level == level)
        raise InputError(None, f"--method {spec!r}: '+' joins one logit-level method ({named('logit')}) "
                         f"and one embedding-level method ({named('embedding')})")
    return tuple(sorted(parts, key=lambda p: METHODS[p].level != "logit"))


def needed(names: Sequence[str]) -> Tuple[str, ...]:
    """What the methods named (`trkd+emb`, `none`, ...) read from a teacher dump, in a fixed
    order; none for a method that runs its teacher online."""
    parts = {p for spec in names for p in parse_method(spec)}
    wanted = {n for p in parts if not METHODS[p].online_only for n in METHODS[p].needs}
    return tuple(n for n in ("logits", "embedding", "levels") if n in wanted)


def method_name(names: Sequence[str]) -> str:
    """The canonical spelling (logit level first)."""
    return "+".join(names) or NONE


def build(names: Sequence[str], ctx: Context) -> list:
    """The methods, each from its `kd.<name>` settings."""
    return [METHODS[n](getattr(ctx.kd, n), ctx) for n in names]
