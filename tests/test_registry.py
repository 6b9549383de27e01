"""The method registry is the one list: `--method`'s help, the dump's tables (trkd plan, the
recipes' stage 4) and the settings blocks all derive from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from trkd.distill.methods import METHODS, REGISTRY, needed
from trkd.distill.methods.base import Method, Settings
from trkd.plan import dump_tables

ROOT = Path(__file__).resolve().parents[1]


def test_what_a_method_needs_comes_from_its_class():
    assert needed(["none", "kd", "dkd"]) == ("logits",)
    assert needed(["trkd+emb", "mlkd"]) == ("logits", "embedding", "levels")
    assert needed(["imlkd"]) == ()   # it runs its teacher online
    assert dump_tables(["none", "trkd+emb"]) == ["logits", "embedding"]


def test_every_method_derives_from_the_bases():
    for name in REGISTRY:
        assert issubclass(METHODS[name], Method) and issubclass(METHODS[name].Settings, Settings), name


def test_method_help_lists_the_registry_without_importing_torch():
    code = ("import sys; import trkd.commands.distill as d; import inspect; "
            "print(inspect.signature(d.distill_cmd).parameters['method'].default.help); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT)}).stdout.split("\n")
    assert out[0].startswith(" ".join(["none", *REGISTRY]) + ",") and out[1] == "False"


def test_the_recipes_dump_asks_the_registry_not_a_list_of_names():
    stages = (ROOT / "utils" / "stages.sh").read_text()
    assert "--methods \"$3\"" in stages and "emb " not in stages.split("dump_teacher()")[1].split("}")[0]
