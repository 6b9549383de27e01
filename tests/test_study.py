"""egs/mini/local/study.sh and its table (local/study_report.py): rows in the study's order, the
mean ± spread over seeds, a diverged row recorded in the table instead of stopping the study, the
differences beyond the seed spread, finished rows skipped on a rerun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "mini"
TINY_MODEL = {"name": "ecapa", "channels": 16, "mfa_channels": 48, "se_channels": 8, "attention_channels": 8,
              "embed_dim": 32}
DIVERGED_EVENTS = ('{{"event": "start", "epoch": 1, "time": 0}}\n'
                   '{{"event": "diverged", "epoch": {e}, "iter": 3, "iters_per_epoch": 9, "iteration": {s}, '
                   '"loss": "nan"}}\n')


def load_report():
    sys.path.insert(0, str(RECIPE / "local"))
    try:
        import study_report
    finally:
        sys.path.pop(0)
    return study_report


def fake_system(root: Path, name: str, eer=None, diverged_epoch=None) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"model": TINY_MODEL}))
    if eer is not None:
        (d / "scores").mkdir()
        metrics = {"eer": eer, "mindcf_p0_01": 0.5, "mindcf_p0_05": 0.3}
        (d / "scores" / "trials.metrics.json").write_text(json.dumps({"name": "trials", "metrics": metrics}))
    if diverged_epoch is not None:
        (d / "events.jsonl").write_text(DIVERGED_EVENTS.format(e=diverged_epoch, s=9 * diverged_epoch))


def table_rows(text: str):
    return [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| system") and not line.startswith("| row")]


def test_report_orders_rows_and_records_divergence(tmp_path):
    report = load_report()
    roots = [tmp_path / "seed0", tmp_path / "seed1"]
    # rows out of alphabetical order: the table keeps the study's order
    for root, (a, b, c) in zip(roots, [(0.30, 0.10, 0.105), (0.32, 0.12, 0.115)]):
        fake_system(root, "zeta", a)
        fake_system(root, "alpha", b)
        fake_system(root, "mid", c)
        fake_system(root, "fixed", diverged_epoch=2 if root.name == "seed0" else 3)
    fake_system(roots[0], "half", 0.2)
    fake_system(roots[1], "half", diverged_epoch=1)
    rows = tmp_path / "rows.tsv"
    rows.write_text("zeta\tdkd\nfixed\ttrkd\tkd.trkd.tau0=0.05\tkd.trkd.tau1=0.05\nalpha\ttrkd\nmid\ttrkd\n"
                    "half\ttrkd\tkd.trkd.tau1=0.2\n")
    text = report.report(rows, roots, tmp_path / "RESULTS.md", None, ["fixed", "alpha"])
    assert (tmp_path / "RESULTS.md").read_text() == text
    assert (tmp_path / "RESULTS.png").stat().st_size > 0 and (tmp_path / "curves_fixed_alpha.png").is_file()
    got = table_rows(text)
    assert [r[0] for r in got[:5]] == ["zeta", "fixed", "alpha", "mid", "half (seed 1 diverged at epoch 1)"]
    assert got[0][3] == "31.000 ± 1.000" and got[2][3] == "11.000 ± 1.000" and got[4][3] == "20.000"
    assert got[1][3] == "diverged at epoch 2, 3 (seeds 0, 1)"
    # zeta's range [30, 32] lies above alpha's [10, 12] and mid's [10.5, 11.5]; alpha and mid overlap
    note = next(line for line in text.splitlines() if line.startswith("Differences beyond the spread"))
    assert "`alpha` < `zeta` (11.000 vs 31.000, Δ 20.000)" in note and "`mid` < `zeta`" in note
    assert "`alpha` < `mid`" not in note and "`mid` < `alpha`" not in note and "half" not in note
    assert "seeds 0, 1" in text and "`kd.trkd.tau0=0.05`<br>`kd.trkd.tau1=0.05`" in text

    one = report.report(rows, roots[:1], tmp_path / "ONE.md", None, [])
    assert "One seed: no spread was measured" in one
    assert table_rows(one)[1][3] == "diverged at epoch 2"


def test_wall_time_counts_finished_epochs_not_the_pause_before_a_resume(tmp_path):
    report = load_report()
    d = tmp_path / "seed0" / "row"
    d.mkdir(parents=True)
    # epoch 2 was killed after 40 s and resumed an hour later: its second run's 30 s count, the
    # pause does not; epoch 1 trained again (--force) counts once, as its last run
    (d / "events.jsonl").write_text(
        '{"event": "start", "epoch": 1, "time": 1000.0}\n{"event": "epoch", "epoch": 1, "seconds": 50.0}\n'
        '{"event": "resume", "epoch": 1, "time": 1100.0}\n{"event": "epoch", "epoch": 1, "seconds": 60.0}\n'
        '{"event": "resume", "epoch": 2, "time": 4700.0}\n{"event": "epoch", "epoch": 2, "seconds": 30.0}\n')
    assert report.train_minutes(d) == 1.5
    assert report.train_minutes(tmp_path / "seed0" / "absent") is None
    note = report.wall_note([("row", "dkd", []), ("absent", "kd", [])], [tmp_path / "seed0"], ["0"])
    assert note == ("Training wall time, minutes per student (seed 0; the finished epochs, from events.jsonl): "
                    "row 1.5.")


def test_report_names_a_bad_rows_file(tmp_path):
    report = load_report()
    (tmp_path / "rows.tsv").write_text("dkd\tdkd\nnomethod\n")
    res = subprocess.run([sys.executable, str(RECIPE / "local" / "study_report.py"), "--rows",
                          str(tmp_path / "rows.tsv"), "--out", str(tmp_path / "R.md"), str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip() == f"study_report.py: error: {tmp_path / 'rows.tsv'}:2: expected NAME<TAB>METHOD[<TAB>OVERRIDE...]"
    assert report.divergence(tmp_path) is None


def recipe_copy(tmp_path: Path) -> Path:
    """The mini recipe in the repository's relative layout, with tiny models and augmentation."""
    top = tmp_path / "trkd"
    egs = top / "egs" / "mini"
    (egs / "conf").mkdir(parents=True)
    (top / "tools").symlink_to(ROOT / "tools")
    (top / "utils").symlink_to(ROOT / "utils")
    for name in ("run.sh", "path.sh", "cmd.sh"):
        shutil.copy2(RECIPE / name, egs / name)
    shutil.copytree(RECIPE / "local", egs / "local", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(RECIPE / "conf" / "fbank.yaml", egs / "conf" / "fbank.yaml")
    (egs / "utils").symlink_to(os.readlink(RECIPE / "utils"))
    (egs / "conf" / "aug.yaml").write_text("copies: [noise]\nprob: 0.3\nspeed_factors: []\n")
    data = {"num_frms": 40, "batch_size": 16, "num_workers": 0}
    teacher = {"model": dict(TINY_MODEL, channels=32, mfa_channels=96), "data": data}
    # An infinite trkd temperature makes every trkd row's loss NaN at its first step, so that the
    # NaN guard's path runs here; the dkd row reads kd.dkd and trains normally. The named weights
    # are spelled out, as in the recipes' confs: the rows with `terms` must unset them.
    trkd = {"temperature": float("inf"), "lambda_m": 1.0, "lambda_f": 8.0, "lambda_b": 0.0}
    student = {"model": TINY_MODEL, "data": data, "kd": {"trkd": trkd}}
    (egs / "conf" / "tiny_teacher.yaml").write_text(yaml.safe_dump(teacher))
    (egs / "conf" / "tiny_student.yaml").write_text(yaml.safe_dump(student))
    return egs


def run_study(egs: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["./local/study.sh", "--quick", "true", "--nj", "1", "--teacher", "tiny_teacher",
                           "--student", "tiny_student", *args], cwd=egs, env=env, capture_output=True, text=True)


def test_help_and_bad_choices(tmp_path):
    egs = recipe_copy(tmp_path)
    res = subprocess.run(["./local/study.sh", "--help"], cwd=egs, capture_output=True, text=True)
    assert res.returncode == 0
    for opt in ("--study", "--rows", "--seeds", "--teacher-seed", "--teacher", "--student", "--quick", "--nj", "--exp",
                "--trials", "--wide-tau1"):
        assert f"  {opt} " in res.stdout
    res = run_study(egs, "--study", "grid")
    assert res.returncode == 1 and res.stderr.strip().endswith("--study grid: valid: ablation, sweeps, regime, settle")
    res = run_study(egs, "--rows", "dkd tckd")
    assert res.returncode == 1
    assert "--rows: no row 'tckd' in ablation (valid: dkd tmkd_fixed_tau tmkd_curriculum cfkd trkd)" in res.stderr
    res = run_study(egs, "--study", "regime", "--rows", "trkd tm")
    assert res.returncode == 1 and ("--rows: no row 'tm' in regime (valid: none kd enskd dkd tmkd_fixed_tau "
                                    "tmkd_curriculum cfkd trkd)") in res.stderr
    # The wider-set row of the settling study is named for its τ_1 (--wide-tau1, chosen per teacher).
    res = run_study(egs, "--study", "settle", "--wide-tau1", "0.5", "--rows", "trkd_tau1_0.3")
    assert res.returncode == 1 and ("--rows: no row 'trkd_tau1_0.3' in settle (valid: none dkd trkd trkd_cfw "
                                    "cfwkd trkd_bg8 trkd_tau1_0.5)") in res.stderr
    # Two trial lists of one name would share the table's columns: refused before anything trains.
    res = run_study(egs, "--trials", "test/trials test_2k/trials")
    assert res.returncode == 1 and res.stderr.strip() == (
        './local/study.sh: --trials "test/trials test_2k/trials": two lists share a file name, and the name '
        "heads the table's column")
    # A --teacher-dir without its logit dump is refused before anything trains.
    res = run_study(egs, "--study", "regime", "--teacher-dir", "exp/t/seed0/tiny_teacher")
    assert res.returncode == 1 and res.stderr.strip() == (
        "./local/study.sh: no exp/t/seed0/tiny_teacher/logits/logits.scp: --teacher-dir needs a teacher "
        "with its logit dump (local/converge.sh makes one)")
    assert not (egs / "exp_quick" / "study").exists()


@pytest.mark.slow
def test_ablation_quick_records_every_row(tmp_path):
    egs = recipe_copy(tmp_path)
    # run.sh's stage 1 keeps an existing corpus: a smaller one than --quick's keeps this test short
    subprocess.run([str(ROOT / "tools" / "venv" / "bin" / "trkd"), "synth-corpus", "data_quick", "--seed", "0",
                    "--quick", "--train-speakers", "8", "--test-speakers", "4", "--utts-per-speaker", "4"],
                   cwd=egs, check=True, capture_output=True)
    res = run_study(egs, "--seeds", "0", "--rows", "dkd tmkd_fixed_tau")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    root = egs / "exp_quick" / "study" / "ablation"
    assert (egs / "exp_quick" / "seed0" / "tiny_teacher" / "logits" / "logits.scp").is_file()
    assert "seed 0, row tmkd_fixed_tau: training diverged: the loss is nan at epoch 1" in res.stdout
    cfg = yaml.safe_load((root / "seed0" / "tmkd_fixed_tau" / "config.yaml").read_text())["kd"]["trkd"]
    assert cfg["terms"] == {"tm": 1, "nckd": 8} and cfg["tau0"] == cfg["tau1"] == 0.05
    assert cfg["lambda_m"] is cfg["lambda_f"] is cfg["lambda_b"] is None

    text = (root / "RESULTS.md").read_text()
    rows = table_rows(text)
    # every row of the study, in its order (table, then legend); those not asked for are "not run"
    ablation = ["dkd", "tmkd_fixed_tau", "tmkd_curriculum", "cfkd", "trkd"]
    assert [r[0] for r in rows] == ablation + ablation
    assert [r[3] for r in rows[2:5]] == ["not run"] * 3
    eer = json.loads((root / "seed0" / "dkd" / "scores" / "trials.metrics.json").read_text())["metrics"]["eer"]
    assert rows[0][3] == f"{100 * eer:.3f}" and rows[1][3] == "diverged at epoch 1"
    assert "Teacher EER" in text and (root / "RESULTS.png").is_file()
    wall = next(line for line in text.splitlines() if line.startswith("Training wall time"))
    assert "dkd " in wall and "tmkd_fixed_tau" not in wall  # it diverged in its first epoch
    assert (root / "curves_tmkd_fixed_tau.png").is_file()

    # A rerun trains nothing: the finished row and the diverged one are both done.
    model = root / "seed0" / "dkd" / "models" / "avg_model.pt"
    before = model.stat().st_mtime_ns
    res = run_study(egs, "--seeds", "0", "--rows", "dkd tmkd_fixed_tau")
    assert res.returncode == 0 and "stage 2: seed" not in res.stdout
    assert model.stat().st_mtime_ns == before and (root / "RESULTS.md").read_text() == text

    # The regime study on that teacher: the overrides of every row, then each row's own; scored on
    # a second trial list too (its target trials alone against the nontarget half), a column of its own.
    lines = (egs / "data_quick" / "test" / "trials").read_text().splitlines()
    kept = [x for i, x in enumerate(lines) if x.endswith(" target") or i % 2]
    (egs / "data_quick" / "test" / "trials_half").write_text("\n".join(kept) + "\n")
    res = run_study(egs, "--study", "regime", "--seeds", "0", "--rows", "dkd", "--tag", "short",
                    "--teacher-dir", "exp_quick/seed0/tiny_teacher", "--student-sets", "train.epochs=1 optim.lr=0.05",
                    "--trials", "test/trials test/trials_half")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    regime = egs / "exp_quick" / "study" / "regime_short"
    cfg = yaml.safe_load((regime / "seed0" / "dkd" / "config.yaml").read_text())
    assert cfg["train"]["epochs"] == 1 and cfg["optim"]["lr"] == 0.05
    text = (regime / "RESULTS.md").read_text()
    rows = table_rows(text)
    assert [r[0] for r in rows[:8]] == ["none", "kd", "enskd"] + ablation
    assert rows[3][3] == f"{100 * json.loads((regime / 'seed0' / 'dkd' / 'scores' / 'trials.metrics.json').read_text())['metrics']['eer']:.3f}"
    assert [r[3] for i, r in enumerate(rows[:8]) if i != 3] == ["not run"] * 7
    half = json.loads((regime / "seed0" / "dkd" / "scores" / "trials_half.metrics.json").read_text())
    assert half["num_trials"] == len(kept) < len(lines)
    assert rows[3][6] == f"{100 * half['metrics']['eer']:.3f}" and "trials_half EER %" in text.splitlines()[0]
    teacher_eer = [json.loads((egs / "exp_quick" / "seed0" / "tiny_teacher" / "scores" / f"{n}.metrics.json")
                              .read_text())["metrics"]["eer"] for n in ("trials", "trials_half")]
    assert f"Teacher EER {100 * teacher_eer[0]:.3f} % (trials), {100 * teacher_eer[1]:.3f} % (trials_half)." in text
    assert "Every row also: `--set train.epochs=1` `--set optim.lr=0.05`." in text
