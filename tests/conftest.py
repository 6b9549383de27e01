"""Shared test settings. Area-specific fixtures live in each area's test module or helpers file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# Two cores: one intra-op thread per process keeps parallel workers from fighting.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def vectors():
    """The shared reference values (../shared/testvectors/vectors.json)."""
    path = SHARED / "testvectors" / "vectors.json"
    if not path.is_file():
        pytest.fail(f"shared test vectors not found at {path}")
    return json.loads(path.read_text())
