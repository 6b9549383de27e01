"""Through the real CLI: shell commands in tables, errors of loader workers,
truncated arks. Each case checks the one-line message, the exit status and the files on disk."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest

from cli_helpers import error_line
from cli_helpers import trkd as run_trkd
from data_helpers import make_data_dir
from scoring_helpers import write_embeddings
from train_helpers import make_feats_dir, write_config

PIPES = "TRKD_ALLOW_PIPES"


def trkd(*args, allow_pipes: bool = False):
    return run_trkd(*args, env={PIPES: "1"} if allow_pipes else None)


def set_line(path: Path, line: int, value: str) -> None:
    """Replace the value of the `line`-th entry of a Kaldi table."""
    lines = path.read_text().splitlines()
    lines[line - 1] = f"{lines[line - 1].split()[0]} {value}"
    path.write_text("\n".join(lines) + "\n")


def embeddings(d: Path, n_spk: int = 3, n_utt: int = 3, dim: int = 8):
    """Well-separated speakers, an xvector.{ark,scp} and a Kaldi trial list of all pairs."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(n_spk, dim)) * 4
    table = {f"spk{s}-u{u}": centres[s] + rng.normal(size=dim) for s in range(n_spk) for u in range(n_utt)}
    scp = write_embeddings(d / "xvector", table)
    keys = sorted(table)
    pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]
    (d / "trials").write_text("".join(f"{a} {b} {'target' if a[:4] == b[:4] else 'nontarget'}\n" for a, b in pairs))
    return scp, d / "trials"


# --- item 3: entries ending in '|' -------------------------------------------------------------


def test_pipe_in_xvector_scp_is_refused_and_not_run(tmp_path):
    scp, trials = embeddings(tmp_path)
    marker = tmp_path / "ran"
    set_line(scp, 4, f"touch {marker} |")
    proc = trkd("score", "--trials", trials, "--scp", scp, "--out-dir", tmp_path / "out")
    assert error_line(proc) == (f"{scp}:4: spk1-u0: 'touch {marker} |' holds a '|', which Kaldi-style readers run "
                                f"as a shell command; trkd runs commands from data files only with {PIPES}=1")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    # As an rspecifier's path too.
    proc = trkd("score", "--trials", trials, "--scp", f"ark:touch {marker} |")
    assert f"'touch {marker} |' holds a '|'" in error_line(proc)
    assert not marker.exists()


