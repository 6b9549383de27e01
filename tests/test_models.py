"""Model zoo: shapes on variable lengths, levels, gradients, registry errors, AAM head, published
sizes, MACs by hand, ONNX parity, and `trkd info`."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from trkd.cli import app
from trkd.errors import InputError
from trkd.models import MODELS, build_model
from trkd.models.aam import AAMSoftmax
from trkd.models.complexity import count_params, macs_per_second

# Small instances of each architecture: every code path, milliseconds per forward.
TINY = {
    "xvector": dict(name="xvector", channels=32, stats_channels=64, segment_dim=48, embed_dim=24),
    "ecapa": dict(name="ecapa", channels=32, mfa_channels=96, se_channels=16, attention_channels=16, embed_dim=24),
    "resnet": dict(name="resnet", depth=10, width=4, embed_dim=24),
    "resnet_bottleneck": dict(name="resnet", depth=50, width=2, embed_dim=24),
    "mobilenetv2": dict(name="mobilenetv2", width_mult=0.25, last_channels=64, embed_dim=24),
}


@pytest.fixture(params=sorted(TINY))
def tiny(request):
    torch.manual_seed(0)
    return build_model(TINY[request.param])


def test_registry_lists_every_architecture():
    assert set(MODELS) == {"xvector", "ecapa", "resnet", "mobilenetv2", "res2net", "simam_resnet", "campplus",
                           "redimnet"}


def test_forward_shapes_and_variable_length(tiny):
    tiny.train()
    out = tiny(torch.randn(2, 200, 80))
    assert out.shape == (2, 24) and torch.isfinite(out).all()
    tiny.eval()
    with torch.no_grad():
        for frames in (20, 537):
            out = tiny(torch.randn(1, frames, 80))
            assert out.shape == (1, tiny.embed_dim) and torch.isfinite(out).all()


def test_batch_items_are_independent_in_eval(tiny):
    tiny.eval()
    x = torch.randn(2, 150, 80)
    with torch.no_grad():
        both = tiny(x)
        single = torch.cat([tiny(x[:1]), tiny(x[1:])])
    torch.testing.assert_close(both, single, rtol=1e-4, atol=1e-5)


def test_levels_match_dims_and_end_with_the_embedding(tiny):
    x = torch.randn(2, 120, 80)
    for mode in (True, False):
        tiny.train(mode)
        levels = tiny.forward_levels(x)
        assert [lv.shape for lv in levels] == [(2, d) for d in tiny.level_dims]
        assert tiny.level_dims[-1] == tiny.embed_dim
        torch.testing.assert_close(levels[-1], tiny(x))


def test_every_parameter_gets_a_gradient(tiny):
    tiny.train()
    head = AAMSoftmax(tiny.embed_dim, 5)
    logits, _ = head(tiny(torch.randn(3, 100, 80)), torch.tensor([0, 1, 4]), 0.2)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 4])).backward()
    for name, p in list(tiny.named_parameters()) + list(head.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_defaults_and_one_paper_size_forward():
    assert {n: build_model({"name": n}).embed_dim for n in MODELS} == {
        "xvector": 512, "ecapa": 192, "resnet": 256, "mobilenetv2": 256, "res2net": 256, "simam_resnet": 256,
        "campplus": 192, "redimnet": 192}
    model = build_model({"name": "ecapa", "channels": 512}).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 60, 80)).shape == (1, 192)


def test_unknown_name_and_key_are_errors_listing_choices():
    with pytest.raises(ValueError, match=r"unknown model name 'ecapa2'; valid names: xvector, ecapa, resnet, mobilenetv2"):
        build_model({"name": "ecapa2"})
    with pytest.raises(ValueError, match=r"unknown key 'chanels' for model 'ecapa'; accepted keys: name, feat_dim, embed_dim, channels"):
        build_model({"name": "ecapa", "chanels": 512})
    with pytest.raises(ValueError, match=r"depth 35 not supported"):
        build_model({"name": "resnet", "depth": 35})
    cfg = {"name": "ecapa", "channels": 64}
    build_model(cfg)
    assert cfg == {"name": "ecapa", "channels": 64}


@pytest.mark.parametrize("cfg, millions", [
    ({"name": "ecapa", "channels": 1024}, 14.7),   # Desplanques et al. 2020, Table 1
    ({"name": "ecapa", "channels": 512}, 6.2),     # idem
    ({"name": "resnet", "depth": 34}, 6.63),       # ResNet-34, 32 base channels, as in VoxCeleb systems
    ({"name": "mobilenetv2"}, 2.2 + 2 * 1280 * 256 / 1e6),  # ImageNet body 2.2 M (Sandler et al.) + our FC
])
def test_published_parameter_counts(cfg, millions):
    assert count_params(build_model(cfg)) / 1e6 == pytest.approx(millions, rel=0.03)


def test_macs_by_hand_for_the_xvector():
    model = build_model({"name": "xvector"})
    # 100 frames shrink to 96, 92, 86, 86, 86 through contexts 5, 3 (d=2), 3 (d=3), 1, 1.
    expected = (96 * 80 * 5 * 512 + 92 * 512 * 3 * 512 + 86 * 512 * 3 * 512 + 86 * 512 * 512
                + 86 * 512 * 1500 + 3000 * 512 + 512 * 512)
    assert macs_per_second(model) == expected
    assert model.training  # the count leaves the mode as it found it


def test_macs_of_paper_models_are_in_the_published_range():
    # ECAPA C=1024 and ResNet-34: about 2.65 and 4.55 GFLOPs per second of audio (WeSpeaker's tables).
    assert macs_per_second(build_model({"name": "ecapa", "channels": 1024})) / 1e9 == pytest.approx(1.325, rel=0.05)
    assert macs_per_second(build_model({"name": "resnet", "depth": 34})) / 1e9 == pytest.approx(2.275, rel=0.05)


def test_onnx_export_with_dynamic_time_axis(tiny, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    tiny.eval()
    path = tmp_path / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tiny, (torch.randn(1, 200, 80),), path, input_names=["feats"], output_names=["emb"],
                          dynamic_axes={"feats": {1: "frames"}}, dynamo=False)
    session = ort.InferenceSession(str(path))
    for frames in (20, 537):
        x = torch.randn(1, frames, 80)
        with torch.no_grad():
            ref = tiny(x).numpy()
        np.testing.assert_allclose(session.run(None, {"feats": x.numpy()})[0], ref, rtol=1e-4, atol=1e-5)


def test_onnx_export_refuses_a_file_object_instead_of_writing_a_file_named_after_it(tiny, tmp_path, monkeypatch):
    import io

    from trkd.export import export_onnx
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError):
        export_onnx(tiny, io.BytesIO(), 80)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- AAM-softmax


def _angles_head(num_classes=6, dim=16, scale=32.0, easy_margin=False):
    torch.manual_seed(1)
    return AAMSoftmax(dim, num_classes, scale=scale, easy_margin=easy_margin)


def test_aam_margin_zero_is_the_cosine_classifier():
    head = _angles_head()
    emb, target = torch.randn(8, 16), torch.randint(0, 6, (8,))
    margin_logits, cosine_logits = head(emb, target, 0.0)
    assert torch.equal(margin_logits, cosine_logits)
    cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(head.weight, dim=1).T
    torch.testing.assert_close(cosine_logits, 32.0 * cos)


def test_aam_margin_moves_only_the_target_angle():
    head = _angles_head()
    emb, target = torch.randn(8, 16), torch.randint(0, 6, (8,))
    m = 0.2
    margin_logits, cosine_logits = head(emb, target, m)
    is_target = torch.nn.functional.one_hot(target, 6).bool()
    assert torch.equal(margin_logits[~is_target], cosine_logits[~is_target])
    theta = torch.acos((cosine_logits[is_target] / 32.0).double())
    assert (theta + m < math.pi).all()
    torch.testing.assert_close(margin_logits[is_target].double(), 32.0 * torch.cos(theta + m), rtol=1e-5, atol=1e-4)
    assert (margin_logits[is_target] < cosine_logits[is_target]).all()
    assert cosine_logits.abs().max() <= 32.0 and margin_logits.abs().max() <= 32.0


def test_aam_target_logit_decreases_monotonically_with_the_angle():
    head = AAMSoftmax(2, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0]]))
    theta = torch.linspace(0.0, math.pi, 2001)
    emb = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    logits, _ = head(emb, torch.zeros(2001, dtype=torch.long), 0.3)
    assert (logits[1:, 0] < logits[:-1, 0]).all()
    # beyond θ = π − m the ArcFace fallback s·(cos θ − m·sin m) applies
    assert logits[-1, 0].item() == pytest.approx(32.0 * (-1.0 - 0.3 * math.sin(0.3)), abs=1e-4)


def test_aam_easy_margin_spares_obtuse_angles():
    head = AAMSoftmax(2, 1, easy_margin=True)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0]]))
    emb = torch.tensor([[math.cos(2.0), math.sin(2.0)], [math.cos(0.5), math.sin(0.5)]])
    logits, cosine = head(emb, torch.zeros(2, dtype=torch.long), 0.2)
    assert logits[0, 0] == cosine[0, 0]
    assert logits[1, 0].item() == pytest.approx(32.0 * math.cos(0.7), abs=1e-4)


def test_aam_computes_in_float32_under_autocast_and_passes_gradients():
    head = _angles_head()
    emb = torch.randn(4, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        margin_logits, cosine_logits = head(emb, torch.tensor([0, 1, 2, 3]), 0.2)
    assert margin_logits.dtype == cosine_logits.dtype == torch.float32
    margin_logits.sum().backward()
    assert emb.grad is not None and head.weight.grad is not None


# ---------------------------------------------------------------- trkd info


def test_info_prints_parameters_and_macs(tmp_path):
    cfg = tmp_path / "ecapa.yaml"
    cfg.write_text("model:\n  name: ecapa\n  channels: 1024\ntrain:\n  epochs: 150\n")
    result = CliRunner().invoke(app, ["info", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "model: name=ecapa, channels=1024",
        "parameters: 14.661 M",
        "MACs: 1.33 G per second of audio",
    ]


def test_info_names_the_file_and_line_of_a_bad_key_or_value(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("# student\nmodel:\n  name: mobilenetv2\n  width: 0.5\n")
    result = CliRunner().invoke(app, ["info", "--config", str(cfg)])
    assert isinstance(result.exception, InputError)
    message = str(result.exception)
    assert message.startswith(f"{cfg}:4: unknown key 'model.width'") and "width_mult" in message
    cfg.write_text("model:\n  name: ecapa\n  channels: 100\n")
    result = CliRunner().invoke(app, ["info", "--config", str(cfg)])
    assert str(result.exception) == f"{cfg}: model: channels (100) must be a multiple of res2_scale (8)"
