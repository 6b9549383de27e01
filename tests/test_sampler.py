"""Epochs per source utterance (utt2source from `trkd augment`) and chunks that read only their rows."""

from __future__ import annotations

import shutil
from collections import Counter

import kaldiio
import numpy as np
import pytest
import torch

from data_helpers import make_data_dir, make_noise_dirs
from test_resume import _assert_same
from train_helpers import TINY_XVECTOR, make_feats_dir, run_cli, uninterrupted_and_resumed, write_config
from trkd import checkpoint as ckpt
from trkd.data.chunks import ChunkDataset, GlobalBatchSampler, crop_or_repeat, load_feats, read_chunk
from trkd.data.kaldi_dir import read_kv
from trkd.data.sampler import read_utt2source
from trkd.errors import InputError

SPEEDS = (1.0, 0.9, 1.1)
KINDS = ("noise", "reverb")


@pytest.fixture(scope="module")
def aug(tmp_path_factory):
    """The real `trkd augment --speed-perturb` then `trkd fbank` of 4 speakers × 4 utterances."""
    tmp = tmp_path_factory.mktemp("sampler")
    clean = make_data_dir(tmp, n_spk=4, n_utt=4)
    noise, rirs = make_noise_dirs(tmp)
    out = tmp / "aug"
    r = run_cli("augment", clean, out, "--rir-dir", rirs, "--noise-dir", noise, "--copies", ",".join(KINDS),
                "--speed-perturb", "--seed", "1")
    assert r.exit_code == 0, repr(r.exception)
    r = run_cli("fbank", out, "--num-mel-bins", "20", "--seed", "1")
    assert r.exit_code == 0, repr(r.exception)
    return out


def test_augment_records_each_copys_source_speed_and_kind(aug):
    origins = read_utt2source(aug / "utt2source")
    assert set(origins) == set(read_kv(aug / "utt2spk"))
    assert len(origins) == 16 * len(SPEEDS) * (1 + len(KINDS))
    o = origins["sp0.9-spk2-utt3-noise"]
    assert (o.source, o.speed, o.copy) == ("spk2-utt3", 0.9, "noise")
    assert (aug / "utt2source").read_text().splitlines()[:2] == ["sp0.9-spk1-utt1 spk1-utt1 0.9 clean",
                                                                "sp0.9-spk1-utt1-noise spk1-utt1 0.9 noise"]
    assert origins["spk4-utt1"].copy == "clean" and origins["spk4-utt1"].source == "spk4-utt1"


def test_an_epoch_has_one_item_per_source_utterance(aug):
    ds = ChunkDataset(aug, 50, seed=5, aug_prob=0.6)
    origins = read_utt2source(aug / "utt2source")
    assert len(ds) == 16 and ds.num_classes == 4 * len(SPEEDS)  # speed copies stay classes of their own
    for epoch in (1, 2, 3):
        items = ds.epoch_items(epoch)
        assert sorted(origins[ds.utts[i]].source for i, _, _ in items) == sorted({o.source for o in origins.values()})


def test_a_student_epoch_on_the_chunk_grid_has_one_item_per_source_utterance(aug):
    from trkd.distill.datasets import GridDataset

    plain = ChunkDataset(aug, 50)
    ds = GridDataset(aug, 50, 5, plain.spk2id, aug_prob=0.6)
    origins = read_utt2source(aug / "utt2source")
    assert len(ds) == 16 and len(ds.grid) > len(ds.utts)  # the grid (and the dump) cover every copy
    items = ds.epoch_items(2)
    assert sorted(origins[ds.utts[u]].source for u, _, _ in items) == sorted({o.source for o in origins.values()})
    assert all(ds.grid[row][0] == u for u, row, _ in items)  # a chunk of the drawn copy
    assert items == ds.epoch_items(2)
    every_copy = GridDataset(aug, 50, 5, plain.spk2id)
    assert len(every_copy) == len(ds.utts) == 16 * len(SPEEDS) * (1 + len(KINDS))


