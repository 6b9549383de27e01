"""The knobs of the synthetic corpus, in one place: sizes and difficulty.

Difficulty is calibrated by training (teacher EER 1-6 %, small student >= 1.3x worse); these
fields are what that calibration turns, through `--difficulty FILE.yaml` without code changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from trkd.errors import InputError


@dataclass
class Difficulty:
    """What makes speakers confusable and sessions different."""

    # Members of a family scatter around its centre by this fraction of the population spread:
    # small -> near-twins (hard impostors), 1.0 -> families mean nothing.
    family_spread: float = 0.35
    # Family sizes are 1 + Poisson-like draws with this mean extra size (long-tailed confusion sets).
    family_extra_mean: float = 1.6
    family_max: int = 8
    accents: int = 8
    # Spread of an accent's vowel-target offsets (relative formant shift).
    accent_spread: float = 0.06
    # Scales every utterance-to-utterance change of one speaker (f0, rate, effort, formants).
    within_speaker: float = 1.0
    snr_db: Tuple[float, float] = (5.0, 30.0)
    reverb_prob: float = 0.3
    rt60_s: Tuple[float, float] = (0.2, 0.9)
    # Scales the random channel EQ (dB of peaks, tilt, band limits).
    channel_strength: float = 1.0
    level_dbfs: float = -25.0
    level_sd_db: float = 3.0
    duration_s: Tuple[float, float] = (2.0, 6.0)
    target_fraction: float = 0.1
    # Share of non-target trials whose impostor comes from the enrolled speaker's family.
    hard_fraction: float = 0.3

    @classmethod
    def from_dict(cls, d: Dict, path: Optional[Union[str, Path]] = None) -> "Difficulty":
        known = {f.name: f for f in fields(cls)}
        out = {}
        for key, value in (d or {}).items():
            if key not in known:
                raise InputError(path, f"unknown difficulty key {key!r}; valid keys: {', '.join(sorted(known))}")
            default = getattr(cls(), key)
            try:
                out[key] = tuple(float(v) for v in value) if isinstance(default, tuple) else type(default)(value)
            except (TypeError, ValueError):
                raise InputError(path, f"bad value for {key!r}: {value!r}") from None
            if isinstance(default, tuple) and len(out[key]) != 2:
                raise InputError(path, f"{key!r} needs two values (low, high), got {value!r}")
        return cls(**out)

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "Difficulty":
        import yaml

        from trkd.utils.typed_yaml import load_yaml

        path = Path(path)
        if not path.is_file():
            raise InputError(path, "no such file")
        try:
            d = load_yaml(path.read_text())
        except yaml.YAMLError as err:
            raise InputError(path, f"not valid YAML: {err}") from None
        if d is not None and not isinstance(d, dict):
            raise InputError(path, "expected a mapping of difficulty keys")
        return cls.from_dict(d, path)

    def to_dict(self) -> Dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class Sizes:
    """How much to write; the CLI sets the first three. The corpus's own noise pool and the
    augmentation set written to OUT/noise have `noise_clips` clips each (disjoint draws)."""

    train_speakers: int = 1000
    test_speakers: int = 120
    utts_per_speaker: int = 8
    # Noise and RIR clips written for augmentation (`trkd augment`).
    noise_clips: int = 60
    noise_seconds: float = 8.0
    rirs: int = 40

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(train_speakers=40, test_speakers=10, utts_per_speaker=6, noise_clips=9, noise_seconds=4.0, rirs=6)


FS = 16000
