"""Benchmark of `trkd score` with mean subtraction on a VoxCeleb1-E-sized list: 580 000 trials over
150 000 dim-256 embeddings, the cohort being the scored set (`--scp X --cohort-scp X`).

Against a plain numpy reference doing the same job from the same ark/scp: read the embeddings
(kaldiio), subtract their mean, length-normalise, gather both sides of every trial and take the dot
products, EER by sorting, write the `enroll test score` file. Ours also writes metrics.json and the
DET plot. Each side runs in its own process (wall time and the peak resident memory above that of
the process after its imports: imports are not the job), alternately, `--repeats` times; ratios within a repeat, median
and spread; the sides must agree on every score and on the EER.

    tools/venv/bin/python bench/score.py [--trials 580000] [--embeddings 150000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from machine import describe, median_spread

OUT = Path(__file__).resolve().parent / "out" / "score"


def synthetic(n_emb: int, n_trials: int, dim: int, seed: int = 0):
    """Speakers of 116 utterances (as VoxCeleb1), embeddings = offset + centre + noise; half target trials."""
    from trkd.data.trials import Trials

    rng = np.random.default_rng(seed)
    per_spk = 116
    n_spk = -(-n_emb // per_spk)
    spk = np.arange(n_emb) // per_spk
    centres = rng.standard_normal((n_spk, dim), dtype=np.float32)
    offset = 2 * rng.standard_normal(dim, dtype=np.float32)  # a shared offset, which mean subtraction removes
    matrix = offset + centres[spk] + 1.5 * rng.standard_normal((n_emb, dim), dtype=np.float32)
    keys = [f"id{s:05d}-utt{i:06d}" for i, s in enumerate(spk)]
    e = rng.integers(0, n_emb, n_trials)
    target = rng.random(n_trials) < 0.5
    same = spk[e] * per_spk + rng.integers(0, per_spk, n_trials)
    t = np.where(target, np.minimum(same, n_emb - 1), rng.integers(0, n_emb, n_trials))
    labels = (spk[e] == spk[t]).astype(np.int8)
    return keys, matrix, Trials([keys[i] for i in e], [keys[i] for i in t], labels)


def setup(n_emb: int, n_trials: int, dim: int) -> None:
    import kaldiio

    from trkd.data.trials import write_trials

    keys, matrix, trials = synthetic(n_emb, n_trials, dim)
    OUT.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{OUT}/xvector.ark,{OUT}/xvector.scp") as writer:
        for k, v in zip(keys, matrix):
            writer(k, v)
    write_trials(OUT / "trials", trials)


def reference(out: Path) -> float:
    """Plain numpy, from the same files; returns the EER."""
    import kaldiio

    table = kaldiio.load_scp(str(OUT / "xvector.scp"))
    keys = list(table)
    m = np.stack([table[k] for k in keys]).astype(np.float32)
    m = m - m.mean(axis=0, dtype=np.float64).astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    index = {k: i for i, k in enumerate(keys)}
    enroll, test, target = zip(*(line.split() for line in open(OUT / "trials")))
    e = np.array([index[k] for k in enroll])
    t = np.array([index[k] for k in test])
    scores = np.einsum("ij,ij->i", m[e], m[t]).astype(np.float64)
    lab = (np.array(target) == "target")[np.argsort(scores, kind="stable")]
    fnr = np.cumsum(lab) / lab.sum()
    fpr = 1 - np.cumsum(~lab) / (~lab).sum()
    b = int(np.argmax(fnr >= fpr))
    w = (fpr[b - 1] - fnr[b - 1]) / ((fpr[b - 1] - fnr[b - 1]) - (fpr[b] - fnr[b]))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "trials.score", "w") as f:
        f.writelines(f"{a} {b} {s:.6f}\n" for a, b, s in zip(enroll, test, scores.tolist()))
    return float(fnr[b - 1] + w * (fnr[b] - fnr[b - 1]))


def ours(out: Path) -> float:
    from trkd.scoring.evaluate import score_embeddings

    scp = OUT / "xvector.scp"
    [res] = score_embeddings([OUT / "trials"], scp=scp, cohort_scp=scp, out_dir=out)
    return res.metrics["eer"]


def rss_mb() -> float:
    """Resident memory now (an import's passing peak would hide in the high-water mark)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def child(side: str) -> None:
    """One side in this process: what it costs above the process after its imports."""
    if side == "ours":  # imports are not the job: each side's are made before the clock starts
        import matplotlib.backends.backend_agg  # noqa: F401  (the DET plot's, imported where it is drawn)
        import matplotlib.figure  # noqa: F401

        import trkd.scoring.evaluate  # noqa: F401
    import kaldiio  # noqa: F401

    base = rss_mb()
    t0 = time.perf_counter()
    eer = (ours if side == "ours" else reference)(OUT / side)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "peak_mb": peak - base, "eer": eer}))


def run(side: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", side], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=580_000)
    ap.add_argument("--embeddings", type=int, default=150_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", choices=("ours", "reference"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    print(f"machine: {describe()}")
    setup(args.embeddings, args.trials, args.dim)
    print(f"{args.trials} trials over {args.embeddings} embeddings of dim {args.dim}, cohort = the scored set; "
          f"median [min-max] of {args.repeats} alternating runs")
    runs = {"ours": [], "reference": []}
    for _ in range(args.repeats):
        for side in runs:
            runs[side].append(run(side))
    for side, rs in runs.items():
        print(f"{side:10s} wall {median_spread([r['wall'] for r in rs], 2)} s   "
              f"peak above imports {median_spread([r['peak_mb'] for r in rs])} MB   EER {100 * rs[0]['eer']:.4f}%")
    wall = [o["wall"] / r["wall"] for o, r in zip(runs["ours"], runs["reference"])]
    peak = [o["peak_mb"] / r["peak_mb"] for o, r in zip(runs["ours"], runs["reference"])]
    print(f"ours / reference: wall {median_spread(wall, 2)}x, peak memory {median_spread(peak, 2)}x")
    a = np.loadtxt(OUT / "ours" / "trials.score", usecols=2)
    b = np.loadtxt(OUT / "reference" / "trials.score", usecols=2)
    print(f"agreement: max |score difference| {np.abs(a - b).max():.1e} (6 decimals written), "
          f"EER {100 * runs['ours'][0]['eer']:.4f}% vs {100 * runs['reference'][0]['eer']:.4f}%")
    print(f"machine at the end: {describe()}")


if __name__ == "__main__":
    main()
