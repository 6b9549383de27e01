"""`trkd plan`: what every recipe stage will write and compute, before anything runs.

Kaldi's x-vector recipe and WeSpeaker both size their stages for VoxCeleb by hand; here the
arithmetic is a function of the data dir (or the corpus's counts), the configs and the class
count. Sizes of Kaldi tables are not guessed: each entry's size is measured by writing a
representative one with kaldiio (header and key included), so a change of format changes the plan.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import kaldiio
import numpy as np
import soundfile as sf

from trkd.errors import InputError

# Bounds of the corpus counts a plan takes (VoxCeleb2 has 1.1 M utterances of about 8 s): beyond
# them the arithmetic stops being a plan (arrays of every utterance, int64 sample counts).
MAX_UTTS = 10_000_000
MAX_UTT_SECONDS = 24 * 3600
WAV_HEADER = 44
BYTES_PER_SAMPLE = 2          # 16-bit PCM, as `trkd prepare`, `augment` and `synth-corpus` write
FLOAT = 4


@dataclass
class Corpus:
    """A training or test set: utterance durations (seconds) and speakers."""

    durations: np.ndarray
    speakers: int
    key_len: float = 20.0     # mean utterance-id length, for table keys

    @property
    def hours(self) -> float:
        return float(self.durations.sum()) / 3600

    @classmethod
    def from_counts(cls, utts: int, hours: float, speakers: int, key_len: float = 20.0) -> "Corpus":
        if utts < 1 or not hours > 0 or speakers < 1:  # `not >`: also NaN
            raise InputError(None, f"corpus counts must be positive: utts={utts}, hours={hours}, speakers={speakers}")
        if utts > MAX_UTTS or speakers > utts:
            raise InputError(None, f"utts={utts}, speakers={speakers}: a plan takes at most {MAX_UTTS} utterances "
                                   "and no more speakers than utterances")
        check_durations(np.full(utts, hours * 3600 / utts), f"hours={hours} over utts={utts}")
        return cls(np.full(utts, hours * 3600 / utts), speakers, key_len)

    @classmethod
    def synthetic(cls, split: str, quick: bool = False, difficulty=None) -> "Corpus":
        """What `trkd synth-corpus` writes for `split` (train or test): its sizes, and durations
        at the quantiles of its log-uniform draw."""
        from trkd.corpus.config import Difficulty, Sizes

        sizes = Sizes.quick() if quick else Sizes()
        lo, hi = (difficulty or Difficulty()).duration_s
        speakers = sizes.train_speakers if split == "train" else sizes.test_speakers
        n = speakers * sizes.utts_per_speaker
        q = (np.arange(n) + 0.5) / n
        return cls(np.exp(np.log(lo) + q * np.log(hi / lo)), speakers, 14.0)

    @classmethod
    def from_data_dir(cls, d) -> "Corpus":
        """Durations from utt2dur, else utt2num_frames, else the WAV headers of wav.scp."""
        from trkd.data.kaldi_dir import read_data_dir, read_kv

        d = Path(d)
        data = read_data_dir(d)
        utts = data.utts
        if (d / "utt2dur").is_file():
            table = read_kv(d / "utt2dur")
            dur = [float(table[u]) for u in utts]
        elif (d / "utt2num_frames").is_file():
            table = read_kv(d / "utt2num_frames")
            dur = [int(table[u]) / 100 + 0.015 for u in utts]
        else:
            dur = [_wav_seconds(data.wav_scp[u], d / "wav.scp") for u in utts]
        durations = np.asarray(dur, dtype=np.float64)
        check_durations(durations, str(d))
        return cls(durations, len(data.speakers), float(np.mean([len(u) for u in utts])))


def check_durations(durations: np.ndarray, source: str) -> None:
    """Every utterance between 0 and MAX_UTT_SECONDS long, and not too many of them."""
    if not 0 < len(durations) <= MAX_UTTS:
        raise InputError(source, f"{len(durations)} utterances: a plan takes 1 to {MAX_UTTS}")
    bad = ~((durations > 0) & (durations <= MAX_UTT_SECONDS))
    if bad.any():
        raise InputError(source, f"an utterance of {durations[bad][0]:g} s: durations must be finite, "
                                 f"positive and at most {MAX_UTT_SECONDS} s")


def _wav_seconds(rx: str, source: Path) -> float:
    try:
        info = sf.info(rx)
    except (RuntimeError, OSError) as err:
        raise InputError(source, f"cannot read the header of {rx} ({err}): write utt2dur or pass counts") from None
    return info.frames / info.samplerate


def entry_bytes(key_len: int, shape: Sequence[int], dtype=np.float32, compression: Optional[int] = None,
                write_function: Optional[str] = None) -> int:
    """Bytes of one ark entry (key, header, data) as kaldiio writes it (`numpy`: as a .npy entry)."""
    buf = io.BytesIO()
    kaldiio.save_ark(buf, {"k" * max(int(round(key_len)), 1): np.zeros(shape, dtype=dtype)},
                     compression_method=compression, write_function=write_function)
    return buf.tell()


def per_row(key_len: float, cols: int, compression: Optional[int] = None):
    """(a, b): an entry of an n x `cols` float32 matrix takes a + b·n bytes. Two probes give it
    exactly; they have a real utterance's hundreds of rows, since Kaldi's automatic compression
    picks another format for matrices of 8 rows or fewer."""
    lo = entry_bytes(key_len, (100, cols), compression=compression)
    b = (entry_bytes(key_len, (200, cols), compression=compression) - lo) // 100
    return lo - 100 * b, b


def frames(seconds: np.ndarray, rate: int = 16000, frame_length_ms: float = 25.0, shift_ms: float = 10.0) -> np.ndarray:
    """Kaldi's frame count (snip_edges): 1 + (samples − window) // shift, 0 below one window."""
    samples = np.round(seconds * rate).astype(np.int64)
    win, hop = int(rate * frame_length_ms / 1000), int(rate * shift_ms / 1000)
    return np.where(samples >= win, 1 + (samples - win) // hop, 0)


@dataclass
class Row:
    stage: str
    what: str
    items: float
    bytes: float
    hours: float                  # hours of audio the stage's bytes stand for (per-hour column)
    steps_per_epoch: Optional[int] = None
    macs: Optional[float] = None  # forward (+ backward where training: x3) multiply-accumulates
    note: str = ""

    def to_dict(self) -> Dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Plan:
    rows: List[Row] = field(default_factory=list)

    def add(self, *args, **kwargs) -> Row:
        self.rows.append(Row(*args, **kwargs))
        return self.rows[-1]

    def total(self) -> float:
        return sum(r.bytes for r in self.rows)


def human_bytes(n: float) -> str:
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def human_count(n: float) -> str:
    for unit, scale in (("Z", 1e21), ("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def render(plan: Plan, source_hours: float) -> str:
    """The plan as a Markdown table, bytes also per hour of source audio."""
    head = "| stage | what | items | bytes | per hour of source audio | steps/epoch | compute (MACs) | note |"
    lines = [head, "|" + "---|" * 8]
    for r in plan.rows:
        lines.append(f"| {r.stage} | {r.what} | {human_count(r.items)} | {human_bytes(r.bytes)} | "
                     f"{human_bytes(r.bytes / source_hours)} | {'' if r.steps_per_epoch is None else r.steps_per_epoch} | "
                     f"{'' if r.macs is None else human_count(r.macs)} | {r.note} |")
    lines.append(f"| all | | | {human_bytes(plan.total())} | {human_bytes(plan.total() / source_hours)} | | | |")
    return "\n".join(lines)


def ceil_div(a: float, b: float) -> int:
    return int(math.ceil(a / b))
