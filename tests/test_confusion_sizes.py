"""`trkd confusion-sizes`: |F(τ)| over a real teacher dump, full and top-K, against a plain sort."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from distill_helpers import ok, teacher
from train_helpers import run_cli
from trkd.data.chunks import read_spk2id
from trkd.data.kaldi_dir import read_kv
from trkd.distill.datasets import read_chunks

TAUS = (0.9, 0.5, 0.2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    data, exp = teacher(tmp_path_factory)
    top1 = tmp_path_factory.mktemp("cs") / "top1"
    ok(run_cli("dump-logits", "--model", exp, "--data", data, "--out", top1, "--topk", "1", "--device", "cpu"))
    return data, exp, top1


def reference_sizes(dump, data, tau: float, temperature: float = 4.0) -> np.ndarray:
    """(|F|, the conditional mass of F) per chunk by the definition: non-targets sorted by p
    descending (ties: lower index first), F the prefix whose exclusive running conditional mass is < τ."""
    utt2spk, spk2id = read_kv(data / "utt2spk"), read_spk2id(dump / "spk2id")
    rows = read_kv(dump / "logits.scp")
    sizes, shares = [], []
    for cid, utt, _ in read_chunks(dump / "chunks"):
        z = kaldiio.load_mat(rows[cid]).astype(np.float64)[0] / temperature
        y = spk2id[utt2spk[utt]]
        p = np.exp(z - z.max())
        p[y] = 0.0
        p /= p.sum()
        order = sorted((i for i in range(len(p)) if i != y), key=lambda i: (-p[i], i))
        before, size = 0.0, 0
        for i in order:
            if before >= tau:
                break
            size, before = size + 1, before + p[i]
        sizes.append(size)
        shares.append(before)
    return np.array(sizes, dtype=np.float64), np.array(shares)


def test_full_dump_sizes_match_the_definition(ctx, tmp_path):
    data, exp, _ = ctx
    out = tmp_path / "sizes.jsonl"
    res = ok(run_cli("confusion-sizes", exp / "logits", "--taus", " ".join(map(str, TAUS)), "--out", out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["tau"] for r in records] == list(TAUS)
    for r in records:
        ref, share = reference_sizes(exp / "logits", data, r["tau"])
        assert r["chunks"] == len(ref) and r["classes"] == 4 and r["topk"] == 0 and r["cut"] == 0.0
        assert r["f_share"] == pytest.approx(share.mean(), rel=1e-6)
        assert r["mean"] == pytest.approx(ref.mean()) and r["std"] == pytest.approx(ref.std())
        assert (r["min"], r["median"], r["max"]) == (ref.min(), np.median(ref), ref.max())
    assert res.output.splitlines()[0].startswith(f"|F(τ)| over {records[0]['chunks']} chunks, C = 4, T = 4")
    # F shrinks as τ falls, and at τ = 0.9 of 3 non-targets it is not a single class everywhere
    assert records[0]["mean"] > records[-1]["mean"] >= 1.0 and records[0]["max"] >= 2


def test_top_k_dump_cuts_the_rows_whose_f_does_not_fit(ctx):
    data, exp, top1 = ctx
    res = ok(run_cli("confusion-sizes", top1, "--taus", "0.9 0.2"))
    lines = res.output.splitlines()
    assert lines[0].endswith("top-1 dump") and lines[1].split()[-1] == "cut"
    for line, tau in zip(lines[2:], (0.9, 0.2)):
        ref, _ = reference_sizes(exp / "logits", data, tau)
        fields = line.split()
        # |F| is cut to K = 1 wherever the full F holds more: every row's size is 1
        assert float(fields[1]) == 1.0 and fields[-1] == f"{100 * (ref > 1).mean():.1f}%"
    assert (reference_sizes(exp / "logits", data, 0.9)[0] > 1).any()   # so some rows were cut


def test_bad_taus_and_a_missing_dump_are_one_line(ctx, tmp_path):
    _, exp, _ = ctx
    trkd = str(ROOT / "tools" / "venv" / "bin" / "trkd")
    for args, line in (([str(exp / "logits"), "--taus", "0.5 1.0"], "--taus '0.5 1.0': every τ must lie in (0, 1)"),
                       ([str(tmp_path)], f"{tmp_path / 'logits.scp'}: no finished teacher dump here "
                                         "(run `trkd dump-logits`)")):
        res = subprocess.run([trkd, "confusion-sizes", *args], capture_output=True, text=True)
        assert res.returncode == 1 and res.stdout == "" and res.stderr == f"trkd: error: {line}\n"
