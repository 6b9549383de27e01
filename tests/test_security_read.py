"""What trkd reads, through the real CLI: no value of a table runs a command without the opt-in
(a `|` before or after an offset or a range), no ark value is unpickled, no NaN or Inf reaches a
score or a student, `ark:-` and non-UTF-8 tables are one line. Each refused run is checked for its
message, its exit status, the command it did not run and the files it did not write or change."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from cli_helpers import error_line, ok
from cli_helpers import trkd as run_trkd
from distill_helpers import student_config, teacher
from test_faults_config import _poison
from test_faults_tables import embeddings, set_line
from train_helpers import write_config

PIPES = "TRKD_ALLOW_PIPES"
FORMS = ["touch {marker} |:0", "touch {marker} |[0:1]"]


def trkd(*args, allow_pipes: bool = False):
    return run_trkd(*args, env={PIPES: "1"} if allow_pipes else None)


def snapshot(*roots: Path) -> dict:
    """Every file under `roots` with the hash of its bytes (links as their target)."""
    out = {}
    for root in roots:
        for p in sorted(Path(root).rglob("*")):
            out[str(p)] = os.readlink(p) if p.is_symlink() else (
                hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir")
    return out


def refused(proc, before: dict, roots, outputs=()) -> str:
    """The one error line of a refused run that changed no file under `roots` and made none of `outputs`."""
    line = error_line(proc)
    assert snapshot(*roots) == before
    for out in outputs:
        assert not Path(out).exists(), out
    return line


def pipe_message(scp: Path, line: int, key: str, value: str) -> str:
    return (f"{scp}:{line}: {key}: {value!r} holds a '|', which Kaldi-style readers run as a shell command; "
            f"trkd runs commands from data files only with {PIPES}=1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data dir, teacher exp dir with a full dump in logits/), shared with the distill tests."""
    return teacher(tmp_path_factory)


@pytest.fixture
def setup(trained, tmp_path):
    """A copy of the teacher's data dir (with wav.scp and spk2utt, for validate-data), the teacher, configs."""
    data, exp = trained
    d = tmp_path / "data"
    shutil.copytree(data, d)
    utts = [ln.split()[0] for ln in (d / "utt2spk").read_text().splitlines()]
    (d / "wav.scp").write_text("".join(f"{u} /nowhere/{u}.wav\n" for u in utts))
    spk2utt = {}
    for ln in (d / "utt2spk").read_text().splitlines():
        u, s = ln.split()
        spk2utt.setdefault(s, []).append(u)
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))
    return {"data": d, "teacher": exp, "tmp": tmp_path, "marker": tmp_path / "ran",
            "train": write_config(tmp_path / "t.yaml"), "student": student_config(tmp_path / "s.yaml", epochs=1)}


def feats_commands(s):
    """Each command that reads DATA/feats.scp: (name, args, outputs it must not leave)."""
    d, t, tmp = s["data"], s["teacher"], s["tmp"]
    return [
        ("validate-data", ["validate-data", "--no-audio", d], []),
        ("train", ["train", "--config", s["train"], "--data", d, "--exp", tmp / "exp", "--device", "cpu"],
         [tmp / "exp"]),
        ("extract", ["extract", "--model", t, "--data", d, "--out", tmp / "emb"], [tmp / "emb"]),
        ("dump-logits", ["dump-logits", "--model", t, "--data", d, "--out", tmp / "dump", "--device", "cpu"],
         [tmp / "dump"]),
        ("distill", ["distill", "--teacher", t, "--config", s["student"], "--method", "kd", "--data", d,
                     "--exp", tmp / "student", "--device", "cpu", "--online"], [tmp / "student"]),
    ]


# --- commands in scp values, before or after an offset or a range ---------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_a_command_in_feats_scp_runs_in_no_command(setup, form):
    d, marker = setup["data"], setup["marker"]
    key = (d / "feats.scp").read_text().splitlines()[2].split()[0]
    value = form.format(marker=marker)
    set_line(d / "feats.scp", 3, value)
    roots = (d, setup["teacher"])
    before = snapshot(*roots)
    for name, args, outputs in feats_commands(setup):
        msg = refused(trkd(*args), before, roots, outputs)
        assert msg == pipe_message(d / "feats.scp", 3, key, value), name
        assert not marker.exists(), name


