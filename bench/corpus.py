"""Synthetic-corpus generation speed: CPU per utterance, extrapolated to the default corpus, against
a reference measured in the same run (an STFT power spectrum of the same audio: the cheapest
analysis that touches every sample).

    tools/venv/bin/python bench/corpus.py [--utts 200] [--full --nj 2]

--full also builds the default corpus under bench/out/corpus and reports its wall and CPU time.
On a loaded machine, CPU time / nj is the estimate of the unloaded wall time.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from trkd.corpus.build import synth_corpus
from trkd.corpus.config import Difficulty, Sizes
from trkd.corpus.noise import noise_clip
from trkd.corpus.utterance import ENV_POOL, make_utterance
from trkd.corpus.voices import population


def _stft_power(x: np.ndarray) -> float:
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), 400)[::160]
    return float(np.sum(np.abs(np.fft.rfft(frames * np.hanning(400), 512, axis=1)) ** 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utts", type=int, default=200)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--nj", type=int, default=2)
    args = ap.parse_args()
    diff, sizes = Difficulty(), Sizes()
    spks = population(0, "train", args.utts, diff, "spk")
    t = time.process_time()
    for i in range(sizes.noise_clips):
        noise_clip(0, ENV_POOL, i, sizes.noise_seconds)
    pool_cpu = time.process_time() - t
    audio, t = [], time.process_time()
    for s in spks:
        audio.append(make_utterance(0, s, f"{s.spk}-u001", diff, sizes.noise_clips, sizes.noise_seconds)[0])
    synth_cpu = (time.process_time() - t) / len(spks)
    t = time.process_time()
    for x in audio:
        _stft_power(x)
    ref_cpu = (time.process_time() - t) / len(spks)
    seconds = np.mean([len(x) for x in audio]) / 16000
    n_utts = (sizes.train_speakers + sizes.test_speakers) * sizes.utts_per_speaker
    est = (n_utts * synth_cpu) / args.nj + pool_cpu
    print(f"utterance: {seconds:.2f} s of audio, {1000 * synth_cpu:.1f} ms CPU "
          f"({seconds / synth_cpu:.0f}x real time); reference STFT {1000 * ref_cpu:.2f} ms; ratio {synth_cpu / ref_cpu:.1f}")
    print(f"noise pool (per worker): {pool_cpu:.1f} s CPU")
    print(f"default corpus ({n_utts} utterances), nj={args.nj}: estimated {est:.0f} s wall on idle cores (budget 120 s)")
    if args.full:
        out = Path(__file__).resolve().parent / "out" / "corpus"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.time()
        synth_corpus(out, 0, nj=args.nj)
        wall = time.time() - t0
        ru = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        cpu = sum(r.ru_utime + r.ru_stime for r in ru)
        print(f"default corpus built: {wall:.0f} s wall, {cpu:.0f} s CPU (CPU/nj = {cpu / args.nj:.0f} s)")


if __name__ == "__main__":
    main()
