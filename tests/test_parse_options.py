"""utils/parse_options.sh: Kaldi's option contract, run through bash."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[1] / "utils"

SCRIPT = """#!/usr/bin/env bash
stage=1               # first stage to run
stop_stage=100        # last stage to run
methods="none kd"     # distillation methods
quick=false
data_dir=data/train
help_message="Usage: demo.sh [options] <out>"
. utils/parse_options.sh
printf '%s\\n' "stage=$stage" "stop_stage=$stop_stage" "methods=$methods" "quick=$quick" "data_dir=$data_dir" "rest=$*"
"""


@pytest.fixture
def demo(tmp_path):
    (tmp_path / "utils").symlink_to(UTILS)
    (tmp_path / "demo.sh").write_text(SCRIPT)

    def run(*args):
        return subprocess.run(["bash", "demo.sh", *args], cwd=tmp_path, capture_output=True, text=True)
    return run


def values(res):
    assert res.returncode == 0, res.stderr
    return dict(line.split("=", 1) for line in res.stdout.splitlines())


def test_defaults_kept(demo):
    assert values(demo()) == {"stage": "1", "stop_stage": "100", "methods": "none kd", "quick": "false",
                              "data_dir": "data/train", "rest": ""}


def test_dashes_become_underscores_and_values_keep_spaces(demo):
    got = values(demo("--stop-stage", "3", "--methods", "none  kd $HOME *", "--data-dir=/a b/c", "--quick", "true",
                      "out", "--not-an-option"))
    assert got == {"stage": "1", "stop_stage": "3", "methods": "none  kd $HOME *", "quick": "true",
                   "data_dir": "/a b/c", "rest": "out --not-an-option"}


def test_double_dash_ends_options(demo):
    assert values(demo("--stage", "2", "--", "--stage", "5"))["rest"] == "--stage 5"


def test_help_prints_variables_with_current_values(demo):
    res = demo("--stage", "4", "--help")
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert lines[0] == "Usage: demo.sh [options] <out>"
    assert any(l.split() == ["--stage", "'4'", "first", "stage", "to", "run"] for l in lines)
    assert any(l.split() == ["--methods", "'none", "kd'", "distillation", "methods"] for l in lines)
    assert any(l.split() == ["--data-dir", "'data/train'"] for l in lines)
    assert not any("help-message" in l or "stage=" in l for l in lines)


@pytest.mark.parametrize("args,message", [
    (["--stagee", "2"], "demo.sh: unknown option --stagee (run with --help for the options)"),
    (["--config", "conf/x.yaml"], "demo.sh: unknown option --config (run with --help for the options)"),
    (["--quick", "yes"], "demo.sh: option --quick takes true or false, not 'yes'"),
    (["--stage"], "demo.sh: option --stage needs a value"),
    (["--PATH", "/x"], "demo.sh: unknown option --PATH (run with --help for the options)"),
    (["--home=/x"], "demo.sh: unknown option --home (run with --help for the options)"),
])
def test_bad_options_are_errors(demo, args, message):
    res = demo(*args)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip() == message


def test_only_declared_variables_are_options(tmp_path):
    """Variables set in the environment or by a sourced file are not the script's options."""
    (tmp_path / "utils").symlink_to(UTILS)
    (tmp_path / "lib.sh").write_text("helper_var=1\n")
    (tmp_path / "demo.sh").write_text("stage=1\n. ./lib.sh\n. utils/parse_options.sh\necho \"$stage $PATH\"\n")
    env = {"PATH": os.environ["PATH"], "lower_env": "1"}
    for args in (["--PATH", "/x"], ["--lower-env", "2"], ["--helper-var", "2"]):
        res = subprocess.run(["bash", "demo.sh", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert (res.returncode, res.stdout) == (1, ""), args
        assert res.stderr == f"demo.sh: unknown option {args[0]} (run with --help for the options)\n"
    res = subprocess.run(["bash", "demo.sh", "--stage", "3"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.stdout == f"3 {os.environ['PATH']}\n"
