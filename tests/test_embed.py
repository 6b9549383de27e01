"""`trkd embed` and the Python API (`import trkd`) on real WAVs of the embedded corpus, against
`trkd fbank` + `trkd extract` of the same audio with the same model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from embed_helpers import corpus_model
from train_helpers import run_cli
from trkd.utils.ids import safe_key

ROOT = Path(__file__).resolve().parents[1]
TRKD = str(ROOT / "tools/venv/bin/trkd")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    corpus, exp, test = corpus_model(tmp_path_factory)
    out = tmp_path_factory.mktemp("xvec")
    r = run_cli("extract", "--model", exp, "--data", test, "--out-dir", out, "--device", "cpu")
    assert r.exit_code == 0, r.output + repr(r.exception)
    wavs = dict(line.split() for line in (test / "wav.scp").read_text().splitlines())
    return exp, test, wavs, dict(kaldiio.load_scp(str(out / "xvector.scp")))


def _trkd(*args, cwd=None):
    return subprocess.run([TRKD, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def _text_ark(text: str):
    out = {}
    for line in text.splitlines():
        key, rest = line.split(maxsplit=1)
        out[key] = np.array(rest.strip().strip("[]").split(), dtype=np.float32)
    return out


def test_training_records_the_fbank_options_of_its_data(setup):
    exp = setup[0]
    recorded = yaml.safe_load((exp / "fbank.yaml").read_text())
    assert recorded["num_mel_bins"] == 80 and recorded["dither"] == 0.0


def test_embed_wav_files_prints_what_extract_writes(setup):
    exp, _, wavs, ref = setup
    utts = sorted(wavs)[:2]
    proc = _trkd("embed", "--model", exp, "--device", "cpu", *(wavs[u] for u in utts))
    assert proc.returncode == 0, proc.stderr
    got = _text_ark(proc.stdout)
    assert list(got) == [safe_key(str(wavs[u])) for u in utts]  # keyed by the paths made names
    for u in utts:
        np.testing.assert_allclose(got[safe_key(str(wavs[u]))], ref[u], rtol=1e-4, atol=1e-5)


def test_embed_wav_scp_to_an_ark_scp_wspecifier(setup, tmp_path):
    exp, test, wavs, ref = setup
    ark, scp = tmp_path / "e.ark", tmp_path / "e.scp"
    proc = _trkd("embed", "--model", exp, "--device", "cpu", test / "wav.scp", "--out", f"ark,scp:{ark},{scp}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {len(wavs)} embeddings to ark,scp:{ark},{scp}"
    got = dict(kaldiio.load_scp(str(scp)))
    assert list(got) == list(wavs)
    np.testing.assert_allclose(np.stack([got[u] for u in ref]), np.stack(list(ref.values())), rtol=1e-4, atol=1e-5)


def test_embed_errors_are_one_line_and_write_nothing(setup, tmp_path):
    exp, _, wavs, _ = setup
    one = next(iter(wavs.values()))
    out = f"ark,scp:{tmp_path / 'e.ark'},{tmp_path / 'e.scp'}"
    proc = _trkd("embed", "--model", exp, "--onnx", tmp_path / "x.onnx", one)
    assert proc.returncode == 1
    assert proc.stderr == "trkd: error: give exactly one of --model (a model dir) and --onnx (an exported file)\n"
    proc = _trkd("embed", "--model", exp, one, tmp_path / "missing.wav", "--out", out)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"trkd: error: {tmp_path / 'missing.wav'}: cannot read audio")
    slow = tmp_path / "8k.wav"
    sf.write(slow, np.zeros(8000, dtype=np.float32), 8000)
    proc = _trkd("embed", "--model", exp, slow)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"trkd: error: {slow}: sample rate 8000 Hz, the model expects 16000 Hz")
    scp = tmp_path / "wav.scp"
    scp.write_text(f"a {one}\nb {tmp_path / 'gone.wav'}\n")
    proc = _trkd("embed", "--model", exp, scp, "--out", out)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"trkd: error: {scp}:2: b: {tmp_path / 'gone.wav'}: cannot read audio")
    assert sorted(tmp_path.iterdir()) == sorted([slow, scp])


def test_python_api_embeds_waveforms_and_files_and_scores(setup):
    import trkd

    exp, _, wavs, ref = setup
    model = trkd.load_model(exp, device="cpu")
    a, b = sorted(wavs)[:2]
    wave, rate = sf.read(wavs[a], dtype="float32")
    emb_file = model.embed_file(wavs[a])
    np.testing.assert_allclose(emb_file, ref[a], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.embed(wave, rate), emb_file, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.embed(torch.from_numpy(wave)[None], rate), emb_file, rtol=1e-6, atol=1e-7)
    expected = float(ref[a] @ ref[b] / (np.linalg.norm(ref[a]) * np.linalg.norm(ref[b])))
    assert trkd.score(emb_file, model.embed_file(wavs[b])) == pytest.approx(expected, abs=1e-4)
    assert trkd.score(emb_file, emb_file) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="expected mono audio"):
        model.embed(np.zeros((2, 16000)), 16000)
    with pytest.raises(ValueError, match="399 samples make no fbank frame"):
        model.embed(np.zeros(399), 16000)


def test_import_trkd_is_cheap_and_the_api_is_lazy():
    code = ("import sys, trkd; assert 'torch' not in sys.modules; "
            "assert callable(trkd.load_model) and callable(trkd.score); print(trkd.__all__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "load_model" in proc.stdout


def test_embed_keys_files_by_a_name_that_score_reads_back(setup, tmp_path):
    """A path with spaces (and '..') gave a key with spaces: an ark/scp no reader can split again."""
    import shutil

    exp, _, wavs, _ = setup
    folder = tmp_path / "my recordings"
    folder.mkdir()
    files = []
    for i, u in enumerate(sorted(wavs)[:3]):
        files.append(folder / f"take {i}.wav")
        shutil.copy(wavs[u], files[-1])
    given = [f"my recordings/take {i}.wav" for i in range(3)]
    given[2] = f"../{tmp_path.name}/my recordings/take 2.wav"
    ark, scp = tmp_path / "emb.ark", tmp_path / "emb.scp"
    proc = _trkd("embed", "--model", exp, "--device", "cpu", *given, "--out", f"ark,scp:{ark},{scp}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    keys = [line.split()[0] for line in scp.read_text().splitlines()]
    assert keys == ["my_recordings-take_0", "my_recordings-take_1", f"{tmp_path.name}-my_recordings-take_2"]
    trials = tmp_path / "trials"
    trials.write_text(f"{keys[0]} {keys[1]} target\n{keys[0]} {keys[2]} nontarget\n{keys[1]} {keys[2]} nontarget\n")
    proc = _trkd("score", "--trials", trials, "--scp", scp, "--out-dir", tmp_path / "scores")
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[:2] for line in (tmp_path / "scores/trials.score").read_text().splitlines()] == \
        [[keys[0], keys[1]], [keys[0], keys[2]], [keys[1], keys[2]]]
    shutil.copy(files[0], folder / "take_0.wav")
    proc = _trkd("embed", "--model", exp, "--device", "cpu", given[0], "my recordings/take_0.wav", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr == ("trkd: error: my_recordings-take_0: given twice (keys must be "
                                                    "unique): my recordings/take 0.wav and my recordings/take_0.wav\n")


def test_embed_with_onnx_files_of_both_kinds(setup, tmp_path):
    import trkd

    exp, test, wavs, ref = setup
    utts = sorted(wavs)[:3]
    for flags, name in (([], "feats.onnx"), (["--with-fbank"], "wave.onnx")):
        r = run_cli("export", "--model", exp, "--out", tmp_path / name, "--data", test, *flags)
        assert r.exit_code == 0, r.output + repr(r.exception)
        proc = _trkd("embed", "--onnx", tmp_path / name, *(wavs[u] for u in utts))
        assert proc.returncode == 0, proc.stderr
        got = _text_ark(proc.stdout)
        for u in utts:
            assert trkd.score(got[safe_key(str(wavs[u]))], ref[u]) >= 0.9999
    assert trkd.load_onnx(tmp_path / "wave.onnx").takes_wave
