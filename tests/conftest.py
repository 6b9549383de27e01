"""Shared test settings. Area-specific fixtures live in each area's test module or helpers file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"

# Two cores: one intra-op thread per process keeps parallel workers from fighting.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def vectors():
    """The reference values (tests/data/vectors.json): fixed inputs and expected outputs."""
    return json.loads((DATA / "vectors.json").read_text())
