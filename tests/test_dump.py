"""`trkd dump-logits`: the chunk grid, the dumped values against the teacher, parts and resume."""

from __future__ import annotations

import shutil

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from distill_helpers import LENGTHS, ok, teacher
from train_helpers import run_cli
from trkd.data.chunks import crop_or_repeat, load_feats, read_spk2id
from trkd.data.kaldi_dir import read_kv
from trkd.distill.datasets import grid_starts
from trkd.distill.teacher import load_teacher
from trkd.errors import InputError


@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    return teacher(tmp_path_factory)


def test_grid_leaves_out_less_than_half_a_chunk_and_pads_short_utterances():
    assert grid_starts(30, 50) == [0]
    assert grid_starts(50, 50) == [0]
    assert grid_starts(60, 50) == [5]            # one chunk, centred
    assert grid_starts(100, 50) == [0, 50]
    assert grid_starts(260, 50) == [0, 52, 105, 157, 210]
    for n in range(50, 400, 7):
        starts = grid_starts(n, 50)
        covered = set().union(*(range(s, s + 50) for s in starts))
        assert max(starts) + 50 <= n and n - len(covered) <= 25
        assert len(starts) * 50 - len(covered) < 50                # overlap less than a chunk


def test_chunks_file_class_map_and_meta(dumped):
    data, exp = dumped
    out = exp / "logits"
    lines = (out / "chunks").read_text().splitlines()
    assert "spk0-utt0-0000000 spk0-utt0 0 30" in lines            # short: one chunk, 30 real frames
    long = [ln for ln in lines if ln.split()[1] == "spk1-utt2"]
    assert [ln.split()[2:] for ln in long] == [[str(s), "50"] for s in grid_starts(LENGTHS["spk1-utt2"], 50)]
    assert read_spk2id(out / "spk2id") == read_spk2id(exp / "spk2id")
    meta = yaml.safe_load((out / "meta.yaml").read_text())
    assert meta["logit_rows"] == ["margin", "cosine"] and meta["num_frms"] == 50 and meta["nj"] == 2
    assert len(read_kv(out / "logits.scp")) == len(lines) == meta["num_chunks"]


def test_dumped_values_are_the_teachers_on_the_normalised_chunk(dumped):
    data, exp = dumped
    out = exp / "logits"
    t = load_teacher(exp)
    scp, logits, emb, levels = (read_kv(p) for p in (data / "feats.scp", out / "logits.scp",
                                                      out / "embedding.scp", out / "levels.scp"))
    spk2id = read_spk2id(exp / "spk2id")
    for cid in ("spk0-utt0-0000000", "spk1-utt2-0000105"):
        utt, start = cid.rsplit("-", 1)
        mat = crop_or_repeat(load_feats(scp[utt]), int(start), 50)
        x = torch.from_numpy(mat - mat.mean(0, keepdims=True)).unsqueeze(0)
        target = torch.tensor([spk2id[utt.split("-")[0]]])
        lv, (m, c) = t.logits(x, target, ("margin", "cosine"))
        got = kaldiio.load_mat(logits[cid])
        assert got.dtype == np.float16 and got.shape == (2, len(spk2id))
        np.testing.assert_allclose(got[0], m[0].numpy(), atol=0.02)   # float16 of s·cos, |x| ≤ 32
        np.testing.assert_allclose(got[1], c[0].numpy(), atol=0.02)
        assert got[0][target] < got[1][target]                        # the margin lowers the target
        np.testing.assert_allclose(kaldiio.load_mat(emb[cid]), lv[-1][0].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(kaldiio.load_mat(levels[cid]), torch.cat(lv, 1)[0].numpy(), rtol=1e-4, atol=1e-5)


def test_finished_parts_are_skipped_and_a_missing_part_is_redone(dumped, tmp_path):
    data, exp = dumped
    model = tmp_path / "teacher"
    shutil.copytree(exp, model)
    out = model / "logits"
    # the copied dump's scps point at the original arks: re-dump into the copy from scratch first
    shutil.rmtree(out)
    ok(run_cli("dump-logits", "--model", model, "--data", data, "--nj", "2", "--logits", "margin"))
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.1.*")}
    final = (out / "logits.scp").read_text()
    (gen,) = [p.name.split(".")[1] for p in out.glob("dump.*.yaml")]
    (out / f"logits.{gen}.2.scp").unlink()
    (out / "logits.scp").unlink()
    result = ok(run_cli("dump-logits", "--model", model, "--data", data, "--nj", "2", "--logits", "margin"))
    assert "logits.scp" in result.output
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.1.*")} == first     # part 1 untouched
    assert (out / "logits.scp").read_text() == final
    assert kaldiio.load_mat(read_kv(out / "logits.scp")["spk0-utt0-0000000"]).shape == (1, 4)
    # other settings: nothing is reused
    ok(run_cli("dump-logits", "--model", model, "--data", data, "--nj", "2", "--logits", "cosine"))
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.1.*")} != first
    assert not list(out.glob(f"*.{gen}.*"))  # the margin dump's parts are gone once replaced


def test_a_data_dir_with_other_speakers_is_a_clear_error(dumped, tmp_path):
    data, exp = dumped
    other = tmp_path / "data"
    shutil.copytree(data, other)
    u2s = (other / "utt2spk").read_text().replace("spk3-utt0 spk3", "spk3-utt0 spk9")
    (other / "utt2spk").write_text(u2s)
    result = run_cli("dump-logits", "--model", exp, "--data", other, "--out", tmp_path / "d")
    assert isinstance(result.exception, InputError)
    assert str(result.exception) == f"{other / 'utt2spk'}: speaker 'spk9' is not in the class map"
    result = run_cli("dump-logits", "--model", exp, "--data", data, "--logits", "both2")
    assert "--logits 'both2': valid choices are both, margin, cosine" in str(result.exception)
