"""The `kd:` block of a student config: one sub-block per method, defaults = spec/losses.md.

One student yaml serves every method of a recipe's comparison (`--methods "none kd dkd trkd"`),
so each method reads its own sub-block. A logit method's term weights are its preset's
(`trkd.losses.PRESETS`), renamed as the papers name them (α, β for dkd/enskd; λ_M, λ_F, λ_B for
trkd), or replaced altogether by `terms: {tm: 1, nckd: 8}` — an ablation is a config, not code.
Unknown keys are an `InputError` naming the key (and its yaml line when known).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Union

import yaml

from trkd.utils.typed_yaml import from_dict, key_lines
from trkd.errors import InputError
from trkd.losses import PRESETS, TERMS
from trkd.losses.terms import PARTITION_TERMS

LOGITS = ("margin", "cosine")
FRAMES_PER_SECOND = 100  # fbank frame shift 10 ms: imlkd's durations are in seconds


@dataclass
class KDBlock:
    """Hinton KD: T² KL(pᵀ ‖ pˢ). `terms` replaces the preset's term weights."""

    PRESET: ClassVar[str] = "kd"
    NAMED: ClassVar[Dict[str, str]] = {}  # config key -> term it weighs
    temperature: float = PRESETS["kd"].temperature
    terms: Optional[Dict[str, float]] = None

    def weights(self) -> Dict[str, float]:
        """{term: weight}: `terms` when given, else the preset's with the named keys applied."""
        if self.terms is not None:
            return {k: float(v) for k, v in self.terms.items()}
        weights = dict(PRESETS[self.PRESET].weights)
        weights.update({term: float(getattr(self, key)) for key, term in self.NAMED.items()})
        return weights

    def resolve(self, source, prefix: str, lines) -> None:
        """Fill named weights from the preset (or check they are absent when `terms` is given)."""
        preset = PRESETS[self.PRESET].weights
        if self.terms is not None:
            for key in self.NAMED:
                if getattr(self, key) is not None:
                    raise InputError(source, f"'{prefix}.{key}' and '{prefix}.terms' both given: "
                                     f"name the weights in one place", lines.get(f"{prefix}.{key}"))
            bad = [k for k, v in self.terms.items()
                   if k not in TERMS or isinstance(v, bool) or not isinstance(v, (int, float))]
            if bad or not self.terms:
                raise InputError(source, f"'{prefix}.terms' needs {{term: weight}} with terms among "
                                 f"{', '.join(TERMS)}; got {self.terms!r}", lines.get(f"{prefix}.terms"))
        partition = PARTITION_TERMS & set(self.terms or {})
        if partition and not isinstance(self, TRKDBlock):
            raise InputError(source, f"'{prefix}.terms': {', '.join(sorted(partition))} need the confusion "
                             f"set and its τ schedule: put these terms in 'kd.trkd'", lines.get(f"{prefix}.terms"))
        if self.terms is None:
            for key, term in self.NAMED.items():
                if getattr(self, key) is None:
                    setattr(self, key, float(preset[term]))


@dataclass
class DKDBlock(KDBlock):
    """Decoupled KD: α · TCKD + β · NCKD."""

    PRESET: ClassVar[str] = "dkd"
    NAMED: ClassVar[Dict[str, str]] = {"alpha": "tckd", "beta": "nckd"}
    temperature: float = PRESETS["dkd"].temperature
    alpha: Optional[float] = None
    beta: Optional[float] = None


@dataclass
class ENSKDBlock(DKDBlock):
    """ENSKD: DKD with its authors' released T and β."""

    PRESET: ClassVar[str] = "enskd"
    temperature: float = PRESETS["enskd"].temperature


