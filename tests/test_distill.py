"""`trkd distill`: every method trains, the dumped and online teachers agree, the equivalences of
the losses hold through training, resume is bit-exact, and bad inputs are clear errors."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
import yaml

from distill_helpers import distill, no_plots, ok, student_config, teacher
from test_resume import _assert_same
from train_helpers import run_cli
from trkd import checkpoint as ckpt
from trkd.errors import InputError
from trkd.train_metrics import metrics_path, read_metrics

METHODS = ["none", "kd", "dkd", "enskd", "trkd", "emb", "mlkd", "imlkd", "trkd+emb"]
PARTS = {"none": {"aam"}, "kd": {"kl"}, "dkd": {"tckd", "nckd"}, "enskd": {"tckd", "nckd"},
         "trkd": {"tm", "cf", "bg", "tau", "f_size"}, "emb": {"emb"}, "mlkd": {"mlkd"},
         "imlkd": {"iml_instance", "iml_class", "iml_batch"}, "trkd+emb": {"tm", "cf", "tau", "f_size", "emb"}}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    data, exp = teacher(tmp_path_factory)
    with no_plots():
        yield data, exp, tmp_path_factory.mktemp("students")


def _history(exp):
    return ckpt.load(ckpt.epoch_path(exp, ckpt.saved_epochs(exp)[-1]))["history"]


def _weights(exp, epoch):
    state = ckpt.load(ckpt.epoch_path(exp, epoch))
    return {**state["model"], **{f"head.{k}": v for k, v in state["head"].items()}}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_with_finite_decreasing_loss(ctx, method):
    data, teacher_dir, tmp = ctx
    exp = tmp / method
    ok(distill(teacher_dir, student_config(tmp / f"{method}.yaml", epochs=4), data, exp, method))
    hist = _history(exp)
    assert len(hist) == 4 and all(math.isfinite(v) for rec in hist for v in rec.values())
    assert PARTS[method] <= set(hist[-1])
    assert hist[-1]["loss"] < hist[0]["loss"], [r["loss"] for r in hist]
    resolved = yaml.safe_load((exp / "config.yaml").read_text())
    assert resolved["kd"]["method"] == method and resolved["kd"]["teacher"] == str(teacher_dir.resolve())
    assert resolved["kd"]["online"] is (method == "imlkd")   # a dump exists; imlkd needs the live teacher
    assert (exp / "spk2id").read_text() == (teacher_dir / "spk2id").read_text()


def test_tau_follows_its_curriculum_and_the_confusion_set_shrinks(ctx):
    data, teacher_dir, tmp = ctx
    hist = _history(tmp / "trkd")  # from the parametrised run: τ 1 → 0.3 over epochs 2–3
    assert hist[0]["tau"] == 1.0 and hist[0]["f_size"] == 3.0
    assert hist[2]["tau"] == pytest.approx(0.3) and hist[2]["f_size"] < 3.0
    # one τ per progress line, the interval mean that metrics.jsonl holds (log_interval 1: the step's)
    lines = [ln for ln in (tmp / "trkd" / "train.log").read_text().splitlines() if " iter " in ln]
    assert len(lines) == len(read_metrics(metrics_path(tmp / "trkd"))) and all(ln.count("tau") == 1 for ln in lines)
    assert [ln.split(" tau ")[1][:6] for ln in lines if " epoch 3 iter 3/3 lr " in ln] == ["0.3000"]


def test_dumped_and_online_teacher_give_the_same_loss(ctx):
    data, teacher_dir, tmp = ctx
    # τ falls from 1 within the epoch, so the partition is exercised too
    conf = student_config(tmp / "parity.yaml", epochs=1, kd={"trkd": {"start_epoch": 1, "stop_epoch": 2}})
    ok(distill(teacher_dir, conf, data, tmp / "dumped", "trkd+emb"))
    ok(distill(teacher_dir, conf, data, tmp / "online", "trkd+emb", "--online"))
    a, b = _history(tmp / "dumped")[0], _history(tmp / "online")[0]
    # float16 dumped logits: the background term is a KL over the teacher's whole tail, where
    # float16 rounds most (about 1 %); the rest drift through it by a few 1e-3 (2e-3 without it)
    for key in ("aam", "tm", "cf", "emb", "f_size", "loss"):
        assert a[key] == pytest.approx(b[key], rel=5e-3, abs=1e-4), key
    assert a["bg"] == pytest.approx(b["bg"], rel=2e-2)
    assert yaml.safe_load((tmp / "online" / "config.yaml").read_text())["kd"]["online"] is True


def test_trkd_at_tau_one_trains_like_dkd(ctx):
    data, teacher_dir, tmp = ctx
    fixed = {"trkd": {"tau0": 1.0, "tau1": 1.0, "lambda_m": 2.0, "lambda_f": 5.0}, "dkd": {"alpha": 2.0, "beta": 5.0}}
    conf = student_config(tmp / "eq.yaml", epochs=2, kd=fixed)
    ok(distill(teacher_dir, conf, data, tmp / "eq_trkd", "trkd"))
    ok(distill(teacher_dir, conf, data, tmp / "eq_dkd", "dkd"))
    a, b = _weights(tmp / "eq_trkd", 2), _weights(tmp / "eq_dkd", 2)
    start = _weights(tmp / "eq_dkd", 1)
    assert any(not torch.equal(b[k], start[k]) for k in b)
    # Two codes of one loss (DKD's formula, TRKD's fast path) round differently in float32; six
    # SGD steps keep the weights within a few float32 rounding errors of each other.
    moved = max(float((b[k].float() - start[k].float()).abs().max()) for k in b)
    gap = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert gap < 1e-4 * moved, (gap, moved)


def test_composed_terms_tm_cf_bg_train_exactly_like_the_trkd_preset(ctx):
    data, teacher_dir, tmp = ctx
    ok(distill(teacher_dir, student_config(tmp / "p.yaml", epochs=2), data, tmp / "preset", "trkd"))
    ok(distill(teacher_dir, student_config(tmp / "p.yaml", epochs=2), data, tmp / "terms", "trkd",
               "--set", "kd.trkd.terms={tm: 1, cf: 8, bg: 8}"))
    a, b = _weights(tmp / "preset", 2), _weights(tmp / "terms", 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # an ablation row of the paper, as a config: TM + NCKD
    ok(distill(teacher_dir, student_config(tmp / "p.yaml", epochs=2), data, tmp / "tm_nckd", "trkd",
               "--set", "kd.trkd.terms={tm: 1, nckd: 8}", "--quick"))
    assert {"tm", "nckd", "tau"} <= set(_history(tmp / "tm_nckd")[-1])
    resolved = yaml.safe_load((tmp / "tm_nckd" / "config.yaml").read_text())
    assert resolved["kd"]["trkd"]["terms"] == {"tm": 1, "nckd": 8} and resolved["kd"]["trkd"]["lambda_m"] is None
    assert (resolved["kd"]["trkd"]["start_epoch"], resolved["kd"]["trkd"]["stop_epoch"]) == (1, 2)   # --quick
    assert "--set 'kd.trkd.terms={tm: 1, nckd: 8}'" in resolved["command"]
    assert not all(torch.equal(a[k], v) for k, v in _weights(tmp / "tm_nckd", 2).items())


def test_resumed_distillation_equals_uninterrupted_and_extract_reads_the_student(ctx):
    data, teacher_dir, tmp = ctx
    conf = student_config(tmp / "r.yaml", epochs=2, data={"spec_aug": True, "spec_aug_prob": 0.5})
    full, part = tmp / "full", tmp / "part"
    ok(distill(teacher_dir, conf, data, full, "trkd+emb"))
    shutil.copytree(full, part)
    for name in ("model_2.pt", "avg_model.pt"):
        (part / "models" / name).unlink()
    ok(distill(teacher_dir, conf, data, part, "trkd+emb", "--resume"))
    a, b = ckpt.load(ckpt.epoch_path(full, 2)), ckpt.load(ckpt.epoch_path(part, 2))
    for key in ("model", "head", "extras", "optimizer", "rng", "step", "history"):
        _assert_same(a[key], b[key], key)
    assert set(a["extras"]) == {"emb_proj"}                 # student 12-dim, teacher 16-dim
    ok(run_cli("extract", "--model", full, "--data", data, "--out", tmp / "xv", "--device", "cpu"))
    assert len((tmp / "xv" / "xvector.scp").read_text().splitlines()) == 24


def test_class_set_mismatch_is_a_clear_error(ctx, tmp_path):
    data, teacher_dir, tmp = ctx
    fewer = tmp_path / "data"
    shutil.copytree(data, fewer)
    for name in ("utt2spk", "feats.scp", "utt2num_frames"):
        lines = (fewer / name).read_text().splitlines()
        (fewer / name).write_text("".join(f"{ln}\n" for ln in lines if not ln.startswith("spk3-")))
    r = distill(teacher_dir, student_config(tmp_path / "c.yaml"), fewer, tmp_path / "exp", "kd")
    assert isinstance(r.exception, InputError)
    assert str(r.exception) == (f"{teacher_dir / 'spk2id'}: class 'spk3' of the teacher has no utterance in "
                                f"{fewer / 'utt2spk'} (1 such classes): the student's classes must be the teacher's")


def test_unknown_kd_key_and_bad_methods_are_errors_naming_them(ctx, tmp_path):
    data, teacher_dir, _ = ctx
    conf = student_config(tmp_path / "c.yaml", kd={"trkd": {"tau_0": 0.5}})
    r = distill(teacher_dir, conf, data, tmp_path / "e", "trkd")
    assert isinstance(r.exception, InputError)
    line = next(i for i, ln in enumerate(conf.read_text().splitlines(), 1) if "tau_0" in ln)
    assert str(r.exception).startswith(f"{conf}:{line}: unknown key 'kd.trkd.tau_0' (valid: ")
    conf = student_config(tmp_path / "c2.yaml")
    r = distill(teacher_dir, conf, data, tmp_path / "e", "trkd", "--set", "kd.dkd.lambda_f=2")
    assert "unknown key 'kd.dkd.lambda_f'" in str(r.exception)
    r = distill(teacher_dir, conf, data, tmp_path / "e", "dkd", "--set", "kd.dkd.terms={cf: 8}")
    assert "unknown key 'kd.dkd.terms' (valid: alpha, beta, temperature)" in str(r.exception)   # terms: TRKD's
    r = distill(teacher_dir, conf, data, tmp_path / "e", "fitnet")
    assert "unknown method 'fitnet' (valid: none, kd, dkd, enskd, trkd, imlkd, emb, mlkd" in str(r.exception)
    r = distill(teacher_dir, conf, data, tmp_path / "e", "trkd+dkd")
    assert "'+' joins one logit-level method" in str(r.exception)