@pytest.mark.parametrize("form", FORMS)
def test_a_command_in_xvector_scp_or_an_rspecifier_is_not_run_by_score(tmp_path, form):
    scp, trials = embeddings(tmp_path)
    marker = tmp_path / "ran"
    value = form.format(marker=marker)
    set_line(scp, 4, value)
    before = snapshot(tmp_path)
    msg = refused(trkd("score", "--trials", trials, "--scp", scp, "--out-dir", tmp_path / "out"), before,
                  [tmp_path], [tmp_path / "out"])
    assert msg == pipe_message(scp, 4, "spk1-u0", value)
    msg = refused(trkd("score", "--trials", trials, "--scp", f"ark:{value}", "--out-dir", tmp_path / "out"),
                  before, [tmp_path], [tmp_path / "out"])
    assert msg.startswith(f"ark:{value}: {value!r} holds a '|'")
    assert not marker.exists()


@pytest.mark.parametrize("form", FORMS)
def test_a_command_in_a_dump_scp_is_not_run_by_distill(setup, form):
    t, marker, tmp = setup["teacher"], setup["marker"], setup["tmp"]
    dump = tmp / "dump"
    shutil.copytree(t / "logits", dump)
    chunk = (dump / "logits.scp").read_text().splitlines()[1].split()[0]
    value = form.format(marker=marker)
    set_line(dump / "logits.scp", 2, value)
    roots = (setup["data"], t, dump)
    before = snapshot(*roots)
    proc = trkd("distill", "--teacher", t, "--config", setup["student"], "--method", "kd", "--data", setup["data"],
                "--exp", tmp / "student", "--device", "cpu", "--dump", dump)
    assert refused(proc, before, roots, [tmp / "student"]) == pipe_message(dump / "logits.scp", 2, chunk, value)
    assert not marker.exists()


def test_the_opt_in_runs_a_real_pipe_with_a_range_and_refuses_an_offset_after_one(tmp_path):
    scp, trials = embeddings(tmp_path)
    ok(trkd("score", "--trials", trials, "--scp", scp, "--out-dir", tmp_path / "a"))
    vec = kaldiio.load_scp(str(scp))["spk1-u0"]
    kaldiio.save_mat(str(tmp_path / "one.mat"), np.concatenate([vec, [7.0, 7.0]]).astype(np.float32))
    set_line(scp, 4, f"cat {tmp_path / 'one.mat'} |[0:{len(vec) - 1}]")
    ok(trkd("score", "--trials", trials, "--scp", scp, "--out-dir", tmp_path / "b", allow_pipes=True))
    assert (tmp_path / "b" / "trials.score").read_text() == (tmp_path / "a" / "trials.score").read_text()
    ok(trkd("score", "--trials", trials, "--scp", f"ark:cat {tmp_path / 'xvector.ark'} |", "--out-dir",
            tmp_path / "c", allow_pipes=True))
    assert (tmp_path / "c" / "trials.score").read_text() == (tmp_path / "a" / "trials.score").read_text()
    marker = tmp_path / "ran"
    set_line(scp, 4, f"touch {marker} |:0")
    msg = error_line(trkd("score", "--trials", trials, "--scp", scp, "--out-dir", tmp_path / "d", allow_pipes=True))
    assert msg == (f"{scp}:4: spk1-u0: 'touch {marker} |:0': a command's output has no byte offset (Kaldi would "
                   f"open a file named 'touch {marker} |'); write 'CMD |' or 'CMD |[RANGE]'")
    assert not marker.exists() and not (tmp_path / "d").exists()


def test_standard_input_is_refused_in_one_line(tmp_path):
    _, trials = embeddings(tmp_path)
    for spec in ("ark:-", "-"):
        msg = error_line(trkd("score", "--trials", trials, "--scp", spec, "--out-dir", tmp_path / "out"))
        assert msg == (f"{spec}: standard input is not read as a table: write it to a file first, or give the "
                       f"command that writes it ('ark:CMD |', with {PIPES}=1)")
    assert not (tmp_path / "out").exists()


# --- ark values: numbers only, never a pickle -----------------------------------------------------


