"""`trkd distill --teacher exp/T --method M` from inside a recipe folder: the defaults of --data,
--config and --exp, each printed as used, through the real CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from distill_helpers import STUDENT
from train_helpers import make_feats_dir, write_config

ROOT = Path(__file__).resolve().parents[1]
TRKD = str(ROOT / "tools" / "venv" / "bin" / "trkd")


def trkd(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([TRKD, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """A recipe folder: data/train_aug, a teacher trained from here, run.sh naming the student."""
    egs = tmp_path_factory.mktemp("recipe")
    make_feats_dir(egs / "data" / "train_aug", num_spk=4, utts_per_spk=4)
    (egs / "conf").mkdir()
    write_config(egs / "conf" / "teacher.yaml", train={"epochs": 1, "avg_last": 1, "log_interval": 100, "seed": 3})
    write_config(egs / "conf" / "tiny_student.yaml", model=STUDENT,
                 train={"epochs": 1, "avg_last": 1, "log_interval": 100, "seed": 5},
                 kd={"warmup_epochs": 0, "trkd": {"start_epoch": 1, "stop_epoch": 2}})
    (egs / "run.sh").write_text("#!/usr/bin/env bash\nstage=1\nstudent=tiny_student     # conf/$student.yaml\n")
    res = trkd(egs, "train", "--config", "conf/teacher.yaml", "--data", "data/train_aug", "--exp", "exp/teacher",
               "--device", "cpu")
    assert res.returncode == 0, res.stderr[-2000:]
    return egs


def test_one_liner_takes_the_documented_defaults(recipe):
    res = trkd(recipe, "distill", "--teacher", "exp/teacher", "--method", "trkd", "--device", "cpu")
    assert res.returncode == 0, res.stderr[-2000:]
    said = [line for line in res.stderr.splitlines() if line.startswith("trkd distill: --")]
    assert said == ["trkd distill: --data data/train_aug (the teacher's, from exp/teacher/config.yaml)",
                    "trkd distill: --config conf/tiny_student.yaml (run.sh's student=tiny_student)",
                    "trkd distill: --exp exp/tiny_student_trkd (the default, STUDENT_METHOD beside the teacher)"]
    exp = recipe / "exp" / "tiny_student_trkd"
    assert (exp / "models" / "avg_model.pt").is_file()
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert cfg["kd"]["method"] == "trkd" and cfg["model"]["channels"] == STUDENT["channels"]
    # the recorded command names what was used, so that it reruns as written
    words = cfg["command"].split()
    for option, value in (("--config", "conf/tiny_student.yaml"), ("--data", "data/train_aug"),
                          ("--exp", "exp/tiny_student_trkd")):
        assert words[words.index(option) + 1] == value


def test_conf_student_yaml_comes_first(recipe):
    (recipe / "conf" / "student.yaml").write_text((recipe / "conf" / "tiny_student.yaml").read_text())
    try:
        # EXP already holds checkpoints: the defaults are printed, then the usual refusal
        res = trkd(recipe, "distill", "--teacher", "exp/teacher", "--method", "trkd", "--exp", "exp/tiny_student_trkd")
    finally:
        (recipe / "conf" / "student.yaml").unlink()
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        "trkd distill: --data data/train_aug (the teacher's, from exp/teacher/config.yaml)",
        "trkd distill: --config conf/student.yaml (the default)",
        "trkd: error: exp/tiny_student_trkd/models: already holds checkpoints: pass --resume or use a new --exp"]


def test_outside_the_recipe_folder_the_error_says_what_to_pass(recipe, tmp_path):
    res = trkd(tmp_path, "distill", "--teacher", recipe / "exp" / "teacher", "--method", "kd")
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"trkd: error: {recipe}/exp/teacher/config.yaml: the teacher's data dir data/train_aug (from its command) "
        f"is not a folder here, in {tmp_path}: run from the folder it was trained in, or pass --data"]
    res = trkd(tmp_path, "distill", "--teacher", recipe / "exp" / "teacher", "--method", "kd", "--data",
               recipe / "data" / "train_aug")
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        "trkd: error: no --config: neither conf/student.yaml nor a student= line in ./run.sh (run from a recipe "
        "folder, or pass --config)"]
    res = trkd(tmp_path, "distill", "--teacher", tmp_path, "--method", "kd")
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"trkd: error: {tmp_path}/config.yaml: missing: --teacher must be a trained model dir (trkd train's --exp)"]
