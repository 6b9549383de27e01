"""Scoring: EER/minDCF against the shared vectors and a plain reference; cosine, AS-norm and the CLI."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from scoring_helpers import reference_asnorm, reference_eer_mindcf, unit, write_embeddings
from trkd.cli import app
from trkd.errors import InputError
from trkd.scoring import compute_metrics, eer_mindcf
from trkd.scoring.evaluate import score_embeddings

DIM = 16


def test_shared_metric_vectors(vectors):
    assert vectors["metrics"]
    for entry in vectors["metrics"]:
        for p, field in ((0.01, "mindcf_p0_01"), (0.05, "mindcf_p0_05")):
            eer, dcf = eer_mindcf(entry["scores"], entry["labels"], p_target=p)
            assert eer == pytest.approx(entry["eer"], abs=1e-9, rel=0)
            assert dcf == pytest.approx(entry[field], abs=1e-9, rel=0)
        assert compute_metrics(entry["scores"], entry["labels"]) == pytest.approx(
            {k: entry[k] for k in ("eer", "mindcf_p0_01", "mindcf_p0_05")}, abs=1e-9, rel=0
        )


@pytest.mark.parametrize("seed", range(6))
def test_parity_with_plain_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    labels = (rng.random(n) < rng.uniform(0.05, 0.5)).astype(int)
    labels[:2] = [0, 1]
    scores = rng.normal(size=n) + rng.uniform(0, 3) * labels
    if seed % 2:
        scores = np.round(scores, 1)  # ties: the stable sort must decide as the reference does
    for p in (0.01, 0.05, 0.3):
        assert eer_mindcf(scores, labels, p) == pytest.approx(reference_eer_mindcf(scores, labels, p), abs=1e-12)
    assert eer_mindcf(torch.from_numpy(scores), torch.from_numpy(labels)) == eer_mindcf(scores, labels)


def test_known_cases():
    assert eer_mindcf([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == (0.0, 0.0)
    # Sorted: n n t n n t t t; after position 3 one target is missed and one non-target passes.
    eer, _ = eer_mindcf([0, 1, 1.5, 2, 3, 4, 5, 6], [0, 0, 1, 0, 0, 1, 1, 1])
    assert eer == pytest.approx(0.25)
    # Fully inverted: every target below every non-target.
    assert eer_mindcf([0.1, 0.2, 0.9], [1, 1, 0], 0.05) == (1.0, 1.0)
    with pytest.raises(ValueError, match="both targets and non-targets"):
        eer_mindcf([0.1, 0.2], [1, 1])


# --- embeddings on disk --------------------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path):
    """6 speakers × 4 utterances as a real ark/scp, a Kaldi trial list, a cohort and a spk2utt."""
    rng = np.random.default_rng(0)
    offset = 2.0 * rng.normal(size=DIM)  # shared offset: mean subtraction must matter
    emb = {}
    for s in range(6):
        centre = rng.normal(size=DIM)
        for u in range(4):
            emb[f"spk{s}-u{u}"] = offset + centre + 0.6 * rng.normal(size=DIM)
    keys = sorted(emb)
    trials = [(a, b, "target" if a[:4] == b[:4] else "nontarget") for i, a in enumerate(keys) for b in keys[i + 1 :]]
    (tmp_path / "trials").write_text("".join(f"{a} {b} {l}\n" for a, b, l in trials))
    cohort = {f"c{i}": offset + rng.normal(size=DIM) for i in range(40)}
    (tmp_path / "spk2utt").write_text("".join(f"spk{s} " + " ".join(f"spk{s}-u{u}" for u in range(2)) + "\n" for s in range(6)))
    return {
        "dir": tmp_path, "emb": emb, "trials": trials, "cohort": cohort,
        "scp": write_embeddings(tmp_path / "xvector", emb),
        "cohort_scp": write_embeddings(tmp_path / "cohort", cohort),
    }


def read_score_file(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        e, t, s = line.split()
        out[(e, t)] = float(s)
    return out


def test_cosine_scores_match_direct_computation(corpus):
    out = corpus["dir"] / "out"
    [res] = score_embeddings([corpus["dir"] / "trials"], scp=corpus["scp"], out_dir=out)
    got = read_score_file(out / "trials.score")
    emb = corpus["emb"]
    assert list(got) == [(a, b) for a, b, _ in corpus["trials"]]
    for (a, b), s in got.items():
        assert s == pytest.approx(float(unit(emb[a]) @ unit(emb[b])), abs=1e-6)
    labels = [l == "target" for *_, l in corpus["trials"]]
    assert res.metrics == pytest.approx(compute_metrics(list(got.values()), labels), abs=1e-5)
    summary = json.loads((out / "trials.metrics.json").read_text())
    assert summary["num_trials"] == len(corpus["trials"]) and summary["num_target"] == 6 * 6
    assert summary["metrics"]["eer"] == res.metrics["eer"]
    assert (out / "trials.det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mean_subtraction_and_speaker_enrollment(corpus):
    d, emb = corpus["dir"], corpus["emb"]
    (d / "spk_trials").write_text("spk0 spk0-u3 target\nspk1 spk0-u3 nontarget\nspk2 spk5-u2 nontarget\n")
    score_embeddings([d / "spk_trials"], enroll_scp=corpus["scp"], test_scp=corpus["scp"], spk2utt=d / "spk2utt",
                     cohort_scp=corpus["cohort_scp"], out_dir=d / "out")
    mean = np.mean([v.astype(np.float32) for v in corpus["cohort"].values()], axis=0)
    for (spk, test), s in read_score_file(d / "out" / "spk_trials.score").items():
        model = unit(np.mean([unit(emb[f"{spk}-u{u}"] - mean) for u in range(2)], axis=0))
        assert s == pytest.approx(float(model @ unit(emb[test] - mean)), abs=1e-5)


@pytest.mark.parametrize("per_speaker", [False, True])
def test_asnorm_matches_loop_reference(corpus, per_speaker):
    d, emb = corpus["dir"], corpus["emb"]
    groups = {f"cs{g}": [f"c{i}" for i in range(g, 40, 8)] for g in range(8)}
    (d / "cohort_spk2utt").write_text("".join(f"{s} {' '.join(u)}\n" for s, u in groups.items()))
    [res] = score_embeddings([d / "trials"], scp=corpus["scp"], cohort_scp=corpus["cohort_scp"],
                             cohort_spk2utt=d / "cohort_spk2utt" if per_speaker else None,
                             asnorm=True, asnorm_top_n=10 if not per_speaker else 5, out_dir=d / "out")
    mean = np.mean([v.astype(np.float32) for v in corpus["cohort"].values()], axis=0)
    prep = {k: unit(v - mean) for k, v in emb.items()}
    cohort = [unit(corpus["cohort"][k] - mean) for k in corpus["cohort"]]
    if per_speaker:
        cohort = [unit(np.mean([unit(corpus["cohort"][k] - mean) for k in u], axis=0)) for u in groups.values()]
    got = read_score_file(d / "out" / "trials.score")
    for (a, b), s in list(got.items())[::7]:
        ref = reference_asnorm(float(prep[a] @ prep[b]), prep[a], prep[b], cohort, res.setup["asnorm_top_n"])
        assert s == pytest.approx(ref, abs=2e-5)


def test_dim_mismatch_is_an_error(corpus):
    other = write_embeddings(corpus["dir"] / "small", {"spk0-u0": np.ones(DIM - 2)})
    with pytest.raises(InputError, match=f"embedding dim {DIM - 2} differs from dim {DIM}") as err:
        score_embeddings([corpus["dir"] / "trials"], enroll_scp=corpus["scp"], test_scp=other)
    assert err.value.path == str(other)


# --- the CLI ---------------------------------------------------------------------------------------


runner = CliRunner()


def test_cli_voxceleb_trials_and_scores_path(corpus):
    d = corpus["dir"]
    vox = {"id1/a/00001": np.eye(DIM)[0], "id1/b/00002": np.eye(DIM)[0] + 0.1, "id2/c/00001": np.eye(DIM)[1]}
    scp = write_embeddings(d / "vox", {k.replace("/", "-"): v for k, v in vox.items()})
    (d / "veri.txt").write_text("1 id1/a/00001.wav id1/b/00002.wav\n0 id1/a/00001.wav id2/c/00001.wav\n")
    res = runner.invoke(app, ["score", "--trials", str(d / "veri.txt"), "--scp", str(scp), "--out-dir", str(d / "out")])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    out = d / "out"
    assert lines == ["veri: EER 0.000%  minDCF(0.01) 0.0000  minDCF(0.05) 0.0000  (2 trials)",
                     f"wrote {out / 'veri.score'}", f"wrote {out / 'veri.det.png'}", f"wrote {out / 'veri.metrics.json'}"]
    # Scores name the trials as the trial list wrote them, whatever form the embedding keys have.
    assert (d / "out" / "veri.score").read_text().startswith(f"id1/a/00001.wav id1/b/00002.wav {1.1 / np.sqrt(1.36):.6f}\n")
    # Metrics only, from the written score file (like compute-eer).
    res2 = runner.invoke(app, ["score", "--trials", str(d / "veri.txt"), "--scores", str(d / "out" / "veri.score"),
                               "--out-dir", str(d / "again")])
    assert res2.exit_code == 0, res2.output
    again = d / "again"
    assert res2.output.strip().splitlines() == [lines[0], f"wrote {again / 'veri.det.png'}",
                                                f"wrote {again / 'veri.metrics.json'}"]
    assert (again / "veri.det.png").is_file() and (again / "veri.metrics.json").is_file()


def test_cli_scores_file_metrics(corpus):
    d = corpus["dir"]
    rng = np.random.default_rng(3)
    trials = corpus["trials"]
    scores = rng.normal(size=len(trials)) + np.array([l == "target" for *_, l in trials])
    (d / "sys.score").write_text("".join(f"{a} {b} {s:.6f}\n" for (a, b, _), s in zip(trials, scores)))
    res = runner.invoke(app, ["score", "--trials", str(d / "trials"), "--scores", str(d / "sys.score"),
                              "--out-dir", str(d)])
    assert res.exit_code == 0, res.output
    summary = json.loads((d / "trials.metrics.json").read_text())
    expected = compute_metrics(np.round(scores, 6), [l == "target" for *_, l in trials])
    assert summary["metrics"] == pytest.approx(expected, abs=1e-12)
    assert f"EER {100 * expected['eer']:.3f}%" in res.output


def _digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_metrics_of_a_score_file_leave_its_run_untouched(corpus, tmp_path):
    """`trkd score --scores S --trials T` (the README's "metrics only") prints and writes nothing:
    the json and DET plot beside S are the results of the run that scored it."""
    d = corpus["dir"]
    out = tmp_path / "sys" / "scores"
    scored = subprocess.run([sys.executable, "-m", "trkd", "score", "--trials", str(d / "trials"),
                             "--scp", str(corpus["scp"]), "--out-dir", str(out)], capture_output=True, text=True)
    assert scored.returncode == 0, scored.stderr
    before = _digests(out)
    assert sorted(before) == ["trials.det.png", "trials.metrics.json", "trials.score"]
    assert scored.stdout.splitlines()[1:] == [f"wrote {out / n}" for n in ("trials.score", "trials.det.png",
                                                                           "trials.metrics.json")]
    again = subprocess.run([sys.executable, "-m", "trkd", "score", "--scores", str(out / "trials.score"),
                            "--trials", str(d / "trials")], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == scored.stdout.splitlines()[:1]  # the same metrics, no path
    assert _digests(out) == before
    assert json.loads((out / "trials.metrics.json").read_text())["setup"]["enroll"] == str(corpus["scp"])


def test_missing_embedding_error_and_skip(corpus):
    d = corpus["dir"]
    (d / "t2").write_text("spk0-u0 spk0-u1 target\nspk0-u0 ghost-1 nontarget\nghost-2 spk0-u1 nontarget\nspk0-u0 spk1-u1 nontarget\n")
    args = ["score", "--trials", str(d / "t2"), "--scp", str(corpus["scp"]), "--out-dir", str(d / "o")]
    res = runner.invoke(app, args)
    assert isinstance(res.exception, InputError)
    assert str(res.exception) == (f"{d / 't2'}: 2 of 4 trials have no embedding in {corpus['scp']}; the first is "
                                  "'ghost-1' (use --skip-missing to skip them)")
    res = runner.invoke(app, args + ["--skip-missing"])
    assert res.exit_code == 0, res.output
    assert "(2 trials, 2 skipped)" in res.output
    assert json.loads((d / "o" / "t2.metrics.json").read_text())["num_skipped"] == 2
    assert len((d / "o" / "t2.score").read_text().splitlines()) == 2


def test_cli_error_is_one_line(corpus):
    d = corpus["dir"]
    (d / "bad").write_text("spk0-u0 spk0-u1 target\nspk0-u0 spk1-u1 maybe\n")
    proc = subprocess.run([sys.executable, "-m", "trkd", "score", "--trials", str(d / "bad"), "--scp", str(corpus["scp"])],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == f"trkd: error: {d / 'bad'}:2: unknown label 'maybe': expected target or nontarget\n"


def test_det_points_are_probits_of_the_error_rates():
    from trkd.scoring.det import det_points, probit
    from trkd.scoring.metrics import error_rates

    assert probit([0.5, 0.975]) == pytest.approx([0.0, 1.959963985], abs=1e-8)
    rng = np.random.default_rng(1)
    labels = (rng.random(20000) < 0.3).astype(int)
    scores = rng.normal(size=20000) + 2 * labels
    x, y = det_points(scores, labels, floor=1e-4)
    fnr, fpr = error_rates(scores, labels)
    assert 100 < len(x) < 5000  # thinned, yet a curve
    assert x[-1] == pytest.approx(probit([1e-4])[0]) and y[-1] == pytest.approx(probit([1 - 1e-4])[0])
    assert np.all(np.diff(x) <= 0) and np.all(np.diff(y) >= 0)
    # Every drawn point lies on the curve.
    on_curve = set(zip(np.round(probit(np.clip(fpr, 1e-4, 1 - 1e-4)), 9), np.round(probit(np.clip(fnr, 1e-4, 1 - 1e-4)), 9)))
    assert all((round(a, 9), round(b, 9)) in on_curve for a, b in zip(x, y))


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("systems,trials,separation", [(1, 1500, 0.3), (1, 580000, 5.0), (6, 33600, 3.0)])
def test_det_plot_layout_at_its_written_size(systems, trials, separation, tmp_path):
    """What a reviewer sees in the PNG: tick labels apart, markers whole inside the axes, the legend
    off the curves, the whole title on the figure; checked on the drawn figure at the written size
    (a chance-level quick run, a VoxCeleb-sized list reaching 0.01 %, six systems)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from trkd.scoring.det import DPI, FIG_WIDTH, det_figure, det_title, plot_det

    rng = np.random.default_rng(0)
    curves = {}
    for k in range(systems):
        labels = (rng.random(trials) < 0.1).astype(int)
        curves[f"ecapa_student_{k}"] = (rng.normal(size=trials) + separation * (1 - k / 8) * labels, labels)
    fig = det_figure(curves, det_title("data/test/trials"))
    fig.set_dpi(DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax, legend = fig.axes[0], fig.legends[0]
    page, frame = fig.bbox, ax.get_window_extent(renderer)
    assert fig.get_figwidth() == FIG_WIDTH
    for axis in (ax.xaxis, ax.yaxis):
        boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels() if t.get_text()]
        assert len(boxes) >= 5
        assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        assert all(page.x0 <= b.x0 and b.x1 <= page.x1 and page.y0 <= b.y0 and b.y1 <= page.y1 for b in boxes)
    marks = [ln for ln in ax.lines if ln.get_marker() in ("o", "s")]
    assert len(marks) == 2 * systems
    for mark in marks:
        x, y = ax.transData.transform(mark.get_xydata()[0])
        half = mark.get_markersize() / 72 * DPI / 2 + 1  # points to pixels, and the edge line
        assert frame.x0 <= x - half and x + half <= frame.x1 and frame.y0 <= y - half and y + half <= frame.y1
    box = legend.get_window_extent(renderer)
    assert not _overlap(box, frame) and page.y0 <= box.y0
    title = ax.title.get_window_extent(renderer)
    assert ax.title.get_text() == "DET: data/test/trials" and title.y1 <= page.y1 and title.x0 >= page.x0
    plot_det(tmp_path / "det.png", curves, det_title("data/test/trials"))
    import matplotlib.image

    height, width = matplotlib.image.imread(tmp_path / "det.png").shape[:2]
    assert (width, height) == (round(FIG_WIDTH * DPI), round(fig.get_figheight() * DPI))


def test_option_errors(corpus):
    d = corpus["dir"]
    (d / "x").mkdir()
    (d / "x" / "trials").write_text("a b target\n")
    with pytest.raises(InputError, match="another trial list is also named 'trials'"):
        score_embeddings([d / "trials", d / "x" / "trials"], scp=corpus["scp"])
    with pytest.raises(InputError, match="give either --scp, or both --enroll-scp and --test-scp"):
        score_embeddings([d / "trials"], enroll_scp=corpus["scp"])
    with pytest.raises(InputError, match="--asnorm needs a cohort"):
        score_embeddings([d / "trials"], scp=corpus["scp"], asnorm=True)
    res = runner.invoke(app, ["score", "--trials", str(d / "trials"), "--scores", "s", "--scp", str(corpus["scp"])])
    assert "give no embedding options" in str(res.exception)


@pytest.mark.parametrize("asnorm", [False, True])
@pytest.mark.parametrize("cohort", ["same", "other"])
def test_a_cohort_is_read_once_and_prepared_only_for_asnorm(corpus, monkeypatch, asnorm, cohort):
    """The cohort named as the scored set is read once, and normalised only when AS-norm scores
    against it; the scores and metrics are those of the separate reads, bit for bit."""
    import trkd.scoring.evaluate as evaluate
    from trkd.data.trials import read_trials
    from trkd.scoring.asnorm import as_norm
    from trkd.scoring.cosine import cosine_scores, trial_rows
    from trkd.scoring.embeddings import load_embeddings, prepare

    d = corpus["dir"]
    cohort_scp = corpus["scp"] if cohort == "same" else corpus["cohort_scp"]
    calls = {"load": 0, "prepare": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(evaluate, "load_embeddings", counted("load", load_embeddings))
    monkeypatch.setattr(evaluate, "prepare", counted("prepare", prepare))
    [res] = score_embeddings([d / "trials"], scp=corpus["scp"], cohort_scp=cohort_scp, asnorm=asnorm,
                             asnorm_top_n=10, out_dir=d / "out")
    assert calls == {"load": 1 if cohort == "same" else 2,
                     "prepare": 1 if cohort == "same" or not asnorm else 2}
    # each file read on its own, every table prepared: the scoring as it was
    mean = load_embeddings(cohort_scp).matrix.mean(axis=0, dtype=np.float64).astype(np.float32)
    table = prepare(load_embeddings(corpus["scp"]), mean)
    tr = read_trials(d / "trials")
    e, t = trial_rows(tr, table, table)
    want = cosine_scores(table.matrix, table.matrix, e, t)
    if asnorm:
        want = as_norm(want, table.matrix, table.matrix, e, t, prepare(load_embeddings(cohort_scp), mean).matrix, 10)
    lines = (d / "out" / "trials.score").read_text().splitlines()
    assert lines == [f"{a} {b} {s:.6f}" for a, b, s in zip(tr.enroll, tr.test, want.tolist())]
    assert res.metrics == compute_metrics(want, tr.labels, (0.01, 0.05))  # exact: the same scores
