"""Kaldi fbank features of a data dir: `raw_fbank.G.K.ark/scp` per split, merged into `feats.scp`.

The features are `torchaudio.compliance.kaldi.fbank` with Kaldi's defaults. Dither noise is drawn
from a stream seeded by (seed, utterance id), so any split of the work gives bit-identical matrices.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

from trkd.corpus.rng import rng_for
from trkd.data.audio import load_utt
from trkd.data.kaldi_dir import DataDir, PathLike, iter_table, subset
from trkd.data.split import parse_split, split_list
from trkd.data.validate import validate_data_dir
from trkd.errors import InputError
from trkd.jobs import Context, run_all
from trkd.utils.ark import ark_scp_writer
from trkd.utils.atomic import make_dirs, remove_stale, write_lines_atomic
from trkd.utils.lock import folder_lock
from trkd.utils.stamp import generation, read_stamp, write_stamp

log = logging.getLogger(__name__)

# Kaldi reads 16-bit PCM as integers, and its dither and energy floor are in that scale.
INT16_SCALE = 32768.0


@dataclass
class FbankOptions:
    """Kaldi `compute-fbank-feats` options (Kaldi's defaults, 80 bins); dither 1.0 for training, 0 for test."""

    num_mel_bins: int = 80
    frame_length: float = 25.0
    frame_shift: float = 10.0
    dither: float = 1.0
    sample_frequency: int = 16000
    energy_floor: float = 0.0
    low_freq: float = 20.0
    high_freq: float = 0.0
    preemphasis_coefficient: float = 0.97
    window_type: str = "povey"
    remove_dc_offset: bool = True
    round_to_power_of_two: bool = True
    snip_edges: bool = True
    use_energy: bool = False
    use_log_fbank: bool = True
    use_power: bool = True

    def to_dict(self) -> Dict[str, object]:
        return dataclasses.asdict(self)


def fbank_of(wave: torch.Tensor, rate: int, opts: FbankOptions = FbankOptions(), seed: Optional[int] = None) -> torch.Tensor:
    """`(frames, num_mel_bins)` float32 fbank of a mono waveform in [-1, 1) (soundfile's float scale).

    With `seed`, the dither noise comes from a private generator seeded with it; the global torch
    RNG is left as it was.
    """
    if rate != opts.sample_frequency:
        raise ValueError(f"sample rate {rate} != fbank sample_frequency {opts.sample_frequency}")
    wave = wave.reshape(1, -1).to(torch.float32) * INT16_SCALE
    if wave.shape[1] < int(opts.sample_frequency * opts.frame_length / 1000):
        return torch.zeros(0, opts.num_mel_bins)  # Kaldi makes no frame of it (torchaudio would assert)
    kwargs = opts.to_dict()
    if opts.dither == 0.0 or seed is None:
        return kaldi.fbank(wave, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return kaldi.fbank(wave, **kwargs)


def dither_seed(seed: int, utt: str) -> int:
    return int(rng_for(seed, "dither", utt).integers(2**63 - 1))


@dataclass
class _Part:
    """One split's job: its 1-based index, its utterances (a sub data dir) and where it writes."""

    k: int
    data: DataDir
    data_dir: Path
    out_dir: Path
    gen: str
    compression_method: Optional[int] = None  # kaldiio's (Kaldi's CM formats); None: float32

    def files(self) -> Tuple[Path, Path, Path]:
        return _part_files(self.out_dir, self.gen, self.k)


def _part_files(out_dir: Path, gen: str, k: int) -> Tuple[Path, Path, Path]:
    stem = f"{out_dir}/raw_fbank.{gen}.{k}"
    return Path(f"{stem}.ark"), Path(f"{stem}.scp"), out_dir / f"utt2num_frames.{gen}.{k}"


def _part_done(out_dir: Path, gen: str, k: int, utts: List[str]) -> bool:
    """A part is finished when its ark and scp exist and its `utt2num_frames.G.K`, written last, lists
    exactly its utterances (also those too short for one frame, with 0)."""
    ark, scp, u2nf = _part_files(out_dir, gen, k)
    if not (scp.is_file() and u2nf.is_file() and ark.is_file()):
        return False
    return [fields[0] for _, fields in iter_table(u2nf)] == utts


def _run_part(ctx: Context, part: _Part, opts: FbankOptions, seed: int) -> None:
    """Compute one split: ark and scp appear together, then utt2num_frames.G.K marks the part done."""
    ark, scp, u2nf = part.files()
    t0 = time.time()
    log.info("fbank of %s, part %d: %d utterances, seed %d", part.data_dir, part.k, len(part.data.utt2spk), seed)
    log.info("options: %s", opts.to_dict())
    frames: Dict[str, int] = {}
    with ark_scp_writer(ark, scp, compression_method=part.compression_method) as write:
        for utt in part.data.utts:
            wave = load_utt(part.data_dir, part.data, utt, opts.sample_frequency)
            feats = fbank_of(torch.from_numpy(wave), opts.sample_frequency, opts, dither_seed(seed, utt))
            frames[utt] = feats.shape[0]
            if feats.shape[0] == 0:
                log.warning("%s: %d samples are too few for one frame; skipped", utt, len(wave))
            else:
                write(utt, feats.numpy().astype(np.float32, copy=False))
            ctx.tick(1)
    write_lines_atomic(u2nf, (f"{u} {n}" for u, n in frames.items()))
    kept = sum(n > 0 for n in frames.values())
    log.info("done: %d utterances, %d frames, %d skipped, %.1f s", kept, sum(frames.values()),
             len(frames) - kept, time.time() - t0)


def compute_fbank(
    data_dir: PathLike,
    out_dir: Optional[PathLike] = None,
    nj: int = 1,
    split: Optional[str] = None,
    opts: FbankOptions = FbankOptions(),
    seed: int = 0,
    compression_method: Optional[int] = None,
) -> Optional[Path]:
    """Compute Kaldi fbank features of a data dir, like Kaldi's `steps/make_fbank.sh`.

    Writes `OUT/raw_fbank.G.K.{ark,scp}` and `OUT/log/fbank.K.log` for K = 1..N (N = nj, or the N of
    `split="K/N"`, which computes part K only, for a cluster job array); G names the settings (a
    hash of `OUT/fbank.G.yaml`), so parts of other settings are never reused or merged, and
    finished parts of these are skipped. Once all N parts exist, `DATA/feats.scp` and
    `DATA/utt2num_frames` are switched to them (each an atomic rename) and the files of this data
    dir's other settings are deleted; until then the previous features stay whole. Returns
    `DATA/feats.scp` once written, else None. OUT defaults to `DATA/feats`.
    """
    d = Path(data_dir)
    data = validate_data_dir(d, check_audio=False, rate=opts.sample_frequency)
    out = Path(out_dir) if out_dir is not None else d / "feats"
    if split is not None:
        k_only, n = parse_split(split)
    else:
        if nj < 1:
            raise InputError(None, f"--nj must be >= 1, got {nj}")
        k_only, n = None, nj
    if n > len(data.utts):
        raise InputError(d / "utt2spk", f"cannot split {len(data.utts)} utterances into {n} parts")
    # The jobs of a --split array write their parts of one OUT at once, by design: only a whole run locks.
    with folder_lock(out, "trkd fbank") if split is None else contextlib.nullcontext(make_dirs(out)):
        return _compute(d, data, out, k_only, n, opts, seed, compression_method)


def _compute(d: Path, data: DataDir, out: Path, k_only: Optional[int], n: int, opts: FbankOptions, seed: int,
             compression_method: Optional[int]) -> Optional[Path]:
    blocks = split_list(data.utts, n)
    settings = {"data": str(d.resolve()), "audio": audio_digest(d), "parts": n, "seed": seed,
                "compression_method": compression_method, **opts.to_dict()}
    gen = generation(settings)
    write_stamp(out / f"fbank.{gen}.yaml", settings)
    wanted = [k_only] if k_only else range(1, n + 1)
    todo = [_Part(k, subset(data, blocks[k - 1]), d, out, gen, compression_method) for k in wanted
            if not _part_done(out, gen, k, blocks[k - 1])]
    for part in todo:  # left by a killed run of this part
        for path in part.files():
            remove_stale(path)
    run_all("fbank", _run_part, [(p, opts, seed) for p in todo], len(todo), out / "log", jobs=[p.k for p in todo],
            total=sum(len(p.data.utt2spk) for p in todo), desc=f"fbank {d}", unit="utt", auto_tick=False)
    if not all(_part_done(out, gen, k, blocks[k - 1]) for k in range(1, n + 1)):
        return None
    feats = _merge(d, out, gen, n)
    _remove_other_generations(out, gen, settings["data"])
    return feats


def audio_digest(d: Path) -> str:
    """A hash of wav.scp and segments: other audio is other features (e.g. `trkd augment` run again
    with other settings rewrites its copies' entries), so finished parts are reused only for the same."""
    h = hashlib.sha1()
    for name in ("wav.scp", "segments"):
        if (d / name).is_file():
            with open(d / name, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:12]


def _merge(d: Path, out: Path, gen: str, n: int) -> Path:
    """Concatenate the parts (contiguous blocks of the sorted list, so the result stays sorted)."""
    scp_lines, frame_lines, short = [], [], 0
    for k in range(1, n + 1):
        _, scp, u2nf = _part_files(out, gen, k)
        scp_lines += scp.read_text().splitlines()
        counts = [fields for _, fields in iter_table(u2nf)]
        frame_lines += [f"{u} {v}" for u, v in counts if v != "0"]
        short += sum(v == "0" for _, v in counts)
    write_lines_atomic(d / "utt2num_frames", frame_lines)
    write_lines_atomic(d / "feats.scp", scp_lines)  # the switch to the new features
    if short:
        log.warning("%d utterances too short for one frame have no features (see %s/log); "
                    "`trkd fix-data %s` drops them", short, out, d)
    return d / "feats.scp"


def _remove_other_generations(out: Path, gen: str, data: str) -> None:
    """Delete the parts (and their temporaries) of this data dir made with other settings."""
    for conf in out.glob("fbank.*.yaml"):
        old = conf.name.split(".")[1]
        if old != gen and read_stamp(conf).get("data") == data:
            for path in out.glob(f"*.{old}.*"):
                path.unlink(missing_ok=True)
            conf.unlink(missing_ok=True)
