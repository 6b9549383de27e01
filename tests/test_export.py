"""`trkd export`: ONNX of a model trained by the real `trkd train`, parity with torch, failures."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from train_helpers import TINY_ECAPA, make_feats_dir, run_cli, write_config
from trkd.export import ExportError, fbank, generated_waves
from trkd.extract import load_model
from trkd.onnx_embedder import OnnxEmbedder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    data = make_feats_dir(tmp / "data")
    conf = write_config(tmp / "tiny.yaml", model=TINY_ECAPA)
    exp = tmp / "exp"
    result = run_cli("train", "--config", conf, "--data", data, "--exp", exp, "--device", "cpu")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return data, exp


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    data, exp = trained
    onnx = tmp_path_factory.mktemp("onnx") / "student.onnx"
    result = run_cli("export", "--model", exp, "--out", onnx, "--data", data)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return onnx, result.output


def _cosine(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_export_reports_parity_on_real_feats_and_writes_only_the_file(trained, exported):
    data, _ = trained
    onnx, output = exported
    assert f"parity onnxruntime vs torch on 5 inputs ({data / 'feats.scp'}): max abs diff " in output
    assert float(re.search(r"min cosine ([0-9.]+)", output).group(1)) >= 0.9999
    assert f"wrote {onnx}" in output
    assert sorted(p.name for p in onnx.parent.iterdir()) == ["student.onnx"]


def test_onnx_matches_torch_for_two_lengths_and_a_batch(trained, exported):
    data, exp = trained
    onnx, _ = exported
    model, session = load_model(exp), OnnxEmbedder(onnx, num_threads=1)
    assert (session.feat_dim, session.embed_dim) == (20, 16)
    rng = np.random.default_rng(1)
    for shape in [(1, 57, 20), (1, 233, 20), (3, 120, 20)]:
        x = rng.normal(size=shape).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        out = session(x)
        assert out.shape == ref.shape
        assert _cosine(out, ref).min() >= 0.9999
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-3)
    # a torch tensor in gives a torch tensor out, as from the torch model
    assert isinstance(session(torch.zeros(1, 80, 20)), torch.Tensor)


def test_export_without_data_checks_on_fbank_of_generated_signals(trained, tmp_path):
    _, exp = trained
    # the generated signals are real Kaldi fbank of distinct, odd lengths
    assert [fbank(w, 20).shape[0] for w in generated_waves()] == [81, 198, 335]
    result = run_cli("export", "--model", exp, "--out", tmp_path / "s.onnx")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "on 4 inputs (fbank of generated test signals)" in result.output
    assert (tmp_path / "s.onnx").is_file()


def test_failed_parity_exits_nonzero_and_leaves_no_file(trained, tmp_path, monkeypatch):
    _, exp = trained
    real_run = OnnxEmbedder.run
    monkeypatch.setattr(OnnxEmbedder, "run", lambda self, x: real_run(self, x)[..., ::-1].copy())
    out = tmp_path / "bad" / "student.onnx"
    result = run_cli("export", "--model", exp, "--out", out)
    assert result.exit_code != 0
    assert isinstance(result.exception, ExportError)
    assert str(result.exception).startswith(f"{out}: onnxruntime disagrees with torch: ")
    assert "below 0.9999; not written" in str(result.exception)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_model_dir_without_checkpoint_or_config_is_a_one_line_error(trained, tmp_path):
    _, exp = trained
    trkd = str(ROOT / "tools/venv/bin/trkd")
    out = tmp_path / "s.onnx"
    proc = subprocess.run([trkd, "export", "--model", str(exp), "--out", str(out), "--checkpoint", "model_9.pt"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"trkd: error: {exp / 'models' / 'model_9.pt'}: no such checkpoint"
    bare = tmp_path / "bare_exp"
    bare.mkdir()
    proc = subprocess.run([trkd, "export", "--model", str(bare), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"trkd: error: {bare / 'config.yaml'}: no such config file"
    assert not out.exists()


def test_with_fbank_says_plainly_that_fbank_does_not_export(trained, tmp_path):
    _, exp = trained
    out = tmp_path / "s.onnx"
    result = run_cli("export", "--model", exp, "--out", out, "--with-fbank")
    assert result.exit_code != 0
    assert "--with-fbank: torchaudio's Kaldi fbank does not export" in str(result.exception)
    assert "aten::fft_rfft" in str(result.exception)
    assert list(tmp_path.iterdir()) == []


def test_extract_with_onnx_matches_torch_extract_and_scores(trained, exported, tmp_path):
    data, exp = trained
    onnx, _ = exported
    runs = [(["--model", exp, "--device", "cpu"], "torch"), (["--onnx", onnx], "onnx"),
            (["--onnx", onnx, "--nj", "2"], "onnx_nj2")]
    for args, out in runs:
        result = run_cli("extract", *args, "--data", data, "--out", tmp_path / out)
        assert result.exit_code == 0, result.output + repr(result.exception)
    ref = dict(kaldiio.load_scp(str(tmp_path / "torch" / "xvector.scp")))
    got = dict(kaldiio.load_scp(str(tmp_path / "onnx" / "xvector.scp")))
    assert list(got) == list(ref) and len(got) == 16
    workers = dict(kaldiio.load_scp(str(tmp_path / "onnx_nj2" / "xvector.scp")))
    # worker sessions run on one thread each: the same numbers up to summation order
    assert list(workers) == list(got)
    np.testing.assert_allclose(np.stack(list(workers.values())), np.stack(list(got.values())), atol=1e-5)
    assert min(_cosine(got[u], ref[u]) for u in ref) >= 0.9999
    trials = tmp_path / "trials"
    trials.write_text("".join(f"spk{s}-utt0 spk{t}-utt{u} {'target' if s == t else 'nontarget'}\n"
                              for s in range(4) for t in range(4) for u in range(1, 4)))
    lines = {}
    for name in ("torch", "onnx"):
        result = run_cli("score", "--trials", trials, "--scp", tmp_path / name / "xvector.scp")
        assert result.exit_code == 0, result.output + repr(result.exception)
        assert "trials: EER " in result.output and "(48 trials)" in result.output
        lines[name] = np.loadtxt(tmp_path / name / "scores" / "trials.score", usecols=2)
    np.testing.assert_allclose(lines["onnx"], lines["torch"], atol=1e-4)


def test_extract_needs_a_model_dir_or_an_onnx_file(trained, tmp_path):
    data, _ = trained
    result = run_cli("extract", "--data", data, "--out", tmp_path / "x")
    assert str(result.exception) == "give a model dir (--model) or an ONNX file (--onnx)"
    result = run_cli("extract", "--onnx", tmp_path / "none.onnx", "--data", data, "--out", tmp_path / "x")
    assert str(result.exception) == f"{tmp_path / 'none.onnx'}: no such ONNX file"
    assert not (tmp_path / "x" / "xvector.scp").exists()
