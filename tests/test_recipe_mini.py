"""egs/mini: the recipe's options, its configs' schedules, its skip/force/resume logic on faked
outputs. The whole --quick run end to end is tests/test_readme.py (the README's commands make it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path


from trkd.config import QUICK, load_config
from trkd.distill.kd_config import load_distill_config

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "egs" / "mini"


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
    student = load_distill_config(MINI / "conf" / f"{opts['student']}.yaml")
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


def recipe_copy(tmp_path: Path, launch: bool = False) -> Path:
    """egs/mini copied as a user starts a new recipe (`cp -r`: its utils link now points nowhere).

    launch: cmd.sh's launchers print the job instead of running it, so that a stage's decisions
    show without training anything.
    """
    egs = tmp_path / "my_recipe"
    shutil.copytree(MINI, egs, symlinks=True, ignore=shutil.ignore_patterns("data*", "exp*"))
    if launch:
        with open(egs / "cmd.sh", "a") as f:
            f.write('export train_cmd="echo LAUNCH" gpu_cmd="echo LAUNCH" cpu_cmd="echo LAUNCH"\n')
    return egs


def run_copy(egs: Path, *args: str, trkd_root=ROOT, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess:
    """./run.sh of a copy, with TRKD_ROOT (unless None) and a PATH that holds no trkd."""
    env = {k: v for k, v in os.environ.items() if k != "TRKD_ROOT"}
    env["PATH"] = path
    if trkd_root is not None:
        env["TRKD_ROOT"] = str(trkd_root)
    return subprocess.run(["./run.sh", *args], cwd=egs, env=env, capture_output=True, text=True, timeout=60)


def test_copied_recipe_finds_trkd_or_says_how(tmp_path):
    egs = recipe_copy(tmp_path)
    assert not (egs / "utils").exists()  # the relative link broke in the copy
    res = run_copy(egs, "--help", trkd_root=None)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == (f"path.sh: cannot find the trkd checkout from {egs} (not from utils -> ../../utils, nor "
                          "from a trkd on PATH): set TRKD_ROOT=/path/to/trkd\n")
    res = run_copy(egs, "--help", trkd_root=tmp_path)
    assert res.returncode == 1
    assert res.stderr == (f"path.sh: cannot find the trkd checkout from {egs} (TRKD_ROOT={tmp_path} has no "
                          "utils/env.sh): set TRKD_ROOT=/path/to/trkd\n")
    res = run_copy(egs, "--help")
    assert res.returncode == 0, res.stderr
    assert "  --stage " in res.stdout and "  --force " in res.stdout
    assert res.stderr == f"path.sh: {egs}/utils now links to {ROOT}/utils\n"
    assert os.readlink(egs / "utils") == f"{ROOT}/utils"
    # the trkd on PATH (an activated venv) is found too, without TRKD_ROOT
    (egs / "utils").unlink()
    res = run_copy(egs, "--stop-stage", "0", trkd_root=None, path=f"{ROOT}/tools/venv/bin:/usr/bin:/bin")
    assert res.returncode == 0, res.stderr
    assert os.readlink(egs / "utils") == f"{ROOT}/utils"


def fake_outputs(egs: Path, files) -> dict:
    """Empty files standing for finished outputs; their paths and inodes (a moved file keeps its inode)."""
    out = {}
    for name in files:
        path = egs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        out[name] = path.stat().st_ino
    return out


LAUNCH_LINE = re.compile(r"^LAUNCH (\S+) trkd (\S+) (.*)$", re.M)
SKIP_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d run\.sh: (\S+) exists: skipping; --force true reruns$", re.M)


def test_stages_say_what_they_skip_and_continue_an_interrupted_student(tmp_path):
    egs = recipe_copy(tmp_path, launch=True)
    root = "exp/seed0"
    fake_outputs(egs, [f"{root}/ecapa_teacher/models/avg_model.pt", f"{root}/ecapa_teacher/logits/logits.scp",
                       f"{root}/ecapa_student_none/models/avg_model.pt",
                       f"{root}/ecapa_student_dkd/models/model_1.pt", f"{root}/ecapa_student_dkd/models/model_2.pt"])
    res = run_copy(egs, "--stage", "3", "--stop-stage", "5", "--methods", "none dkd trkd")
    assert res.returncode == 0, res.stderr
    assert SKIP_LINE.findall(res.stdout) == [f"{root}/ecapa_teacher/models/avg_model.pt",
                                             f"{root}/ecapa_teacher/logits/logits.scp",
                                             f"{root}/ecapa_student_none/models/avg_model.pt"]
    assert f"run.sh: {root}/ecapa_student_dkd has checkpoints up to epoch 2 but no average: continuing (--resume)" \
        in res.stdout
    launched = LAUNCH_LINE.findall(res.stdout)
    assert [(log, cmd) for log, cmd, _ in launched] == [(f"{root}/ecapa_student_dkd/log/train.log", "distill"),
                                                          (f"{root}/ecapa_student_trkd/log/train.log", "distill")]
    for (_, _, args), m in zip(launched, ("dkd", "trkd")):
        assert args.split() == ["--teacher", f"{root}/ecapa_teacher", "--config", "conf/ecapa_student.yaml",
                                "--method", m, "--data", "data/train_aug", "--exp", f"{root}/ecapa_student_{m}",
                                "--seed", "0", "--resume"]


def test_force_reruns_and_keeps_the_old_outputs(tmp_path):
    egs = recipe_copy(tmp_path, launch=True)
    root = "exp/seed0"
    done = fake_outputs(egs, [f"{root}/ecapa_teacher/models/avg_model.pt", f"{root}/ecapa_teacher/logits/logits.scp",
                              f"{root}/ecapa_student_kd/models/avg_model.pt"])
    res = run_copy(egs, "--stage", "3", "--stop-stage", "5", "--methods", "kd", "--force", "true")
    assert res.returncode == 0, res.stderr
    assert not SKIP_LINE.findall(res.stdout)
    moved = re.findall(r"run\.sh: --force true: moved (\S+) to (\S+) \(delete it once no longer needed\)", res.stdout)
    assert [src for src, _ in moved] == [f"{root}/ecapa_teacher", f"{root}/ecapa_student_kd"]
    for src, dst in moved:
        assert re.fullmatch(rf"{root}/\.old/{Path(src).name}\.\d{{8}}-\d{{6}}", dst) and not (egs / src).exists()
    teacher_old, student_old = (egs / dst for _, dst in moved)
    # the old files themselves, moved (not copies), the dump inside the old teacher
    assert (teacher_old / "models/avg_model.pt").stat().st_ino == done[f"{root}/ecapa_teacher/models/avg_model.pt"]
    assert (teacher_old / "logits/logits.scp").stat().st_ino == done[f"{root}/ecapa_teacher/logits/logits.scp"]
    assert (student_old / "models/avg_model.pt").stat().st_ino == done[f"{root}/ecapa_student_kd/models/avg_model.pt"]
    assert [cmd for _, cmd, _ in LAUNCH_LINE.findall(res.stdout)] == ["train", "dump-logits", "distill"]
    # stage 4 alone: the dump is moved aside, the teacher kept
    fake_outputs(egs, [f"{root}/ecapa_teacher/models/avg_model.pt", f"{root}/ecapa_teacher/logits/logits.scp"])
    res = run_copy(egs, "--stage", "4", "--stop-stage", "4", "--force", "true")
    assert res.returncode == 0, res.stderr
    assert re.search(rf"moved {root}/ecapa_teacher/logits to {root}/ecapa_teacher/\.old/logits\.", res.stdout)
    assert (egs / root / "ecapa_teacher/models/avg_model.pt").is_file()
    assert [cmd for _, cmd, _ in LAUNCH_LINE.findall(res.stdout)] == ["dump-logits"]


def test_data_stages_skip_what_exists_and_say_how_to_remake_it(tmp_path):
    egs = recipe_copy(tmp_path, launch=True)
    fake_outputs(egs, ["data/train_aug/wav.scp", "data/train_aug/feats.scp", "data/test/feats.scp"])
    for force in ("false", "true"):
        res = run_copy(egs, "--stage", "2", "--stop-stage", "2", "--force", force)
        assert res.returncode == 0, res.stderr
        skipped = re.findall(r"run\.sh: (\S+) exists: skipping \(delete it to remake it\)$", res.stdout, re.M)
        assert skipped == ["data/train_aug/wav.scp", "data/train_aug/feats.scp", "data/test/feats.scp"]


def test_training_stage_shows_its_progress_on_the_console(tmp_path):
    """Stage 3 as run.sh runs it (utils/stages.sh's train_teacher under utils/run.sh, the console
    not a terminal): the job log gets everything, the console one line per log interval and each
    epoch's end, in order, as train.log has them; a failed training fails the stage, its error shown."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from train_helpers import make_feats_dir, write_config

    data = make_feats_dir(tmp_path / "data", num_spk=4, utts_per_spk=7)
    conf = write_config(tmp_path / "c.yaml", data={"batch_size": 4},
                        train={"epochs": 2, "avg_last": 1, "log_interval": 3, "seed": 2})
    exp = tmp_path / "exp"
    script = (f". {ROOT}/utils/stages.sh; force=false seed=0 quick_flag=''; train_cmd={ROOT}/utils/run.sh; "
              f"train_teacher {conf} {data} {exp}")
    env = dict(os.environ, PATH=f"{ROOT}/tools/venv/bin:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    res = subprocess.run(["bash", "-c", f"set -euo pipefail; {script}"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    console = [ln.split("   ", 1)[1] for ln in res.stdout.splitlines()]
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d   ", ln) for ln in res.stdout.splitlines())
    own = [ln.split(" ", 2)[2] for ln in (exp / "train.log").read_text().splitlines()]
    assert console == [ln for ln in own if re.match(r"epoch \d+ (iter|done)|averaged", ln)]
    assert [ln.split(" lr ")[0] for ln in console if " iter " in ln] == [
        "epoch 1 iter 3/7", "epoch 1 iter 7/7", "epoch 2 iter 3/7", "epoch 2 iter 7/7"]
    assert "# Ended (code 0)" in (exp / "log" / "train.log").read_text()
    # a training that fails: the stage fails, its error on the console too
    bad = write_config(tmp_path / "bad.yaml", head={"num_classes": 3})
    res = subprocess.run(["bash", "-c", f"set -euo pipefail; {script.replace(str(conf), str(bad))}/bad"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1 and f"job 1 of 1 failed, see {exp}/bad/log/train.log" in res.stderr
    assert res.stdout.startswith(f"trkd: error: {bad}:10: head.num_classes is 3, but training has 4 classes")
    # the same failure as 2 DDP processes (the mini recipe's launch): each prints it, the console once
    ddp = script.replace(f"train_cmd={ROOT}/utils/run.sh", f"train_cmd='{ROOT}/utils/run.sh --torchrun --nproc-per-node 2'")
    res = subprocess.run(["bash", "-c", f"set -euo pipefail; {ddp.replace(str(conf), str(bad))}/bad2"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1 and res.stdout.count("trkd: error: ") == 1, res.stdout
    assert (exp / "bad2" / "log" / "train.log").read_text().count("trkd: error: ") == 2


def test_corpus_size_options_reach_the_corpus(tmp_path):
    egs = recipe_copy(tmp_path)
    sizes = ("--train-speakers", "6", "--test-speakers", "4", "--utts-per-speaker", "3")
    res = run_copy(egs, "--plan", "true", *sizes)
    assert res.returncode == 1 and res.stderr.strip().endswith(
        "--plan true with another corpus size: run --stop-stage 1 first (the plan reads its data dirs)")
    res = run_copy(egs, "--stop-stage", "1", "--nj", "1", "--data", "small", *sizes)
    assert res.returncode == 0, res.stderr
    for part, speakers in (("train", 6), ("test", 4)):
        lines = (egs / "small" / part / "spk2utt").read_text().splitlines()
        assert len(lines) == speakers and all(len(x.split()) == 1 + 3 for x in lines)


def test_stage6_evaluates_two_models_at_a_time_and_prints_each_in_order(tmp_path):
    """eval_models: models run in pairs (the slower first one still printed first, its lines
    together), each model's lines also in its log/eval.log; a failed model fails the stage once
    its pair has ended, and the next pair does not start."""
    stubs = ('extract_set() { sleep $([ $(basename $1) = a ] && echo 1 || echo 0); echo "embed $1"; '
             '[ $(basename $1) != c ]; }; score_set() { echo "score $1 $3"; }')
    models = " ".join(str(tmp_path / m) for m in "abcde")
    script = f". {ROOT}/utils/stages.sh; {stubs}; eval_models data/test data/test/trials {models}"
    res = subprocess.run(["bash", "-c", f"set -euo pipefail; {script}"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    lines = [re.sub(r"^\d{4}-\d\d-\d\d \S+ ", "", ln) for ln in res.stdout.splitlines()]
    heads = [ln for ln in lines if "stage 6" in ln]
    assert [h.split(": ")[2] for h in heads] == ["a", "b", "c", "d"]
    assert lines[1:3] == [f"embed {tmp_path}/a", f"score {tmp_path}/a data/test/trials"]
    assert f"score {tmp_path}/c data/test/trials" not in lines  # c failed before scoring,
    assert lines[-2:] == [f"embed {tmp_path}/d", f"score {tmp_path}/d data/test/trials"]  # d beside it
    assert (tmp_path / "b/log/eval.log").read_text().splitlines()[1:] == [f"embed {tmp_path}/b",
                                                                         f"score {tmp_path}/b data/test/trials"]
    assert not (tmp_path / "e").exists()
