"""`trkd results`: the comparison table over seed folders scored by `trkd score` (mean ± half-range,
the recipe's row order, the differences beyond the seed spread, the bar chart)."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert text == r.output
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
