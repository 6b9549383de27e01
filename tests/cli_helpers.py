"""The real `trkd` console script in a subprocess, and what a user sees of its errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, Optional

TRKD = str(Path(__file__).resolve().parents[1] / "tools" / "venv" / "bin" / "trkd")


def trkd(*args, env: Optional[Dict[str, str]] = None, drop=("TRKD_ALLOW_PIPES",)) -> subprocess.CompletedProcess:
    """Run `trkd ARGS` with one thread, without the variables in `drop`, plus `env`."""
    full = {k: v for k, v in os.environ.items() if k not in drop}
    full.update(OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([TRKD, *map(str, args)], capture_output=True, text=True, env=full)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The error of a failed run: exit status 1, exactly one `trkd: error:` line, no traceback."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("trkd: error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0][len("trkd: error: "):]
