"""Bad inputs of parallel jobs and the job runner, through the real `trkd` in a subprocess.

Each test checks the one-line message, the exit status and the files on disk before and after.
A full disk is a tiny tmpfs when this user may mount one (root); otherwise a file-size limit
(RLIMIT_FSIZE) makes the kernel refuse the write in the same place ("File too large").
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from data_helpers import make_data_dir, write_table, write_wav
from distill_helpers import student_config, teacher
from train_helpers import make_feats_dir

TRKD = str(Path(sys.executable).with_name("trkd"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TRKD_LOG_LEVEL": "warning"}


def cli(*args, env=None, limit=None, timeout=300):
    """Run `trkd ARGS`; `limit` caps the size of any file it writes (a stand-in for a full disk)."""
    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([TRKD, *map(str, args)], capture_output=True, text=True, env=env or ENV,
                          timeout=timeout, preexec_fn=cap if limit else None)


def one_line_error(res, pattern: str) -> str:
    assert res.returncode == 1, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr[-3000:]
    line = res.stderr.strip()
    assert re.fullmatch("trkd: error: " + pattern, line), line
    return line


@contextlib.contextmanager
def small_disk(path: Path, kb: int = 64, ro: bool = False):
    """A `kb` KiB tmpfs at `path` (read-only with `ro`); yields the error cause or None if not root."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={kb}k" + (",ro" if ro else "")
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        if ro:
            path.chmod(0o555)
        try:
            yield None
        finally:
            path.chmod(0o755)
        return
    try:
        yield os.strerror(errno.EROFS if ro else errno.ENOSPC)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path: Path) -> None:
    """Use up the rest of the tmpfs at `path`."""
    with contextlib.suppress(OSError), open(path / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


def temporaries(folder: Path):
    return sorted(p.name for p in folder.rglob(".*.tmp*"))


def feats_of(scp: Path):
    return {k: np.array(v) for k, v in kaldiio.load_scp(str(scp)).items()}


# -- item 1 ------------------------------------------------------------------------------------

def test_1_failed_fbank_rerun_with_new_options_keeps_the_good_feats(tmp_path):
    data = make_data_dir(tmp_path)
    ok = cli("fbank", data, "--nj", "3", "--dither", "0")
    assert ok.returncode == 0, ok.stderr
    good_scp, good_frames = (data / "feats.scp").read_text(), (data / "utt2num_frames").read_text()
    good = feats_of(data / "feats.scp")
    bad = tmp_path / "wav" / "spk3-utt2.wav"  # part 3 of 3 fails; parts 1 and 2 finish
    wav_bytes = bad.read_bytes()
    bad.write_bytes(wav_bytes[:2000])
    res = cli("fbank", data, "--nj", "3", "--dither", "0", "--num-mel-bins", "40")
    one_line_error(res, re.escape(f"{data}/wav.scp:8: spk3-utt2: '{bad}': truncated WAV: ") + ".*")
    assert (data / "feats.scp").read_text() == good_scp
    assert (data / "utt2num_frames").read_text() == good_frames
    after = feats_of(data / "feats.scp")
    assert after.keys() == good.keys() and all(np.array_equal(after[u], good[u]) for u in good)
    assert {m.shape[1] for m in after.values()} == {80}
    bad.write_bytes(wav_bytes)
    assert cli("validate-data", data).returncode == 0
    # The repaired rerun switches every entry to 40 bins and deletes the 80-bin parts.
    assert cli("fbank", data, "--nj", "3", "--dither", "0", "--num-mel-bins", "40").returncode == 0
    assert {m.shape[1] for m in feats_of(data / "feats.scp").values()} == {40}
    arks = {Path(line.split()[1].rsplit(":", 1)[0]) for line in good_scp.splitlines()}
    assert arks and not any(a.exists() for a in arks)


def test_1_validate_data_refuses_mixed_dims(tmp_path):
    data = make_data_dir(tmp_path)
    assert cli("fbank", data, "--dither", "0", "--out-dir", tmp_path / "f80").returncode == 0
    lines80 = (data / "feats.scp").read_text().splitlines()
    assert cli("fbank", data, "--dither", "0", "--num-mel-bins", "40", "--out-dir", tmp_path / "f40").returncode == 0
    lines40 = (data / "feats.scp").read_text().splitlines()
    (data / "feats.scp").write_text("\n".join(lines80[:4] + lines40[4:]) + "\n")
    one_line_error(cli("validate-data", data), re.escape(f"{data}/feats.scp:5: spk2-utt2: 40-dim features, "
                                                         f"the lines above have 80"))


# -- item 2 ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dumped_copy(tmp_path_factory):
    """A copy of the shared tiny teacher with its own good dump (nj 2), and its data dir."""
    data, exp = teacher(tmp_path_factory)
    model = tmp_path_factory.mktemp("faults") / "teacher"
    shutil.copytree(exp, model, ignore=shutil.ignore_patterns("logits"))
    res = cli("dump-logits", "--model", model, "--data", data, "--nj", "2", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    return data, model


def test_2_failed_dump_rerun_keeps_the_good_dump(dumped_copy, tmp_path):
    data, model = dumped_copy
    out = model / "logits"
    before = {p.name: p.read_bytes() for p in out.glob("*") if p.is_file()}
    broken = tmp_path / "data"
    shutil.copytree(data, broken)
    lines = (broken / "feats.scp").read_text().splitlines()
    last = lines[-1].split()[0]
    lines[-1] = f"{last} {tmp_path}/gone.ark:9"  # read by part 2 of 2 only
    (broken / "feats.scp").write_text("\n".join(lines) + "\n")
    res = cli("dump-logits", "--model", model, "--data", broken, "--nj", "2", "--device", "cpu")
    # The line number comes with the tables' reader.
    one_line_error(res, re.escape(f"{broken}/feats.scp") + f"(:{len(lines)})?: .*gone.ark.*")
    for name in ("logits.scp", "meta.yaml", "chunks", "spk2id"):   # margin logits only, by default
        assert (out / name).read_bytes() == before[name], name
    assert all(np.all(np.isfinite(m)) for _, m in kaldiio.load_scp(str(out / "logits.scp")).items())
    assert temporaries(out) == []


def test_2_distill_never_changes_teacher_mode_silently(dumped_copy, tmp_path):
    data, model = dumped_copy
    teacher_dir = tmp_path / "teacher"
    shutil.copytree(model, teacher_dir, ignore=shutil.ignore_patterns("logits"))
    shutil.copytree(model / "logits", teacher_dir / "logits", copy_function=os.link)
    (teacher_dir / "logits" / "logits.scp").unlink()  # as if the dump had been interrupted
    conf = student_config(tmp_path / "s.yaml", epochs=1)
    args = ("distill", "--teacher", teacher_dir, "--config", conf, "--method", "kd", "--device", "cpu")
    res = cli(*args, "--data", data, "--exp", tmp_path / "s")
    one_line_error(res, re.escape(f"{teacher_dir}/logits/logits.scp: no such file: the teacher dump in this "
                                  "folder is unfinished; finish it with `trkd dump-logits` (same options) "
                                  "or pass --online"))
    assert not (tmp_path / "s" / "models").exists()
    # No dump at all: the online teacher, and the log says so (the data's dims then stop the run early).
    shutil.rmtree(teacher_dir / "logits")
    other = make_feats_dir(tmp_path / "d24", num_spk=4, utts_per_spk=6, feat_dim=24)
    res = cli(*args, "--data", other, "--exp", tmp_path / "s2", env={**ENV, "TRKD_LOG_LEVEL": "info"})
    assert res.returncode == 1
    assert re.search(rf"INFO: no teacher dump in {re.escape(str(teacher_dir))}/logits: the teacher runs online "
                     "on each batch\n", res.stderr), res.stderr
    assert res.stderr.splitlines()[-1] == (f"trkd: error: {other}/feats.scp: features have 24 dims, "
                                           "the teacher expects 20")


# -- item 6 ------------------------------------------------------------------------------------

def test_6_fbank_on_a_full_disk_or_a_read_only_folder(tmp_path):
    data = make_data_dir(tmp_path)
    assert cli("fbank", data, "--dither", "0").returncode == 0
    good = (data / "feats.scp").read_text()
    with small_disk(tmp_path / "full") as cause:
        limit = None if cause else 20000
        res = cli("fbank", data, "--nj", "2", "--out-dir", tmp_path / "full", limit=limit)
        one_line_error(res, re.escape(f"{tmp_path}/full/raw_fbank.") + r"\w+\.[12]\.ark: cannot write: "
                       + re.escape(cause or "File too large"))
        assert temporaries(tmp_path / "full") == []
        assert not list((tmp_path / "full").glob("*.ark"))
    with small_disk(tmp_path / "ro", ro=True) as cause:
        res = cli("fbank", data, "--out-dir", tmp_path / "ro")
        one_line_error(res, re.escape(f"{tmp_path}/ro/") + r"\S+: cannot write: "
                       + re.escape(cause or "Permission denied"))
    assert (data / "feats.scp").read_text() == good
    assert len(feats_of(data / "feats.scp")) == 9


def _embeddings(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    utts = [f"u{i:03d}" for i in range(60)]
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/x.ark,{tmp_path}/x.scp") as w:
        for u in utts:
            w(u, rng.standard_normal(16).astype(np.float32))
    (tmp_path / "trials").write_text("".join(f"{a} {b} {'target' if (i + j) % 7 == 0 else 'nontarget'}\n"
                                             for i, a in enumerate(utts) for j, b in enumerate(utts) if i < j))
    return tmp_path / "x.scp"


def test_6_score_on_a_full_disk(tmp_path):
    scp = _embeddings(tmp_path)
    with small_disk(tmp_path / "full", kb=256) as cause:
        out = tmp_path / "full"
        assert cli("score", "--trials", tmp_path / "trials", "--scp", scp, "--out-dir", out).returncode == 0
        good = (out / "trials.score").read_bytes()
        if cause:
            fill(out)
        res = cli("score", "--trials", tmp_path / "trials", "--scp", scp, "--out-dir", out,
                  limit=None if cause else 4096)
        one_line_error(res, re.escape(f"{out}/trials.score: cannot write: {cause or 'File too large'}"))
        assert (out / "trials.score").read_bytes() == good
        assert temporaries(out) == []


def test_6_checkpoint_save_on_a_full_disk(tmp_path):
    exp = tmp_path / "exp"
    (exp / "models").mkdir(parents=True)
    for epoch in (1, 2):
        torch.save({"model": {"w": torch.full((4096,), float(epoch))}}, exp / "models" / f"model_{epoch}.pt")
    with small_disk(tmp_path / "full", kb=64) as cause:
        avg = tmp_path / "full" / "avg.pt"
        assert cli("average", "--exp", exp, "--num", "2", "--out", avg).returncode == 0
        good = avg.read_bytes()
        if cause:
            fill(avg.parent)
        res = cli("average", "--exp", exp, "--num", "2", "--out", avg, limit=None if cause else 4096)
        one_line_error(res, re.escape(f"{avg}: cannot write: {cause or 'File too large'}"))
        assert avg.read_bytes() == good and temporaries(avg.parent) == []
    assert torch.load(exp / "models" / "model_2.pt")["model"]["w"][0] == 2.0


# -- item 9 ------------------------------------------------------------------------------------

def _children(pid: int):
    """Every live descendant of `pid` (zombies count as gone)."""
    kids, found = {}, []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
                kids.setdefault(int(fields[1]), []).append((int(p.name), fields[0]))
    todo = [pid]
    while todo:
        for child, state in kids.get(todo.pop(), []):
            if state != "Z":
                found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_9_kill_9_of_fbank_leaves_no_worker_and_the_rerun_cleans_temporaries(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    utts = [f"s{i % 2}-u{i:02d}" for i in range(24)]
    wav = {u: write_wav(tmp_path / "wav" / f"{u}.wav", 0.1 * rng.standard_normal(16000 * 30).astype(np.float32))
           for u in utts}
    write_table(d / "wav.scp", wav)
    write_table(d / "utt2spk", {u: u[:2] for u in utts})
    write_table(d / "spk2utt", {s: " ".join(sorted(u for u in utts if u.startswith(s))) for s in ("s0", "s1")})
    proc = subprocess.Popen([TRKD, "fbank", str(d), "--nj", "2", "--dither", "0"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out, deadline = d / "feats", time.time() + 180
    # Killed as soon as a worker writes: on an idle machine one worker may finish its part before
    # the other has imported torch, so waiting for both to write would race with the end of fbank.
    while not list(out.glob(".raw_fbank.*.tmp*.ark")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert proc.poll() is None and len(workers) >= 1, "fbank ended before a worker was writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)]
    assert len(temporaries(out)) >= 1 and not (d / "feats.scp").exists()
    res = cli("fbank", d, "--nj", "2", "--dither", "0")
    assert res.returncode == 0, res.stderr
    assert temporaries(out) == []
    assert sorted(feats_of(d / "feats.scp")) == sorted(utts)


# -- the job runner ----------------------------------------------------------------------------

def _crash(ctx, x):
    if x == 3:
        raise ValueError("three is a bad number\nsecond line")
    if x == 5:
        os._exit(3)
    return x * x


def test_runner_errors_are_one_line_and_name_the_job_log(tmp_path):
    from trkd.errors import InputError
    from trkd.jobs import run_all

    assert run_all("sq", _crash, [(i,) for i in (0, 1, 2, 4)], 2, tmp_path / "log") == [0, 1, 4, 16]
    for nj in (1, 2):
        with pytest.raises(InputError) as e:
            run_all("sq", _crash, [(i,) for i in range(4)], nj, tmp_path / "log", jobs=[1, 2, 3, 4])
        assert str(e.value) == f"{tmp_path}/log/sq.4.log: sq job 4 failed: ValueError: three is a bad number"
        log = (tmp_path / "log" / "sq.4.log").read_text()
        assert "Traceback" in log and "second line" in log and log.rstrip().splitlines()[-1].startswith("# ended (code 1)")
    with pytest.raises(InputError) as e:
        run_all("sq", _crash, [(5,), (1,)], 2, tmp_path / "log", jobs=[1, 2])
    assert str(e.value) == f"{tmp_path}/log/sq.1.log: sq job 1 died (exit code 3)"


TRACKED = """
import sys
from multiprocessing import resource_tracker
from trkd import jobs
if sys.argv[1] == "quiet":
    jobs.quiet_resource_tracker()
else:
    resource_tracker.ensure_running()
# a semaphore registered and never unregistered: what a lost unregister message looks like
resource_tracker.register("/trkd-test-never-made", "semaphore")
assert "PYTHONWARNINGS" not in __import__("os").environ   # this process's environment as it was
"""


@pytest.mark.parametrize("mode", ["quiet", "plain"])
def test_a_lost_semaphore_unregister_adds_no_line_to_a_job_error(mode):
    run = subprocess.run([sys.executable, "-c", TRACKED, mode], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"})
    assert run.returncode == 0
    if mode == "quiet":
        assert run.stderr == ""
    else:   # the control: without the filter the tracker reports it (so the test above can fail)
        assert "leaked semaphore" in run.stderr
