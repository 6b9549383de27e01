"""DDP through torchrun (gloo, CPU): one step on 2 processes == the single-process step of the
same global batch with BatchNorm per shard (what gloo gives; only rank 0 writes), and how far that
is from one process's full-batch BatchNorm; SyncBatchNorm's conversion and its config path."""

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
from trkd.train_metrics import metrics_path, read_metrics
from trkd.trainer import AAMObjective, Step, Trainer, build_student
from trkd.utils.device import Runtime, setup

ROOT = Path(__file__).resolve().parents[1]


def _reference_step(conf: Path, data: Path, world: int):
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
    loss = sum(losses) / world
    loss.backward()
    opt.step()
    return student.model.state_dict(), student.head.state_dict(), float(loss.detach())


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
    ref_model, ref_head, ref_loss = _reference_step(conf, data, world=2)
    init = build_student_init(conf, data)
    moved = False
    for key, ref in ref_model.items():
        if ref.is_floating_point() and "running" not in key:
            torch.testing.assert_close(state["model"][key], ref, rtol=1e-5, atol=1e-6, msg=key)
            moved |= not torch.equal(ref, init[key])
    assert moved, "the step changed no parameter: the comparison would be vacuous"
    torch.testing.assert_close(state["head"]["weight"], ref_head["weight"], rtol=1e-5, atol=1e-6)
    (rec,) = read_metrics(metrics_path(exp))  # the loss DDP optimised: both ranks' mean
    assert rec["iteration"] == 1 and abs(rec["loss"] - ref_loss) < 1e-5 * abs(ref_loss)

    # Per-rank BatchNorm is not one process's BatchNorm over the whole batch: the README's figure.
    one_model, _, one_loss = _reference_step(conf, data, world=1)
    keys = [k for k, v in one_model.items() if v.is_floating_point() and "running" not in k]
    gap = sum(float((state["model"][k] - one_model[k]).pow(2).sum()) for k in keys) ** 0.5
    step = sum(float((one_model[k] - init[k]).pow(2).sum()) for k in keys) ** 0.5
    print(f"\nper-rank BN (2 ranks x 4) vs one process (8): loss {rec['loss']:.4f} vs {one_loss:.4f}, "
          f"|update difference| / |update| after one step {gap / step:.2f}")
    assert abs(rec["loss"] - one_loss) > 1e-3 and gap > 0.01 * step

    log = (exp / "train.log").read_text()
    assert "2 process(es), per-rank BatchNorm (SyncBatchNorm needs DDP on CUDA)" in log
    assert log.count("# trkd train") == 1 and log.count("epoch 1 done") == 1  # rank 0 alone writes
    assert (exp / "models" / "avg_model.pt").is_file()


def build_student_init(conf: Path, data: Path) -> dict:
    cfg = load_config(conf)
    ds = ChunkDataset(data, cfg.data.num_frms, cfg.train.seed)
    cfg.model["feat_dim"], cfg.head.num_classes = ds.feat_dim, ds.num_classes
    torch.manual_seed(cfg.train.seed)
    return build_student(cfg).model.state_dict()


def test_sync_batchnorm_is_used_iff_asked_for_under_cuda_ddp(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml"))
    assert cfg.train.sync_bn  # on by default
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    from trkd.trainer import uses_sync_bn

    assert uses_sync_bn(cfg, Runtime(cuda, 0, 2, 0))
    assert not uses_sync_bn(cfg, Runtime(cpu, 0, 2, 0))   # gloo: per-rank statistics
    assert not uses_sync_bn(cfg, Runtime(cuda, 0, 1, 0))  # one process: plain BatchNorm is the same thing
    off = load_config(write_config(tmp_path / "off.yaml", train={"epochs": 1, "avg_last": 1, "sync_bn": False}))
    assert not uses_sync_bn(off, Runtime(cuda, 0, 2, 0))


def test_trainer_converts_every_batchnorm_and_trains(tmp_path, monkeypatch):
    """The conversion the trainer applies under CUDA DDP, here on a CPU process (where SyncBatchNorm
    without a process group normalises like BatchNorm): same parameters, same checkpoint keys."""
    data = make_feats_dir(tmp_path / "data")
    cfg = load_config(write_config(tmp_path / "c.yaml", train={"epochs": 1, "avg_last": 1, "seed": 3}))
    ds = ChunkDataset(data, 50, seed=3)
    plain = Trainer(cfg, tmp_path / "plain", ds, setup("cpu"))
    monkeypatch.setattr("trkd.trainer.uses_sync_bn", lambda cfg, rt: True)
    synced = Trainer(load_config(tmp_path / "c.yaml"), tmp_path / "sync", ds, setup("cpu"))
    kinds = [(type(m), type(s)) for m, s in zip(plain.student.modules(), synced.student.modules())]
    bns = [k for k in kinds if k[0] is torch.nn.BatchNorm1d]
    assert bns and all(s is torch.nn.SyncBatchNorm for _, s in bns)
    assert all(a is b for a, b in kinds if a is not torch.nn.BatchNorm1d)
    assert [id(p) for p in synced.student.parameters()] == [id(p) for g in synced.optimizer.param_groups
                                                            for p in g["params"]]
    synced.run()
    state = ckpt.load(ckpt.epoch_path(tmp_path / "sync", 1))
    assert set(state["model"]) == set(plain.student.model.state_dict())
    assert "1 process(es), SyncBatchNorm" in (tmp_path / "sync" / "train.log").read_text()
