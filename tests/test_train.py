"""`trkd train`: the exp dir it writes, the schedules it follows, config errors, the objective hook."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from train_helpers import make_feats_dir, run_cli, write_config
from trkd import checkpoint as ckpt
from trkd.config import Config, load_config
from trkd.errors import InputError
from trkd.schedules import lr_at
from trkd.train_metrics import diverged_epoch, read_events, train_seconds
from trkd.trainer import StudentOutput, Step, Trainer, TrainingDiverged
from trkd.utils.device import setup

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    data = make_feats_dir(tmp / "data")
    conf = write_config(tmp / "tiny.yaml")
    exp = tmp / "exp"
    result = run_cli("train", "--config", conf, "--data", data, "--exp", exp, "--device", "cpu")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return data, exp


def test_exp_dir_holds_resolved_config_class_map_checkpoints_log_and_curves(trained):
    data, exp = trained
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert cfg["head"]["num_classes"] == 4 and cfg["model"]["feat_dim"] == 20
    assert "train --config" in cfg["command"] and "--exp" in cfg["command"]
    assert (exp / "spk2id").read_text().split("\n")[:2] == ["spk0 0", "spk1 1"]
    assert ckpt.saved_epochs(exp) == [1, 2]
    assert (exp / "models" / "avg_model.pt").is_file()
    assert (exp / "train_curves.png").read_bytes()[:4] == b"\x89PNG"
    log = (exp / "train.log").read_text()
    assert "epoch 2 done" in log and "averaged the last 2 checkpoints" in log


def test_progress_lines_are_the_metrics_records_and_a_short_tail_joins_the_last(tmp_path):
    """One definition of a logged value: train.log, the console (not a terminal) and metrics.jsonl
    show the same interval means; 7 steps an epoch at log_interval 3 close records after steps 3
    and 7 (a 1-step tail would draw a spike in the curves), not 3, 6 and 7."""
    from cli_helpers import trkd
    from trkd.train_metrics import metrics_path, read_metrics
    from trkd.trainer import RECORD_MEANING, progress_line

    data = make_feats_dir(tmp_path / "data", num_spk=4, utts_per_spk=7)
    conf = write_config(tmp_path / "c.yaml", data={"batch_size": 4},
                        train={"epochs": 2, "avg_last": 1, "log_interval": 3, "seed": 2})
    exp = tmp_path / "exp"
    proc = trkd("train", "--config", conf, "--data", data, "--exp", exp, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    records = read_metrics(metrics_path(exp))
    assert [(r["epoch"], r["iter"], r["steps"]) for r in records] == [(1, 3, 3), (1, 7, 4), (2, 3, 3), (2, 7, 4)]
    log = (exp / "train.log").read_text()
    logged = [ln.split(" ", 2)[2] for ln in log.splitlines() if " iter " in ln]
    assert logged == [progress_line(r) for r in records]
    assert log.count(RECORD_MEANING) == 1
    console = [ln.split(": ", 1)[1] for ln in proc.stderr.splitlines() if " iter " in ln]
    assert console == logged
    # the epoch's mean is the steps-weighted mean of its records
    done = [ln for ln in log.splitlines() if "epoch 1 done:" in ln][0]
    loss = float(done.split(" loss ")[1].split()[0])
    assert loss == pytest.approx((3 * records[0]["loss"] + 4 * records[1]["loss"]) / 7, rel=1e-5)


def test_avg_model_is_the_mean_of_the_last_checkpoints(trained):
    _, exp = trained
    s1, s2 = (ckpt.load(ckpt.epoch_path(exp, e)) for e in (1, 2))
    avg = ckpt.load(exp / "models" / "avg_model.pt")
    assert avg["epochs"] == [1, 2]
    for k, v in avg["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (s1["model"][k] + s2["model"][k]) / 2)


def test_learning_rate_and_momentum_follow_the_config_per_iteration(trained):
    """Two iterations per epoch: the optimizer's last lr is lr_at(last step); history keeps it."""
    _, exp = trained
    state = ckpt.load(ckpt.epoch_path(exp, 2))
    assert state["step"] == 4
    group = state["optimizer"]["param_groups"][0]
    assert group["lr"] == pytest.approx(lr_at(3, 2, 2, 0.05, 0.005, 1))
    assert group["momentum"] == 0.9 and group["nesterov"] and group["weight_decay"] == 1e-4
    assert [h["margin"] for h in state["history"]] == [pytest.approx(0.1), pytest.approx(0.2)]


