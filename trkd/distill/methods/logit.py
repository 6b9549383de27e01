"""What kd, dkd, enskd and trkd share: a temperature and weighted terms of `trkd.losses.terms`.

A logit method's settings name its term weights as its paper does (α, β; λ_M, λ_F, λ_B), or
`terms: {tm: 1, nckd: 8}` replaces them altogether: an ablation is a config, not code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Mapping, Optional

from trkd.errors import InputError
from trkd.losses.terms import PARTITION_TERMS, TERMS, logit_kd


def student_logits(out, kind: str):
    """The student's logits that are distilled: AAM (margin applied) or s·cos θ."""
    return out.margin_logits if kind == "margin" else out.cosine_logits


@dataclass
class LogitSettings:
    """T (Hinton's 4 unless a method says otherwise) and `terms`, which replaces the named weights."""

    FIXED: ClassVar[Dict[str, float]] = {}   # term weights that no key names
    NAMED: ClassVar[Dict[str, str]] = {}     # config key -> the term it weighs
    PARTITION: ClassVar[bool] = False        # may use TRKD's confusion-set terms
    temperature: float = 4.0
    terms: Optional[Dict[str, float]] = None

    def weights(self) -> Dict[str, float]:
        """{term: weight}: `terms` when given, else the fixed and named weights."""
        if self.terms is not None:
            return {k: float(v) for k, v in self.terms.items()}
        return {**self.FIXED, **{term: float(getattr(self, key)) for key, term in self.NAMED.items()}}

    def check(self, source, prefix: str, lines, given: Mapping[str, Any]) -> None:
        """`given`: the keys the yaml and --set name, to tell a named weight from its default."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        if self.terms is None:
            for key in self.NAMED:   # null: the method's default
                if getattr(self, key) is None:
                    setattr(self, key, defaults[key])
            return
        for key in self.NAMED:
            if given.get(key) is not None:
                raise InputError(source, f"'{prefix}.{key}' and '{prefix}.terms' both given: name the "
                                 f"weights in one place", lines.get(f"{prefix}.{key}"))
            setattr(self, key, None)
        bad = [k for k, v in self.terms.items()
               if k not in TERMS or isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad or not self.terms:
            raise InputError(source, f"'{prefix}.terms' needs {{term: weight}} with terms among "
                             f"{', '.join(TERMS)}; got {self.terms!r}", lines.get(f"{prefix}.terms"))
        partition = PARTITION_TERMS & set(self.terms)
        if partition and not self.PARTITION:
            raise InputError(source, f"'{prefix}.terms': {', '.join(sorted(partition))} need the confusion "
                             f"set and its τ schedule: put these terms in 'kd.trkd'", lines.get(f"{prefix}.terms"))


class LogitMethod:
    """Σ_k w_k · term_k of the student's and the teacher's logits, weighted by the KD warm-up."""

    Settings = LogitSettings
    level, warm, needs, online_only = "logit", True, ("logits",), False

    def __init__(self, settings: LogitSettings, ctx):
        self.settings, self.kind = settings, ctx.kd.logits
        self.weights = settings.weights()

    def partition(self, step) -> Dict[str, Any]:
        """TRKD's τ, cutoff and top-K at this step; the other logit methods take no partition."""
        return {}

    def __call__(self, batch, out, teacher, step):
        cols = teacher.columns(student_logits(out, self.kind), batch["target"], self.settings.temperature)
        return logit_kd(cols.student, cols.teacher, cols.target, self.weights, self.settings.temperature)

    def modules(self):
        return {}

    def describe(self, logs) -> str:
        """What the objective logs every log interval beside the running means ('' for nothing)."""
        return ""
