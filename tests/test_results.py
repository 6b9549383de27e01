"""`trkd results`: the comparison table over seed folders scored by `trkd score` (mean ± half-range,
the recipe's row order, the differences beyond the seed spread, the bar chart)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

import yaml
from typer.testing import CliRunner

from trkd.cli import app

TINY_MODEL = {"name": "ecapa", "channels": 16, "mfa_channels": 48, "se_channels": 8, "attention_channels": 8,
              "embed_dim": 32}
N = 10  # targets and non-targets per trial list


def _trials(path: Path) -> Path:
    lines = [f"e{i} t{i} target" for i in range(N)] + [f"e{i} n{i} nontarget" for i in range(N)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _scored_system(root: Path, name: str, shift: float, trials: Path) -> float:
    """A system whose target scores sit `shift` above its non-target scores; returns its EER (%)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"model": TINY_MODEL}))
    scores = [f"e{i} t{i} {i / N + shift:.6f}" for i in range(N)] + [f"e{i} n{i} {i / N:.6f}" for i in range(N)]
    (d / "trials.score").write_text("\n".join(scores) + "\n")
    r = CliRunner().invoke(app, ["score", "--scores", str(d / "trials.score"), "--trials", str(trials),
                                 "--out-dir", str(d / "scores")])
    assert r.exit_code == 0, r.output
    return 100 * json.loads((d / "scores" / "trials.metrics.json").read_text())["metrics"]["eer"]


def _rows(text: str):
    return [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| system")]


def test_table_over_seeds_in_recipe_order_with_differences_beyond_spread(tmp_path):
    trials = _trials(tmp_path / "trials")
    shifts = {"teacher": (1.05, 1.15), "student_x": (0.55, 0.65), "student_y": (0.0, 0.1), "student_z": (0.6, 0.5)}
    eers = {name: [_scored_system(tmp_path / f"seed{s}", name, d, trials) for s, d in enumerate(pair)]
            for name, pair in shifts.items()}
    assert eers["teacher"] == [0.0, 0.0] and eers["student_y"][0] > eers["student_x"][0] > 0

    out = tmp_path / "RESULTS.md"
    r = CliRunner().invoke(app, ["results", str(tmp_path / "seed0"), str(tmp_path / "seed1"), "--out", str(out),
                                 "--systems", "teacher student_y"])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text == r.stdout
    rows = _rows(text)
    # the named systems first, in that order; the others after, in folder order
    assert [row[0] for row in rows] == ["teacher", "student_y", "student_x", "student_z"]
    x = eers["student_x"]
    assert rows[2][3] == f"{sum(x) / 2:.3f} ± {(max(x) - min(x)) / 2:.3f}"
    assert "Mean over 2 runs (seeds)" in text
    line = next(l for l in text.splitlines() if l.startswith("Differences beyond the spread"))
    assert "`teacher` < `student_x`" in line and "`student_x` < `student_y`" in line
    assert "student_x` < `student_z" not in line and "student_z` < `student_x" not in line  # ranges overlap
    assert (tmp_path / "RESULTS.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_seed_has_no_spread_line(tmp_path):
    trials = _trials(tmp_path / "trials")
    _scored_system(tmp_path / "seed0", "teacher", 1.0, trials)
    r = CliRunner().invoke(app, ["results", str(tmp_path / "seed0"), "--out", str(tmp_path / "R.md")])
    assert r.exit_code == 0, r.output
    assert "Differences beyond" not in r.output and _rows(r.output)[0][3] == "0.000"


TRKD = str(Path(__file__).resolve().parents[1] / "tools/venv/bin/trkd")


def test_results_without_out_writes_beside_the_experiment_and_names_unscored_systems(tmp_path):
    trials = _trials(tmp_path / "trials")
    root = tmp_path / "recipe" / "exp" / "seed0"
    _scored_system(root, "teacher", 1.0, trials)
    _scored_system(root, "student_kd", 0.3, trials)
    (root / "student_trkd").mkdir()  # trained, never scored
    (root / "student_trkd" / "config.yaml").write_text(yaml.safe_dump({"model": TINY_MODEL}))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = subprocess.run([TRKD, "results", str(root)], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not (cwd / "exp").exists()
    assert (root / "RESULTS.md").read_text() == proc.stdout
    assert proc.stderr.strip().endswith(f"wrote {root / 'RESULTS.md'}")
    assert "No scores yet (not in the table): `student_trkd`." in proc.stdout
    assert [row[0] for row in _rows(proc.stdout)] == ["student_kd", "teacher"]
    for png in ("RESULTS.png", "RESULTS.trials.det.png"):
        assert (root / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_det_plot_has_every_system_and_bar_chart_labels(tmp_path):
    from trkd.results import bar_figure, collect, det_curves

    trials = _trials(tmp_path / "trials")
    for name, shift in (("teacher", 0.5), ("student", 0.2)):
        _scored_system(tmp_path / "seed0", name, shift, trials)
    systems, lists = collect([tmp_path / "seed0"])
    curves = det_curves(tmp_path / "seed0", systems, "trials")
    assert sorted(curves) == ["student", "teacher"] and all(len(l) == 2 * N for _, l in curves.values())
    ax = bar_figure(systems, lists, runs=1).axes[0]
    assert ax.get_title() == "EER per system (one run)"
    assert all(c.errorbar is None for c in ax.containers if hasattr(c, "errorbar"))  # no fake caps
    eers = {s.name: 100 * s.values[("trials", "eer")][0] for s in systems}
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"{v:.2f}" for v in eers.values())
    two = bar_figure([s for s in systems], lists, runs=2).axes[0]
    assert "mean over 2 runs" in two.get_title()
    assert any(getattr(c, "errorbar", None) is not None for c in two.containers)


def test_det_names_systems_marks_eer_and_mindcf_and_spans_a_weak_system():
    from trkd.scoring.det import det_figure, operating_points, probit

    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(500), np.zeros(5000)]
    good = np.r_[rng.normal(3, 1, 500), rng.normal(0, 1, 5000)]
    weak = np.r_[rng.normal(0.5, 1, 500), rng.normal(0, 1, 5000)]  # EER about 40 %
    ops = {n: operating_points(s, labels) for n, s in (("good", good), ("weak", weak))}
    assert 0.35 < ops["weak"].eer < 0.45 and ops["good"].eer < 0.1
    fig = det_figure({"good": (good, labels), "weak": (weak, labels)}, title="DET: x")
    ax = fig.axes[0]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[1] == f"weak (EER {100 * ops['weak'].eer:.2f}%, minDCF {ops['weak'].mindcf:.3f})"
    assert legend[0].startswith("good (EER ")
    lo, hi = ax.get_xlim()
    assert hi >= probit(0.8)[0] and lo <= probit(0.001)[0]  # the weak curve's EER is well inside
    eer_marks = [l for l in ax.lines if l.get_marker() == "o"]
    dcf_marks = [l for l in ax.lines if l.get_marker() == "s"]
    assert len(eer_marks) == len(dcf_marks) == 2
    np.testing.assert_allclose(eer_marks[1].get_xydata()[0], probit([ops["weak"].eer] * 2), atol=1e-9)
    lo_rate = 0.5 / 500  # half an error of the 500 targets
    np.testing.assert_allclose(dcf_marks[0].get_xydata()[0], probit(np.clip(ops["good"].mindcf_at, lo_rate, 1)),
                               atol=1e-9)
