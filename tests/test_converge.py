"""egs/mini/local/converge.sh: its syntax, its options, and its refusal without features."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from trkd.study.convergence import POINTS, RATIO, RELATIVE

MINI = Path(__file__).resolve().parents[1] / "egs" / "mini"
SCRIPT = "local/converge.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SCRIPT, *args], cwd=MINI, capture_output=True, text=True, timeout=60)


def test_syntax_and_help_lists_every_option_with_its_default():
    assert subprocess.run(["bash", "-n", SCRIPT], cwd=MINI).returncode == 0
    out = _run("--help")
    assert out.returncode == 0, out.stderr
    opts = dict(re.findall(r"^\s+--(\S+)\s+'([^']*)'", out.stdout, re.M))
    assert opts == {"teacher": "ecapa_teacher", "student": "ecapa_student", "teacher-sets": "", "student-sets": "",
                    "tag": "converge", "teacher-dir": "", "seed": "0", "every": "1", "nj": "2", "topk": "0", "quick": "false", "force": "false",
                    "data": "data", "exp": "exp"}
    for conf in (opts["teacher"], opts["student"]):
        assert (MINI / "conf" / f"{conf}.yaml").is_file(), conf


def test_header_states_the_criteria_that_check_regime_applies():
    head = (MINI / SCRIPT).read_text().split("set -euo")[0]
    assert f"< {POINTS:g} points over its last 3 epochs" in head
    assert f"< {100 * RELATIVE:g} % relative over its last 2" in head
    assert f">= {RATIO:g}x the teacher's" in head


def test_without_features_it_names_the_missing_file_and_stops(tmp_path):
    out = _run("--data", str(tmp_path / "nodata"), "--exp", str(tmp_path / "exp"))
    assert out.returncode == 1
    assert f"no {tmp_path / 'nodata'}/train_aug/feats.scp: run ./run.sh --stop-stage 2" in out.stderr
    assert not (tmp_path / "exp").exists()


def test_a_teacher_dir_without_a_trained_teacher_is_refused(tmp_path):
    for f in ("train_aug/feats.scp", "test/feats.scp", "test/trials"):
        (tmp_path / "data" / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / f).write_text("")
    (tmp_path / "t").mkdir()
    out = _run("--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp"), "--teacher-dir", str(tmp_path / "t"))
    assert out.returncode == 1
    assert out.stderr == f"local/converge.sh: no {tmp_path}/t/models/avg_model.pt: --teacher-dir needs a trained teacher\n"
    assert not (tmp_path / "exp").exists() and list((tmp_path / "t").iterdir()) == []


def test_train_set_overrides_the_yaml_after_quick_and_is_recorded(tmp_path):
    import yaml

    from train_helpers import make_feats_dir, run_cli, write_config

    data = make_feats_dir(tmp_path / "data")
    conf = write_config(tmp_path / "c.yaml", train={"epochs": 2, "avg_last": 1, "log_interval": 10})
    r = run_cli("train", "--config", conf, "--data", data, "--exp", tmp_path / "exp", "--device", "cpu", "--quick",
                "--set", "train.epochs=1", "--set", "head.margin_stop_epoch=1")
    assert r.exit_code == 0, repr(r.exception)
    resolved = yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 1 and resolved["head"]["margin_stop_epoch"] == 1  # --quick says 2
    assert resolved["command"].endswith("--quick --set train.epochs=1 --set head.margin_stop_epoch=1")
    assert sorted(p.name for p in (tmp_path / "exp" / "models").glob("model_*.pt")) == ["model_1.pt"]
    r = run_cli("train", "--config", conf, "--data", data, "--exp", tmp_path / "x", "--set", "epochs=1")
    assert "expected BLOCK.KEY=VALUE" in str(r.exception)
