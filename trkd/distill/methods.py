"""The registry of distillation methods: a name -> the term it adds to the student's objective.

A logit-level method is a term set of `trkd.losses.terms` read from its `kd.<name>` block; an
embedding-level method matches embeddings. `--method` is one name, `none`, or a logit-level and an
embedding-level name joined by `+` (`trkd+emb`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from trkd.distill.kd_config import KDConfig
from trkd.errors import InputError


@dataclass
class BuildContext:
    """What a term may need to be built."""

    kd: KDConfig
    student_dim: int
    level_dims: Sequence[int]   # the teacher's levels, the embedding last
    teacher: Optional[object]   # the loaded `Teacher`, for terms that run it themselves


def _logit(name: str):
    def build(ctx: BuildContext):
        from trkd.distill.objective import LogitTerms

        return LogitTerms(getattr(ctx.kd, name), ctx.kd.logits)
    return build


def _emb(ctx: BuildContext):
    from trkd.distill.objective import EmbTerm

    return EmbTerm(ctx.kd.emb, ctx.student_dim, ctx.level_dims[-1])


def _mlkd(ctx: BuildContext):
    from trkd.distill.objective import MLKDTerm

    return MLKDTerm(ctx.kd.mlkd, ctx.student_dim, ctx.level_dims)


def _imlkd(ctx: BuildContext):
    from trkd.distill.imlkd import IMLKDTerm

    return IMLKDTerm(ctx.kd.imlkd, ctx.kd.logits, ctx.teacher)


@dataclass(frozen=True)
class Method:
    name: str
    level: str                  # "logit" or "embedding"
    build: Callable[[BuildContext], object]
    online_only: bool = False   # needs the teacher's input gradients: no dump can serve it


METHODS: Dict[str, Method] = {m.name: m for m in [
    Method("kd", "logit", _logit("kd")),
    Method("dkd", "logit", _logit("dkd")),
    Method("enskd", "logit", _logit("enskd")),
    Method("trkd", "logit", _logit("trkd")),
    Method("imlkd", "logit", _imlkd, online_only=True),
    Method("emb", "embedding", _emb),
    Method("mlkd", "embedding", _mlkd),
]}
NONE = "none"


def parse_method(spec: str) -> Tuple[Method, ...]:
    """`none` -> (); `trkd` -> (trkd,); `trkd+emb` -> (trkd, emb). InputError listing the choices."""
    valid = f"valid: {NONE}, {', '.join(METHODS)}, or LOGIT+EMBEDDING such as trkd+emb"
    if spec == NONE:
        return ()
    parts = spec.split("+")
    unknown = [p for p in parts if p not in METHODS]
    if unknown:
        raise InputError(None, f"--method {spec!r}: unknown method {unknown[0]!r} ({valid})")
    methods = tuple(METHODS[p] for p in parts)
    levels = [m.level for m in methods]
    if len(parts) > 2 or len(set(levels)) != len(levels):
        raise InputError(None, f"--method {spec!r}: '+' joins one logit-level method "
                         f"({', '.join(n for n, m in METHODS.items() if m.level == 'logit')}) and one "
                         f"embedding-level method ({', '.join(n for n, m in METHODS.items() if m.level == 'embedding')})")
    return tuple(sorted(methods, key=lambda m: m.level != "logit"))


def method_name(methods: Sequence[Method]) -> str:
    """The canonical spelling (logit level first)."""
    return "+".join(m.name for m in methods) or NONE


def build_terms(methods: Sequence[Method], ctx: BuildContext) -> List:
    return [m.build(ctx) for m in methods]
