"""A real tiny teacher (trained by `trkd train`), its dump, and student configs, for the distill tests.

The teacher is trained once per test session and shared by test_dump.py and test_distill.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from train_helpers import TINY_XVECTOR, make_feats_dir, run_cli, write_config

STUDENT = dict(TINY_XVECTOR, embed_dim=12, channels=12, stats_channels=16, segment_dim=12)
# One utterance shorter than a chunk (padded by repetition), one long enough for several chunks.
LENGTHS = {"spk0-utt0": 30, "spk1-utt2": 260}
_cache = {}


@contextlib.contextmanager
def no_plots():
    """Skip the per-epoch curves PNG (matplotlib costs more than these tiny epochs)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("trkd.trainer.plot_history", lambda *a, **k: None)
        yield


def ok(result):
    assert result.exit_code == 0, (repr(result.exception), result.output[-2000:])
    return result


def teacher(tmp_path_factory):
    """(data dir, teacher exp dir with logits/): 4 speakers × 6 utterances, 2 epochs of x-vector."""
    if "teacher" not in _cache:
        tmp = tmp_path_factory.mktemp("teacher")
        data = make_feats_dir(tmp / "data", num_spk=4, utts_per_spk=6, min_len=40, max_len=200, lengths=LENGTHS)
        conf = write_config(tmp / "t.yaml", train={"epochs": 2, "avg_last": 1, "log_interval": 100, "seed": 3})
        with no_plots():
            ok(run_cli("train", "--config", conf, "--data", data, "--exp", tmp / "teacher", "--device", "cpu"))
        ok(run_cli("dump-logits", "--model", tmp / "teacher", "--data", data, "--nj", "2", "--device", "cpu",
                   "--logits", "both", "--embeddings"))
        _cache["teacher"] = (data, tmp / "teacher")
    return _cache["teacher"]


def student_config(path: Path, epochs: int = 3, kd=None, **blocks) -> Path:
    """A tiny student yaml: no KD warm-up, τ 1 → 0.3 over epochs 2–3, margin fixed at 0.1."""
    kd_block = {"warmup_epochs": 0, "trkd": {"tau0": 1.0, "tau1": 0.3, "start_epoch": 2, "stop_epoch": 3},
                "imlkd": {"durations": [0.5, 0.3], "steps": 2}}
    for key, value in (kd or {}).items():
        if isinstance(value, dict) and isinstance(kd_block.get(key), dict):
            kd_block[key] = {**kd_block[key], **value}
        else:
            kd_block[key] = value
    train = {"epochs": epochs, "avg_last": 1, "log_interval": 1, "seed": 5, **blocks.pop("train", {})}
    head = {"margin": 0.1, "margin_start_epoch": 1, "margin_stop_epoch": 1, **blocks.pop("head", {})}
    return write_config(path, model=STUDENT, kd=kd_block, train=train, head=head, **blocks)


def distill(teacher_dir, conf, data, exp, method, *extra):
    return run_cli("distill", "--teacher", teacher_dir, "--config", conf, "--method", method, "--data", data,
                   "--exp", exp, "--device", "cpu", *extra)
