"""Through the real CLI: trial ids as the user wrote them, Kaldi rspecifiers,
text arks of any name, blank scp lines, compute-eer score files and a Kaldi fbank.conf."""

from __future__ import annotations

import json
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from cli_helpers import error_line, ok, trkd
from data_helpers import make_data_dir
from scoring_helpers import write_embeddings
from trkd.scoring import compute_metrics

VOX = ["id10270/x6uYqmx31kE/00001.wav", "id10270/x6uYqmx31kE/00002.wav", "id10270/8jEAjG6SegY/00008.wav",
       "id10300/ize_eiCFEg0/00003.wav", "id10300/-1Ek_Z9y4-Q/00001.wav", "id10309/0cYFdtyWVds/00005.wav"]


def kaldi_id(path: str) -> str:
    return path[: -len(".wav")].replace("/", "-")


@pytest.fixture
def vox(tmp_path):
    """Embeddings of VOX under both key forms, veri_test2-style and Kaldi-style trial lists."""
    rng = np.random.default_rng(5)
    centre = {s: rng.normal(size=8) * 3 for s in ("id10270", "id10300", "id10309")}
    emb = {p: centre[p.split("/")[0]] + rng.normal(size=8) for p in VOX}
    pairs = [(a, b) for i, a in enumerate(VOX) for b in VOX[i + 1:]]
    (tmp_path / "veri_test2.txt").write_text("".join(f"{int(a[:7] == b[:7])} {a} {b}\n" for a, b in pairs))
    (tmp_path / "kaldi_trials").write_text(
        "".join(f"{kaldi_id(a)} {kaldi_id(b)} {'target' if a[:7] == b[:7] else 'nontarget'}\n" for a, b in pairs))
    return {
        "dir": tmp_path,
        "wespeaker": write_embeddings(tmp_path / "wespeaker", emb),
        "kaldi": write_embeddings(tmp_path / "kaldi", {kaldi_id(k): v for k, v in emb.items()}),
        "emb": emb,
    }


# --- item 2: ids as given ------------------------------------------------------------------------


def test_trials_match_either_key_form_and_scores_keep_the_trial_ids(vox):
    d = vox["dir"]
    outputs = {}
    for trials in ("veri_test2.txt", "kaldi_trials"):
        for keys in ("wespeaker", "kaldi"):
            out = d / f"{trials}_{keys}"
            outputs[trials, keys] = ok(trkd("score", "--trials", d / trials, "--scp", vox[keys], "--out-dir", out)
                                       ).splitlines()[0]
            written = (out / f"{Path(trials).stem}.score").read_text().splitlines()
            given = (d / trials).read_text().splitlines()
            ids = [ln.split()[1:3] if trials == "veri_test2.txt" else ln.split()[:2] for ln in given]
            assert [ln.split()[:2] for ln in written] == ids
    summaries = {v.split(":", 1)[1] for v in outputs.values()}
    assert len(summaries) == 1 and "(15 trials)" in summaries.pop()


def test_missing_embedding_is_named_as_the_trial_list_writes_it(vox):
    d = vox["dir"]
    ghost = "id10999/zzzzzzzzzzz/00001.wav"
    (d / "veri_ghost.txt").write_text(f"1 {VOX[0]} {VOX[1]}\n0 {VOX[0]} {ghost}\n")
    msg = error_line(trkd("score", "--trials", d / "veri_ghost.txt", "--scp", vox["kaldi"], "--out-dir", d / "o"))
    assert msg == (f"{d / 'veri_ghost.txt'}: 1 of 2 trials have no embedding in {vox['kaldi']}; the first is "
                   f"'{ghost}' (use --skip-missing to skip them)")


def test_score_file_in_kaldi_ids_scores_against_the_voxceleb_trial_list(vox):
    d = vox["dir"]
    ok(trkd("score", "--trials", d / "kaldi_trials", "--scp", vox["kaldi"], "--out-dir", d / "k"))
    first = ok(trkd("score", "--trials", d / "kaldi_trials", "--scores", d / "k" / "kaldi_trials.score", "--out-dir", d / "m1"))
    second = ok(trkd("score", "--trials", d / "veri_test2.txt", "--scores", d / "k" / "kaldi_trials.score", "--out-dir", d / "m2"))
    assert first.splitlines()[0].split(":", 1)[1] == second.splitlines()[0].split(":", 1)[1]


# --- item 7: Kaldi inputs ------------------------------------------------------------------------


