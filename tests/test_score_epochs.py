"""`trkd score-epochs` and `trkd check-regime`: EER per epoch checkpoint, resumable, its plateau tests."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest

from cli_helpers import error_line, ok, trkd
from train_helpers import make_feats_dir, run_cli, write_config
from trkd.study.convergence import plateau, read_records, regime
from trkd.study.epochs_eer import select_epochs, spans

EPOCHS = 3


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A 3-epoch tiny model, a test set with its trials, and the first `trkd score-epochs` run."""
    tmp = tmp_path_factory.mktemp("score_epochs")
    train = make_feats_dir(tmp / "train")
    conf = write_config(tmp / "c.yaml", train={"epochs": EPOCHS, "avg_last": 1, "log_interval": 10, "seed": 1})
    exp = tmp / "exp"
    r = run_cli("train", "--config", conf, "--data", train, "--exp", exp, "--device", "cpu")
    assert r.exit_code == 0, repr(r.exception)
    # the training speakers again (seed 0), so that the tiny model's EER moves from epoch to epoch
    test = make_feats_dir(tmp / "test", num_spk=4, utts_per_spk=4, seed=0)
    utts = sorted(f"spk{s}-utt{u}" for s in range(4) for u in range(4))
    (test / "trials").write_text("".join(
        f"{a} {b} {'target' if a[:4] == b[:4] else 'nontarget'}\n" for a, b in itertools.combinations(utts, 2)))
    out = ok(trkd("score-epochs", "--model", exp, "--data", test, "--device", "cpu"))
    return exp, test, out


def test_one_record_per_epoch_with_the_eer_of_extract_and_score(scored, tmp_path):
    exp, test, out = scored
    records = read_records(exp / "epochs_eer.jsonl")
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    assert f"scored {EPOCHS} new epoch(s)" in out and (exp / "epochs_eer.png").stat().st_size > 0
    assert not (exp / "epochs_eer").exists()  # embeddings are not kept unless asked
    eers = set()
    for rec in records:
        e = rec["epoch"]
        assert rec["checkpoint"] == str(exp / "models" / f"model_{e}.pt")
        emb = tmp_path / f"emb{e}"
        assert run_cli("extract", "--model", exp, "--data", test, "--out-dir", emb, "--device", "cpu",
                       "--checkpoint", f"model_{e}.pt").exit_code == 0
        assert run_cli("score", "--scp", emb / "xvector.scp", "--trials", test / "trials",
                       "--out-dir", emb / "s").exit_code == 0
        metrics = json.loads((emb / "s" / "trials.metrics.json").read_text())["metrics"]
        for key in ("eer", "mindcf_p0_01", "mindcf_p0_05"):
            assert rec[key] == pytest.approx(metrics[key], abs=1e-12), (e, key)
        assert f"{e:5d}  {100 * metrics['eer']:7.3f}" in out  # the printed table
        eers.add(tuple(round(metrics[k], 9) for k in ("eer", "mindcf_p0_01", "mindcf_p0_05")))
    assert len(eers) > 1  # epochs differ, so a record of the wrong checkpoint would be caught
    assert "plateau < 0.2 points over epochs 1-3:" in out and "plateau < 5 % relative over epochs 2-3:" in out


def test_rerun_skips_scored_epochs_and_scores_only_the_missing_ones(scored, tmp_path):
    exp, test, _ = scored
    before = (exp / "epochs_eer.jsonl").read_bytes()
    out = ok(trkd("score-epochs", "--model", exp, "--data", test, "--device", "cpu"))
    assert "scored 0 new epoch(s)" in out
    assert f"already scored in {exp / 'epochs_eer.jsonl'}, skipped: epoch(s) 1-{EPOCHS}" in out
    assert (exp / "epochs_eer.jsonl").read_bytes() == before
    # an interrupted run: only epoch 1 recorded; the rerun scores 2 and 3 and keeps 1 as it was
    part = tmp_path / "part"
    shutil.copytree(exp, part, ignore=shutil.ignore_patterns("*.png"))
    lines = before.decode().splitlines(keepends=True)
    (part / "epochs_eer.jsonl").write_text(lines[0].replace(str(exp), str(part)))
    out = ok(trkd("score-epochs", "--model", part, "--data", test, "--device", "cpu", "--last", "2"))
    assert "scored 2 new epoch(s): 2, 3" in out and "skipped" not in out
    assert [r["eer"] for r in read_records(part / "epochs_eer.jsonl")] == \
        [r["eer"] for r in read_records(exp / "epochs_eer.jsonl")]


