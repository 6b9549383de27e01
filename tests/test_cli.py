"""The CLI as a user calls it: option names, reruns that skip, clear errors, the environment, --help."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from train_helpers import make_feats_dir, run_cli, write_config

ROOT = Path(__file__).resolve().parents[1]
TRKD = str(ROOT / "tools/venv/bin/trkd")


def _trkd(*args, env=None):
    return subprocess.run([TRKD, *map(str, args)], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data = make_feats_dir(tmp / "data")
    conf = write_config(tmp / "c.yaml", train={"epochs": 2, "avg_last": 2, "log_interval": 10, "seed": 1})
    r = run_cli("train", "--config", conf, "--data", data, "--exp", tmp / "exp", "--device", "cpu")
    assert r.exit_code == 0, r.output + repr(r.exception)
    return tmp / "exp", data


def test_omp_wait_policy_is_passive_before_torch_unless_the_user_set_it():
    code = ("import os, sys; import trkd.cli; assert 'torch' not in sys.modules; "
            "print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "PASSIVE"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert proc.stdout.strip() == "ACTIVE"


@pytest.mark.parametrize("command", ["export", "extract", "results", "embed", "dump-logits", "distill", "score"])
def test_help_paragraphs_are_reflowed_not_ragged(command):
    width = 100
    proc = _trkd(command, "--help", env={**os.environ, "COLUMNS": str(width), "TERM": "dumb"})
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.split("Usage:", 1)[1].split("╭", 1)[0]
    lines = [line.strip() for line in text.splitlines()[1:]]
    for line, nxt in zip(lines, lines[1:]):
        if line and nxt:  # a line followed by more of its paragraph must have been full
            assert len(line) + 1 + len(nxt.split()[0]) > width - 6, f"ragged line in `trkd {command} --help`: {line!r}"


def test_extract_rerun_skips_finished_output_and_reruns_when_asked(model, tmp_path):
    exp, data = model
    out = tmp_path / "x"
    first = _trkd("extract", "--model", exp, "--data", data, "--out-dir", out, "--device", "cpu")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"wrote {out / 'xvector.scp'}"
    mtime = (out / "xvector.ark").stat().st_mtime_ns
    again = _trkd("extract", "--model", exp, "--data", data, "--out", out, "--device", "cpu")  # old spelling
    assert again.returncode == 0, again.stderr
    assert "is up to date (same model, features and settings): skipped" in again.stdout
    assert (out / "xvector.ark").stat().st_mtime_ns == mtime
    other = _trkd("extract", "--model", exp, "--data", data, "--out-dir", out, "--device", "cpu",
                  "--checkpoint", "model_1.pt")
    assert other.stdout.strip() == f"wrote {out / 'xvector.scp'}"  # another checkpoint: not skipped
    forced = _trkd("extract", "--model", exp, "--data", data, "--out-dir", out, "--device", "cpu",
                   "--checkpoint", "model_1.pt", "--force")
    assert forced.stdout.strip() == f"wrote {out / 'xvector.scp'}"


def test_onnx_with_model_is_an_error(model, tmp_path):
    exp, data = model
    proc = _trkd("extract", "--model", exp, "--onnx", tmp_path / "m.onnx", "--data", data, "--out-dir", tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == "trkd: error: give --model or --onnx, not both (an exported file embeds on its own)\n"


def test_average_refuses_fewer_checkpoints_than_asked(model, tmp_path):
    exp, _ = model
    proc = _trkd("average", "--model", exp, "--num", 5, "--out", tmp_path / "avg.pt")
    assert proc.returncode == 1
    assert proc.stderr == (f"trkd: error: {exp / 'models'}: holds 2 epoch checkpoints, --num 5 asked "
                           f"(pass --num 2 to average those)\n")
    assert not (tmp_path / "avg.pt").exists()
    proc = _trkd("average", "--exp", exp, "--num", 2, "--out", tmp_path / "avg.pt")  # the old spelling
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "avg.pt").is_file()


def test_info_accepts_a_model_folder(model):
    exp, _ = model
    by_model = _trkd("info", "--model", exp)
    assert by_model.returncode == 0, by_model.stderr
    assert by_model.stdout.startswith("model: name=xvector")
    assert _trkd("info", "--config", exp).stdout == by_model.stdout
    assert _trkd("info", "--config", exp / "config.yaml").stdout == by_model.stdout


def test_option_names_are_consistent_and_old_spellings_hidden():
    helps = {c: _trkd(c, "--help", env={**os.environ, "COLUMNS": "200"}).stdout
             for c in ("extract", "average", "export", "embed", "info", "score", "fbank")}
    for command, text in helps.items():
        options = set(re.findall(r"--[a-z][a-z-]+", text))
        # --model is always a model dir to read; --out-dir a folder; --out a file or wspecifier
        assert "--exp" not in options, command
    assert "--out-dir" in helps["extract"] and not re.search(r"--out\b(?!-)", helps["extract"])
    assert "--model" in helps["average"] and "--model" in helps["info"]


def test_help_shows_flags_as_flags_on_every_command():
    """No `<bool>` in any --help: a flag is written `--asnorm` (or, as in run.sh, `--asnorm true`)."""
    from typer.main import get_command
    from typer.testing import CliRunner

    from trkd.cli import app

    def paths(group, prefix=()):
        for name, cmd in group.commands.items():
            yield prefix + (name,)
            if hasattr(cmd, "commands"):
                yield from paths(cmd, prefix + (name,))

    runner = CliRunner()
    commands = [()] + list(paths(get_command(app)))
    assert ("prepare", "voxceleb") in commands and ("score",) in commands
    for command in commands:
        out = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        assert out.exit_code == 0, (command, out.output)
        assert "<bool>" not in out.output and "--help" in out.output, command


def test_a_flag_takes_the_recipes_true_and_false_too(tmp_path):
    """`--asnorm true` is `--asnorm`, `--mean-sub false` is `--no-mean-sub`, `--asnorm false` the
    default: the same scores as the flag forms, through the console script."""
    from scoring_helpers import write_embeddings

    import numpy as np

    rng = np.random.default_rng(0)
    emb = {f"s{s}-u{u}": rng.normal(size=8) + 3 * np.eye(8)[s] for s in range(4) for u in range(3)}
    scp = write_embeddings(tmp_path / "emb", emb)
    trials = tmp_path / "trials"
    trials.write_text("".join(f"{a} {b} {'target' if a[:2] == b[:2] else 'nontarget'}\n"
                              for a in emb for b in emb if a < b))
    base = ["score", "--scp", scp, "--trials", trials, "--cohort-scp", scp, "--asnorm-top-n", "4"]

    @functools.lru_cache(maxsize=None)
    def scores(*flags, root=()):
        out = tmp_path / ("_".join(root + flags).replace("-", "") or "plain")
        proc = _trkd(*root, *base, *flags, "--out-dir", out)
        assert proc.returncode == 0, proc.stderr
        return (out / "trials.score").read_text()

    assert scores("--asnorm", "true") == scores("--asnorm") != scores("--asnorm", "false") == scores()
    assert scores("--asnorm=true") == scores("--asnorm")
    assert scores("--mean-sub", "false") == scores("--no-mean-sub") != scores()
    # a root option's value is not taken for a flag's word
    assert scores("--asnorm", "true", root=("--log-level", "warning")) == scores("--asnorm")
