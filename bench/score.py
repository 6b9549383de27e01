"""Benchmark of `trkd score` on a VoxCeleb1-E-sized list: 580 000 trials over 145 000 dim-256 embeddings.

Times our vectorised scoring (+ EER / minDCF) against a plain numpy reference (a per-trial gather
and dot product, then a sort-based EER) in the same run, checks that both agree, and times the
whole CLI path from a real ark/scp (load, score, write the score file, metrics, DET PNG).

    tools/venv/bin/python bench/score.py [--trials 580000] [--embeddings 145000] [--no-cli]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from trkd.data.trials import Trials, write_trials
from trkd.scoring.cosine import cosine_scores, trial_rows
from trkd.scoring.embeddings import EmbeddingTable, prepare
from trkd.scoring.metrics import compute_metrics

OUT = Path(__file__).resolve().parent / "out" / "score"


def synthetic(n_emb: int, n_trials: int, dim: int, seed: int = 0):
    """Speakers of 116 utterances (as VoxCeleb1), embeddings = centre + noise; half target trials."""
    rng = np.random.default_rng(seed)
    per_spk = 116
    n_spk = -(-n_emb // per_spk)
    spk = np.arange(n_emb) // per_spk
    centres = rng.standard_normal((n_spk, dim), dtype=np.float32)
    matrix = centres[spk] + 1.5 * rng.standard_normal((n_emb, dim), dtype=np.float32)
    keys = [f"id{s:05d}-utt{i:06d}" for i, s in enumerate(spk)]
    e = rng.integers(0, n_emb, n_trials)
    target = rng.random(n_trials) < 0.5
    same = spk[e] * per_spk + rng.integers(0, per_spk, n_trials)
    t = np.where(target, np.minimum(same, n_emb - 1), rng.integers(0, n_emb, n_trials))
    labels = (spk[e] == spk[t]).astype(np.int8)
    trials = Trials([keys[i] for i in e], [keys[i] for i in t], labels)
    return keys, matrix, trials


def reference(keys, matrix, trials):
    """Plain numpy: a dict lookup, gather and dot product per trial, then a sort-based EER."""
    index = {k: i for i, k in enumerate(keys)}
    norms = np.linalg.norm(matrix, axis=1)
    scores = np.empty(len(trials))
    for n, (a, b) in enumerate(zip(trials.enroll, trials.test)):
        i, j = index[a], index[b]
        scores[n] = float(matrix[i] @ matrix[j]) / (norms[i] * norms[j])
    lab = trials.labels[np.argsort(scores, kind="stable")]
    fnr = np.cumsum(lab == 1) / (lab == 1).sum()
    fpr = 1 - np.cumsum(lab == 0) / (lab == 0).sum()
    b = int(np.argmax(fnr >= fpr))
    t = (fpr[b - 1] - fnr[b - 1]) / ((fpr[b - 1] - fnr[b - 1]) - (fpr[b] - fnr[b]))
    eer = fnr[b - 1] + t * (fnr[b] - fnr[b - 1])
    return scores, eer, (fnr * 0.01 + fpr * 0.99).min() / 0.01


def ours(keys, matrix, trials):
    table = prepare(EmbeddingTable(keys, matrix))
    e_rows, t_rows = trial_rows(trials, table, table)
    scores = cosine_scores(table.matrix, table.matrix, e_rows, t_rows)
    return scores, compute_metrics(scores, trials.labels)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def bench_cli(keys, matrix, trials) -> None:
    import kaldiio

    from trkd.scoring.evaluate import score_embeddings

    OUT.mkdir(parents=True, exist_ok=True)
    scp = OUT / "xvector.scp"
    dt, _ = timed(lambda: _write_ark(kaldiio, OUT / "xvector.ark", scp, keys, matrix))
    print(f"setup: wrote {len(keys)} embeddings as ark/scp in {dt:.2f} s")
    write_trials(OUT / "trials", trials)
    dt, [res] = timed(lambda: score_embeddings([OUT / "trials"], scp=scp, out_dir=OUT / "scores"))
    print(f"CLI path (read scp + trials, score, write .score, metrics.json, DET PNG): {dt:.2f} s")
    print(f"  {res.line()}")


def _write_ark(kaldiio, ark, scp, keys, matrix):
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for k, v in zip(keys, matrix):
            writer(k, v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=580_000)
    ap.add_argument("--embeddings", type=int, default=145_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--no-cli", action="store_true", help="skip the ark/scp + CLI-path timing")
    args = ap.parse_args()

    keys, matrix, trials = synthetic(args.embeddings, args.trials, args.dim)
    print(f"{len(trials)} trials ({int(trials.labels.sum())} target) over {len(keys)} embeddings of dim {args.dim}")
    t_ours, (s_ours, m) = timed(ours, keys, matrix, trials)
    t_ref, (s_ref, eer_ref, dcf_ref) = timed(reference, keys, matrix, trials)
    print(f"ours (index, gather, cosine, EER + minDCF@0.01,0.05): {t_ours:.2f} s")
    print(f"plain numpy reference (per-trial gather, sort EER):   {t_ref:.2f} s")
    print(f"speed-up: {t_ref / t_ours:.1f}x")
    print(f"agreement: max |score diff| {np.abs(s_ours - s_ref).max():.2e}, "
          f"EER {100 * m['eer']:.4f}% vs {100 * eer_ref:.4f}%, minDCF(0.01) {m['mindcf_p0_01']:.4f} vs {dcf_ref:.4f}")
    if not args.no_cli:
        bench_cli(keys, matrix, trials)


if __name__ == "__main__":
    main()
