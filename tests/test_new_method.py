"""The README's "Adding a method" as written: its file and its one registry line added to a copy of
the package, and a student distilled by the new method from a top-K dump of a teacher trained on
the --quick corpus, every step through the `trkd` command line."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from corpus_helpers import make_quick_corpus
from train_helpers import TINY_ECAPA, write_config

ROOT = Path(__file__).resolve().parents[1]
TRKD = str(ROOT / "tools" / "venv" / "bin" / "trkd")


def readme_example():
    """(the method file, the registry line): the two `py` blocks of the README's section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Adding a method\n", 1)[1].split("\n#", 1)[0]
    blocks = re.findall(r"^```py\n(.*?)^```", section, re.S | re.M)
    assert len(blocks) == 2 and blocks[1].count("\n") == 1, blocks
    return blocks[0], blocks[1]


def add_method(package: Path) -> None:
    """Apply the README: the file, then the line before REGISTRY's closing brace."""
    source, line = readme_example()
    name = re.match(r'\s*"(\w+)": "(\w+)\.', line).group(2)
    (package / "distill" / "methods" / f"{name}.py").write_text(source)
    registry = package / "distill" / "methods" / "__init__.py"
    head, tail = registry.read_text().split("REGISTRY = {\n", 1)
    entries, rest = tail.split("}\n", 1)
    registry.write_text(f"{head}REGISTRY = {{\n{entries}{line}}}\n{rest}")


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """A copy of the package with the README's method, and the environment that runs it."""
    root = tmp_path_factory.mktemp("newmethod")
    shutil.copytree(ROOT / "trkd", root / "pkg" / "trkd", ignore=shutil.ignore_patterns("__pycache__"))
    add_method(root / "pkg" / "trkd")
    env = {**os.environ, "PYTHONPATH": str(root / "pkg"), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return root, env


def trkd(env, cwd, *args) -> subprocess.CompletedProcess:
    return subprocess.run([TRKD, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_the_example_is_one_file_and_one_line(copy):
    root, _ = copy
    old = (ROOT / "trkd" / "distill" / "methods" / "__init__.py").read_text().splitlines()
    new = (root / "pkg" / "trkd" / "distill" / "methods" / "__init__.py").read_text().splitlines()
    assert len(new) == len(old) + 1 and [x for x in new if x not in old] == ['    "topkl": "topkl.TopKL",']
    files = lambda d: {p.relative_to(d) for p in d.rglob("*.py")}  # noqa: E731
    assert files(root / "pkg" / "trkd") - files(ROOT / "trkd") == {Path("distill/methods/topkl.py")}


def test_the_cli_knows_the_new_method_and_checks_its_settings(copy, tmp_path):
    root, env = copy
    res = trkd(env, tmp_path, "distill", "--help")
    assert res.returncode == 0 and "topkl" in res.stdout
    conf = write_config(tmp_path / "s.yaml", kd={"topkl": {"n": 0}})
    teacher = tmp_path / "none"
    res = trkd(env, tmp_path, "distill", "--teacher", teacher, "--config", conf, "--method", "topkl",
               "--data", tmp_path, "--exp", tmp_path / "exp")
    line = next(i for i, text in enumerate(conf.read_text().splitlines(), 1) if "n: 0" in text)
    assert res.returncode == 1 and res.stderr.splitlines()[-1] == f"trkd: error: {conf}:{line}: key 'kd.topkl.n' must be >= 1, got 0"


@pytest.mark.slow
def test_a_student_learns_from_a_top_k_dump_with_the_new_method(copy):
    root, env = copy
    corpus = make_quick_corpus(root, seed=0, train_speakers=12, utts_per_speaker=4)
    data = root / "train"
    shutil.copytree(corpus / "train", data)
    for args in (("fbank", data, "--nj", "2"),
                 ("train", "--config", write_config(root / "teacher.yaml", model=dict(TINY_ECAPA, feat_dim=80),
                                                    data={"num_frms": 100, "batch_size": 8, "num_workers": 0}),
                  "--data", data, "--exp", root / "teacher", "--device", "cpu", "--quick"),
                 ("dump-logits", "--model", root / "teacher", "--data", data, "--topk", "3", "--methods", "topkl",
                  "--device", "cpu")):
        res = trkd(env, root, *args)
        assert res.returncode == 0, (args, res.stderr[-2000:])
    student = write_config(root / "student.yaml", model=dict(TINY_ECAPA, feat_dim=80, channels=8),
                           data={"num_frms": 100, "batch_size": 8, "num_workers": 0},
                           train={"epochs": 3, "avg_last": 1, "log_interval": 1, "seed": 5},
                           kd={"warmup_epochs": 0, "topkl": {"n": 4}})
    exp = root / "student"
    res = trkd(env, root, "distill", "--teacher", root / "teacher", "--config", student, "--method", "topkl",
               "--data", data, "--exp", exp, "--device", "cpu")
    assert res.returncode == 0, res.stderr[-2000:]
    assert yaml.safe_load((root / "teacher" / "logits" / "meta.yaml").read_text())["topk"] == 3
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert cfg["kd"]["method"] == "topkl" and cfg["kd"]["topkl"] == {"temperature": 4.0, "n": 4}
    assert cfg["kd"]["online"] is False   # from the top-K dump, not the teacher run online
    records = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    losses = [r["topkl"] for r in records]
    assert all(math.isfinite(v) and v >= 0 for v in losses) and max(losses) > 0
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    assert (exp / "models" / "avg_model.pt").is_file()