@dataclass
class TRKDBlock(KDBlock):
    """Triage KD: λ_M · TM + λ_F · CF + λ_B · BG over the confusion set F(τ) and τ's curriculum.

    `confusion`: `cutoff` (F from τ) or `topk:K` (the K top non-targets, a static-set ablation).
    A fixed τ is `tau0 == tau1`.
    """

    PRESET: ClassVar[str] = "trkd"
    NAMED: ClassVar[Dict[str, str]] = {"lambda_m": "tm", "lambda_f": "cf", "lambda_b": "bg"}
    temperature: float = PRESETS["trkd"].temperature
    lambda_m: Optional[float] = None
    lambda_f: Optional[float] = None
    lambda_b: Optional[float] = None
    cutoff: str = "conditional"
    confusion: str = "cutoff"
    tau0: float = 1.0
    tau1: float = 0.05
    gamma: float = 0.001
    start_epoch: int = 10
    stop_epoch: int = 60

    def topk(self) -> Optional[int]:
        return None if self.confusion == "cutoff" else int(self.confusion.split(":", 1)[1])

    def resolve(self, source, prefix: str, lines) -> None:
        super().resolve(source, prefix, lines)
        from trkd.losses.confusion import CUTOFFS

        if self.cutoff not in CUTOFFS:
            raise InputError(source, f"'{prefix}.cutoff' must be one of {', '.join(CUTOFFS)}, got "
                             f"{self.cutoff!r}", lines.get(f"{prefix}.cutoff"))
        kind, _, k = self.confusion.partition(":")
        if not (self.confusion == "cutoff" or (kind == "topk" and k.isdigit() and int(k) > 0)):
            raise InputError(source, f"'{prefix}.confusion' must be 'cutoff' or 'topk:K' (K > 0), got "
                             f"{self.confusion!r}", lines.get(f"{prefix}.confusion"))
        if not (self.tau0 > 0 and self.tau1 > 0 and 0 < self.gamma < 1
                and 1 <= self.start_epoch <= self.stop_epoch):
            raise InputError(source, f"'{prefix}': need tau0, tau1 > 0, 0 < gamma < 1 and "
                             f"1 <= start_epoch <= stop_epoch", lines.get(prefix))


@dataclass
class EmbBlock:
    """Embedding-level KD: λ_emb · mean(1 − cos(P eˢ, eᵀ)) (`distance: mse` on unit vectors)."""

    weight: float = 1.0
    distance: str = "cosine"


@dataclass
class MLKDBlock(EmbBlock):
    """Multi-level KD: `levels` index the teacher's level list (negative from the end; null: all)."""

    levels: Optional[List[int]] = None


@dataclass
class IMLKDBlock:
    """Integrated multi-level KD (a documented approximation, spec/losses.md)."""

    weight: float = 1.0
    durations: List[float] = field(default_factory=lambda: [2.0, 1.0, 0.5])
    steps: int = 8
    temperatures: List[float] = field(default_factory=lambda: [1.0, 2.0, 4.0])

    def frames(self) -> List[int]:
        return [max(1, round(d * FRAMES_PER_SECOND)) for d in self.durations]


@dataclass
class KDConfig:
    """The whole `kd:` block. `warmup_epochs` is spec's kd_warmup_epochs (0: off), `logits` its
    kd_logits. `method`, `teacher` and `online` are written by `trkd distill` (resolved)."""

    warmup_epochs: int = 20
    logits: str = "margin"
    kd: KDBlock = field(default_factory=KDBlock)
    dkd: DKDBlock = field(default_factory=DKDBlock)
    enskd: ENSKDBlock = field(default_factory=ENSKDBlock)
    trkd: TRKDBlock = field(default_factory=TRKDBlock)
    emb: EmbBlock = field(default_factory=EmbBlock)
    mlkd: MLKDBlock = field(default_factory=MLKDBlock)
    imlkd: IMLKDBlock = field(default_factory=IMLKDBlock)
    method: Optional[str] = None
    teacher: Optional[str] = None
    online: bool = False

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]], source: Union[str, Path, None] = None,
                  lines: Optional[Dict[str, int]] = None) -> "KDConfig":
        """Build and check; `lines` maps key paths ('kd.trkd.tau0') to yaml lines."""
        lines = lines or {}
        cfg = from_dict(cls, d or {}, source, "kd.", lines)
        if cfg.logits not in LOGITS:
            raise InputError(source, f"'kd.logits' must be one of {', '.join(LOGITS)}, got {cfg.logits!r}",
                             lines.get("kd.logits"))
        for name in ("kd", "dkd", "enskd", "trkd"):
            getattr(cfg, name).resolve(source, f"kd.{name}", lines)
        from trkd.losses import DISTANCES

        for name in ("emb", "mlkd"):
            if getattr(cfg, name).distance not in DISTANCES:
                raise InputError(source, f"'kd.{name}.distance' must be one of {', '.join(DISTANCES)}",
                                 lines.get(f"kd.{name}.distance"))
        iml = cfg.imlkd
        iml.durations = [float(x) for x in iml.durations]
        iml.temperatures = [float(x) for x in iml.temperatures]
        if not iml.durations or min(iml.durations) <= 0 or iml.steps < 1 or not iml.temperatures:
            raise InputError(source, "'kd.imlkd': need positive durations, steps >= 1 and a temperature",
                             lines.get("kd.imlkd"))
        return cfg

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def kd_key_lines(config_path: Union[str, Path]) -> Dict[str, int]:
    """Yaml line of every key path of a config file ({} when it cannot be read)."""
    try:
        return key_lines(yaml.compose(Path(config_path).read_text()))
    except (OSError, yaml.YAMLError):
        return {}