def test_corrupt_or_missing_checkpoint_is_one_line_and_leaves_the_jsonl_untouched(scored, tmp_path):
    exp, test, _ = scored
    bad = tmp_path / "bad"
    shutil.copytree(exp, bad)
    jsonl = bad / "epochs_eer.jsonl"
    jsonl.write_text(jsonl.read_text().splitlines(keepends=True)[0])  # epoch 1 scored, 2 and 3 to do
    before = jsonl.read_bytes()
    (bad / "models" / "model_3.pt").write_bytes(b"\x00truncated")
    err = error_line(trkd("score-epochs", "--model", bad, "--data", test, "--device", "cpu"))
    assert err.startswith(f"{bad / 'models' / 'model_3.pt'}: not a readable trkd checkpoint")
    assert jsonl.read_bytes() == before  # epoch 2, which is fine, was not appended either
    for p in (bad / "models").glob("*.pt"):
        p.unlink()
    err = error_line(trkd("score-epochs", "--model", bad, "--data", test))
    assert err == f"{bad / 'models'}: holds no model_<epoch>.pt checkpoint"
    assert jsonl.read_bytes() == before
    jsonl.write_text(before.decode() + "{not json\n")
    err = error_line(trkd("score-epochs", "--model", bad, "--data", test))
    assert err.startswith(f"{jsonl}:2: not an epoch record")


def _records(*eers, first=1):
    return [{"epoch": first + i, "eer": e, "mindcf_p0_01": 0.5, "mindcf_p0_05": 0.3} for i, e in enumerate(eers)]


def test_plateau_in_points_over_the_last_three_epochs_at_the_threshold():
    # 0.5 - 0.375 = 0.125 exactly: 12.5 points; the test is strict
    assert plateau(_records(0.9, 0.5, 0.375, 0.5), points=12.5).points.ok is False
    assert plateau(_records(0.9, 0.5, 0.375, 0.5), points=12.5 + 1e-9).points.ok is True
    # the first epoch (far off) is outside the window of the last 3
    v = plateau(_records(0.30, 0.0500, 0.0519, 0.0510))
    assert v.points.ok is True and (v.points.first, v.points.last) == (2, 4)
    assert plateau(_records(0.30, 0.0500, 0.0521, 0.0510)).points.ok is False
    assert plateau(_records(0.0500, 0.0519)).points.ok is None  # two epochs: too few
    assert "unknown (too few epochs)" in plateau(_records(0.05, 0.05)).points.line()


def test_plateau_relative_over_the_last_two_epochs_at_the_threshold():
    # relative to the window's first EER: 0.5 -> 0.375 moves by 0.25 of it exactly
    assert plateau(_records(0.5, 0.375), relative=0.25).relative.ok is False
    assert plateau(_records(0.5, 0.375), relative=0.25 + 1e-9).relative.ok is True
    assert plateau(_records(0.2, 0.100, 0.1049)).relative.ok is True     # 4.9 %
    assert plateau(_records(0.2, 0.100, 0.1051)).relative.ok is False    # 5.1 %
    assert plateau(_records(0.100, 0.0951)).relative.ok is True          # falling counts the same
    gap = plateau(_records(0.1, first=1) + _records(0.1, first=3))      # epoch 2 never scored
    assert gap.relative.ok is None and "epochs 2 not scored" in gap.relative.line()


def test_regime_needs_both_plateaus_and_the_ratio():
    teacher = _records(0.060, 0.0501, 0.0500, 0.0502)
    student = _records(0.2, 0.070, 0.068)            # 2.9 % relative; 0.068 / 0.0502 = 1.35
    assert regime(teacher, student)[-1] == "converged regime: yes"
    assert regime(teacher, student, ratio=1.4)[-1] == "converged regime: no"
    assert regime(teacher, _records(0.2, 0.080, 0.068))[-1] == "converged regime: no"  # student still moving
    assert regime(_records(0.06, 0.055, 0.0502), student)[-1] == "converged regime: no"  # teacher too