def test_speed_and_copy_follow_the_probabilities(aug):
    ds = ChunkDataset(aug, 50, seed=11, aug_prob=0.6)
    origins = read_utt2source(aug / "utt2source")
    picked = [origins[ds.utts[i]] for e in range(1, 301) for i, _, _ in ds.epoch_items(e)]
    n = len(picked)  # 4 800 draws: 4 standard deviations below
    speeds = Counter(o.speed for o in picked)
    for s in SPEEDS:
        assert abs(speeds[s] / n - 1 / 3) < 4 * np.sqrt(2 / 9 / n), speeds
    copies = Counter(o.copy for o in picked)
    assert abs(1 - copies["clean"] / n - 0.6) < 4 * np.sqrt(0.24 / n), copies
    assert abs(copies["noise"] - copies["reverb"]) / n < 4 * np.sqrt(0.6 / n), copies
    assert {origins[ds.utts[i]].copy for i, _, _ in ChunkDataset(aug, 50, seed=1, aug_prob=0.0).epoch_items(1)} == {"clean"}
    assert "clean" not in {origins[ds.utts[i]].copy for i, _, _ in ChunkDataset(aug, 50, seed=1, aug_prob=1.0).epoch_items(1)}


def test_order_is_a_function_of_seed_and_epoch(aug):
    a, b = ChunkDataset(aug, 50, seed=5, aug_prob=0.6), ChunkDataset(aug, 50, seed=5, aug_prob=0.6)
    assert a.epoch_items(4) == b.epoch_items(4)
    assert a.epoch_items(4) != a.epoch_items(5)
    assert a.epoch_items(4) != ChunkDataset(aug, 50, seed=6, aug_prob=0.6).epoch_items(4)


def test_ddp_ranks_share_out_the_per_source_epoch(aug):
    ds = ChunkDataset(aug, 50, seed=5, aug_prob=0.6)
    whole = GlobalBatchSampler(ds, 4, 0, 1)
    whole.set_epoch(3)
    ranks = [GlobalBatchSampler(ds, 4, r, 2) for r in range(2)]
    for r in ranks:
        r.set_epoch(3)
    assert len(whole) == 4 and all(len(r) == 4 for r in ranks)
    for batch, a, b in zip(whole, *ranks):
        assert sorted(a + b) == sorted(batch) and not set(a) & set(b)


def test_without_utt2source_or_aug_prob_every_utterance_is_an_item(aug, tmp_path):
    assert len(ChunkDataset(aug, 50, seed=5)) == 16 * len(SPEEDS) * (1 + len(KINDS))
    plain = make_feats_dir(tmp_path / "plain")
    ds = ChunkDataset(plain, 50, seed=5, aug_prob=0.6)
    assert len(ds) == 16 and ds.epoch_items(2) == ChunkDataset(plain, 50, seed=5).epoch_items(2)


