"""The `kd:` block belongs to `trkd distill`: `trkd train` neither reads nor writes it (nor loads a
distillation method), a student's config composes the training config with it, and model dirs
whose config.yaml holds a `kd:` block (every model dir written before) still extract and resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import yaml

from distill_helpers import no_plots, ok, student_config
from test_resume import _assert_same
from train_helpers import TINY_ECAPA, make_feats_dir, run_cli, write_config
from trkd import checkpoint as ckpt
from trkd.config import Config, load_config
from trkd.distill.kd_config import DistillConfig, load_distill_config
from trkd.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
# What the code before this split wrote into every model dir: each method's settings, some keys
# of which no longer exist (kd.kd.terms).
OLD_KD_BLOCK = {"warmup_epochs": 20, "logits": "margin", "kd": {"temperature": 4.0, "terms": None},
                "dkd": {"temperature": 4.0, "terms": None, "alpha": 1.0, "beta": 8.0},
                "method": None, "teacher": None, "online": False}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch `trkd train` run from a yaml that has a `kd:` block."""
    tmp = tmp_path_factory.mktemp("kdconf")
    data = make_feats_dir(tmp / "data")
    conf = write_config(tmp / "t.yaml", model=TINY_ECAPA, kd={"warmup_epochs": 3, "trkd": {"tau1": 0.1}})
    with no_plots():
        ok(run_cli("train", "--config", conf, "--data", data, "--exp", tmp / "full", "--device", "cpu"))
    return conf, data, tmp / "full"


def test_train_leaves_the_kd_block_out(trained):
    conf, _, full = trained
    assert "kd" in yaml.safe_load(conf.read_text())
    written = yaml.safe_load((full / "config.yaml").read_text())
    assert "kd" not in written and set(written) == {"model", "head", "data", "optim", "train", "command"}
    assert "kd" not in ckpt.load(ckpt.epoch_path(full, 2))["config"]
    assert type(load_config(conf)) is Config and not hasattr(load_config(conf), "kd")


def test_train_loads_no_distillation_method(tmp_path):
    """The whole `trkd train` in a fresh interpreter: the method registry's names are known (the
    CLI's help texts), but no method module and no `kd:` schema is imported."""
    data = make_feats_dir(tmp_path / "data")
    conf = write_config(tmp_path / "t.yaml", train={"epochs": 1, "avg_last": 1})
    code = ("import json, sys; from typer.testing import CliRunner; from trkd.cli import app; "
            "import trkd.trainer as t; t.plot_history = lambda *a, **k: None; "
            f"r = CliRunner().invoke(app, ['train', '--config', {str(conf)!r}, '--data', {str(data)!r}, "
            f"'--exp', {str(tmp_path / 'exp')!r}, '--device', 'cpu']); "
            "print(json.dumps([r.exit_code, r.output, [m for m in sys.modules if m.startswith('trkd.distill.')]]))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    exit_code, output, modules = json.loads(run.stdout.splitlines()[-1])
    assert exit_code == 0 and (tmp_path / "exp" / "models" / "avg_model.pt").is_file(), (output, run.stderr)
    assert modules == ["trkd.distill.methods"]


def test_a_student_config_is_the_training_config_and_its_kd_block(trained):
    conf, _, _ = trained
    cfg = load_distill_config(conf)
    assert isinstance(cfg, DistillConfig) and isinstance(cfg, Config)
    assert (cfg.kd.warmup_epochs, cfg.kd.trkd.tau1, cfg.kd.trkd.tau0) == (3, 0.1, 1.0)
    assert cfg.model == load_config(conf).model and cfg.optim == load_config(conf).optim
    assert "kd" in cfg.to_dict() and "kd" not in load_config(conf).to_dict()


def test_a_methods_settings_are_typed_with_file_and_line(tmp_path):
    conf = write_config(tmp_path / "s.yaml", kd={"dkd": {"beta": "high"}})
    with pytest.raises(InputError) as err:
        load_distill_config(conf)
    line = next(i for i, text in enumerate(conf.read_text().splitlines(), 1) if "beta" in text)
    assert str(err.value) == f"{conf}:{line}: key 'kd.dkd.beta' must be a number, got 'high'"
    load_config(conf)   # the training config alone does not read the block


def _with_old_kd_block(model_dir: Path) -> None:
    path = model_dir / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**cfg, "kd": OLD_KD_BLOCK}, sort_keys=False))


def test_a_model_dir_with_a_kd_block_resumes_and_extracts(trained, tmp_path):
    conf, data, full = trained
    part = tmp_path / "part"
    shutil.copytree(full, part)
    for name in ("model_2.pt", "avg_model.pt"):
        (part / "models" / name).unlink()
    _with_old_kd_block(part)
    with no_plots():
        ok(run_cli("train", "--config", conf, "--data", data, "--exp", part, "--device", "cpu", "--resume"))
    for name in ("model_2.pt", "avg_model.pt"):
        _assert_same(ckpt.load(full / "models" / name)["model"], ckpt.load(part / "models" / name)["model"], name)
    _with_old_kd_block(part)   # the resumed run wrote its own config.yaml
    for model in (full, part):
        ok(run_cli("extract", "--model", model, "--data", data, "--out-dir", tmp_path / model.name, "--device", "cpu"))
    a, b = (dict(kaldiio.load_scp(str(tmp_path / m / "xvector.scp"))) for m in ("full", "part"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_distilled_students_config_keeps_its_kd_block(tmp_path):
    conf = student_config(tmp_path / "s.yaml", kd={"trkd": {"tau1": 0.2}})
    cfg = load_distill_config(conf, {"kd.dkd.beta": 6})
    assert (cfg.kd.trkd.tau1, cfg.kd.dkd.beta) == (0.2, 6.0)
    with pytest.raises(InputError, match=r"^command line: kd.dkd.beta='x': key 'kd.dkd.beta' must be a number"):
        load_distill_config(conf, {"kd.dkd.beta": "x"})
