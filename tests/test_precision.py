"""`--precision`: bf16 training and distillation on the CPU (autocast in the forward, float32
losses and checkpoints), bit-exact bf16 resume, fp16's GradScaler state, fp16 refused on a CPU."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from distill_helpers import distill, no_plots, ok, student_config, teacher
from test_resume import _assert_same
from train_helpers import TINY_ECAPA, make_feats_dir, run_cli, write_config
from trkd import checkpoint as ckpt
from trkd.config import load_config
from trkd.data.chunks import ChunkDataset
from trkd.train_metrics import metrics_path, read_metrics
from trkd.trainer import AAMObjective, Trainer
from trkd.utils.device import setup

ROOT = Path(__file__).resolve().parents[1]


def _float32_everywhere(state):
    for part in ("model", "head"):
        for key, value in state[part].items():
            if value.is_floating_point():
                assert value.dtype == torch.float32, f"{part}.{key} saved as {value.dtype}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """bf16: an uninterrupted 2-epoch run and one resumed after epoch 1; fp32 on the same config."""
    tmp = tmp_path_factory.mktemp("precision")
    data = make_feats_dir(tmp / "data", lengths={"spk0-utt0": 30})
    conf = write_config(tmp / "c.yaml", model=TINY_ECAPA, data={"spec_aug": True, "num_workers": 1})
    exps = {}
    with no_plots():
        for name, precision in (("bf16", "bf16"), ("fp32", "fp32")):
            exps[name] = tmp / name
            ok(run_cli("train", "--config", conf, "--data", data, "--exp", exps[name], "--device", "cpu",
                       "--precision", precision))
        part = tmp / "bf16_part"
        shutil.copytree(exps["bf16"], part)
        for name in ("model_2.pt", "avg_model.pt"):
            (part / "models" / name).unlink()
        ok(run_cli("train", "--config", conf, "--data", data, "--exp", part, "--device", "cpu", "--resume",
                   "--precision", "bf16"))
    exps["part"] = part
    return conf, data, exps


def test_bf16_trains_with_finite_loss_and_float32_checkpoints(runs):
    _, _, exps = runs
    state = ckpt.load(ckpt.epoch_path(exps["bf16"], 2))
    assert state["config"]["train"]["precision"] == "bf16"
    assert all(math.isfinite(v) for rec in state["history"] for v in rec.values())
    _float32_everywhere(state)
    _float32_everywhere(ckpt.load(exps["bf16"] / "models" / "avg_model.pt"))
    assert "precision bf16" in (exps["bf16"] / "train.log").read_text()
    # autocast took part: the first step's loss (same weights, same batch) differs from float32's, a little
    first, first32 = (read_metrics(metrics_path(exps[p]))[0]["loss"] for p in ("bf16", "fp32"))
    assert first != first32 and abs(first - first32) < 0.05 * first32


def test_bf16_resume_is_bit_exact(runs):
    _, _, exps = runs
    a, b = ckpt.load(ckpt.epoch_path(exps["bf16"], 2)), ckpt.load(ckpt.epoch_path(exps["part"], 2))
    for key in ("model", "head", "optimizer", "rng", "step", "history"):
        _assert_same(a[key], b[key], key)
    assert read_metrics(metrics_path(exps["bf16"])) == read_metrics(metrics_path(exps["part"]))


def test_resume_in_another_precision_is_refused(runs):
    conf, data, exps = runs
    r = run_cli("train", "--config", conf, "--data", data, "--exp", exps["bf16"], "--device", "cpu", "--resume",
                "--precision", "fp32")
    assert str(r.exception) == (f"{exps['bf16'] / 'config.yaml'}: --resume with a different config: train.precision "
                                "changed: bf16 in the run being resumed, fp32 now")


class _DtypeProbe(AAMObjective):
    """Records what the objective receives and whether autocast is on inside it."""

    def __init__(self):
        self.seen = []

    def __call__(self, batch, out, step):
        self.seen.append((out.embedding.dtype, out.margin_logits.dtype, torch.is_autocast_enabled("cpu")))
        return super().__call__(batch, out, step)


def test_objective_runs_in_float32_outside_autocast(tmp_path):
    data = make_feats_dir(tmp_path / "data")
    cfg = load_config(write_config(tmp_path / "c.yaml", train={"epochs": 1, "avg_last": 1, "log_interval": 1,
                                                               "seed": 3, "precision": "bf16"}))
    probe = _DtypeProbe()
    with no_plots():
        Trainer(cfg, tmp_path / "exp", ChunkDataset(data, 50, seed=3), setup("cpu"), probe).run()
    assert probe.seen and set(probe.seen) == {(torch.float32, torch.float32, False)}


def test_fp16_scaler_state_is_checkpointed_and_restored(tmp_path, monkeypatch):
    """fp16 is refused on a CPU; CPU autocast has float16 kernels, so the GradScaler path is
    exercised here by letting the trainer's precision check through."""
    monkeypatch.setattr("trkd.trainer.resolve_precision", lambda name, device: "fp16")
    data = make_feats_dir(tmp_path / "data")
    conf = write_config(tmp_path / "c.yaml")
    with no_plots():
        ok(run_cli("train", "--config", conf, "--data", data, "--exp", tmp_path / "full", "--device", "cpu"))
        state = ckpt.load(ckpt.epoch_path(tmp_path / "full", 1))
        assert state["scaler"]["scale"] < 2.0 ** 16  # it backed off from its initial scale on overflow
        _float32_everywhere(state)
        shutil.copytree(tmp_path / "full", tmp_path / "part")
        for name in ("model_2.pt", "avg_model.pt"):
            (tmp_path / "part" / "models" / name).unlink()
        ok(run_cli("train", "--config", conf, "--data", data, "--exp", tmp_path / "part", "--device", "cpu",
                   "--resume"))
    a, b = (ckpt.load(ckpt.epoch_path(tmp_path / d, 2)) for d in ("full", "part"))
    for key in ("model", "head", "scaler"):
        _assert_same(a[key], b[key], key)


