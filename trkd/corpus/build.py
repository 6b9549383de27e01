"""Write the whole corpus: WAVs in parallel, then the Kaldi tables, trials and metadata.

Layout (fixed; recipes and tests rely on it):
`wav/<spk>/<utt>.wav`, `train/` and `test/` data dirs (with utt2dur, spk2gender; `test/trials`), `noise/{wav.scp,utt2type}`,
`rir/wav.scp`, `spk2family`, `utt2session` and `corpus.yaml` (seed, sizes, difficulty).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import yaml

from trkd import __version__
from trkd.corpus.config import FS, Difficulty, Sizes
from trkd.corpus.noise import noise_clip, noise_kind
from trkd.corpus.rir import make_rir
from trkd.corpus.rng import rng_for
from trkd.corpus.trials import make_trials
from trkd.corpus.utterance import make_utterance
from trkd.corpus.voices import Speaker, population
from trkd.data.audio import write_wav
from trkd.data.kaldi_dir import DataDir, write_data_dir, write_kv
from trkd.jobs import Context, run_jobs
from trkd.utils.atomic import remove_stale_under, write_lines_atomic, write_text_atomic

log = logging.getLogger(__name__)
AUG_POOL = "aug"
_CHUNK = 16


def _to_int16(x: np.ndarray, peak: float) -> np.ndarray:
    return np.round(x / (np.max(np.abs(x)) + 1e-12) * peak * 32767).astype(np.int16)


def _run_task(ctx: Context, *task) -> Tuple[str, str, Dict]:
    """One output file; the task carries everything it depends on, so any worker can run it."""
    kind, out, seed = task[0], Path(task[1]), task[2]
    if kind == "utt":
        spk, utt, diff, n_noise, noise_s = task[3:]
        audio, info = make_utterance(seed, spk, utt, diff, n_noise, noise_s)
        write_wav(out / "wav" / spk.spk / f"{utt}.wav", audio, FS)
        return kind, utt, info
    if kind == "noise":
        idx, key, noise_s = task[3:]
        write_wav(out / "noise" / "wav" / f"{key}.wav", _to_int16(noise_clip(seed, AUG_POOL, idx, noise_s), 0.5), FS)
        return kind, key, {"type": noise_kind(idx)}
    _, _, _, idx, key, rt60 = task
    write_wav(out / "rir" / "wav" / f"{key}.wav", _to_int16(make_rir(rng_for(seed, "rir", AUG_POOL, idx), rt60), 0.9), FS)
    return kind, key, {}


def _key(prefix: str, i: int, n: int) -> str:
    return f"{prefix}{i + 1:0{max(4, len(str(n)))}d}"


def synth_corpus(out: Union[str, Path], seed: int, train_speakers: Optional[int] = None,
                 test_speakers: Optional[int] = None, utts_per_speaker: Optional[int] = None,
                 nj: int = 1, quick: bool = False, difficulty: Optional[Difficulty] = None) -> Path:
    """Write a synthetic speaker-verification corpus to OUT, deterministically from the seed.

    Training and test speakers are disjoint (open set); test/trials mixes same-family (hard) and
    random impostors with ~10 % targets. Same seed and sizes give byte-identical files for any nj.
    """
    out = Path(out).resolve()
    sizes = Sizes.quick() if quick else Sizes()
    for name, value in (("train_speakers", train_speakers), ("test_speakers", test_speakers),
                        ("utts_per_speaker", utts_per_speaker)):
        if value is not None:
            if value < (2 if name != "train_speakers" else 1):
                raise ValueError(f"{name} must be at least 2, got {value}")
            setattr(sizes, name, int(value))
    diff = difficulty or Difficulty()
    speakers = {"train": population(seed, "train", sizes.train_speakers, diff, "spk"),
                "test": population(seed, "test", sizes.test_speakers, diff, "tst")}
    upw = max(3, len(str(sizes.utts_per_speaker)))
    tasks: List[Tuple] = [("noise", str(out), seed, i, _key("noise", i, sizes.noise_clips), sizes.noise_seconds)
                         for i in range(sizes.noise_clips)]
    tasks += [("rir", str(out), seed, i, _key("rir", i, sizes.rirs), diff.rt60_s) for i in range(sizes.rirs)]
    utt2spk: Dict[str, Dict[str, str]] = {"train": {}, "test": {}}
    for split, spks in speakers.items():
        for spk in spks:
            for k in range(sizes.utts_per_speaker):
                utt = f"{spk.spk}-u{k + 1:0{upw}d}"
                utt2spk[split][utt] = spk.spk
                tasks.append(("utt", str(out), seed, spk, utt, diff, sizes.noise_clips, sizes.noise_seconds))
    log.info("synth-corpus: %d train + %d test speakers, %d utterances each, nj=%d -> %s",
             sizes.train_speakers, sizes.test_speakers, sizes.utts_per_speaker, nj, out)
    infos: Dict[str, Dict[str, Dict]] = {"utt": {}, "noise": {}, "rir": {}}
    for folder in ("wav", "noise", "rir"):
        remove_stale_under(out / folder)  # files half written by a killed run
    # No job logs: the corpus folder is byte-identical for every nj, so nothing of the run goes in it.
    for kind, key, info in run_jobs("synth-corpus", _run_task, tasks, nj, chunksize=_CHUNK, unit="file"):
        infos[kind][key] = info
    _write_tables(out, seed, sizes, diff, speakers, utt2spk, infos)
    return out


def _write_tables(out: Path, seed: int, sizes: Sizes, diff: Difficulty, speakers: Dict[str, List[Speaker]],
                  utt2spk: Dict[str, Dict[str, str]], infos: Dict[str, Dict[str, Dict]]) -> None:
    for split, table in utt2spk.items():
        wav = {u: str(out / "wav" / s / f"{u}.wav") for u, s in table.items()}
        write_data_dir(out / split, DataDir(wav, dict(table)))
        write_kv(out / split / "utt2dur", {u: infos["utt"][u]["dur"] for u in table})
        write_kv(out / split / "spk2gender", {s.spk: "f" if s.voice.female else "m" for s in speakers[split]})
    spk2family = {s.spk: s.family for spks in speakers.values() for s in spks}
    write_kv(out / "spk2family", spk2family)
    write_kv(out / "utt2session", {u: " ".join(f"{k}={v}" for k, v in i.items()) for u, i in infos["utt"].items()})
    test_spk2utt = DataDir({}, utt2spk["test"]).spk2utt
    trials = make_trials(test_spk2utt, spk2family, rng_for(seed, "trials"), diff.target_fraction, diff.hard_fraction)
    write_lines_atomic(out / "test" / "trials", (" ".join(t) for t in trials))
    write_kv(out / "noise" / "wav.scp", {k: out / "noise" / "wav" / f"{k}.wav" for k in infos["noise"]})
    write_kv(out / "noise" / "utt2type", {k: i["type"] for k, i in infos["noise"].items()})
    write_kv(out / "rir" / "wav.scp", {k: out / "rir" / "wav" / f"{k}.wav" for k in infos["rir"]})
    n_target = sum(t[2] == "target" for t in trials)
    meta = {
        "trkd_version": __version__, "seed": seed, "sample_rate": FS,
        "sizes": {"train_speakers": sizes.train_speakers, "test_speakers": sizes.test_speakers,
                  "utts_per_speaker": sizes.utts_per_speaker, "noise_clips": sizes.noise_clips, "noise_seconds": sizes.noise_seconds,
                  "rirs": sizes.rirs},
        "counts": {"train_utts": len(utt2spk["train"]), "test_utts": len(utt2spk["test"]), "trials": len(trials),
                   "target_trials": n_target, "train_families": len({s.family for s in speakers["train"]}),
                   "test_families": len({s.family for s in speakers["test"]})},
        "difficulty": diff.to_dict(),
    }
    write_text_atomic(out / "corpus.yaml", yaml.safe_dump(meta, sort_keys=False))
    log.info("synth-corpus: %d trials (%d target) written to %s", len(trials), n_target, out)
