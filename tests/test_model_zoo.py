"""The paper's other families (Res2Net, SimAM-ResNet, CAM++, ReDimNet): shapes, levels, training
and export through the CLI, ONNX parity, sizes against the README table; the exp margin ramp and
both AAM fallbacks at hand-computed points; the recipe's new yamls."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from train_helpers import make_feats_dir, run_cli, write_config
from trkd import checkpoint as ckpt
from trkd.cli import app
from trkd.config import load_config
from trkd.distill.kd_config import load_distill_config
from trkd.errors import InputError
from trkd.models import build_model
from trkd.models.aam import AAMSoftmax
from trkd.models.campplus import segment_means
from trkd.models.complexity import count_params, macs_per_second
from trkd.models.simam import SimAM
from trkd.schedules import margin_at

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "egs" / "voxceleb" / "conf"

# Small instances: every code path (downsampling Res2Net groups, SimAM in basic and bottleneck
# blocks, CAM segments shorter than the input, ReDimNet attention), milliseconds per forward.
TINY = {
    "res2net": dict(name="res2net", depth=34, width=4, scale=2, base_width=32, embed_dim=24),
    "res2net_50": dict(name="res2net", depth=50, width=4, scale=4, base_width=26, embed_dim=24),
    "simam_resnet": dict(name="simam_resnet", depth=34, width=4, embed_dim=24),
    "simam_resnet_50": dict(name="simam_resnet", depth=50, width=2, embed_dim=24),
    "campplus": dict(name="campplus", fcm_channels=4, channels=16, growth=8, bn_size=2, layers=[2, 2, 2],
                     segment=20, embed_dim=24),
    "redimnet": dict(name="redimnet", channels=2, blocks=[1, 1, 1, 1, 1, 1], hidden=16, heads=2,
                     attention_channels=8, embed_dim=24),
}
# level dims by hand: 2 × channels of each stage (ResNet frames: averaged over frequency), then
# the embedding. Res2Net-34 expands by 2, -50 by 4; CAM++: 16 + 2·8 = 32 → 16, 16 + 16 → 16, ...;
# ReDimNet: 2 × its stages' channels 2, 4, 8, 16, 32, 32 (frequency averaged out).
LEVEL_DIMS = {
    "res2net": [16, 32, 64, 128, 24],
    "res2net_50": [32, 64, 128, 256, 24],
    "simam_resnet": [8, 16, 32, 64, 24],
    "simam_resnet_50": [16, 32, 64, 128, 24],
    "campplus": [32, 32, 32, 24],
    "redimnet": [4, 8, 16, 32, 64, 64, 24],
}


@pytest.fixture(params=sorted(TINY))
def tiny(request):
    torch.manual_seed(0)
    model = build_model(TINY[request.param])
    model.key = request.param
    return model


def test_forward_shapes_at_several_lengths(tiny):
    tiny.train()
    assert tiny(torch.randn(2, 200, 80)).shape == (2, 24)
    tiny.eval()
    with torch.no_grad():
        for frames in (20, 57, 101, 537):
            out = tiny(torch.randn(3, frames, 80))
            assert out.shape == (3, 24) and torch.isfinite(out).all(), frames


def test_batch_items_are_independent_in_eval(tiny):
    tiny.eval()
    x = torch.randn(2, 150, 80)
    with torch.no_grad():
        torch.testing.assert_close(tiny(x), torch.cat([tiny(x[:1]), tiny(x[1:])]), rtol=1e-4, atol=1e-5)


def test_levels_have_the_hand_computed_dims_and_end_with_the_embedding(tiny):
    assert tiny.level_dims == LEVEL_DIMS[tiny.key]
    x = torch.randn(2, 120, 80)
    for mode in (True, False):
        tiny.train(mode)
        levels = tiny.forward_levels(x)
        assert [tuple(lv.shape) for lv in levels] == [(2, d) for d in LEVEL_DIMS[tiny.key]]
        torch.testing.assert_close(levels[-1], tiny(x))


def test_every_parameter_gets_a_gradient(tiny):
    tiny.train()
    head = AAMSoftmax(24, 5)
    target = torch.tensor([0, 1, 4])
    logits, _ = head(tiny(torch.randn(3, 100, 80)), target, 0.2)
    torch.nn.functional.cross_entropy(logits, target).backward()
    for name, p in tiny.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_onnx_parity_with_a_dynamic_time_axis(tiny, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from trkd.export import export_onnx

    tiny.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(tiny, tmp_path / "m.onnx", 80)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    for frames in (20, 201, 537):  # CAM++: 537 frames → 269 after the stride, 14 segments of 20
        x = torch.randn(1, frames, 80)
        with torch.no_grad():
            ref = tiny(x).numpy()
        np.testing.assert_allclose(session.run(None, {"feats": x.numpy()})[0], ref, rtol=1e-4, atol=1e-5)


def test_simam_weights_by_the_hand_computed_energy():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0]).view(1, 1, 2, 2)
    # mean 3, squared deviations 4 1 0 9, variance 14 / 3
    d = torch.tensor([4.0, 1.0, 0.0, 9.0]).view(1, 1, 2, 2)
    expected = x * torch.sigmoid(d / (4 * (14 / 3 + 1e-4)) + 0.5)
    torch.testing.assert_close(SimAM()(x), expected)
    assert not list(SimAM().parameters())


def test_cam_segment_means_cover_a_short_last_segment():
    x = torch.arange(7.0).view(1, 1, 7)
    assert segment_means(x, 3).flatten().tolist() == [1, 1, 1, 4, 4, 4, 6]


# ---------------------------------------------------------------- training and export via the CLI

# feat_dim 20 (the helpers' fbank): ReDimNet's strides must divide it
TRAINED = {
    "res2net": dict(TINY["res2net"], embed_dim=16),
    "simam_resnet": dict(TINY["simam_resnet"], embed_dim=16),
    "campplus": dict(TINY["campplus"], embed_dim=16),
    "redimnet": dict(TINY["redimnet"], strides=[1, 2, 2, 1, 1, 1], embed_dim=16),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_feats_dir(tmp_path_factory.mktemp("zoo") / "data")


@pytest.mark.parametrize("key", sorted(TRAINED))
def test_train_with_exp_ramp_then_export_with_parity(key, data, tmp_path):
    conf = write_config(tmp_path / f"{key}.yaml", model=TRAINED[key],
                        head={"margin_start_epoch": 1, "margin_stop_epoch": 3, "margin_ramp": "exp",
                              "margin_fallback": "wespeaker"})
    exp = tmp_path / "exp"
    result = run_cli("train", "--config", conf, "--data", data, "--exp", exp, "--device", "cpu")
    assert result.exit_code == 0, result.output + repr(result.exception)
    state = ckpt.load(ckpt.epoch_path(exp, 2))
    assert state["step"] == 4 and ckpt.saved_epochs(exp) == [1, 2]
    # two steps an epoch: the margins of steps 1 and 3 are at 1/4 and 3/4 of the exp ramp
    g = 1e-3
    assert [h["margin"] for h in state["history"]] == [
        pytest.approx(0.2 * (1 - g ** 0.25) / (1 - g)), pytest.approx(0.2 * (1 - g ** 0.75) / (1 - g))]
    assert all(math.isfinite(h["loss"]) for h in state["history"])
    onnx = tmp_path / "model.onnx"
    result = run_cli("export", "--model", exp, "--out", onnx, "--data", data)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert float(re.search(r"min cosine ([0-9.]+)", result.output).group(1)) >= 0.9999
    assert onnx.is_file()


# ---------------------------------------------------------------- sizes against the README table


def _readme_row(label: str):
    """(parameters in M, MACs / s in G) of the README Models table row starting with `label`."""
    text = (ROOT / "README.md").read_text()
    row = re.search(r"^\| " + re.escape(label) + r".*?\| ([0-9.]+) M \| ([0-9.]+) G \|", text, re.M)
    assert row, label
    return float(row.group(1)), float(row.group(2))


# README label -> (model block, published parameters in M or None); > 5 % off needs a reason there
SIZES = [
    ("Res2Net-34 (", {"name": "res2net", "depth": 34}, None),
    ("Res2Net-50 (", {"name": "res2net", "depth": 50}, None),
    ("Res2Net-101 (", {"name": "res2net", "depth": 101}, None),
    ("SimAM-ResNet34 (", {"name": "simam_resnet", "depth": 34}, None),
    ("SimAM-ResNet50 (", {"name": "simam_resnet", "depth": 50}, None),
    ("SimAM-ResNet100 (", {"name": "simam_resnet", "depth": 100}, 50.2),
    ("CAM++ (", {"name": "campplus"}, 7.18),
    ("ReDimNet-B0 (", {"name": "redimnet", "size": "b0"}, 1.0),
    ("ReDimNet-B1 ", {"name": "redimnet", "size": "b1"}, None),
    ("ReDimNet-B2 ", {"name": "redimnet", "size": "b2"}, 4.7),
    ("ReDimNet-B3 ", {"name": "redimnet", "size": "b3"}, None),
    ("ReDimNet-B4 ", {"name": "redimnet", "size": "b4"}, None),
    ("ReDimNet-B5 ", {"name": "redimnet", "size": "b5"}, 9.2),
    ("ReDimNet-B6 ", {"name": "redimnet", "size": "b6"}, 15.0),
]


@pytest.mark.parametrize("label, cfg, published", SIZES, ids=[s[0].strip(" (") for s in SIZES])
def test_parameter_counts_match_the_readme_table_and_the_papers(label, cfg, published):
    params, _ = _readme_row(label)
    measured = count_params(build_model(cfg)) / 1e6
    assert measured == pytest.approx(params, abs=0.005)
    if published is not None:
        assert measured == pytest.approx(published, rel=0.05)


@pytest.mark.parametrize("label, cfg", [("CAM++ (", {"name": "campplus"}), ("Res2Net-34 (", {"name": "res2net"}),
                                        ("ReDimNet-B2 ", {"name": "redimnet", "size": "b2"})])
def test_macs_match_the_readme_table(label, cfg):
    _, macs = _readme_row(label)
    measured = macs_per_second(build_model(cfg)) / 1e9
    assert measured == pytest.approx(macs, abs=0.005)
    if label.startswith("CAM++"):  # the paper's 1.72 G is a MAC count over 3 s
        assert 3 * measured == pytest.approx(1.72, rel=0.05)


# ---------------------------------------------------------------- margin ramp and fallbacks


def test_exp_margin_ramp_at_hand_computed_points():
    # 10 iterations an epoch, ramp over epochs 2-4: iterations 10 to 30
    at = lambda it, ramp: margin_at(it, 10, 0.2, 2, 4, ramp)  # noqa: E731
    assert at(9, "exp") == at(9, "linear") == 0.0
    # 1 − 10^(−3/4) = 0.8222, 1 − 10^(−3/2) = 0.9684, over 1 − 10^(−3) = 0.999
    assert at(15, "exp") == pytest.approx(0.2 * 0.8221720589 / 0.999, abs=1e-9)
    assert at(20, "exp") == pytest.approx(0.2 * 0.9683772234 / 0.999, abs=1e-9)
    assert at(15, "linear") == pytest.approx(0.05)
    assert at(15, "exp") - at(15, "linear") == pytest.approx(0.1146, abs=1e-4)
    assert at(30, "exp") == at(30, "linear") == 0.2
    ramp = [at(i, "exp") for i in range(10, 31)]
    assert all(b > a for a, b in zip(ramp, ramp[1:]))
    with pytest.raises(ValueError, match="unknown margin ramp 'cosine'; valid: linear, exp"):
        margin_at(15, 10, ramp="cosine")


def _target_logit(theta: float, margin: float, fallback: str) -> float:
    head = AAMSoftmax(2, 1, fallback=fallback)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0]]))
    emb = torch.tensor([[math.cos(theta), math.sin(theta)]], dtype=torch.float64).float()
    return head(emb, torch.zeros(1, dtype=torch.long), margin)[0][0, 0].item()


def test_both_fallbacks_at_hand_computed_points():
    # θ = 3.1 > π − 0.3: cos 3.1 = −0.999135, 0.3·sin 0.3 = 0.088656, 1 − cos 0.3 = 0.044664
    assert _target_logit(3.1, 0.3, "arcface") == pytest.approx(32 * (-0.9991351503 - 0.0886560620), abs=1e-3)
    assert _target_logit(3.1, 0.3, "wespeaker") == pytest.approx(32 * (-0.9991351503 - 0.0446635112), abs=1e-3)
    # θ = 1 + 0.3 < π: both are cos(θ + m)
    for fallback in ("arcface", "wespeaker"):
        assert _target_logit(1.0, 0.3, fallback) == pytest.approx(32 * math.cos(1.3), abs=1e-3)
    # at θ = π − m the wespeaker fallback meets cos(θ + m) = −1; arcface's jumps by −0.3·sin 0.3 + 0.0447
    edge = math.pi - 0.3 + 1e-4
    assert _target_logit(edge, 0.3, "wespeaker") == pytest.approx(-32.0, abs=1e-2)
    assert _target_logit(edge, 0.3, "arcface") == pytest.approx(32 * (-1 - 0.0886560620 + 0.0446635112), abs=1e-2)
    with pytest.raises(ValueError, match="unknown margin fallback 'insight'"):
        AAMSoftmax(2, 1, fallback="insight")


def test_a_bad_ramp_or_fallback_in_a_config_names_file_and_line(tmp_path):
    for key in ("margin_ramp", "margin_fallback"):
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(f"model:\n  name: campplus\nhead:\n  scale: 32.0\n  {key}: cosine\n")
        result = CliRunner().invoke(app, ["info", "--config", str(cfg)])
        assert isinstance(result.exception, InputError)
        assert str(result.exception).startswith(f"{cfg}:5: head.{key}: 'cosine' is not one of ")


# ---------------------------------------------------------------- egs/voxceleb/conf

PAIRS = [("simam_resnet50", "res2net34"), ("redimnet_b5", "redimnet_b2"), ("ecapa_c1024", "campplus")]


@pytest.mark.parametrize("teacher, student", PAIRS)
def test_recipe_confs_of_the_new_pairs(teacher, student):
    t, s = load_config(CONF / f"{teacher}.yaml"), load_distill_config(CONF / f"{student}.yaml")
    for cfg in (s,) if teacher == "ecapa_c1024" else (t, s):
        h = cfg.head
        assert (h.scale, h.margin, h.margin_start_epoch, h.margin_stop_epoch) == (32, 0.2, 20, 40)
        assert (h.margin_ramp, h.margin_fallback) == ("exp", "arcface")
        assert (cfg.data.num_frms, cfg.data.batch_size, cfg.optim.lr, cfg.train.epochs) == (200, 512, 0.1, 150)
    kd = s.kd
    assert (kd.trkd.temperature, kd.trkd.lambda_f, kd.dkd.beta) == (4, 8, 8)
    assert count_params(build_model(t.model)) > count_params(build_model(s.model))


def test_info_prints_the_size_of_a_recipe_conf():
    result = CliRunner().invoke(app, ["info", "--config", str(CONF / "redimnet_b2.yaml")])
    assert result.exit_code == 0, result.output
    params, macs = _readme_row("ReDimNet-B2 ")
    lines = result.output.splitlines()
    assert lines[0] == "model: name=redimnet, size=b2, embed_dim=192"
    assert float(re.fullmatch(r"parameters: ([0-9.]+) M", lines[1]).group(1)) == pytest.approx(params, abs=0.005)
    assert lines[2] == f"MACs: {macs:.2f} G per second of audio"