def test_fp16_on_a_cpu_is_one_line_through_the_cli(runs, tmp_path):
    conf, data, _ = runs
    proc = subprocess.run([str(ROOT / "tools/venv/bin/trkd"), "train", "--config", str(conf), "--data", str(data),
                           "--exp", str(tmp_path / "x"), "--device", "cpu", "--precision", "fp16"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == ("trkd: error: --precision fp16 needs a CUDA GPU (the device is cpu); "
                           "use bf16 or fp32 on the CPU\n")
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def teacher_ctx(tmp_path_factory):
    data, exp = teacher(tmp_path_factory)
    with no_plots():
        yield data, exp, tmp_path_factory.mktemp("students_bf16")


@pytest.mark.parametrize("mode", ["dumped", "online"])
def test_bf16_distillation_trains_with_float32_checkpoints(teacher_ctx, mode):
    data, teacher_dir, tmp = teacher_ctx
    exp = tmp / mode
    extra = ["--online"] if mode == "online" else []
    ok(distill(teacher_dir, student_config(tmp / "s.yaml", epochs=2), data, exp, "trkd", "--precision", "bf16",
               *extra))
    state = ckpt.load(ckpt.epoch_path(exp, 2))
    assert state["config"]["train"]["precision"] == "bf16" and state["config"]["kd"]["online"] is (mode == "online")
    assert all(math.isfinite(v) for rec in state["history"] for v in rec.values())
    assert {"tm", "cf", "tau", "f_size"} <= set(state["history"][-1])
    _float32_everywhere(state)


def test_dump_logits_and_extract_in_bf16_agree_with_fp32(teacher_ctx):
    data, teacher_dir, tmp = teacher_ctx
    import kaldiio

    for precision in ("fp32", "bf16"):
        ok(run_cli("extract", "--model", teacher_dir, "--data", data, "--out", tmp / f"xv_{precision}",
                   "--device", "cpu", "--precision", precision))
        ok(run_cli("dump-logits", "--model", teacher_dir, "--data", data, "--out", tmp / f"dump_{precision}",
                   "--device", "cpu", "--precision", precision))
    xv32, xv16 = (dict(kaldiio.load_scp(str(tmp / f"xv_{p}" / "xvector.scp"))) for p in ("fp32", "bf16"))
    for utt, e in xv32.items():
        cos = float(e @ xv16[utt]) / float((e @ e) ** 0.5 * (xv16[utt] @ xv16[utt]) ** 0.5)
        assert 0.99 < cos and not (e == xv16[utt]).all(), utt
    lg32, lg16 = (dict(kaldiio.load_scp(str(tmp / f"dump_{p}" / "logits.scp"))) for p in ("fp32", "bf16"))
    diffs = [abs(lg32[k].astype(float) - lg16[k].astype(float)).max() for k in lg32]
    assert 0 < max(diffs) < 1.0  # logits are scaled by s = 32: bf16 moves them by a fraction of one
    assert yaml.safe_load((tmp / "dump_bf16" / "meta.yaml").read_text())["num_chunks"] == len(lg16)


def _bench_gpu(tmp_path, *launcher):
    out = tmp_path / "gpu.md"
    proc = subprocess.run([*launcher, str(ROOT / "bench/gpu.py"), "--quick", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = out.read_text().splitlines()
    if len(launcher) == 1:   # --out holds exactly the printed report, once
        assert proc.stdout.splitlines() == report
    else:   # other ranks' gloo notices share stdout, written in pieces that may land inside a line
        printed = re.sub(r"\[Gloo\] Rank |\d+ is connected to \d+ peer ranks\. Expected number of connected peer "
                         r"ranks is : \d+\n?", "", proc.stdout)
        for line in report:
            assert line in printed, line
            printed = printed[printed.index(line) + len(line):]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in report if line.startswith("| ")]
    steps = {tuple(c[:3]): c[3:] for c in cells if len(c) == 8 and c[0] != "step"}
    loader = {(c[0], int(c[1])): [float(x.split()[0]) for x in c[2:]] for c in cells
              if len(c) == 6 and c[0] != "loader, storage"}
    return report, steps, loader


def test_bench_gpu_quick_runs_and_prints_every_kind_of_row(tmp_path):
    report, steps, loader = _bench_gpu(tmp_path, str(ROOT / "tools/venv/bin/python"))
    cuda = torch.cuda.is_available()
    if not cuda:
        assert report[0].startswith("device: cpu") and "batch 2 per step instead of a GPU's 128" in report[0]
    batch = 128 if cuda else 2
    pair = "distill trkd ecapa_c400 -> mobilenetv2"
    labels = ["train mobilenetv2", f"{pair}, online teacher", f"{pair}, top-256 dump"]
    assert sorted({k[0] for k in steps}) == sorted(labels) and {k[1] for k in steps} == {"5994"}
    per_chunk = {}
    for label in labels:
        assert [k[2] for k in steps if k[0] == label] == ["fp32", "bf16", "fp16"]
        if not cuda:
            assert steps[label, "5994", "fp16"][0].startswith("not run (--precision fp16 needs a CUDA GPU")
        fp32 = float(steps[label, "5994", "fp32"][0].split()[0])
        for p in ("fp32", "bf16") if not cuda else ("fp32", "bf16", "fp16"):
            ms, ratio, rate, macs, peak = steps[label, "5994", p]
            median, low, high = (float(x) for x in re.fullmatch(r"(\S+) \[(\S+)-(\S+)\]", ms).groups())
            assert 0 < low <= median <= high
            assert float(ratio) == pytest.approx(fp32 / median, abs=0.01)
            assert float(rate) == pytest.approx(1000 * batch / median, rel=0.05, abs=0.05)
            per_chunk[label, p] = float(macs) / float(rate)
            assert (peak == "-") is not cuda
    for p in ("fp32", "bf16"):   # the online step also runs the teacher's forward; the dump step does not
        assert per_chunk[labels[1], p] > 1.2 * per_chunk[labels[2], p]
        # the same student; 0.1: the table's rounding of a CPU run's few chunks/s
        assert per_chunk[labels[2], p] == pytest.approx(per_chunk[labels[0], p], rel=0.1)
    default = "bf16" if cuda else "fp32"
    train_macs = float(steps[labels[0], "5994", default][3]) * 1e12
    line = next(x for x in report if x.startswith("GPU_MACS_PER_SECOND = "))
    assert float(line.split()[2]) == pytest.approx(train_macs, rel=0.01)
    consumed = float(steps[labels[0], "5994", default][2])
    assert set(loader) == {("float32", 1), ("CM", 1)}
    for rate, per_worker, times, workers in loader.values():
        assert rate > 0 and per_worker == pytest.approx(rate, abs=1)
        assert times == pytest.approx(rate / consumed, rel=0.05) and workers == math.ceil(consumed / rate)


def test_bench_gpu_runs_under_torchrun(tmp_path):
    """Two DDP processes (gloo on the CPU): the step's gradient exchange; rank 0 alone reports."""
    report, steps, loader = _bench_gpu(tmp_path, str(ROOT / "tools/venv/bin/torchrun"), "--standalone",
                                       "--nproc_per_node", "2")
    assert "2 process(es)" in report[0] and len(steps) == 9 and len(loader) == 2
    assert all(float(steps[k][2]) > 0 for k in steps if k[2] == "fp32")
