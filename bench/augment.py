"""Features of augmented copies, one worker: `trkd fbank` of a data dir whose copies are
`trkd augment-wav` entries (made again in memory) against the same dir made with --write-wavs
(copies read from WAVs, warm page cache), in seconds of audio per second, measured in the same run.

    tools/venv/bin/python bench/augment.py [--utts 8] [--seconds 8] [--repeats 3]

Sources are voice-like tones (bench/fbank.py); the lists are 6 noises / music / speech items of
6 s and 4 RIRs of 1 s (about RIRS_NOISES' length); every kind of copy (probability 1) and speed
perturbation 0.9 / 1.1, so each source has 14 copies. Data under bench/out/augment/.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import kaldiio
import numpy as np
import soundfile as sf
import torch

from fbank import RATE, make_wavs
from trkd.data.augment import AugmentConfig, augment_data_dir
from trkd.data.kaldi_dir import DataDir, write_data_dir, write_kv
from trkd.features import compute_fbank

OUT = Path(__file__).resolve().parent / "out" / "augment"


def make_lists(root: Path) -> tuple:
    rng = np.random.default_rng(1)
    noise, rirs = root / "noise", root / "rirs"
    wav, types, rwav = {}, {}, {}
    for i, kind in enumerate(["noise", "noise", "music", "music", "speech", "speech"]):
        x = make_wavs(root / "noise_wav" / str(i), 1, 6.0)[0] if kind != "noise" else None
        if x is None:
            x = root / "noise_wav" / f"n{i}.wav"
            x.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(x), (0.1 * rng.standard_normal(6 * RATE)).astype(np.float32), RATE, subtype="PCM_16")
        wav[f"{kind}{i}"], types[f"{kind}{i}"] = x, kind
    for i in range(4):
        h = rng.standard_normal(RATE) * np.exp(-np.arange(RATE) / (0.08 * RATE)) * 0.1
        h[:40 + 30 * i], h[40 + 30 * i] = 0.0, 0.9
        rwav[f"rir{i}"] = root / "rir_wav" / f"rir{i}.wav"
        rwav[f"rir{i}"].parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(rwav[f"rir{i}"]), h.astype(np.float32), RATE, subtype="PCM_16")
    for d, table in ((noise, wav), (rirs, rwav)):
        d.mkdir(parents=True, exist_ok=True)
        write_kv(d / "wav.scp", table)
    write_kv(noise / "utt2type", types)
    return noise, rirs


def fbank_time(d: Path) -> float:
    for p in [d / "feats", d / "feats.scp", d / "utt2num_frames"]:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    compute_fbank(d, nj=1, seed=1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utts", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.INFO)
    shutil.rmtree(OUT, ignore_errors=True)
    clean = OUT / "clean"
    paths = make_wavs(OUT / "wav", args.utts, args.seconds)
    write_data_dir(clean, DataDir({f"s{i}-u": str(p) for i, p in enumerate(paths)},
                                  {f"s{i}-u": f"s{i}" for i in range(len(paths))}))
    noise, rirs = make_lists(OUT)
    cfg = AugmentConfig(speed_factors=[0.9, 1.1])
    dirs = {"WAV copies (--write-wavs)": OUT / "wavs", "virtual copies (augment-wav)": OUT / "virtual"}
    for name, d in dirs.items():
        augment_data_dir(clean, d, rirs, noise, speed_perturb=True, seed=0, cfg=cfg, write_wavs="WAV" in name)
    audio_s = sum(len(sf.read(str(p))[0]) for p in (OUT / "wavs" / "wav").glob("*.wav")) / RATE
    audio_s += args.utts * args.seconds   # the clean sources, in both dirs
    best = {name: min(fbank_time(d) for _ in range(args.repeats)) for name, d in dirs.items()}
    a, b = (dict(kaldiio.load_scp(str(d / "feats.scp"))) for d in dirs.values())
    same = sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    print(f"trkd fbank, 1 worker, 1 thread: {args.utts} sources x {args.seconds:g} s, 14 copies each, "
          f"{audio_s:.0f} s of audio in all (best of {args.repeats}); features bit-identical: {same}")
    ref = best["WAV copies (--write-wavs)"]
    for name, t in best.items():
        print(f"{name:>30}: {audio_s / t:8,.0f} s of audio/s  ({t / ref:.2f}x the time of the WAV route)")


if __name__ == "__main__":
    main()
