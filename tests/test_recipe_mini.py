"""egs/mini: the recipe's options, its configs' schedules, and (slow) the whole --quick run end to end."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from trkd.config import QUICK, load_config

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "egs" / "mini"
STAGE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d run\.sh: stage (\d)", re.M)


def _run(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "run.sh", *args], cwd=MINI, capture_output=True, text=True, timeout=timeout)


def _defaults() -> dict:
    """The variables declared at the top of run.sh, as the recipe's --help prints them."""
    out = _run("--help")
    assert out.returncode == 0, out.stderr
    return dict(re.findall(r"^\s+--(\S+)\s+'([^']*)'", out.stdout, re.M))


def test_help_lists_every_option_with_its_default():
    opts = _defaults()
    for name in ("stage", "stop-stage", "nj", "seed", "corpus-seed", "teacher", "student", "methods",
                 "quick", "data", "exp"):
        assert name in opts, name
    assert opts["stage"] == "1" and opts["stop-stage"] == "100" and opts["quick"] == "false"
    assert opts["methods"].split() == ["none", "kd", "dkd", "enskd", "trkd"]


def test_unknown_option_and_bad_boolean_are_errors():
    out = _run("--no-such-option", "1")
    assert out.returncode == 1 and "unknown option --no-such-option" in out.stderr
    out = _run("--quick", "yes")
    assert out.returncode == 1 and "takes true or false" in out.stderr


def test_default_configs_exist_and_schedules_fit_their_epochs():
    opts = _defaults()
    for name in (opts["teacher"], opts["student"]):
        path = MINI / "conf" / f"{name}.yaml"
        for overrides in ({}, dict(QUICK)):
            cfg = load_config(path, overrides)
            epochs = cfg.train.epochs
            assert 1 <= cfg.train.avg_last <= epochs
            # the margin ramp may end with the last epoch: stop_epoch = epochs + 1
            assert cfg.head.margin_start_epoch <= cfg.head.margin_stop_epoch <= epochs + 1
            assert cfg.optim.warmup_epochs < epochs
            assert cfg.data.num_workers <= 1  # two cores: loader workers would steal the trainer's
    student = load_config(MINI / "conf" / f"{opts['student']}.yaml")
    kd = student.kd
    epochs = student.train.epochs
    # The paper's schedules are in epochs of a 150-epoch run; the mini student's must be rescaled.
    assert 0 < kd.warmup_epochs < epochs
    # the τ curriculum may end with the last iteration (stop_epoch = epochs + 1), as the margin ramp
    assert 1 <= kd.trkd.start_epoch < kd.trkd.stop_epoch <= epochs + 1
    teacher = load_config(MINI / "conf" / f"{opts['teacher']}.yaml")
    from trkd.models import build_model
    from trkd.models.complexity import count_params

    assert count_params(build_model(dict(student.model))) < count_params(build_model(dict(teacher.model))) / 2


def test_corpus_aug_and_fbank_configs_are_valid():
    from trkd.corpus.config import Difficulty
    from trkd.data.augment import AugmentConfig
    from trkd.data.options import load_options
    from trkd.features import FbankOptions

    aug = load_options(AugmentConfig, MINI / "conf" / "aug.yaml", {}).check()
    assert aug.copies and 0 < aug.prob <= 1
    fb = load_options(FbankOptions, MINI / "conf" / "fbank.yaml", {})
    assert fb.num_mel_bins == 80
    diff = Difficulty.from_yaml(MINI / "conf" / "corpus.yaml")
    assert diff.hard_fraction >= 0.1  # the trials keep same-family impostors


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    """`run.sh --quick true` makes every stage's outputs and the table; a re-run skips the work."""
    data, exp = tmp_path / "data", tmp_path / "exp"
    methods = "none kd dkd enskd trkd"
    out = _run("--quick", "true", "--data", str(data), "--exp", str(exp), "--methods", methods, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert sorted(set(STAGE_LINE.findall(out.stdout))) == ["1", "2", "3", "4", "5", "6"]
    data, exp = Path(f"{data}_quick"), Path(f"{exp}_quick")  # --quick keeps its folders apart
    opts = _defaults()
    teacher, student = opts["teacher"], opts["student"]
    dirs = {"train": data / "train", "test": data / "test", "train_aug": data / "train_aug"}
    # stage 1-2
    assert (data / "corpus.yaml").is_file() and (data / "test" / "trials").is_file()
    n_train = len((dirs["train"] / "utt2spk").read_text().splitlines())
    n_aug = len((dirs["train_aug"] / "feats.scp").read_text().splitlines())
    assert n_aug > n_train
    assert len((dirs["test"] / "feats.scp").read_text().splitlines()) == \
        len((dirs["test"] / "utt2spk").read_text().splitlines())
    # stage 3-5
    root = exp / "seed0"
    assert (root / teacher / "models" / "avg_model.pt").is_file()
    assert (root / teacher / "logits" / "logits.scp").is_file()
    systems = [teacher] + [f"{student}_{m}" for m in methods.split()]
    for m in methods.split():
        cfg = yaml.safe_load((root / f"{student}_{m}" / "config.yaml").read_text())
        assert cfg["kd"]["method"] == m
    # stage 6
    table = (root / "RESULTS.md").read_text()
    assert (root / "RESULTS.png").is_file()
    for name in systems:
        metrics = root / name / "scores" / "trials.metrics.json"
        assert metrics.is_file(), name
        assert re.search(rf"^\|\s*{re.escape(name)}\s*\|", table, re.M), name
    assert table in out.stdout
    listed = re.findall(r"^\|\s*(\S+)\s*\|\s*\d", table, re.M)
    assert listed == systems  # the teacher, then the methods in --methods order
    assert not (exp / "RESULTS.md").exists()  # one seed: no table over seeds yet
    # every stage skips finished work: a re-run trains nothing and rewrites no model
    stamp = {p: p.stat().st_mtime_ns for p in root.glob("*/models/avg_model.pt")}
    again = _run("--quick", "true", "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp"),
                 "--methods", methods, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/models/avg_model.pt")} == stamp
    # a second seed reuses the corpus and features; stage 6 then tables both seeds with their spread
    seed1 = _run("--quick", "true", "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp"),
                 "--methods", "none", "--seed", "1", "--stage", "3", timeout=600)
    assert seed1.returncode == 0, seed1.stdout[-3000:] + seed1.stderr[-3000:]
    both = (exp / "RESULTS.md").read_text()
    assert "Mean over 2 runs (seeds)" in both and (exp / "RESULTS.png").is_file()
    eer = {cells[0]: cells[3] for cells in ([c.strip() for c in line.split("|")[1:-1]]
                                             for line in both.splitlines() if line.startswith("| "))}
    assert "±" in eer[teacher] and "±" in eer[f"{student}_none"]
    assert "±" not in eer[f"{student}_kd"]  # trained on seed 0 only
    assert re.search(r"^Differences beyond the spread", both, re.M)
