"""`trkd embedding-stats` on embeddings whose geometry is known by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import error_line, ok, trkd
from scoring_helpers import write_embeddings


def _write(tmp_path, table, utt2spk):
    scp = write_embeddings(tmp_path / "emb", table)
    spk = tmp_path / "utt2spk"
    spk.write_text("".join(f"{u} {s}\n" for u, s in utt2spk.items()))
    return scp, spk


def test_orthogonal_speakers_and_a_common_direction(tmp_path):
    # Speaker k's 3 utterances are 2·e_k (k < 4) in 8 dims: same-speaker cosine 1, different 0.
    table = {f"s{k}-u{j}": 2 * np.eye(8, dtype=np.float32)[k] for k in range(4) for j in range(3)}
    scp, spk = _write(tmp_path, table, {u: u.split("-")[0] for u in table})
    stats = json.loads(ok(trkd("embedding-stats", "--scp", scp, "--utt2spk", spk)))
    assert (stats["embeddings"], stats["speakers"], stats["dim"]) == (12, 4, 8)
    assert stats["norm"] == pytest.approx(2.0) and stats["cos_same"] == pytest.approx(1.0)
    assert stats["cos_diff"] == pytest.approx(0.0, abs=1e-12)
    assert stats["common"] == pytest.approx(0.5)          # ‖(e_0 + … + e_3) / 4‖
    assert stats["rank"] == pytest.approx(3.0, rel=1e-6)  # 4 centred points span 3 equal directions
    # Adding one shared direction c to every embedding: different-speaker cosine 1/2 (x = e_k + c).
    shared = {u: v / 2 + np.eye(8, dtype=np.float32)[7] for u, v in table.items()}
    (tmp_path / "offset").mkdir()
    scp, spk = _write(tmp_path / "offset", shared, {u: u.split("-")[0] for u in shared})
    moved = json.loads(ok(trkd("embedding-stats", "--scp", scp, "--utt2spk", spk)))
    assert moved["cos_diff"] == pytest.approx(0.5) and moved["common"] > stats["common"]
    assert moved["rank"] == pytest.approx(3.0, rel=1e-6)   # centring removes the shared direction


def test_embeddings_without_speakers_are_one_line(tmp_path):
    scp, spk = _write(tmp_path, {"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)}, {"x": "s"})
    assert error_line(trkd("embedding-stats", "--scp", scp, "--utt2spk", spk)).startswith(
        f"{spk}: fewer than 2 of the 2 embeddings")
