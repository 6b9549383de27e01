"""DDP through torchrun (gloo, CPU): one step on 2 processes == the single-process step on the
same global batch, and only rank 0 writes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import torch

from train_helpers import make_feats_dir, write_config
from trkd import checkpoint as ckpt
from trkd.config import load_config
from trkd.data.chunks import ChunkDataset
from trkd.schedules import lr_at, margin_at
from trkd.trainer import AAMObjective, Step, build_student

ROOT = Path(__file__).resolve().parents[1]


def _reference_step(conf: Path, data: Path, world: int) -> dict:
    """One SGD step of the global batch as DDP computes it, in one process.

    Without SyncBatchNorm (CPU has none) each rank normalises its own shard by the shard's batch
    statistics, as WeSpeaker's DDP does; so the reference forwards each shard separately and
    averages the shard losses, which is exactly what DDP's gradient averaging yields.
    """
    cfg = load_config(conf)
    ds = ChunkDataset(data, cfg.data.num_frms, cfg.train.seed)
    cfg.model["feat_dim"], cfg.head.num_classes = ds.feat_dim, ds.num_classes
    torch.manual_seed(cfg.train.seed)
    student = build_student(cfg)
    o = cfg.optim
    opt = torch.optim.SGD(student.parameters(), lr=lr_at(0, 1, cfg.train.epochs, o.lr, o.final_lr, o.warmup_epochs),
                          momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    items = ds.epoch_items(1)[:cfg.data.batch_size]
    margin = margin_at(0, 1, cfg.head.margin, cfg.head.margin_start_epoch, cfg.head.margin_stop_epoch)
    losses = []
    for rank in range(world):
        batch = torch.utils.data.default_collate([ds[it] for it in items[rank::world]])
        out = student(batch["feats"], batch["target"], margin)
        losses.append(AAMObjective()(batch, out, Step(1, 0, 1, 0.0, margin))[0])
    (sum(losses) / world).backward()
    opt.step()
    return student.model.state_dict(), student.head.state_dict()


def test_torchrun_two_processes_match_single_process_step(tmp_path):
    data = make_feats_dir(tmp_path / "data", num_spk=4, utts_per_spk=2)  # 8 utts = one global batch
    conf = write_config(tmp_path / "c.yaml", train={"epochs": 1, "avg_last": 1, "log_interval": 1, "seed": 5},
                        optim={"lr": 0.5, "final_lr": 0.1, "warmup_epochs": 0})
    exp = tmp_path / "exp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(ROOT / "tools/venv/bin/torchrun"), "--standalone", "--nproc_per_node", "2",
         str(ROOT / "tools/venv/bin/trkd"), "train", "--config", str(conf), "--data", str(data),
         "--exp", str(exp), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    state = ckpt.load(ckpt.epoch_path(exp, 1))
    assert state["step"] == 1 and len(state["rng"]) == 2  # every rank's RNG state is kept
    ref_model, ref_head = _reference_step(conf, data, world=2)
    init = build_student_init(conf, data)
    moved = False
    for key, ref in ref_model.items():
        if ref.is_floating_point() and "running" not in key:
            torch.testing.assert_close(state["model"][key], ref, rtol=1e-5, atol=1e-6, msg=key)
            moved |= not torch.equal(ref, init[key])
    assert moved, "the step changed no parameter: the comparison would be vacuous"
    torch.testing.assert_close(state["head"]["weight"], ref_head["weight"], rtol=1e-5, atol=1e-6)

    log = (exp / "train.log").read_text()
    assert log.count("# trkd train") == 1 and log.count("epoch 1 done") == 1  # rank 0 alone writes
    assert (exp / "models" / "avg_model.pt").is_file()


def build_student_init(conf: Path, data: Path) -> dict:
    cfg = load_config(conf)
    ds = ChunkDataset(data, cfg.data.num_frms, cfg.train.seed)
    cfg.model["feat_dim"], cfg.head.num_classes = ds.feat_dim, ds.num_classes
    torch.manual_seed(cfg.train.seed)
    return build_student(cfg).model.state_dict()