class _Payload:
    """Unpickled, it would run `touch MARKER`; pickling it runs nothing."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("spec", ["scp", "ark", "ark:"])
def test_a_pickled_ark_entry_is_never_unpickled(tmp_path, spec):
    scp, trials = embeddings(tmp_path)
    marker = tmp_path / "ran"
    ark = tmp_path / "xvector.ark"
    offset = ark.stat().st_size + len("evil ")
    with open(ark, "ab") as f:
        f.write(b"evil PKL" + pickle.dumps(_Payload(marker)))
    with open(scp, "a") as f:
        f.write(f"evil {ark.resolve()}:{offset}\n")
    given = {"scp": scp, "ark": ark, "ark:": f"ark:{ark}"}[spec]
    before = snapshot(tmp_path)
    msg = refused(trkd("score", "--trials", trials, "--scp", given, "--out-dir", tmp_path / "out"), before,
                  [tmp_path], [tmp_path / "out"])
    what = "a pickled Python object (kaldiio's PKL form), which trkd never loads: unpickling can run any code"
    if spec == "scp":
        assert msg == (f"{scp}:10: evil: cannot read '{ark.resolve()}:{offset}': the value at byte {offset} of "
                       f"{ark.resolve()} is {what}")
    else:
        assert msg == f"{ark}: entry 10 'evil' at byte {offset - 5} of {ark.stat().st_size} is {what}"
    assert not marker.exists()


def test_a_numpy_entry_of_python_objects_is_refused(tmp_path):
    scp, trials = embeddings(tmp_path)
    ark = tmp_path / "xvector.ark"
    kaldiio.save_ark(str(tmp_path / "obj.ark"), {"spk1-u0": np.array([_Payload(tmp_path / "ran")], dtype=object)},
                     scp=str(tmp_path / "obj.scp"), write_function="numpy")
    set_line(scp, 4, (tmp_path / "obj.scp").read_text().split()[1])
    msg = error_line(trkd("score", "--trials", trials, "--scp", scp, "--out-dir", tmp_path / "out"))
    assert msg.startswith(f"{scp}:4: spk1-u0: cannot read ") and "allow_pickle" in msg
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists() and ark.exists()


# --- finite or refused ----------------------------------------------------------------------------


def _line(scp: Path, key: str) -> int:
    return next(n for n, ln in enumerate(scp.read_text().splitlines(), 1) if ln.split()[0] == key)


def test_nan_features_are_refused_by_extract(setup):
    d, t, tmp = setup["data"], setup["teacher"], setup["tmp"]
    rx = _poison(d, "spk1-utt2", 7, 3, float("nan"))
    roots = (d, t)
    before = snapshot(*roots)
    msg = refused(trkd("extract", "--model", t, "--data", d, "--out", tmp / "emb"), before, roots,
                  [tmp / "emb" / "xvector.scp", tmp / "emb" / "xvector.ark"])
    assert msg == (f"{d / 'feats.scp'}:{_line(d / 'feats.scp', 'spk1-utt2')}: spk1-utt2: '{rx}' holds 1 non-finite "
                   "value (nan at row 7, column 3): trkd reads only finite numbers")


def test_a_compressed_matrix_whose_range_is_nan_is_refused(setup):
    d, t, tmp = setup["data"], setup["teacher"], setup["tmp"]
    feats = {k: np.array(v) for k, v in kaldiio.load_scp(str(d / "feats.scp")).items()}
    with kaldiio.WriteHelper(f"ark,scp:{d.resolve()}/feats.ark,{d.resolve()}/feats.scp", compression_method=2) as w:
        for k in sorted(feats):
            w(k, feats[k])
    ok(trkd("validate-data", "--no-audio", d))
    rx = next(ln.split()[1] for ln in (d / "feats.scp").read_text().splitlines() if ln.startswith("spk2-utt1 "))
    ark, offset = rx.rsplit(":", 1)
    raw = bytearray(Path(ark).read_bytes())
    at = int(offset) + len(b"\0BCM ") + 4  # the global header: min, range, rows, cols
    raw[at:at + 4] = np.float32("nan").tobytes()
    Path(ark).write_bytes(bytes(raw))
    roots = (d, t)
    before = snapshot(*roots)
    msg = refused(trkd("extract", "--model", t, "--data", d, "--out", tmp / "emb"), before, roots,
                  [tmp / "emb" / "xvector.scp"])
    assert msg.startswith(f"{d / 'feats.scp'}:{_line(d / 'feats.scp', 'spk2-utt1')}: spk2-utt1: '{rx}' holds ")
    assert msg.endswith(": trkd reads only finite numbers") and "(nan at row 0, column 0)" in msg


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_score_refuses_a_non_finite_embedding_as_score_scores_refuses_its_score(tmp_path, value):
    scp, trials = embeddings(tmp_path)
    out = tmp_path / "out"
    ok(trkd("score", "--trials", trials, "--scp", scp, "--out-dir", out))
    vec = kaldiio.load_scp(str(scp))["spk1-u0"].copy()
    vec[2] = value
    kaldiio.save_ark(str(tmp_path / "bad.ark"), {"spk1-u0": vec}, scp=str(tmp_path / "bad.scp"))
    rx = (tmp_path / "bad.scp").read_text().split()[1]
    set_line(scp, 4, rx)
    before = snapshot(tmp_path)
    msg = refused(trkd("score", "--trials", trials, "--scp", scp, "--out-dir", out), before, [tmp_path])
    assert msg == (f"{scp}:4: spk1-u0: '{rx}' holds 1 non-finite value ({value} at element 2): "
                   "trkd reads only finite numbers")
    scores = out / "trials.score"
    lines = scores.read_text().splitlines()
    lines[0] = " ".join(lines[0].split()[:2] + [str(value)])
    scores.write_text("\n".join(lines) + "\n")
    before = snapshot(tmp_path)
    msg = refused(trkd("score", "--trials", trials, "--scores", scores, "--out-dir", tmp_path / "m"), before,
                  [tmp_path], [tmp_path / "m"])
    assert msg == f"{scores}:1: score is not finite: '{value}'"


# --- teacher dump rows, checked as they are read --------------------------------------------------


def _bad_row(dump: Path, chunk: str, change, tmp: Path) -> int:
    """Point the scp line of `chunk` at a copy of its row changed by `change`; return that line."""
    scp = dump / "logits.scp"
    n = _line(scp, chunk)
    row = np.array(kaldiio.load_mat(scp.read_text().splitlines()[n - 1].split()[1]))
    change(row)
    kaldiio.save_ark(str(tmp / "bad.ark"), {chunk: row}, scp=str(tmp / "bad.scp"), write_function="numpy")
    set_line(scp, n, (tmp / "bad.scp").read_text().split()[1])
    return n


@pytest.mark.parametrize("case", ["nan in the used row", "inf in the unused row", "class out of range"])
def test_a_bad_dump_row_names_its_scp_line(setup, case):
    d, t, tmp = setup["data"], setup["teacher"], setup["tmp"]
    dump = tmp / "dump"
    if case == "class out of range":   # a top-K dump: [z_y, rest at T = 1 and 4, K values, K classes]
        ok(trkd("dump-logits", "--model", t, "--data", d, "--out", dump, "--topk", "1", "--device", "cpu"))
    else:
        shutil.copytree(t / "logits", dump)   # full rows: margin, cosine
    chunk = "spk0-utt0-0000000"   # the only chunk of its utterance: read in every epoch
    change = {"nan in the used row": lambda r: r.__setitem__((0, 3), np.nan),
              "inf in the unused row": lambda r: r.__setitem__((1, 0), np.inf),
              "class out of range": lambda r: r.__setitem__((0, 4), 4.0)}[case]
    line = _bad_row(dump, chunk, change, tmp)
    roots = (d, t, dump)
    before = snapshot(*roots)
    proc = trkd("distill", "--teacher", t, "--config", setup["student"], "--method", "kd", "--data", d,
                "--exp", tmp / "student", "--device", "cpu", "--dump", dump)
    msg = refused(proc, before, roots, [tmp / "student" / "models"])
    rx = (tmp / "bad.scp").read_text().split()[1]
    expected = {"nan in the used row": "1 non-finite value (nan at row 0, column 3): trkd reads only finite numbers",
                "inf in the unused row": "1 non-finite value (inf at row 1, column 0): trkd reads only finite numbers",
                "class out of range": "class index 4.0 is not one of the 4 classes"}[case]
    assert msg == f"{dump / 'logits.scp'}:{line}: {chunk}: '{rx}' holds {expected}"


# --- non-UTF-8 tables -----------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["utt2spk", "spk2utt", "wav.scp", "feats.scp"])
def test_a_non_utf8_byte_in_a_data_dir_table_is_one_line(setup, table):
    d = setup["data"]
    path = d / table
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1][:4] + b"\xff" + lines[1][4:]
    path.write_bytes(b"\n".join(lines))
    before = snapshot(d)
    msg = refused(trkd("validate-data", "--no-audio", d), before, [d])
    assert msg == f"{path}:2: not UTF-8 text: byte 0xff at column 5 (save the table as UTF-8)"


@pytest.mark.parametrize("table", ["trials", "xvector.scp"])
def test_a_non_utf8_byte_in_a_scoring_table_is_one_line(tmp_path, table):
    scp, trials = embeddings(tmp_path)
    path = {"trials": trials, "xvector.scp": scp}[table]
    raw = path.read_bytes()
    path.write_bytes(raw[:raw.index(b"\n") + 3] + b"\xe9" + raw[raw.index(b"\n") + 3:])
    before = snapshot(tmp_path)
    msg = refused(trkd("score", "--trials", trials, "--scp", scp, "--out-dir", tmp_path / "out"), before,
                  [tmp_path], [tmp_path / "out"])
    assert msg == f"{path}:2: not UTF-8 text: byte 0xe9 at column 3 (save the table as UTF-8)"
