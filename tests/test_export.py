"""`trkd export`: ONNX of a model trained by the real `trkd train`, parity with torch, failures."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from embed_helpers import corpus_model
from train_helpers import TINY_ECAPA, make_feats_dir, run_cli, write_config
from trkd.export import ExportError, fbank, generated_waves
from trkd.extract import load_model
from trkd.onnx_embedder import OnnxEmbedder

ROOT = Path(__file__).resolve().parents[1]
TRKD = str(ROOT / "tools/venv/bin/trkd")


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


def test_export_without_data_checks_on_fbank_of_synthetic_speech(trained, tmp_path):
    _, exp = trained
    # the generated utterances are real Kaldi fbank of distinct, odd lengths, the first under MIN_FRAMES
    assert [fbank(w, 20).shape[0] for w in generated_waves()] == [81, 198, 335]
    result = run_cli("export", "--model", exp, "--out", tmp_path / "s.onnx")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "on 4 inputs (fbank of synthetic speech)" in result.output
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


def test_with_fbank_exports_a_wav_in_graph_whose_fbank_matches_trkd_fbank(tmp_path_factory, tmp_path):
    import onnxruntime as ort
    import soundfile as sf
    import torchaudio.compliance.kaldi as kaldi

    from trkd.export_wave import FBANK_TOL, LOUD
    from trkd.features import fbank_of
    from trkd.model_fbank import model_fbank

    corpus, exp, test = corpus_model(tmp_path_factory)
    onnx = tmp_path / "wave.onnx"
    proc = subprocess.run([TRKD, "export", "--model", str(exp), "--out", str(onnx), "--with-fbank",
                           "--data", str(test)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.splitlines()[0]
    assert line.startswith(f"parity onnxruntime vs trkd fbank + torch on 4 waveforms ({test / 'wav.scp'}): ")
    assert float(re.search(r"log-mel max abs diff ([0-9.e-]+)", line).group(1)) <= FBANK_TOL
    assert float(re.search(r"; embedding max abs diff [0-9.e+-]+, min cosine ([0-9.]+)$", line).group(1)) >= 0.9999
    # onnxruntime on real WAVs of the corpus, against `trkd fbank` and a float64 fbank
    opts = model_fbank(exp)
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    wavs = sorted((corpus / "wav").glob("*/*.wav"))[::10]
    worst_graph, worst_trkd = 0.0, 0.0
    for path in wavs:
        wave = sf.read(path, dtype="float32")[0]
        _, feats = session.run(None, {"wave": wave})
        ref = fbank_of(torch.from_numpy(wave), 16000, opts).numpy()
        exact = kaldi.fbank(torch.from_numpy(wave).double()[None] * 32768, **opts.to_dict()).numpy()
        assert feats.shape == ref.shape
        loud = ref > LOUD
        assert np.abs(feats - ref)[loud].max() <= FBANK_TOL, path
        worst_graph = max(worst_graph, float(np.abs(feats - exact).max()))
        worst_trkd = max(worst_trkd, float(np.abs(ref - exact).max()))
    # in the quietest bands the float32 rounding of trkd fbank itself is the larger error
    assert worst_graph < worst_trkd and worst_graph < 5e-3
    # the graph keeps its length dynamic and embeds like `trkd extract` on trkd fbank features
    r = run_cli("extract", "--onnx", onnx, "--data", test, "--out-dir", tmp_path / "onnx")
    assert r.exit_code == 0, r.output + repr(r.exception)
    r = run_cli("extract", "--model", exp, "--data", test, "--out-dir", tmp_path / "torch", "--device", "cpu")
    assert r.exit_code == 0, r.output + repr(r.exception)
    got = dict(kaldiio.load_scp(str(tmp_path / "onnx" / "xvector.scp")))
    ref = dict(kaldiio.load_scp(str(tmp_path / "torch" / "xvector.scp")))
    assert list(got) == list(ref) and len(got) == len((test / "utt2spk").read_text().splitlines())
    assert min(_cosine(got[u], ref[u]) for u in ref) >= 0.9999


def test_with_fbank_without_data_checks_on_synthetic_speech(tmp_path_factory, tmp_path):
    """The default parity inputs: utterances of the embedded corpus's voices, one shorter than
    MIN_FRAMES, which graph and reference both repeat to 1 s and embed in one window."""
    from trkd.extract import MIN_FRAMES

    _, exp, _ = corpus_model(tmp_path_factory)
    assert fbank(generated_waves()[0], 80).shape[0] < MIN_FRAMES
    onnx = tmp_path / "wave.onnx"
    proc = subprocess.run([TRKD, "export", "--model", str(exp), "--out", str(onnx), "--with-fbank"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.splitlines()[0]
    assert line.startswith("parity onnxruntime vs trkd fbank + torch on 3 waveforms (synthetic speech): ")
    # the reference embeds as the graph does: agreement to float32 rounding, not merely cosine 0.9999
    assert float(re.search(r"embedding max abs diff ([0-9.e+-]+),", line).group(1)) < 1e-4
    assert proc.stdout.splitlines()[1] == f"wrote {onnx}" and onnx.is_file()


def test_with_fbank_failure_is_one_line_and_writes_nothing(tmp_path_factory, tmp_path, monkeypatch):
    _, exp, _ = corpus_model(tmp_path_factory)

    def fail(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator foo\n" + "graph(%x : Float(*)):\n" * 500)

    monkeypatch.setattr(torch.onnx, "export", fail)
    out = tmp_path / "w.onnx"
    result = run_cli("export", "--model", exp, "--out", out, "--with-fbank")
    assert result.exit_code != 0
    message = str(result.exception)
    assert message == f"{out}: --with-fbank: the ONNX exporter failed: Unsupported: ONNX export of operator foo"
    assert list(tmp_path.iterdir()) == []


def test_with_fbank_needs_the_model_fbank_options(trained, tmp_path):
    _, exp = trained  # trained on features not made by `trkd fbank`
    proc = subprocess.run([TRKD, "export", "--model", str(exp), "--out", str(tmp_path / "w.onnx"), "--with-fbank"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"trkd: error: {exp}: no fbank.yaml")
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
    result = run_cli("extract", "--data", data, "--out-dir", tmp_path / "x")
    assert str(result.exception) == "give a model dir (--model) or an ONNX file (--onnx)"
    result = run_cli("extract", "--onnx", tmp_path / "none.onnx", "--data", data, "--out", tmp_path / "x")
    assert str(result.exception) == f"{tmp_path / 'none.onnx'}: no such ONNX file"
    assert not (tmp_path / "x" / "xvector.scp").exists()
