"""`trkd extract`: whole-utterance embeddings in Kaldi ark/scp, windows for long inputs, errors."""

from __future__ import annotations

import kaldiio
import numpy as np
import pytest
import torch

from train_helpers import make_feats_dir, run_cli, write_config
from trkd.errors import InputError
from trkd.extract import load_model


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("extract")
    train = make_feats_dir(tmp / "train")
    conf = write_config(tmp / "c.yaml", train={"epochs": 1, "avg_last": 1, "log_interval": 10, "seed": 1})
    exp = tmp / "exp"
    r = run_cli("train", "--config", conf, "--data", train, "--exp", exp, "--device", "cpu")
    assert r.exit_code == 0, repr(r.exception)
    # test utterances: one long (windowed at --max-frames 120), one shorter than a second
    test = make_feats_dir(tmp / "test", num_spk=2, utts_per_spk=3, seed=7,
                          lengths={"spk0-utt0": 400, "spk1-utt2": 60})
    return exp, test


def _direct(model, mat, normalise=True):
    x = torch.from_numpy(mat - mat.mean(0, keepdims=True) if normalise else mat)
    with torch.no_grad():
        return model(x.unsqueeze(0))[0].numpy()


def test_embeddings_match_a_direct_forward_and_do_not_depend_on_nj(model_and_data, tmp_path):
    exp, test = model_and_data
    for nj in (1, 2):
        r = run_cli("extract", "--model", exp, "--data", test, "--out", tmp_path / f"nj{nj}", "--nj", nj,
                    "--max-frames", 120, "--device", "cpu")
        assert r.exit_code == 0, repr(r.exception)
    one = dict(kaldiio.load_scp(str(tmp_path / "nj1" / "xvector.scp")))
    two = dict(kaldiio.load_scp(str(tmp_path / "nj2" / "xvector.scp")))
    feats = dict(kaldiio.load_scp(str(test / "feats.scp")))
    assert list(one) == sorted(feats) and set(two) == set(one)
    model = load_model(exp)
    for utt in one:
        np.testing.assert_allclose(one[utt], two[utt], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one["spk0-utt1"], _direct(model, feats["spk0-utt1"]), rtol=1e-5, atol=1e-6)
    # 400 frames at 120: windows at 0, 120, 240 and the last aligned to the end (280), averaged;
    # the mean is the whole utterance's, not each window's
    mat = feats["spk0-utt0"] - feats["spk0-utt0"].mean(0, keepdims=True)
    wins = [_direct(model, mat[s:s + 120], normalise=False) for s in (0, 120, 240, 280)]
    np.testing.assert_allclose(one["spk0-utt0"], np.mean(wins, axis=0), rtol=1e-5, atol=1e-6)
    # a 0.6-s utterance is normalised, then repeated up to 1 s before the forward
    short = feats["spk1-utt2"] - feats["spk1-utt2"].mean(0, keepdims=True)
    np.testing.assert_allclose(one["spk1-utt2"], _direct(model, np.tile(short, (2, 1))[:100], normalise=False),
                               rtol=1e-5, atol=1e-6)


def test_missing_model_dir_and_corrupt_checkpoint_are_clear_errors(model_and_data, tmp_path):
    exp, test = model_and_data
    r = run_cli("extract", "--model", tmp_path / "nope", "--data", test, "--out", tmp_path / "o")
    assert isinstance(r.exception, InputError) and str(r.exception) == f"{tmp_path / 'nope'}: no such model directory"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    r = run_cli("extract", "--model", exp, "--data", test, "--out", tmp_path / "o", "--checkpoint", bad)
    assert isinstance(r.exception, InputError)
    assert str(r.exception).startswith(f"{bad}: not a readable trkd checkpoint")
    r = run_cli("extract", "--model", exp, "--data", test, "--out", tmp_path / "o", "--checkpoint", "model_9.pt")
    assert str(r.exception) == f"{exp / 'models' / 'model_9.pt'}: no such checkpoint"
    assert not (tmp_path / "o" / "xvector.scp").exists()
