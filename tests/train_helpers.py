"""Tiny real training data for the train/extract tests: kaldiio feats.ark/scp + utt2spk.

Each speaker is a per-dimension spread and a slow spectral modulation of the frames (not a mean,
which per-chunk mean normalisation would remove), so a small network can tell speakers apart.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Optional

import kaldiio
import numpy as np
import yaml

from trkd.data.kaldi_dir import write_kv

TINY_XVECTOR = {"name": "xvector", "embed_dim": 16, "channels": 16, "stats_channels": 24, "segment_dim": 16}
TINY_ECAPA = {"name": "ecapa", "embed_dim": 16, "channels": 16, "mfa_channels": 48, "res2_scale": 4,
              "se_channels": 8, "attention_channels": 8}


def make_feats_dir(d: Path, num_spk: int = 4, utts_per_spk: int = 4, feat_dim: int = 20,
                   min_len: int = 40, max_len: int = 160, seed: int = 0,
                   lengths: Optional[Dict[str, int]] = None) -> Path:
    """Write `d/feats.{ark,scp}`, `d/utt2spk`, `d/utt2num_frames`; `lengths` pins chosen utterances."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    spread = rng.uniform(0.5, 2.0, size=(num_spk, feat_dim))
    freq = rng.uniform(0.02, 0.2, size=num_spk)
    utt2spk, u2nf = {}, {}
    with kaldiio.WriteHelper(f"ark,scp:{d.resolve()}/feats.ark,{d.resolve()}/feats.scp") as writer:
        for s in range(num_spk):
            for u in range(utts_per_spk):
                utt = f"spk{s}-utt{u}"
                n = (lengths or {}).get(utt, int(rng.integers(min_len, max_len + 1)))
                wave = np.sin(2 * np.pi * freq[s] * np.arange(n))[:, None] * np.linspace(-1, 1, feat_dim)
                mat = rng.normal(size=(n, feat_dim)) * spread[s] + 2.0 * wave + rng.normal(size=feat_dim)
                writer(utt, mat.astype(np.float32))
                utt2spk[utt], u2nf[utt] = f"spk{s}", n
    write_kv(d / "utt2spk", utt2spk)
    write_kv(d / "utt2num_frames", u2nf)
    return d


def write_config(path: Path, model: Optional[dict] = None, **blocks) -> Path:
    """A tiny training yaml; keyword blocks (`train={"epochs": 3}`) update the defaults below."""
    cfg = {
        "model": dict(model or TINY_XVECTOR),
        "head": {"margin_start_epoch": 1, "margin_stop_epoch": 2},
        "data": {"num_frms": 50, "batch_size": 8, "num_workers": 0},
        "optim": {"lr": 0.05, "final_lr": 0.005, "warmup_epochs": 1},
        "train": {"epochs": 2, "avg_last": 2, "log_interval": 1, "seed": 3},
    }
    for block, values in blocks.items():
        cfg.setdefault(block, {}).update(values)
    path = Path(path)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_cli(*args: str):
    """Invoke the real Typer app in-process; returns the click Result."""
    from typer.testing import CliRunner

    from trkd.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def uninterrupted_and_resumed(conf: Path, data: Path, tmp: Path):
    """(full, part): `trkd train` for 2 epochs, and a copy cut back to epoch 1 then `--resume`d."""
    full, part = tmp / "full", tmp / "part"
    r = run_cli("train", "--config", conf, "--data", data, "--exp", full, "--device", "cpu")
    assert r.exit_code == 0, repr(r.exception)
    shutil.copytree(full, part)
    for name in ("model_2.pt", "avg_model.pt"):
        (part / "models" / name).unlink()
    r = run_cli("train", "--config", conf, "--data", data, "--exp", part, "--device", "cpu", "--resume")
    assert r.exit_code == 0, repr(r.exception)
    return full, part
