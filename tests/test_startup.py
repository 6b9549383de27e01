"""`trkd --help` starts fast: loading the CLI imports no heavy library and none of the commands' code."""

from __future__ import annotations

import json
import subprocess
import sys

from cli_helpers import ok, trkd

# Each costs a noticeable share of a second at start-up; the commands import them when they run
# (rich: typer imports it to render a help or an error, not to load the CLI).
HEAVY = ("torch", "numpy", "kaldiio", "soundfile", "yaml", "tqdm", "trkd.corpus.build", "trkd.corpus.synth",
         "trkd.data.prepare_voxceleb", "trkd.scoring", "trkd.models", "trkd.trainer", "rich", "secrets")


def imported_by(code: str) -> set:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(proc.stdout.splitlines()[-1]))


def test_loading_the_cli_imports_nothing_heavy():
    loaded = imported_by("import trkd.cli")
    assert "trkd.commands.corpus" in loaded  # the probe sees the commands being registered
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_help_of_the_synthetic_corpus_command_comes_from_its_function():
    from trkd.commands.help_text import docstring
    from trkd.corpus.build import synth_corpus

    assert docstring("trkd.corpus.build", "synth_corpus") == synth_corpus.__doc__
    out = ok(trkd("synth-corpus", "--help", env={"COLUMNS": "200", "TERM": "dumb"}))
    assert " ".join(synth_corpus.__doc__.split()[:8]) in " ".join(out.split())