def test_bad_utt2source_names_the_file(aug, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(aug, d, ignore=shutil.ignore_patterns("wav", "feats"))
    lines = (aug / "utt2source").read_text().splitlines()
    (d / "utt2source").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(InputError, match=f"^{d / 'utt2source'}: utterance 'sp0.9-spk1-utt1' of feats.scp has no line"):
        ChunkDataset(d, 50, seed=5, aug_prob=0.6)
    (d / "utt2source").write_text("\n".join(lines[:2] + ["x y fast clean"]) + "\n")
    with pytest.raises(InputError, match=f"^{d / 'utt2source'}:3: speed is not a number"):
        ChunkDataset(d, 50, seed=5, aug_prob=0.6)


@pytest.fixture(scope="module")
def runs(aug, tmp_path_factory):
    """`trkd train` on the augmented dir: 2 epochs uninterrupted, and 1 epoch then --resume."""
    tmp = tmp_path_factory.mktemp("resume_sources")
    conf = write_config(tmp / "c.yaml", model=TINY_XVECTOR,
                        data={"num_frms": 50, "batch_size": 4, "spec_aug": True, "num_workers": 2, "aug_prob": 0.6})
    return uninterrupted_and_resumed(conf, aug, tmp)


def test_train_steps_count_sources_and_resume_is_bit_exact(runs):
    full, part = runs
    log = (full / "train.log").read_text()
    assert "epoch 1 iter 4/4 " in log  # 16 sources / batch 4, not 144 copies / 4
    assert "an epoch: one chunk of each of 16 source utterances, out of 144 speed and augmented copies" in log
    a, b = ckpt.load(ckpt.epoch_path(full, 2)), ckpt.load(ckpt.epoch_path(part, 2))
    for key in ("model", "head", "optimizer", "rng", "step", "epoch", "sampler", "history"):
        _assert_same(a[key], b[key], key)
    first = ckpt.load(ckpt.epoch_path(full, 1))
    assert any(not torch.equal(first["model"][k], a["model"][k]) for k in a["model"])


def test_row_seek_read_equals_whole_read_then_crop(aug):
    scp = read_kv(aug / "feats.scp")
    rng = np.random.default_rng(0)
    for utt in sorted(scp)[::7]:
        whole = load_feats(scp[utt])
        for start in {0, whole.shape[0] - 50, int(rng.integers(0, whole.shape[0] - 49))}:
            got = read_chunk(scp[utt], start, 50)
            assert got.dtype == np.float32 and np.array_equal(got, crop_or_repeat(whole, start, 50))
    utt = sorted(scp)[0]
    whole = load_feats(scp[utt])
    longer = whole.shape[0] + 30  # a chunk longer than the utterance repeats it, as before
    assert np.array_equal(read_chunk(scp[utt], 0, longer), crop_or_repeat(whole, 0, longer))
    with pytest.raises(InputError, match=f"lies outside the {whole.shape[0]} frames"):
        read_chunk(scp[utt], whole.shape[0] - 49, 50)


def test_row_seek_reads_only_the_chunks_rows(aug, tmp_path):
    mat = load_feats(read_kv(aug / "feats.scp")["spk1-utt1"])
    ark = tmp_path / "one.ark"
    kaldiio.save_ark(str(ark), {"u": mat})
    rx = f"{ark}:2"
    cut = 2 + 15 + 60 * mat.shape[1] * 4  # header, then rows 0..59: the ark ends mid-matrix
    ark.write_bytes(ark.read_bytes()[:cut])
    with pytest.raises(InputError):
        load_feats(rx)
    assert np.array_equal(read_chunk(rx, 10, 50), mat[10:60])


def test_fbank_compress_writes_cm_arks_that_chunks_read(aug, tmp_path):
    d = tmp_path / "cm"
    d.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        shutil.copy(aug / name, d / name)
    r = run_cli("fbank", d, "--num-mel-bins", "20", "--seed", "1", "--compress")
    assert r.exit_code == 0, repr(r.exception)
    scp = read_kv(d / "feats.scp")
    path, offset = scp["spk1-utt1"].rsplit(":", 1)
    with open(path, "rb") as f:
        f.seek(int(offset))
        assert f.read(5) == b"\0BCM "
    size = lambda root: sum(p.stat().st_size for p in (root / "feats").glob("raw_fbank.*.ark"))  # noqa: E731
    assert size(d) < 0.3 * size(aug)
    plain = load_feats(read_kv(aug / "feats.scp")["spk1-utt1"])
    whole = load_feats(scp["spk1-utt1"])
    assert np.abs(whole - plain).max() < 0.02 * np.ptp(plain)  # same features, 1 byte a value
    assert np.array_equal(read_chunk(scp["spk1-utt1"], 7, 50), whole[7:57])
    ds = ChunkDataset(d, 50, seed=2, aug_prob=0.6)
    u, start, _ = ds.epoch_items(1)[0]
    mat = load_feats(ds.rx[u])[start:start + 50]
    assert np.array_equal(ds[(u, start, 0)]["feats"].numpy(), mat - mat.mean(axis=0, keepdims=True))
