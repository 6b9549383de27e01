"""`trkd plan`'s training rows say how many loader workers a GPU needs for the chosen feature storage."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from cli_helpers import ok, trkd
from trkd.plan.loader import CHUNKS_PER_WORKER

CONF = Path(__file__).resolve().parents[1] / "egs" / "voxceleb" / "conf"
LINE = re.compile(r"loader: (\w+) (\d+) chunks/s per worker .*takes (\d+) chunks/s: (\d+) workers per GPU")


def loader_lines(tmp_path, *extra):
    out = tmp_path / "plan.json"
    ok(trkd("plan", "--utts", "1000", "--hours", "2", "--speakers", "10", "--test-utts", "100", "--test-hours", "0.3", "--teacher", CONF / "ecapa_c1024.yaml",
            "--student", CONF / "ecapa_c400.yaml", "--methods", "kd", "--aug", CONF / "aug.yaml", "--json", out, *extra))
    rows = json.loads(out.read_text())["rows"]
    return [LINE.search(r["note"]).groups() for r in rows if r["stage"] in ("3", "5")]


def test_workers_per_gpu_follow_the_storage_and_the_model(tmp_path):
    plain = loader_lines(tmp_path)
    cm = loader_lines(tmp_path, "--compress", "1")
    assert [r[0] for r in plain] == ["float32"] * 2 and [r[0] for r in cm] == ["CM"] * 2
    for kind, per_worker, consumed, workers in plain + cm:
        assert int(per_worker) == CHUNKS_PER_WORKER[kind]
        assert int(workers) == math.ceil(int(consumed) / int(per_worker))
    teacher, student = plain
    assert int(student[2]) > int(teacher[2])  # the smaller model steps faster, so takes more chunks
    assert int(cm[1][3]) >= int(plain[1][3])
