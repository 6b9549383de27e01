"""What trkd writes, and where, when its inputs are hostile, through the real `trkd` in a subprocess:
ids that are paths, an empty data dir, a trial list that cannot be scored, a folder another run
holds, plan inputs out of range, an augmented copy whose source loops back to it. Each case checks
the one-line message, the exit status and every file before and after (`digest`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import error_line, ok, trkd
from data_helpers import make_data_dir, make_noise_dirs, write_table
from scoring_helpers import write_embeddings
from security_helpers import digest, held_lock
from trkd.utils.lock import LOCK_NAME

ROOT = Path(__file__).resolve().parents[1]
TEACHER_YAML = ROOT / "egs/mini/conf/ecapa_teacher.yaml"
AUG_YAML = ROOT / "egs/mini/conf/aug.yaml"


def renamed(data: Path, old: str, new: str) -> Path:
    """DATA with utterance (and recording) `old` renamed `new`, every table re-sorted as Kaldi wants."""
    tables = {}
    for name in ("wav.scp", "utt2spk"):
        rows = dict(line.split(" ", 1) for line in (data / name).read_text().splitlines())
        rows[new] = rows.pop(old)
        tables[name] = rows
        write_table(data / name, rows)
    spk2utt = {}
    for utt in sorted(tables["utt2spk"]):
        spk2utt.setdefault(tables["utt2spk"][utt], []).append(utt)
    write_table(data / "spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})
    return data


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(text))


@pytest.mark.parametrize("bad,why", [
    ("../../x/y", "holds a path separator ('/' or '\\')"),
    ("a/b", "holds a path separator ('/' or '\\')"),
    ("..y", "starts with '.'"),
    (".hidden", "starts with '.'"),
    ("a\x01b", "holds a control character"),
])
def test_validate_data_refuses_an_id_that_is_not_a_name(tmp_path, bad, why):
    data = renamed(make_data_dir(tmp_path, n_spk=2, n_utt=2), "spk1-utt1", bad)
    before = digest(tmp_path)
    err = error_line(trkd("validate-data", "--no-audio", data))
    wav = data / "wav.scp"
    assert err == (f"{wav}:{line_of(wav, bad + ' ')}: recording id {bad!r} {why}: ids are names, not paths "
                   "(trkd names files by them); use e.g. '-' instead of '/'")
    assert digest(tmp_path) == before


def test_an_empty_data_dir_does_not_validate(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (data / name).write_text("")
    err = error_line(trkd("validate-data", "--no-audio", data))
    assert err == f"{data / 'utt2spk'}: no utterances: the data dir is empty"


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    root = tmp_path_factory.mktemp("lists")
    return make_noise_dirs(root)


@pytest.mark.parametrize("write_wavs", [True, False])
def test_augment_writes_and_deletes_nothing_outside_its_folder(tmp_path, lists, write_wavs):
    """A copy of `../../x/y` would be OUT/wav/../../x/y-noise.wav = tmp/x/y-noise.wav: with
    --write-wavs it was written there, and the default mode's cleanup of an earlier --write-wavs
    run deleted it. Both are refused before OUT exists; the file planted there is kept."""
    noise, _ = lists
    data = renamed(make_data_dir(tmp_path, n_spk=2, n_utt=2), "spk1-utt1", "../../x/y")
    victim = tmp_path / "x" / "y-noise.wav"
    if not write_wavs:
        victim.parent.mkdir()
        victim.write_bytes(b"a file the user keeps")
    before = digest(tmp_path)
    out = tmp_path / "sub" / "out"
    err = error_line(trkd("augment", data, out, "--noise-dir", noise, "--copies", "noise",
                          *(["--write-wavs"] if write_wavs else [])))
    assert err.startswith(f"{data / 'wav.scp'}:{line_of(data / 'wav.scp', '../../x/y ')}: recording id '../../x/y' ")
    assert digest(tmp_path) == before and not out.exists()


def test_an_augmented_copy_whose_source_loops_back_is_one_line(tmp_path, lists):
    noise, _ = lists
    data = make_data_dir(tmp_path, n_spk=2, n_utt=2)
    aug = tmp_path / "aug"
    ok(trkd("augment", data, aug, "--noise-dir", noise, "--copies", "noise"))
    sources = aug / "conf/source/wav.scp"
    lines = sources.read_text().splitlines()
    lines[0] = f"spk1-utt1 trkd augment-wav {aug} spk1-utt1-noise |"
    sources.write_text("\n".join(lines) + "\n")
    before = digest(tmp_path)
    proc = trkd("augment-wav", aug, "spk1-utt1-noise")
    err = error_line(proc)
    assert err == (f"{aug / 'wav.scp'}:{line_of(aug / 'wav.scp', 'spk1-utt1-noise ')}: spk1-utt1-noise: "
                   f"{sources}: the source of copy 'spk1-utt1-noise' of {aug} is made from that copy itself "
                   "(a loop of `trkd augment-wav` entries): point the source at audio")
    assert len(proc.stderr) < 1000 and proc.stdout == ""
    assert digest(tmp_path) == before


# -- trkd score ----------------------------------------------------------------------------------

def _score_setup(tmp_path: Path):
    rng = np.random.default_rng(0)
    utts = [f"s{s}-u{u}" for s in range(3) for u in range(3)]
    scp = write_embeddings(tmp_path / "x", {u: rng.normal(size=8) for u in utts})
    a, b = tmp_path / "a" / "trials", tmp_path / "b" / "other"
    pairs = [(e, t) for i, e in enumerate(utts) for t in utts[i + 1:]]
    for path, keep in ((a, pairs), (b, pairs[::2])):
        path.parent.mkdir()
        path.write_text("".join(f"{e} {t} {'target' if e[:2] == t[:2] else 'nontarget'}\n" for e, t in keep))
    return scp, a, b


def test_score_of_a_list_without_nontargets_is_one_line_and_keeps_every_earlier_output(tmp_path):
    scp, a, b = _score_setup(tmp_path)
    out = tmp_path / "scores"
    ok(trkd("score", "--trials", a, "--trials", b, "--scp", scp, "--out-dir", out))
    assert sorted(digest(out)) == sorted(f"{n}.{x}" for n in ("trials", "other")
                                         for x in ("score", "metrics.json", "det.png"))
    before = digest(out)
    a.write_text("".join(a.read_text().splitlines(keepends=True)[1:]))  # its scores would change
    b.write_text("".join(line for line in b.read_text().splitlines(keepends=True) if line.endswith(" target\n")))
    err = error_line(trkd("score", "--trials", a, "--trials", b, "--scp", scp, "--out-dir", out))
    n = len(b.read_text().splitlines())
    assert err == f"{b}: {n} target and 0 nontarget trials: EER and minDCF need both"
    assert digest(out) == before  # the good list's files were not replaced without the other's


def test_a_folder_another_run_holds_is_refused_naming_it_and_a_dead_runs_lock_is_taken_over(tmp_path):
    scp, a, _ = _score_setup(tmp_path)
    out = tmp_path / "scores"
    ok(trkd("score", "--trials", a, "--scp", scp, "--out-dir", out))
    before = digest(out)
    holder = "process 4242 (trkd score, started 2026-01-01 00:00:00)"
    with held_lock(out, holder + "\n") as lock:
        err = error_line(trkd("score", "--trials", a, "--scp", scp, "--out-dir", out))
        assert err == f"{out}: is in use: {holder} writes here (lock {lock}); wait for it to finish or write elsewhere"
        assert {k: v for k, v in digest(out).items() if k != LOCK_NAME} == before
    (out / LOCK_NAME).write_text("process 999999 (trkd score, started 2026-01-01 00:00:00)\n")  # its holder died
    os.utime(out / "trials.score", (0, 0))
    proc = trkd("score", "--trials", a, "--scp", scp, "--out-dir", out, env={"TRKD_LOG_LEVEL": "info"})
    assert proc.returncode == 0, proc.stderr
    assert "took over the lock of a run that no longer holds it (process 999999" in proc.stderr
    assert not (out / LOCK_NAME).exists() and (out / "trials.score").stat().st_mtime > 0


def test_a_refused_score_on_a_new_folder_leaves_no_folder(tmp_path):
    scp, a, _ = _score_setup(tmp_path)
    a.write_text("s0-u0 s0-u1 target\n")
    out = tmp_path / "new" / "scores"
    error_line(trkd("score", "--trials", a, "--scp", scp, "--out-dir", out))
    assert not (tmp_path / "new").exists()


# -- trkd plan -----------------------------------------------------------------------------------

COUNTS = ["--utts", "100", "--hours", "1", "--speakers", "10"]


def test_plan_without_aug_is_a_plan():
    out = ok(trkd("plan", "--teacher", TEACHER_YAML, *COUNTS))
    assert "augment:" not in out and "| all |" in out


@pytest.mark.parametrize("args,message", [
    (["--utts", "100", "--hours", "nan", "--speakers", "10"],
     "corpus counts must be positive: utts=100, hours=nan, speakers=10"),
    (["--utts", "100", "--hours", "inf", "--speakers", "10"],
     "hours=inf over utts=100: an utterance of inf s: durations must be finite, positive and at most 86400 s"),
    (["--utts", "100000000000000", "--hours", "1e12", "--speakers", "10"],
     "utts=100000000000000, speakers=10: a plan takes at most 10000000 utterances and no more speakers than "
     "utterances"),
    (["--utts", "100", "--hours", "1", "--speakers", "1000000000"],
     "utts=100, speakers=1000000000: a plan takes at most 10000000 utterances and no more speakers than utterances"),
    (COUNTS + ["--compress", "99"], "--compress 99: Kaldi's compression methods are 1 (automatic) to 7"),
    (COUNTS + ["--topk", "-4"], "--topk -4: give 0 (full rows) or K > 0"),
])
def test_plan_inputs_out_of_range_are_one_line(tmp_path, args, message):
    json_out = tmp_path / "plan.json"
    assert error_line(trkd("plan", "--teacher", TEACHER_YAML, "--aug", AUG_YAML, *args, "--json", json_out)) == message
    assert not json_out.exists()


def test_plan_of_a_top_k_larger_than_the_classes_keeps_every_non_target():
    out = ok(trkd("plan", "--teacher", TEACHER_YAML, *COUNTS, "--topk", "1000000000"))
    assert "top-9 sparse" in out
