"""Fbank throughput, one worker: our path (`trkd.features.fbank_of`, torchaudio's Kaldi fbank) against
kaldi-native-fbank (a C++ Kaldi port) on the same audio, in seconds of audio per second.

    tools/venv/bin/python bench/fbank.py [--files 20] [--seconds 4] [--repeats 3]

The WAVs are written with soundfile under bench/out/fbank/ and read back with soundfile, as the
toolkit does; reading is timed apart from the feature computation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from trkd.features import FbankOptions, fbank_of

RATE = 16000


def make_wavs(d: Path, files: int, seconds: float) -> list:
    """Harmonic tones with noise: the content does not change fbank's cost, only the length does."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    paths = []
    for i in range(files):
        f0 = 100 + 10 * i
        x = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 8))
        x = 0.2 * x / np.abs(x).max() + 0.01 * rng.standard_normal(len(t))
        paths.append(d / f"b{i}.wav")
        sf.write(str(paths[-1]), x.astype(np.float32), RATE, subtype="PCM_16")
    return paths


def knf_fbank(knf, x: np.ndarray, dither: float) -> np.ndarray:
    o = knf.FbankOptions()
    o.frame_opts.dither, o.frame_opts.samp_freq, o.mel_opts.num_bins, o.energy_floor = dither, RATE, 80, 0.0
    f = knf.OnlineFbank(o)
    f.accept_waveform(RATE, x * 32768)
    f.input_finished()
    return np.stack([f.get_frame(i) for i in range(f.num_frames_ready)])


def best_of(fn, waves, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x in waves:
            fn(x)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import kaldi_native_fbank as knf

    torch.set_num_threads(1)
    paths = make_wavs(Path(__file__).resolve().parent / "out" / "fbank", args.files, args.seconds)
    t0 = time.perf_counter()
    waves = [sf.read(str(p), dtype="float32")[0] for p in paths]
    t_read = time.perf_counter() - t0
    audio_s = sum(len(x) for x in waves) / RATE
    tensors = [torch.from_numpy(x) for x in waves]
    diff = max(np.abs(fbank_of(t, RATE, FbankOptions(dither=0.0)).numpy() - knf_fbank(knf, x, 0.0)).max()
               for t, x in zip(tensors, waves))
    rows = []
    for dither in (0.0, 1.0):
        opts = FbankOptions(dither=dither)
        ours = best_of(lambda t: fbank_of(t, RATE, opts, seed=0), tensors, args.repeats)
        ref = best_of(lambda x: knf_fbank(knf, x, dither), waves, args.repeats)
        rows.append((dither, audio_s / ours, audio_s / ref, ref / ours))
    print(f"fbank throughput, 1 thread, {args.files} files x {args.seconds:g} s = {audio_s:.0f} s of 16 kHz audio "
          f"(best of {args.repeats}); max |ours - kaldi-native-fbank| at dither 0 = {diff:.2e}")
    print(f"soundfile read: {audio_s / t_read:,.0f} s of audio per second")
    print(f"{'dither':>6}  {'trkd fbank_of':>14}  {'kaldi-native-fbank':>18}  {'ratio (ours/knf)':>16}")
    for dither, ours, ref, ratio in rows:
        print(f"{dither:>6g}  {ours:>12,.0f}/s  {ref:>16,.0f}/s  {ratio:>16.2f}")


if __name__ == "__main__":
    main()