def test_pipe_in_xvector_scp_runs_when_allowed(tmp_path):
    scp, trials = embeddings(tmp_path)
    good = trkd("score", "--trials", trials, "--scp", scp, "--out-dir", tmp_path / "a")
    assert good.returncode == 0, good.stderr
    vec = kaldiio.load_scp(str(scp))["spk1-u0"]
    kaldiio.save_mat(str(tmp_path / "one.mat"), vec)
    set_line(scp, 4, f"cat {tmp_path / 'one.mat'} |")
    proc = trkd("score", "--trials", trials, "--scp", scp, "--out-dir", tmp_path / "b", allow_pipes=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b" / "trials.score").read_text() == (tmp_path / "a" / "trials.score").read_text()


def test_pipe_in_feats_scp_is_reported_by_validate_data_and_refused_by_train_and_extract(tmp_path):
    d = make_data_dir(tmp_path)
    feats = make_feats_dir(tmp_path / "feats_src", num_spk=3, utts_per_spk=3)
    # The data dir's utterances keyed onto the helper's features, in the data dir's order.
    rx = [ln.split()[1] for ln in (feats / "feats.scp").read_text().splitlines()]
    utts = [ln.split()[0] for ln in (d / "utt2spk").read_text().splitlines()]
    (d / "feats.scp").write_text("".join(f"{u} {r}\n" for u, r in zip(utts, rx)))
    assert trkd("validate-data", d, "--no-audio").returncode == 0
    marker = tmp_path / "ran"
    set_line(d / "feats.scp", 5, f"touch {marker} |")
    expected = (f"{d / 'feats.scp'}:5: {utts[4]}: 'touch {marker} |' holds a '|', which Kaldi-style readers run as "
                f"a shell command; trkd runs commands from data files only with {PIPES}=1")
    assert error_line(trkd("validate-data", d, "--no-audio")) == expected
    exp = tmp_path / "exp"
    proc = trkd("train", "--config", write_config(tmp_path / "c.yaml"), "--data", d, "--exp", exp, "--device", "cpu")
    assert error_line(proc) == expected
    # extract reads the whole scp before it loads a model (the model dir need not exist for that).
    out = tmp_path / "emb"
    assert error_line(trkd("extract", "--model", exp, "--data", d, "--out", out)) == expected
    assert not marker.exists()
    assert not list(exp.rglob("*.pt")) and not (out / "xvector.scp").exists()


def test_pipe_in_wav_scp_follows_the_same_rule(tmp_path):
    d = make_data_dir(tmp_path)
    wav = d / "wav.scp"
    key, path = wav.read_text().splitlines()[1].split(None, 1)
    plain = trkd("fbank", d, "--out-dir", tmp_path / "f0", "--dither", "0")
    assert plain.returncode == 0, plain.stderr
    before = kaldiio.load_scp(str(d / "feats.scp"))[key]
    set_line(wav, 2, f"cat {path} |")
    expected = (f"{wav}:2: {key}: 'cat {path} |' holds a '|', which Kaldi-style readers run as "
                f"a shell command; trkd runs commands from data files only with {PIPES}=1")
    assert error_line(trkd("validate-data", d)) == expected
    assert error_line(trkd("fbank", d, "--out-dir", tmp_path / "f1", "--dither", "0")) == expected
    # The last good features are untouched by the refused run.
    assert np.array_equal(kaldiio.load_scp(str(d / "feats.scp"))[key], before)
    assert trkd("validate-data", d, allow_pipes=True).returncode == 0
    proc = trkd("fbank", d, "--out-dir", tmp_path / "f2", "--dither", "0", allow_pipes=True)
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(kaldiio.load_scp(str(d / "feats.scp"))[key], before)


# --- item 4: an unreadable feature inside a DataLoader worker ----------------------------------


def test_worker_error_is_the_same_line_as_without_workers(tmp_path):
    d = make_feats_dir(tmp_path / "data")
    ark = d / "feats.ark"
    ark.write_bytes(ark.read_bytes()[: ark.stat().st_size * 2 // 3])  # utt2num_frames still lists all
    n_lines = len((d / "feats.scp").read_text().splitlines())
    lines = {}
    for workers in (0, 2):
        conf = write_config(tmp_path / f"c{workers}.yaml", data={"num_frms": 50, "batch_size": 8, "num_workers": workers})
        exp = tmp_path / f"exp{workers}"
        lines[workers] = error_line(trkd("train", "--config", conf, "--data", d, "--exp", exp, "--device", "cpu"))
        assert not (exp / "avg_model.pt").exists()
    assert lines[0] == lines[2]
    # Which entry fails first depends on the batch order; it is one past the ark's new end.
    msg = lines[2]
    assert msg.startswith(f"{d / 'feats.scp'}:")
    line = int(msg.split(":")[1])
    assert 1 <= line <= n_lines and f"past the end of {ark.resolve()}" in msg


# --- item 5: truncated or corrupt arks -----------------------------------------------------------


@pytest.mark.parametrize("where", ["between entries", "inside a vector"])
def test_truncated_embedding_ark_behind_an_scp(tmp_path, where):
    scp, trials = embeddings(tmp_path)
    out = tmp_path / "out"
    assert trkd("score", "--trials", trials, "--scp", scp, "--out-dir", out).returncode == 0
    good = (out / "trials.score").read_text()
    ark = tmp_path / "xvector.ark"
    key, rx = scp.read_text().splitlines()[4].split()
    offset = int(rx.rsplit(":", 1)[1])  # the scp points past "key "
    # Cut before entry 5's key, or after 3 of its floats (kaldiio would return a 3-vector).
    ark.write_bytes(ark.read_bytes()[: offset - len(key) - 1 if where == "between entries" else offset + 10 + 12])
    size = ark.stat().st_size
    msg = error_line(trkd("score", "--trials", trials, "--scp", scp, "--out-dir", out))
    assert msg.startswith(f"{scp}:5: {key}: cannot read '{rx}': ")
    if where == "between entries":
        assert msg.endswith(f"offset {offset} is past the end of {ark.resolve()} ({size} bytes): "
                            "the ark is truncated or was rewritten")
    else:
        assert f"truncated or corrupt data at byte {offset} of {ark.resolve()} ({size} bytes)" in msg
    assert (out / "trials.score").read_text() == good


@pytest.mark.parametrize("where", ["in a key", "in the data", "two bytes short"])
def test_truncated_ark_given_directly_is_not_loaded_in_part(tmp_path, where):
    scp, trials = embeddings(tmp_path)
    ark = tmp_path / "xvector.ark"
    key, rx = scp.read_text().splitlines()[4].split()
    value_start = int(rx.rsplit(":", 1)[1])  # the scp points past "key "
    cut = {"in a key": value_start - len(key) - 1 + 3, "in the data": value_start + 20,
           "two bytes short": ark.stat().st_size - 2}[where]
    ark.write_bytes(ark.read_bytes()[:cut])
    msg = error_line(trkd("score", "--trials", trials, "--scp", ark, "--out-dir", tmp_path / "out"))
    assert msg.startswith(f"{ark}: ") and "truncated" in msg
    assert not (tmp_path / "out").exists()


def test_corrupt_feature_names_the_scp_line_and_a_reason(tmp_path):
    d = make_feats_dir(tmp_path / "data")
    (d / "utt2num_frames").unlink()  # frame counts then come from reading every matrix
    lines = (d / "feats.scp").read_text().splitlines()
    key, rx = lines[6].split()
    offset = int(rx.rsplit(":", 1)[1])
    raw = bytearray((d / "feats.ark").read_bytes())
    raw[offset: offset + 4] = b"\0BXX"  # an unknown matrix type
    (d / "feats.ark").write_bytes(bytes(raw))
    exp = tmp_path / "exp"
    msg = error_line(trkd("train", "--config", write_config(tmp_path / "c.yaml"), "--data", d, "--exp", exp, "--device", "cpu"))
    assert msg.startswith(f"{d / 'feats.scp'}:7: {key}: cannot read '{rx}': truncated or corrupt data at byte {offset} of ")
    assert msg.endswith(")") and "(ValueError: " in msg  # kaldiio's reason, never an empty one
    assert not (exp / "avg_model.pt").exists()
