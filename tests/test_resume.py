"""`--resume` is a resume: 1 epoch + resume 1 epoch == 2 uninterrupted epochs, bit for bit."""

from __future__ import annotations

import shutil

import pytest
import torch

from train_helpers import TINY_ECAPA, make_feats_dir, run_cli, uninterrupted_and_resumed, write_config
from trkd import checkpoint as ckpt
from trkd.errors import InputError


def _assert_same(a, b, where=""):
    """Every tensor of two nested checkpoint structures is torch.equal (and everything else ==)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 2-epoch run, and a copy interrupted after epoch 1 then resumed."""
    tmp = tmp_path_factory.mktemp("resume")
    # short utterances (padded by repetition), SpecAugment and loader workers all take part
    data = make_feats_dir(tmp / "data", lengths={"spk0-utt0": 30, "spk1-utt1": 45})
    conf = write_config(tmp / "c.yaml", model=TINY_ECAPA,
                        data={"spec_aug": True, "spec_aug_prob": 0.5, "num_workers": 2})
    full, part = uninterrupted_and_resumed(conf, data, tmp)
    return conf, data, full, part


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(runs):
    _, _, full, part = runs
    a, b = ckpt.load(ckpt.epoch_path(full, 2)), ckpt.load(ckpt.epoch_path(part, 2))
    for key in ("model", "head", "extras", "optimizer", "rng", "step", "epoch", "sampler", "history"):
        _assert_same(a[key], b[key], key)
    _assert_same(ckpt.load(full / "models" / "avg_model.pt")["model"],
                 ckpt.load(part / "models" / "avg_model.pt")["model"], "avg")
    assert "resumed from epoch 1 (step 2)" in (part / "train.log").read_text()


def test_the_two_epochs_differ_so_the_comparison_can_fail(runs):
    _, _, full, _ = runs
    a, b = ckpt.load(ckpt.epoch_path(full, 1)), ckpt.load(ckpt.epoch_path(full, 2))
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_resume_with_a_changed_config_is_an_error(runs, tmp_path):
    _, data, full, _ = runs
    conf = write_config(tmp_path / "c.yaml", model=TINY_ECAPA, optim={"lr": 0.2},
                        data={"spec_aug": True, "spec_aug_prob": 0.5, "num_workers": 2})
    r = run_cli("train", "--config", conf, "--data", data, "--exp", full, "--resume")
    assert isinstance(r.exception, InputError)
    assert str(r.exception) == (f"{full / 'config.yaml'}: --resume with a different config: optim.lr changed: "
                                "0.05 in the run being resumed, 0.2 now")
    # the seed the recipe gave (--seed) against the config's own: both values named, one line
    from cli_helpers import error_line, trkd

    same = write_config(tmp_path / "same.yaml", model=TINY_ECAPA,
                        data={"spec_aug": True, "spec_aug_prob": 0.5, "num_workers": 2})
    msg = error_line(trkd("train", "--config", same, "--data", data, "--exp", full, "--resume", "--seed", "42"))
    assert msg == (f"{full / 'config.yaml'}: --resume with a different config: train.seed changed: 3 in the run "
                   "being resumed, 42 now")


def test_corrupt_last_checkpoint_is_a_clear_error(runs, tmp_path):
    conf, data, full, _ = runs
    exp = tmp_path / "exp"
    shutil.copytree(full, exp)
    (exp / "models" / "model_2.pt").write_bytes(b"not a checkpoint")
    r = run_cli("train", "--config", conf, "--data", data, "--exp", exp, "--resume")
    assert isinstance(r.exception, InputError)
    assert str(r.exception).startswith(f"{exp / 'models' / 'model_2.pt'}: not a readable trkd checkpoint")
