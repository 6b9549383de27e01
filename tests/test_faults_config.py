"""Config and device errors, through the real CLI (tools/venv/bin/trkd):
config values checked by type and range with FILE:LINE and the key (or the command line, for a
`--set`), a student's head.num_classes that disagrees with its teacher, NaN/Inf features named by
`trkd validate-data` and by training, `--device` names that cannot run here. Each is one line on
stderr, exit status 1, and no output written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from distill_helpers import teacher
from train_helpers import TINY_XVECTOR, make_feats_dir, write_config
from trkd.data.kaldi_dir import write_kv

ROOT = Path(__file__).resolve().parents[1]
TRKD = str(ROOT / "tools/venv/bin/trkd")


def trkd(*args) -> subprocess.CompletedProcess:
    return subprocess.run([TRKD, *map(str, args)], capture_output=True, text=True, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The error line of a failed command, without its `trkd: error: ` prefix: the last line of
    stderr (a training run echoes its log lines there before it), and the only error line."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if line.startswith("trkd: error: ")]
    assert errors == lines[-1:] and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[-1][len("trkd: error: "):]


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_feats_dir(tmp_path_factory.mktemp("faults") / "data")


@pytest.mark.parametrize("block,key,value,message", [
    ("model", "channels", "32", "key 'model.channels' must be an integer, got '32'"),
    ("model", "channels", 0, "key 'model.channels' must be >= 1, got 0"),
    ("data", "batch_size", 0, "key 'data.batch_size' must be >= 1, got 0"),
    ("data", "num_frms", 0, "key 'data.num_frms' must be >= 1, got 0"),
    ("train", "epochs", 0, "key 'train.epochs' must be >= 1, got 0"),
    ("optim", "lr", -0.1, "key 'optim.lr' must be > 0, got -0.1"),
    ("data", "spec_aug_prob", 1.5, "key 'data.spec_aug_prob' must be <= 1.0, got 1.5"),
    ("train", "precision", "fp64", "key 'train.precision' must be one of fp32, bf16, fp16, got 'fp64'"),
])
def test_bad_value_names_file_line_and_key(data, tmp_path, block, key, value, message):
    model = dict(TINY_XVECTOR, **({key: value} if block == "model" else {}))
    conf = write_config(tmp_path / "c.yaml", model=model, **({block: {key: value}} if block != "model" else {}))
    exp = tmp_path / "exp"
    err = one_line_error(trkd("train", "--config", conf, "--data", data, "--exp", exp, "--device", "cpu"))
    assert err == f"{conf}:{line_of(conf, f'  {key}:')}: {message}"
    assert not exp.exists()


def test_a_value_the_model_rejects_is_one_line(data, tmp_path):
    conf = write_config(tmp_path / "c.yaml", model={"name": "ecapa", "channels": 100})
    err = one_line_error(trkd("train", "--config", conf, "--data", data, "--exp", tmp_path / "exp"))
    assert err == f"{conf}: model: channels (100) must be a multiple of res2_scale (8)"


def test_bad_set_value_is_blamed_on_the_command_line(tmp_path_factory, tmp_path):
    feats, teacher_dir = teacher(tmp_path_factory)
    conf = write_config(tmp_path / "s.yaml", train={"epochs": 3}, kd={"trkd": {"tau0": 1.0}})
    for item, message in (("train.epochs=0", "key 'train.epochs' must be >= 1, got 0"),
                          ("data.batch_size=big", "key 'data.batch_size' must be an integer, got 'big'"),
                          ("kd.trkd.tau0=abc", "key 'kd.trkd.tau0' must be a number, got 'abc'")):
        key, _, value = item.partition("=")
        err = one_line_error(trkd("distill", "--teacher", teacher_dir, "--config", conf, "--method", "kd",
                                  "--data", feats, "--exp", tmp_path / "exp", "--device", "cpu", "--set", item))
        shown = repr(0 if value == "0" else value)
        assert err == f"command line: {key}={shown}: {message}"
        assert str(conf) not in err
    assert not (tmp_path / "exp").exists()


def test_student_num_classes_that_differs_from_the_teachers_is_an_error(tmp_path_factory, tmp_path):
    feats, teacher_dir = teacher(tmp_path_factory)
    conf = write_config(tmp_path / "s.yaml", head={"num_classes": 10})
    err = one_line_error(trkd("distill", "--teacher", teacher_dir, "--config", conf, "--method", "kd",
                              "--data", feats, "--exp", tmp_path / "exp", "--device", "cpu"))
    assert err == (f"{conf}:{line_of(conf, 'num_classes')}: head.num_classes is 10, but training has 4 classes "
                   "(the data's speakers; a student's are its teacher's); remove the key or make it 4")
    conf = write_config(tmp_path / "same.yaml", head={"num_classes": 4}, train={"epochs": 1, "avg_last": 1})
    proc = trkd("distill", "--teacher", teacher_dir, "--config", conf, "--method", "kd", "--data", feats,
                "--exp", tmp_path / "ok", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("device,message", [
    ("cuda", "--device 'cuda': no CUDA GPU is available on this machine (use --device cpu)"),
    ("tpu", "--device 'tpu': not a device name (use cpu, cuda or cuda:N)"),
    ("mps", "--device 'mps': trkd runs on cpu or cuda, not mps"),
])
def test_device_that_cannot_run_here_is_one_line(data, tmp_path, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    conf = write_config(tmp_path / "c.yaml")
    err = one_line_error(trkd("train", "--config", conf, "--data", data, "--exp", tmp_path / "exp", "--device", device))
    assert err == message


def _poison(data: Path, utt: str, frame: int, dim: int, value: float) -> str:
    """Rewrite data's feats with one non-finite value in `utt`; return that utterance's rxfile."""
    feats = {k: np.array(v) for k, v in kaldiio.load_scp(str(data / "feats.scp")).items()}
    feats[utt][frame, dim] = value
    with kaldiio.WriteHelper(f"ark,scp:{data.resolve()}/feats.ark,{data.resolve()}/feats.scp") as w:
        for k in sorted(feats):
            w(k, feats[k])
    return next(line.split()[1] for line in (data / "feats.scp").read_text().splitlines() if line.startswith(utt))


@pytest.fixture
def nan_data(tmp_path):
    """A Kaldi data dir whose utterance spk1-utt2 (20 frames: every chunk holds all of it) has a NaN."""
    d = make_feats_dir(tmp_path / "data", lengths={"spk1-utt2": 20})
    u2s = dict(line.split() for line in (d / "utt2spk").read_text().splitlines())
    write_kv(d / "wav.scp", {u: f"/nowhere/{u}.wav" for u in u2s})
    spk2utt = {}
    for u, s in u2s.items():
        spk2utt.setdefault(s, []).append(u)
    write_kv(d / "spk2utt", {s: " ".join(us) for s, us in spk2utt.items()})
    return d, _poison(d, "spk1-utt2", 7, 3, float("nan"))


def test_validate_data_names_the_utterance_with_nan_features(nan_data):
    d, rx = nan_data
    err = one_line_error(trkd("validate-data", "--no-audio", d))
    line = line_of(d / "feats.scp", "spk1-utt2 ")
    assert err == (f"{d / 'feats.scp'}:{line}: spk1-utt2: '{rx}' holds 1 non-finite value "
                   f"(nan at row 7, column 3): trkd reads only finite numbers")
    _poison(d, "spk1-utt2", 7, 3, 0.5)
    _poison(d, "spk2-utt0", 0, 0, float("-inf"))
    assert "spk2-utt0: " in (err := one_line_error(trkd("validate-data", "--no-audio", d)))
    assert "holds 1 non-finite value (-inf at row 0, column 0)" in err
    _poison(d, "spk2-utt0", 0, 0, 0.5)
    proc = trkd("validate-data", "--no-audio", d)
    assert proc.returncode == 0 and "OK" in proc.stdout


def test_training_on_nan_features_names_the_utterance(nan_data, tmp_path):
    d, rx = nan_data
    conf = write_config(tmp_path / "c.yaml", data={"num_frms": 50, "batch_size": 16, "num_workers": 0})
    exp = tmp_path / "exp"
    err = one_line_error(trkd("train", "--config", conf, "--data", d, "--exp", exp, "--device", "cpu"))
    line = line_of(d / "feats.scp", "spk1-utt2 ")
    assert err == (f"{d / 'feats.scp'}:{line}: spk1-utt2: '{rx}' holds 1 non-finite value "
                   f"(nan at row 7, column 3): trkd reads only finite numbers")
    assert not list(exp.rglob("*.pt"))