def test_rspecifiers_and_a_text_ark_named_txt(vox):
    d = vox["dir"]
    scp = vox["kaldi"]
    with kaldiio.WriteHelper(f"ark,t:{d / 'emb.txt'}") as writer:
        for key, vec in kaldiio.load_scp_sequential(str(scp)):
            writer(key, vec)
    trials = d / "kaldi_trials"
    ref = ok(trkd("score", "--trials", trials, "--scp", scp, "--out-dir", d / "ref")).splitlines()[0]
    ref_scores = np.loadtxt(d / "ref" / "kaldi_trials.score", usecols=2)
    for n, spec in enumerate([f"scp:{scp}", f"ark:{d / 'kaldi.ark'}", f"ark,t:{d / 'emb.txt'}", d / "emb.txt"]):
        out = d / f"o{n}"
        assert ok(trkd("score", "--trials", trials, "--scp", spec, "--out-dir", out)).splitlines()[0] == ref
        assert np.allclose(np.loadtxt(out / "kaldi_trials.score", usecols=2), ref_scores, atol=1e-6)
    # Without --out-dir, scores go beside the file the rspecifier names.
    ok(trkd("score", "--trials", trials, "--scp", f"scp:{scp}"))
    assert (d / "scores" / "kaldi_trials.score").is_file()


def test_blank_line_in_an_scp_is_one_error_naming_the_line(vox):
    d = vox["dir"]
    lines = vox["kaldi"].read_text().splitlines()
    blank = d / "blank.scp"
    blank.write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")
    assert error_line(trkd("score", "--trials", d / "kaldi_trials", "--scp", blank, "--out-dir", d / "o")) == (
        f"{blank}:4: blank line (Kaldi's table readers refuse it too): remove it")
    assert not (d / "o").exists()


def test_compute_eer_score_file(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.random(200) < 0.3
    scores = rng.normal(size=200) + 2 * labels
    path = tmp_path / "scores.txt"
    path.write_text("".join(f"{s:.6f} {'target' if t else 'nontarget'}\n" for s, t in zip(scores, labels)))
    out = ok(trkd("score", "--scores", path))
    expected = compute_metrics(np.round(scores, 6), labels)
    assert out.strip().startswith(f"scores: EER {100 * expected['eer']:.3f}%  ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.txt"]  # like compute-eer: printed only
    out = ok(trkd("score", "--scores", path, "--out-dir", tmp_path))
    assert out.splitlines()[1:] == [f"wrote {tmp_path / 'scores.det.png'}", f"wrote {tmp_path / 'scores.metrics.json'}"]
    summary = json.loads((tmp_path / "scores.metrics.json").read_text())
    assert summary["metrics"] == pytest.approx(expected, abs=1e-12)
    assert (summary["num_trials"], summary["num_target"]) == (200, int(labels.sum()))
    # With a trial list, a labelled file is refused; without one, a file of trial ids is.
    (tmp_path / "trials").write_text("a b target\nc d nontarget\n")
    msg = error_line(trkd("score", "--scores", path, "--trials", tmp_path / "trials"))
    assert msg.startswith(f"{path}: is 'score target|nontarget' (compute-eer form)")
    (tmp_path / "ids.score").write_text("a b 0.5\n")
    assert error_line(trkd("score", "--scores", tmp_path / "ids.score")).startswith(
        f"{tmp_path / 'ids.score'}: has trial ids ('enroll test score'): give its trial list with --trials")
    (tmp_path / "bad.txt").write_text("0.1 target\n0.2 maybe\n")
    assert error_line(trkd("score", "--scores", tmp_path / "bad.txt")) == (
        f"{tmp_path / 'bad.txt'}:2: expected 'score target|nontarget' (compute-eer form), got '0.2 maybe'")


def test_kaldi_fbank_conf(tmp_path):
    d = make_data_dir(tmp_path, n_spk=1, n_utt=2)
    yaml_conf = tmp_path / "fbank.yaml"
    yaml_conf.write_text("num_mel_bins: 40\ndither: 0.0\nsnip_edges: false\nhigh_freq: -400.0\n")
    ok(trkd("fbank", d, "--config", yaml_conf, "--out-dir", tmp_path / "fy"))
    want = dict(kaldiio.load_scp(str(d / "feats.scp")))
    kaldi_conf = tmp_path / "fbank.conf"
    kaldi_conf.write_text("# Kaldi-style\n--num-mel-bins=40\n--dither=0  # test data\n\n"
                          "--snip-edges=false\n--high-freq=-400\n")
    ok(trkd("fbank", d, "--config", kaldi_conf, "--out-dir", tmp_path / "fk"))
    got = dict(kaldiio.load_scp(str(d / "feats.scp")))
    assert sorted(got) == sorted(want)
    for utt in want:
        assert got[utt].shape[1] == 40
        assert np.array_equal(got[utt], want[utt])
    before = (d / "feats.scp").read_text()
    bad = tmp_path / "bad.conf"
    bad.write_text("--num-mel-bins=40\n--htk-compat=true\n")
    msg = error_line(trkd("fbank", d, "--config", bad, "--out-dir", tmp_path / "fb"))
    assert msg.startswith(f"{bad}:2: unknown option --htk-compat (known: --dither, ")
    bad.write_text("--snip-edges=maybe\n")
    assert error_line(trkd("fbank", d, "--config", bad, "--out-dir", tmp_path / "fb")) == (
        f"{bad}:1: --snip-edges must be true or false, got 'maybe'")
    assert (d / "feats.scp").read_text() == before