def test_select_epochs_keeps_the_newest_and_the_plateau_windows():
    assert select_epochs([1, 2, 3, 4, 5], every=2, tail=1) == [1, 3, 5]
    assert select_epochs([1, 2, 3, 4], every=2, tail=1) == [2, 4]
    # by default the newest 3 are always in, so that both plateau tests can be decided
    assert select_epochs(list(range(1, 11)), every=4) == [2, 6, 8, 9, 10]
    assert select_epochs([1, 2, 3, 4], every=1, last=2) == [3, 4]
    assert spans([1, 2, 3, 5, 7, 8, 9]) == "1-3, 5, 7-9" and spans([4]) == "4"


def test_python_api_returns_the_records_and_the_verdict(scored):
    import trkd

    exp, test, _ = scored
    records, verdict = trkd.score_epochs(exp, test, device="cpu")  # every epoch already scored: no work
    assert records == read_records(exp / "epochs_eer.jsonl")
    assert (verdict.points.first, verdict.points.last) == (1, EPOCHS) and verdict.points.ok is not None


def test_check_regime_names_a_run_without_records(scored, tmp_path):
    exp, _, _ = scored
    err = error_line(trkd("check-regime", "--teacher", exp, "--student", tmp_path))
    assert err == f"{tmp_path / 'epochs_eer.jsonl'}: no epoch records: run trkd score-epochs first"
    out = ok(trkd("check-regime", "--teacher", exp, "--student", exp))
    assert out.splitlines()[-1] == "converged regime: no"  # a run is never 1.3x itself


def test_epoch_trace_joins_eer_training_means_and_embedding_stats(scored, tmp_path):
    exp, test, _ = scored
    err = error_line(trkd("epoch-trace", "--model", exp, "--utt2spk", test / "utt2spk"))
    assert err.startswith(f"{exp / 'epochs_eer' / 'epoch_1' / 'xvector.scp'}: epoch 1's embeddings were not kept")
    assert not (exp / "epochs_trace.jsonl").exists()
    kept = tmp_path / "kept"
    shutil.copytree(exp, kept, ignore=shutil.ignore_patterns("epochs_eer.*"))
    ok(trkd("score-epochs", "--model", kept, "--data", test, "--device", "cpu", "--keep-embeddings"))
    out = ok(trkd("epoch-trace", "--model", kept, "--utt2spk", test / "utt2spk"))
    rows = [json.loads(line) for line in (kept / "epochs_trace.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1)) and (kept / "epochs_trace.png").stat().st_size > 0
    logged = [json.loads(line) for line in (kept / "metrics.jsonl").read_text().splitlines()]
    for row, rec in zip(rows, read_records(kept / "epochs_eer.jsonl")):
        e = row["epoch"]
        assert row["eer"] == rec["eer"]
        accs = [r["acc"] for r in logged if r["epoch"] == e]
        assert accs and row["train_acc"] == pytest.approx(sum(accs) / len(accs), rel=1e-12)
        assert "train_lr" not in row and "train_iteration" not in row
        stats = json.loads(ok(trkd("embedding-stats", "--scp", kept / "epochs_eer" / f"epoch_{e}" / "xvector.scp",
                                   "--utt2spk", test / "utt2spk")))
        for key in ("norm", "common", "rank", "cos_same", "cos_diff"):
            assert row[key] == pytest.approx(stats[key], rel=1e-12), (e, key)
    head, *lines = out.splitlines()
    assert head.split()[:4] == ["epoch", "EER%", "loss", "acc"] and head.split()[-1] == "cos_diff"
    assert [line.split()[:2] for line in lines] == [[str(r["epoch"]), f"{100 * r['eer']:.2f}"] for r in rows]


def test_epoch_means_average_an_epochs_intervals_and_skip_schedules():
    from trkd.study.epoch_trace import epoch_means

    records = [{"iteration": 2, "epoch": 1, "iter": 2, "lr": 0.1, "acc": 0.2, "cf": 1.0},
               {"iteration": 4, "epoch": 1, "iter": 4, "lr": 0.1, "acc": 0.4, "cf": float("nan")},
               {"iteration": 6, "epoch": 2, "iter": 2, "lr": 0.05, "acc": 0.9}]
    assert epoch_means(records) == {1: {"acc": pytest.approx(0.3), "cf": 1.0}, 2: {"acc": 0.9}}
