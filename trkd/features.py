"""Kaldi fbank features of a data dir: `raw_fbank.K.ark/scp` per split, merged into `feats.scp`.

The features are `torchaudio.compliance.kaldi.fbank` with Kaldi's defaults. Dither noise is drawn
from a stream seeded by (seed, utterance id), so any split of the work gives bit-identical matrices.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import queue as queue_mod
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import kaldiio
import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi
import yaml
from tqdm import tqdm

from trkd.corpus.rng import rng_for
from trkd.data.audio import load_utt
from trkd.data.kaldi_dir import DataDir, PathLike, iter_table, subset
from trkd.data.split import parse_split, split_list
from trkd.data.validate import validate_data_dir
from trkd.errors import InputError
from trkd.utils.atomic import atomic_path, write_lines_atomic, write_text_atomic

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
    compression_method: Optional[int] = None  # kaldiio's (Kaldi's CM formats); None: float32


def _part_files(out_dir: Path, k: int) -> Tuple[Path, Path, Path]:
    return out_dir / f"raw_fbank.{k}.ark", out_dir / f"raw_fbank.{k}.scp", out_dir / f"utt2num_frames.{k}"


def _part_done(out_dir: Path, k: int, utts: List[str]) -> bool:
    """A part is finished when its scp exists and its `utt2num_frames.K` lists exactly its utterances.

    `utt2num_frames.K` also lists utterances too short for one frame (with 0), so the check holds
    for them too; it is written before the scp, which is written last.
    """
    ark, scp, u2nf = _part_files(out_dir, k)
    if not (scp.is_file() and u2nf.is_file() and ark.is_file()):
        return False
    return [fields[0] for _, fields in iter_table(u2nf)] == utts


def _run_part(part: _Part, opts: FbankOptions, seed: int, tick: Callable[[], None]) -> None:
    """Compute one split: ark written under a temporary name, then utt2num_frames.K, then the scp."""
    ark, scp, u2nf = _part_files(part.out_dir, part.k)
    log_path = part.out_dir / "log" / f"fbank.{part.k}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log_path, "w") as log:
        log.write(f"# fbank of {part.data_dir}, part {part.k}: {len(part.data.utt2spk)} utterances, seed {seed}\n")
        log.write(f"# options: {opts.to_dict()}\n")
        frames: Dict[str, int] = {}
        entries: List[str] = []
        with atomic_path(ark) as tmp, open(tmp, "wb") as f:
            for utt in part.data.utts:
                wave = load_utt(part.data_dir, part.data, utt, opts.sample_frequency)
                feats = fbank_of(torch.from_numpy(wave), opts.sample_frequency, opts, dither_seed(seed, utt))
                frames[utt] = feats.shape[0]
                if feats.shape[0] == 0:
                    log.write(f"WARNING: {utt}: {len(wave)} samples are too few for one frame; skipped\n")
                else:
                    # A Kaldi scp offset points just past "key " in the ark.
                    entries.append(f"{utt} {ark.resolve()}:{f.tell() + len(utt.encode('utf-8')) + 1}")
                    kaldiio.save_ark(f, {utt: feats.numpy().astype(np.float32, copy=False)},
                                     compression_method=part.compression_method)
                tick()
        write_lines_atomic(u2nf, (f"{u} {n}" for u, n in frames.items()))
        write_lines_atomic(scp, entries)
        log.write(f"# done: {len(entries)} utterances, {sum(frames.values())} frames, "
                  f"{len(frames) - len(entries)} skipped, {time.time() - t0:.1f} s\n")


def _worker(part: _Part, opts: FbankOptions, seed: int, queue) -> None:
    torch.set_num_threads(1)  # nj processes share the cores
    try:
        _run_part(part, opts, seed, lambda: queue.put(("tick", part.k, None)))
        queue.put(("done", part.k, None))
    except InputError as err:
        queue.put(("done", part.k, ("input", err.path, err.message, err.line)))
    except BaseException:  # reported to the parent, which raises it
        queue.put(("done", part.k, ("other", traceback.format_exc())))


def _run_parallel(parts: List[_Part], opts: FbankOptions, seed: int, bar: tqdm) -> None:
    """One process per part; the first failure is raised after every part has stopped."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = {p.k: ctx.Process(target=_worker, args=(p, opts, seed, queue), daemon=True) for p in parts}
    for proc in procs.values():
        proc.start()
    errors, running = [], set(procs)
    while running:
        try:
            kind, k, err = queue.get(timeout=1.0)
        except queue_mod.Empty:  # check for a worker that died without a word
            dead = [k for k in running if not procs[k].is_alive() and procs[k].exitcode != 0]
            for k in dead:
                errors.append(("other", f"fbank worker {k} died with exit code {procs[k].exitcode}"))
                running.discard(k)
            continue
        if kind == "tick":
            bar.update(1)
        else:
            running.discard(k)
            if err:
                errors.append(err)
    for proc in procs.values():
        proc.join()
    if errors:
        err = errors[0]
        if err[0] == "input":
            raise InputError(err[1], err[2], err[3])
        raise RuntimeError(err[1])


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

    Writes `OUT/raw_fbank.K.{ark,scp}` and `OUT/log/fbank.K.log` for K = 1..N (N = nj, or the N of
    `split="K/N"`, which computes part K only, for a cluster job array); finished parts are skipped.
    Once all N parts exist, writes `DATA/feats.scp` and `DATA/utt2num_frames` and returns the
    former's path (else None). OUT defaults to `DATA/feats`.
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
    blocks = split_list(data.utts, n)
    settings = yaml.safe_dump({"seed": seed, "compression_method": compression_method, **opts.to_dict()}, sort_keys=False)
    conf = out / "fbank.yaml"
    if not (conf.is_file() and conf.read_text() == settings):
        # Parts made with other options or another seed must neither be skipped nor merged.
        for old in list(out.glob("raw_fbank.*.scp")) + list(out.glob("utt2num_frames.*")):
            old.unlink()
        write_text_atomic(conf, settings)
    wanted = [k_only] if k_only else range(1, n + 1)
    todo = [_Part(k, subset(data, blocks[k - 1]), d, out, compression_method) for k in wanted if not _part_done(out, k, blocks[k - 1])]
    with tqdm(total=sum(len(p.data.utt2spk) for p in todo), desc=f"fbank {d}", unit="utt", disable=None) as bar:
        if len(todo) > 1:
            _run_parallel(todo, opts, seed, bar)
        elif todo:
            _run_part(todo[0], opts, seed, lambda: bar.update(1))
    if not all(_part_done(out, k, blocks[k - 1]) for k in range(1, n + 1)):
        return None
    return _merge(d, out, n)


def _merge(d: Path, out: Path, n: int) -> Path:
    """Concatenate the parts (contiguous blocks of the sorted list, so the result stays sorted)."""
    scp_lines, frame_lines, short = [], [], 0
    for k in range(1, n + 1):
        _, scp, u2nf = _part_files(out, k)
        scp_lines += scp.read_text().splitlines()
        counts = [fields for _, fields in iter_table(u2nf)]
        frame_lines += [f"{u} {v}" for u, v in counts if v != "0"]
        short += sum(v == "0" for _, v in counts)
    write_lines_atomic(d / "utt2num_frames", frame_lines)
    write_lines_atomic(d / "feats.scp", scp_lines)
    if short:
        logging.getLogger("trkd").warning(
            "%d utterances too short for one frame have no features (see %s/log); `trkd fix-data %s` drops them",
            short, out, d)
    return d / "feats.scp"