def test_unknown_config_key_is_an_error_naming_file_line_and_key(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("model:\n  name: xvector\noptim:\n  lr: 0.1\n  lrr: 0.2\n")
    with pytest.raises(InputError) as err:
        load_config(conf)
    assert str(err.value).startswith(f"{conf}:5: unknown key 'optim.lrr'")
    conf.write_text("model:\n  name: xvector\n  chanels: 8\n")
    with pytest.raises(InputError, match=r":3: unknown key 'model.chanels' for model 'xvector'"):
        load_config(conf)


def test_cli_prints_one_line_error_for_a_bad_config(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("train:\n  epochs: ten\n")
    proc = subprocess.run([str(ROOT / "tools/venv/bin/trkd"), "train", "--config", str(conf), "--data",
                           str(tmp_path), "--exp", str(tmp_path / "exp")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"trkd: error: {conf}:2: key 'train.epochs' must be an integer, got 'ten'"


def test_defaults_are_the_papers_voxceleb_settings():
    cfg = Config()
    assert (cfg.head.scale, cfg.head.margin, cfg.head.margin_start_epoch, cfg.head.margin_stop_epoch) == (32, 0.2, 20, 40)
    assert (cfg.optim.lr, cfg.optim.final_lr, cfg.optim.warmup_epochs) == (0.1, 5e-5, 6)
    assert (cfg.train.epochs, cfg.train.avg_last, cfg.data.batch_size, cfg.data.num_frms) == (150, 10, 512, 200)
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_existing_checkpoints_without_resume_is_an_error(trained, tmp_path):
    data, exp = trained
    result = run_cli("train", "--config", write_config(tmp_path / "c.yaml"), "--data", data, "--exp", exp)
    assert isinstance(result.exception, InputError)
    assert "already holds checkpoints" in str(result.exception)


class _ProbeObjective:
    """AAM plus a trainable projection term; returns NaN at global step `nan_at`."""

    needs_levels = True

    def __init__(self, nan_at=None):
        self.proj = torch.nn.Linear(16, 4)
        self.nan_at = nan_at
        self.seen = []

    def modules(self):
        return {"proj": self.proj}

    def __call__(self, batch, out: StudentOutput, step: Step):
        assert set(batch) >= {"feats", "target", "index"} and len(out.levels) >= 2
        self.seen.append(step)
        aam = torch.nn.functional.cross_entropy(out.margin_logits, batch["target"])
        extra = self.proj(out.embedding).pow(2).mean()
        loss = aam + extra
        if step.iteration == self.nan_at:
            loss = loss * float("nan")
        return loss, {"aam": aam.detach(), "extra": extra.detach()}


def _trainer(tmp_path, objective):
    from trkd.data.chunks import ChunkDataset

    data = make_feats_dir(tmp_path / "data")
    cfg = load_config(write_config(tmp_path / "c.yaml"))
    return Trainer(cfg, tmp_path / "exp", ChunkDataset(data, 50, seed=3), setup("cpu"), objective)


def test_objective_hook_trains_extra_modules_and_logs_its_parts(tmp_path):
    obj = _ProbeObjective()
    before = obj.proj.weight.detach().clone()
    _trainer(tmp_path, obj).run()
    state = ckpt.load(ckpt.epoch_path(tmp_path / "exp", 2))
    assert not torch.equal(state["extras"]["proj"]["weight"], before)
    assert {"aam", "extra", "loss", "acc"} <= set(state["history"][-1])
    assert [(s.epoch, s.iteration) for s in obj.seen] == [(1, 0), (1, 1), (2, 2), (2, 3)]
    assert "extra" in (tmp_path / "exp" / "train.log").read_text()


def test_nan_loss_stops_naming_epoch_and_iteration_and_keeps_last_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, _ProbeObjective(nan_at=3))
    with pytest.raises(TrainingDiverged) as err:
        trainer.run()
    exp = tmp_path / "exp"
    assert "the loss is nan at epoch 2, iteration 2 of 2" in str(err.value)
    assert f"the last good checkpoint is {ckpt.epoch_path(exp, 1)}" in str(err.value)
    assert ckpt.saved_epochs(exp) == [1]
    events = read_events(exp)  # what a study report reads instead of the log's wording
    assert [e["event"] for e in events] == ["start", "epoch", "diverged"] and events[1]["seconds"] > 0
    assert {k: events[2][k] for k in ("epoch", "iter", "iters_per_epoch", "loss")} == {
        "epoch": 2, "iter": 2, "iters_per_epoch": 2, "loss": "nan"}
    assert diverged_epoch(exp) == 2 and train_seconds(exp) == events[1]["seconds"]


def test_chunks_are_deterministic_per_seed_and_epoch_and_shards_cover_the_global_batch(tmp_path):
    from trkd.data.chunks import ChunkDataset, GlobalBatchSampler

    data = make_feats_dir(tmp_path / "data", lengths={"spk2-utt3": 20})
    ds = ChunkDataset(data, num_frms=50, seed=7)
    assert ds.epoch_items(2) == ChunkDataset(data, num_frms=50, seed=7).epoch_items(2)
    assert ds.epoch_items(2) != ds.epoch_items(3)
    short = ds.utts.index("spk2-utt3")
    item = ds[(short, 0, 0)]["feats"]
    assert item.shape == (50, 20)  # 20 frames repeated: rows 0, 20 and 40 are the same frame
    torch.testing.assert_close(item[0], item[20])
    torch.testing.assert_close(item[0], item[40])
    torch.testing.assert_close(item.mean(0), torch.zeros(20), atol=1e-5, rtol=0)  # per-chunk mean removed
    whole = list(GlobalBatchSampler(ds, 8, 0, 1))
    shards = [list(GlobalBatchSampler(ds, 8, r, 2)) for r in range(2)]
    assert len(whole) == 2 and all(len(s) == 2 for s in shards)
    for g, batch in enumerate(whole):
        assert sorted(shards[0][g] + shards[1][g]) == sorted(batch)


def test_average_command_and_quick_flag(trained, tmp_path):
    data, exp = trained
    out = tmp_path / "avg1.pt"
    r = run_cli("average", "--exp", exp, "--num", 1, "--out", out)
    assert r.exit_code == 0, repr(r.exception)
    assert ckpt.load(out)["epochs"] == [2]
    conf = write_config(tmp_path / "c.yaml", train={"epochs": 50, "avg_last": 10, "log_interval": 5, "seed": 1})
    r = run_cli("train", "--config", conf, "--data", data, "--exp", tmp_path / "q", "--quick", "--device", "cpu")
    assert r.exit_code == 0, repr(r.exception)
    assert ckpt.saved_epochs(tmp_path / "q") == [1, 2]
    assert yaml.safe_load((tmp_path / "q" / "config.yaml").read_text())["train"]["epochs"] == 2


def test_metrics_jsonl_has_one_record_per_log_interval_and_the_log_no_bar_frames(trained):
    from trkd.train_metrics import metrics_path, read_metrics

    _, exp = trained
    recs = read_metrics(metrics_path(exp))
    assert [(r["iteration"], r["epoch"], r["iter"]) for r in recs] == [(1, 1, 1), (2, 1, 2), (3, 2, 1), (4, 2, 2)]
    assert {"loss", "acc", "aam", "lr", "margin", "iters_per_epoch"} <= set(recs[0])
    history = ckpt.load(ckpt.epoch_path(exp, 2))["history"]
    for epoch, rec in enumerate(history, 1):  # log interval 1: the epoch mean is the mean of its records
        got = [r["loss"] for r in recs if r["epoch"] == epoch]
        assert sum(got) / len(got) == pytest.approx(rec["loss"], rel=1e-9)
    assert recs[-1]["lr"] == history[-1]["lr"]
    log = (exp / "train.log").read_text()
    assert "\r" not in log and log.count(" iter ") == 4


def test_metrics_of_a_longer_interval_and_a_cut_last_line(tmp_path):
    from trkd.train_metrics import MetricsWriter, read_metrics

    data = make_feats_dir(tmp_path / "data", utts_per_spk=8)  # 4 iterations per epoch
    conf = write_config(tmp_path / "c.yaml", train={"epochs": 2, "avg_last": 1, "log_interval": 3, "seed": 3})
    r = run_cli("train", "--config", conf, "--data", data, "--exp", tmp_path / "exp", "--device", "cpu")
    assert r.exit_code == 0, repr(r.exception)
    path = tmp_path / "exp" / "metrics.jsonl"
    recs = read_metrics(path)
    # every 3rd iteration; an epoch's tail under half an interval (here 1 step) joins its last record
    assert [(r["iteration"], r["iter"], r["steps"]) for r in recs] == [(4, 4, 4), (8, 4, 4)]
    path.write_text(path.read_text() + '{"iteration": 9, "epo')  # a writer killed mid-line
    assert read_metrics(path) == recs
    MetricsWriter(path, keep_until=4).close()  # what a resume from epoch 1 keeps
    assert read_metrics(path) == recs[:1]
    path.write_text('{"iteration": 1}\nnot json\n{"iteration": 2}\n')
    with pytest.raises(InputError, match=r"metrics.jsonl:2: not a JSON record"):
        read_metrics(path)


def test_curves_are_drawn_per_interval_against_the_iteration_with_epochs_marked(trained, monkeypatch):
    import matplotlib.figure

    from trkd.curves import plot_history
    from trkd.train_metrics import metrics_path, read_metrics

    _, exp = trained
    drawn = {}
    def keep(fig, path, **kwargs):
        drawn["fig"] = fig
        Path(path).write_bytes(b"")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    plot_history(read_metrics(metrics_path(exp)), exp / "x.png")
    axes = {ax.get_title(): ax for ax in drawn["fig"].axes if ax.get_title()}
    assert list(axes)[:4] == ["loss", "acc", "lr", "margin"]
    curve, *marks = axes["loss"].lines
    assert list(curve.get_xdata()) == [1, 2, 3, 4]
    assert sorted(m.get_xdata()[0] for m in marks) == [2, 4]  # the ends of epochs 1 and 2


def test_study_report_reads_its_curves_from_metrics_jsonl(trained):
    import sys

    sys.path.insert(0, str(ROOT / "egs" / "mini" / "local"))
    try:
        import study_report
    finally:
        sys.path.pop(0)
    from trkd.train_metrics import metrics_path, read_metrics

    _, exp = trained
    curve = study_report.read_curve(exp)
    recs = read_metrics(metrics_path(exp))
    assert curve["loss"] == [(r["iteration"], r["loss"]) for r in recs] and len(curve["loss"]) == 4
    assert curve["tau"] == [] and curve["|F|"] == []  # no distillation here
