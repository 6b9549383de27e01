"""`trkd dump-logits --topk K`: the teacher known at its top K, on disk and through `trkd distill`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from distill_helpers import distill, no_plots, ok, student_config, teacher
from test_distill import _history
from train_helpers import run_cli
from trkd.data.kaldi_dir import read_kv
from trkd.data.tables import load_matrix
from trkd.distill.datasets import GridDataset
from trkd.distill.teacher import load_teacher
from trkd.losses.sparse import from_dense, unpack


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    data, exp = teacher(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("sparse")
    dumps = {}
    for k in (1, 3):   # 4 classes: K = 3 leaves no rest, K = 1 cuts most confusion sets
        dumps[k] = tmp / f"top{k}"
        ok(run_cli("dump-logits", "--model", exp, "--data", data, "--out", dumps[k], "--topk", str(k),
                   "--device", "cpu"))
    with no_plots():
        yield data, exp, dumps, tmp


def test_the_rows_are_the_teachers_top_k_and_the_rests_mass(ctx):
    data, exp, dumps, _ = ctx
    meta = yaml.safe_load((dumps[1] / "meta.yaml").read_text())
    assert (meta["topk"], meta["temperatures"], meta["tables"], meta["logit_rows"]) == (1, [1.0, 4.0], ["logits"], ["margin"])
    assert not (dumps[1] / "embedding.scp").exists()   # only what the logit methods read
    t = load_teacher(exp)
    ds = GridDataset(data, t.num_frms, 0, t.spk2id, t.spk2id_path)
    scp = read_kv(dumps[1] / "logits.scp")
    rows = [0, 5, len(ds.grid) - 1]
    feats = torch.from_numpy(np.stack([ds.chunk_feats(r) for r in rows]))
    target = torch.from_numpy(ds.targets[[ds.grid[r][0] for r in rows]])
    _, (logits,) = t.logits(feats, target, ("margin",))
    want = from_dense(logits, target, 1, (1.0, 4.0))
    got = unpack(torch.from_numpy(np.stack([load_matrix(scp[ds.chunk_ids()[r]], "x")[0] for r in rows])),
                 target, 1, (1.0, 4.0), 4)
    assert torch.equal(got.index, want.index)
    for a, b in ((got.values, want.values), (got.rest_lse, want.rest_lse), (got.target_logit, want.target_logit)):
        assert torch.allclose(a.double(), b, rtol=1e-5, atol=1e-5)


def test_a_top_k_row_is_smaller_than_a_full_row_at_many_classes(ctx):
    from trkd.losses.sparse import row_length
    from trkd.plan.sizes import entry_bytes

    full = entry_bytes(30, (1, 17982), np.float16, write_function="numpy")
    top = entry_bytes(30, (1, row_length(256, (1.0, 4.0))), write_function="numpy")
    assert top < full / 15


def test_trkd_from_a_top_that_holds_every_class_matches_the_online_teacher(ctx):
    data, exp, dumps, tmp = ctx
    conf = student_config(tmp / "s.yaml", epochs=1, kd={"trkd": {"start_epoch": 1, "stop_epoch": 2}})
    ok(distill(exp, conf, data, tmp / "from_top", "trkd", "--dump", dumps[3]))
    ok(distill(exp, conf, data, tmp / "online", "trkd", "--online"))
    a, b = _history(tmp / "from_top")[0], _history(tmp / "online")[0]
    for key in ("aam", "tm", "cf", "f_size", "loss"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    assert a["cut"] == 0.0


def test_a_too_small_top_is_counted_as_cut_rows_in_the_log(ctx):
    data, exp, dumps, tmp = ctx
    conf = student_config(tmp / "s1.yaml", epochs=2, kd={"trkd": {"tau0": 0.999, "tau1": 0.999}})
    ok(distill(exp, conf, data, tmp / "cut", "trkd", "--dump", dumps[1]))
    hist = _history(tmp / "cut")
    assert all(0 < rec["cut"] <= 1 and rec["f_size"] <= 1 for rec in hist)
    assert " cut " in [ln for ln in (tmp / "cut" / "train.log").read_text().splitlines() if " iter " in ln][-1]


def test_a_method_needing_embeddings_from_a_logits_only_dump_is_one_line(ctx):
    data, exp, dumps, tmp = ctx
    r = distill(exp, student_config(tmp / "e.yaml", epochs=1), data, tmp / "emb", "emb", "--dump", dumps[3])
    assert r.exit_code != 0
    assert "holds no embedding" in str(r.exception) and "--embeddings" in str(r.exception)


def test_trkd_from_a_top_k_dump_trains_in_bf16(ctx):
    """The VoxCeleb recipe's GPU default: a top-K dump and a bf16 forward (the teacher source's
    output, holding the packed rows' unpacked form, is returned in float32 whole)."""
    data, exp, dumps, tmp = ctx
    conf = student_config(tmp / "s2.yaml", epochs=1, kd={"trkd": {"start_epoch": 1, "stop_epoch": 2}})
    ok(distill(exp, conf, data, tmp / "top_bf16", "trkd", "--dump", dumps[3], "--precision", "bf16"))
    rec = _history(tmp / "top_bf16")[0]
    assert {"tm", "cf", "f_size"} <= set(rec) and all(np.isfinite(v) for v in rec.values()) and rec["cut"] == 0.0
