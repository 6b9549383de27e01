"""The README's commands run as written on the egs/mini `--quick` experiment; that run makes every
stage's outputs and the table, a rerun skips the work, a second seed tables the spread, and
`trkd plan` predicts what the run writes, stage by stage, within 10 %. (The recipe's one end-to-end
test: the --quick run is made once, by the README's first command.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.S | re.M)
STAGE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d run\.sh: stage (\d)", re.M)
TEACHER, STUDENT, METHODS = "ecapa_teacher", "ecapa_student", ("none", "kd", "dkd", "enskd", "trkd")  # run.sh's defaults


def readme_blocks():
    """(language, commands) of every README block that starts with `cd egs/mini`, in order; a
    command is a line with its `\\` continuations, comments and comment-only lines dropped."""
    out = []
    for lang, body in BLOCK.findall((ROOT / "README.md").read_text()):
        if lang == "python":
            out.append((lang, [body]))
            continue
        lines = body.splitlines()
        if not lines or lines[0].strip() != "cd egs/mini":
            continue
        commands, current = [], ""
        for line in lines[1:]:
            code = line.split("  #")[0].rstrip() if not line.lstrip().startswith("#") else ""
            current += code[:-1] + " " if code.endswith("\\") else code
            if not code.endswith("\\") and current.strip():
                commands.append(current.strip())
                current = ""
        out.append((lang, commands))
    return out


def test_the_readme_blocks_are_found_and_split_into_commands():
    blocks = readme_blocks()
    assert blocks[0][0] == "sh" and blocks[0][1][0] == "./run.sh --quick true"
    assert any(lang == "python" for lang, _ in blocks)
    assert all("\\" not in c and not c.startswith("#") for _, cmds in blocks for c in cmds)


def test_import_trkd_works_from_the_parent_of_a_clone_named_trkd(tmp_path):
    """The venv's Python imports the package, not the clone folder `trkd/` of the current directory
    (tools/install.sh installs in editable compat mode: the checkout's root on sys.path)."""
    (tmp_path / "trkd" / "egs").mkdir(parents=True)  # a clone's top folder: no __init__.py
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([str(ROOT / "tools/venv/bin/python"), "-c", "import trkd; print(trkd.load_model.__module__)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "trkd.api", run.stderr[-500:]


def test_no_file_points_at_notes_users_do_not_have():
    """Docs, help texts and comments cite what ships with trkd, not design notes kept elsewhere."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    cited = re.compile(r"\bspec/[a-z_]+\.md")
    hits = [f for f in files if f.endswith((".py", ".md", ".sh", ".yaml"))
            and cited.search((ROOT / f).read_text(errors="replace"))]
    assert hits == []


def _du(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def actual_bytes(mini: Path) -> dict:
    """What the stages of the quick run wrote, grouped as `trkd plan` groups its rows."""
    data, root = mini / "data_quick", mini / "exp_quick" / "seed0"
    wavs = lambda d: [mini / line.split(maxsplit=1)[1] for line in (d / "wav.scp").read_text().splitlines()]  # noqa: E731
    source = {p.resolve() for d in ("train", "test") for p in wavs(data / d)}
    aug = [p for p in wavs(data / "train_aug") if p.resolve() not in source]
    # stage 2: augmented WAVs (a random number of them: the plan counts their expectation) and fbank
    return {
        "1": _du(source),
        "2": _du(aug) + _du((data / "train_aug").rglob("raw_fbank.*.ark")) + _du((data / "test").rglob("raw_fbank.*.ark")),
        "3": _du((root / "ecapa_teacher" / "models").glob("*.pt")),
        "4": _du((root / "ecapa_teacher" / "logits").glob("*")),
        "5": _du(p for s in root.glob("ecapa_student_*") for p in (s / "models").glob("*.pt")),
    }


def planned_bytes(rows) -> dict:
    pick = lambda stage: sum(r["bytes"] for r in rows if r["stage"] == stage)  # noqa: E731
    return {stage: pick(stage) for stage in ("1", "2", "3", "4", "5")}


@pytest.mark.slow
def test_every_readme_command_runs_on_the_quick_experiment(tmp_path):
    mini = tmp_path / "egs" / "mini"
    top = ROOT / "egs" / "mini"
    outputs = lambda d, names: [n for n in names if Path(d) == top and n.startswith(("data", "exp", "corpus"))]  # noqa: E731
    shutil.copytree(top, mini, symlinks=True, ignore=outputs)
    env = dict(os.environ, TRKD_ROOT=str(ROOT), PATH=f"{ROOT / 'tools/venv/bin'}:{os.environ['PATH']}")
    for lang, commands in readme_blocks():
        for command in commands:
            if lang == "python":
                run = subprocess.run([sys.executable, "-c", command], cwd=mini, env=env, capture_output=True,
                                     text=True, timeout=600)
            else:
                run = subprocess.run(["bash", "-c", f"set -eo pipefail; . ./path.sh; {command}"], cwd=mini, env=env,
                                     capture_output=True, text=True, timeout=900)
            assert run.returncode == 0, (command, run.stdout[-2000:], run.stderr[-2000:])
            if command == "./run.sh --quick true":
                _check_quick_run(mini, run.stdout)
                _check_rerun_skips(mini, env)
                _check_plan(mini, env)
            if "--seed 1" in command:
                _check_two_seeds(mini / "exp_quick")
            if lang == "python":
                assert len(run.stdout.split()) == 2 and all(-1 <= float(x) <= 1 for x in run.stdout.split())
    seed0 = mini / "exp_quick" / "seed0"
    for student in ("ecapa_student_trkd+emb", "trkd_lf16", "trkd_top8"):
        assert (seed0 / student / "models" / "avg_model.pt").is_file(), student
    records = [json.loads(line) for line in (seed0 / "trkd_top8" / "metrics.jsonl").read_text().splitlines()]
    assert records and all(0 <= r["cut"] <= 1 for r in records)   # rows whose F did not fit in the top 8
    assert (seed0 / "ecapa_teacher" / "scores_asnorm" / "trials.metrics.json").is_file()
    assert (mini / "student.onnx").is_file() and (mini / "student_wav.onnx").is_file()


def _check_plan(mini: Path, env: dict) -> None:
    """`trkd plan` on the quick run's source data dirs against what its stages wrote: within 10 %."""
    out = mini / "plan.json"
    run = subprocess.run(["bash", "-c", ". ./path.sh; trkd plan --data data_quick/train --test-data data_quick/test "
                          "--aug conf/aug.yaml --fbank conf/fbank.yaml --teacher conf/ecapa_teacher.yaml "
                          f"--student conf/ecapa_student.yaml --quick --json {out}"],
                         cwd=mini, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    plan, actual = planned_bytes(json.loads(out.read_text())["rows"]), actual_bytes(mini)
    for stage, got in actual.items():
        assert got > 0 and plan[stage] == pytest.approx(got, rel=0.10), (stage, plan[stage], got)


def _check_quick_run(mini: Path, stdout: str) -> None:
    """Every stage ran and left its outputs; the table lists the teacher, then the methods in order."""
    assert sorted(set(STAGE_LINE.findall(stdout))) == ["1", "2", "3", "4", "5", "6"]
    data, root = mini / "data_quick", mini / "exp_quick" / "seed0"
    assert (data / "corpus.yaml").is_file() and (data / "test" / "trials").is_file()
    lines = lambda f: len(f.read_text().splitlines())  # noqa: E731
    assert lines(data / "train_aug" / "feats.scp") > lines(data / "train" / "utt2spk")
    assert lines(data / "test" / "feats.scp") == lines(data / "test" / "utt2spk")
    assert (root / TEACHER / "models" / "avg_model.pt").is_file()
    assert (root / TEACHER / "logits" / "logits.scp").is_file()
    for m in METHODS:
        assert yaml.safe_load((root / f"{STUDENT}_{m}" / "config.yaml").read_text())["kd"]["method"] == m
    systems = [TEACHER] + [f"{STUDENT}_{m}" for m in METHODS]
    table = (root / "RESULTS.md").read_text()
    assert (root / "RESULTS.png").is_file() and table in stdout
    for name in systems:
        assert (root / name / "scores" / "trials.metrics.json").is_file(), name
    assert re.findall(r"^\|\s*(\S+)\s*\|\s*\d", table, re.M) == systems
    assert not (mini / "exp_quick" / "RESULTS.md").exists()  # one seed: no table over seeds yet
    _check_quick_eers(table)


QUICK_SECTION = "## The `--quick` run on any CPU"
QUICK_ROW = re.compile(r"^\| (\S+) \| ([0-9.]+) \| [^|]* \| ± ([0-9.]+) \|$", re.M)


def documented_quick_eers() -> dict:
    """egs/mini/RESULTS.md's `--quick` table: system -> (EER %, tolerance in points)."""
    text = (ROOT / "egs" / "mini" / "RESULTS.md").read_text()
    section = text.split(QUICK_SECTION, 1)[1].split("\n## ", 1)[0]
    return {name: (float(eer), float(tol)) for name, eer, tol in QUICK_ROW.findall(section)}


def test_the_documented_quick_table_names_every_system_with_a_tolerance():
    table = documented_quick_eers()
    assert list(table) == [TEACHER] + [f"{STUDENT}_{m}" for m in METHODS]
    assert all(0 < eer < 100 and 0 < tol < 50 for eer, tol in table.values())


def _check_quick_eers(table: str) -> None:
    """The quick run's EERs against the documented ones, each within its stated tolerance: the
    digits are the CPU's (see egs/mini/RESULTS.md), the range is not."""
    got = {cells[0]: float(cells[3]) for cells in ([c.strip() for c in line.split("|")[1:-1]]
                                                   for line in table.splitlines() if line.startswith("| ecapa"))}
    for name, (eer, tol) in documented_quick_eers().items():
        assert abs(got[name] - eer) <= tol, (name, got[name], eer, tol)


def _check_rerun_skips(mini: Path, env: dict) -> None:
    """A rerun trains nothing and rewrites no model."""
    models = lambda: {p: p.stat().st_mtime_ns for p in (mini / "exp_quick" / "seed0").glob("*/models/avg_model.pt")}  # noqa: E731
    before = models()
    again = subprocess.run(["./run.sh", "--quick", "true"], cwd=mini, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(before) == 1 + len(METHODS) and models() == before


def _check_two_seeds(exp: Path) -> None:
    """Once a second seed is scored, exp/RESULTS.md tables both with their spread."""
    both = (exp / "RESULTS.md").read_text()
    assert "Mean over 2 runs (seeds)" in both and (exp / "RESULTS.png").is_file()
    eer = {cells[0]: cells[3] for cells in ([c.strip() for c in line.split("|")[1:-1]]
                                             for line in both.splitlines() if line.startswith("| "))}
    assert "±" in eer[TEACHER] and "±" in eer[f"{STUDENT}_trkd"]
    assert "±" not in eer[f"{STUDENT}_kd"]  # trained on seed 0 only
    assert re.search(r"^Differences beyond the spread", both, re.M)
