"""Augmented copies without WAVs: `trkd augment-wav` entries, made again in-process by every reader,
bit-identical to the --write-wavs WAVs and to the features computed from them."""

from __future__ import annotations

import os
import shutil
import subprocess

import kaldiio
import numpy as np
import pytest

from cli_helpers import TRKD, error_line, ok, trkd
from data_helpers import make_data_dir, make_noise_dirs
from trkd.data import virtual
from trkd.data.augment import AugmentConfig, augment_data_dir
from trkd.data.kaldi_dir import read_kv
from trkd.data.validate import validate_data_dir
from trkd.errors import InputError
from trkd.features import compute_fbank

ALL = "reverb,noise,music,babble"


def feats(d) -> dict:
    return dict(kaldiio.load_scp(str(d / "feats.scp")))


def copies(d) -> list:
    return sorted(k for k, v in read_kv(d / "wav.scp").items() if v.endswith("|"))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The same augmentation through the CLI twice: the default (virtual copies, 2 workers) and
    --write-wavs (1 worker), each followed by `trkd fbank`."""
    tmp = tmp_path_factory.mktemp("virtual")
    data = make_data_dir(tmp, n_spk=2, n_utt=2)
    noise, rirs = make_noise_dirs(tmp)
    common = [data, "--rir-dir", rirs, "--noise-dir", noise, "--copies", ALL, "--speed-perturb", "--seed", "4"]
    ok(trkd("augment", common[0], tmp / "virtual", *common[1:], "--nj", "2"))
    ok(trkd("augment", common[0], tmp / "wavs", *common[1:], "--write-wavs"))
    ok(trkd("fbank", tmp / "virtual", "--nj", "2", "--seed", "1"))
    ok(trkd("fbank", tmp / "wavs", "--seed", "1"))
    return tmp


def test_virtual_features_equal_the_written_wavs_features_bit_for_bit(made):
    virtual, wavs = made / "virtual", made / "wavs"
    assert not list(virtual.rglob("*.wav"))
    names = copies(virtual)
    assert len(names) == 4 * (2 + 3 * 4)  # per source: 2 speed copies, 4 kinds of each of 3 speeds
    entry = read_kv(virtual / "wav.scp")["sp0.9-spk2-utt1-reverb"]
    assert entry.startswith("trkd augment-wav --gen ") and entry.endswith(f" {virtual} sp0.9-spk2-utt1-reverb |")
    assert sorted(read_kv(wavs / "wav.scp")) == sorted(read_kv(virtual / "wav.scp"))
    (ours, theirs) = feats(virtual), feats(wavs)
    assert sorted(ours) == sorted(theirs) and len(ours) == 4 + len(names)
    for utt in ours:
        assert ours[utt].dtype == theirs[utt].dtype and np.array_equal(ours[utt], theirs[utt]), utt
    assert (virtual / "utt2source").read_text() == (wavs / "utt2source").read_text()


def test_features_do_not_depend_on_the_number_of_workers(made, tmp_path):
    virtual = tmp_path / "virtual"
    shutil.copytree(made / "virtual", virtual)
    for f in list(virtual.glob("feats*")) + [virtual / "utt2num_frames"]:
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    # An entry names its dir: the copied dir's entries still point at the first one, which is fine
    # (they are the same copies); nj = 1 here against nj = 2 in the fixture.
    compute_fbank(virtual, nj=1, seed=1)
    ours, theirs = feats(virtual), feats(made / "virtual")
    assert sorted(ours) == sorted(theirs)
    assert all(np.array_equal(ours[u], theirs[u]) for u in ours)


def test_augment_wav_writes_the_bytes_of_the_written_wav(made):
    virtual, wavs = made / "virtual", made / "wavs"
    env = dict(os.environ, PATH=f"{os.path.dirname(TRKD)}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    for utt in ("sp1.1-spk1-utt2", "spk1-utt1-babble", "sp0.9-spk2-utt2-reverb"):
        want = (wavs / "wav" / f"{utt}.wav").read_bytes()
        run = subprocess.run([TRKD, "augment-wav", virtual, utt], capture_output=True, env=env)
        assert run.returncode == 0 and run.stdout == want, run.stderr
        # The wav.scp entry as Kaldi runs it: a shell command whose stdout is the WAV.
        rx = read_kv(virtual / "wav.scp")[utt]
        run = subprocess.run(rx.rstrip().rstrip("|"), shell=True, capture_output=True, env=env)
        assert run.returncode == 0 and run.stdout == want, run.stderr
    err = error_line(trkd("augment-wav", virtual, "spk1-utt1-echo"))
    assert err == (f"{virtual}/wav.scp: spk1-utt1-echo: {virtual}/conf/source/wav.scp: 'spk1-utt1-echo': no source "
                   f"of this table makes it with the settings of {virtual}/conf/augment.yaml")


def test_validate_reads_the_copies_and_foreign_pipes_stay_refused(made, tmp_path):
    d = tmp_path / "v"
    shutil.copytree(made / "virtual", d)
    assert len(validate_data_dir(d, check_audio=True).utts) == 4 + 56
    lines = (d / "wav.scp").read_text().splitlines()
    lines[3] = lines[3].split()[0] + " cat /etc/hostname |"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        validate_data_dir(d, check_audio=False)
    assert str(e.value).startswith(f"{d}/wav.scp:4: ") and "TRKD_ALLOW_PIPES=1" in str(e.value)


def test_a_process_opens_the_lists_once(made, monkeypatch):
    """A reader (an fbank worker) loads the settings, lists and sources once, not per copy."""
    loads = []
    real = virtual.Copies.__init__
    monkeypatch.setattr(virtual.Copies, "__init__", lambda self, d: (loads.append(d), real(self, d))[1])
    monkeypatch.setattr(virtual, "_LOADED", {})
    virtual.copy_wav.cache_clear()
    assert len(validate_data_dir(made / "virtual", check_audio=True).utts) == 60  # 56 copies read
    assert loads == [made / "virtual"]


@pytest.fixture()
def small(tmp_path):
    data = make_data_dir(tmp_path, n_spk=2, n_utt=2)
    noise, rirs = make_noise_dirs(tmp_path)
    return data, noise, rirs


def test_rerun_is_a_noop_and_other_settings_make_other_copies(small, tmp_path):
    data, noise, rirs = small
    out = tmp_path / "aug"
    cfg = AugmentConfig(copies=["noise", "reverb"])
    augment_data_dir(data, out, rirs, noise, seed=5, cfg=cfg)
    compute_fbank(out, seed=1)
    tables = _files(out)
    times = {p: p.stat().st_mtime_ns for p in tables}
    augment_data_dir(data, out, rirs, noise, seed=5, cfg=cfg)
    compute_fbank(out, seed=1)
    assert _files(out) == tables
    arks = [p for p in tables if p.suffix == ".ark"]
    assert arks and all(p.stat().st_mtime_ns == times[p] for p in arks + [out / "conf" / "augment.yaml"])
    before = feats(out)
    old_entry = read_kv(out / "wav.scp")["spk1-utt1-noise"]
    augment_data_dir(data, out, rirs, noise, seed=6, cfg=cfg)  # other settings: other entries ...
    compute_fbank(out, seed=1)                                # ... so fbank computes them again
    after = feats(out)
    assert np.array_equal(after["spk1-utt1"], before["spk1-utt1"])
    assert not np.array_equal(after["spk1-utt1-noise"], before["spk1-utt1-noise"])
    lines = (out / "wav.scp").read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith("spk1-utt1-noise "))
    lines[n] = f"spk1-utt1-noise {old_entry}"  # an entry written with the first settings
    (out / "wav.scp").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        validate_data_dir(out)
    assert str(e.value).startswith(f"{out}/wav.scp:{n + 1}: spk1-utt1-noise: cannot make ")
    now = lines[n + 1].split()[4]
    assert str(e.value).endswith(": settings changed since this entry was written (entry: --gen "
                                 f"{old_entry.split()[3]}, now {now}): rerun `trkd augment`")


def _files(d) -> dict:
    """Every file under `d` but the logs, with its bytes."""
    return {p: p.read_bytes() for p in d.rglob("*") if p.is_file() and "log" not in p.relative_to(d).parts}


def test_write_wavs_then_virtual_removes_the_wavs(small, tmp_path):
    data, noise, rirs = small
    out = tmp_path / "aug"
    cfg = AugmentConfig(copies=["music"])
    augment_data_dir(data, out, None, noise, cfg=cfg, write_wavs=True)
    assert len(list((out / "wav").glob("*.wav"))) == 4
    augment_data_dir(data, out, None, noise, cfg=cfg)
    assert not list((out / "wav").glob("*.wav")) and len(copies(out)) == 4


def _fbank_error(d) -> str:
    return error_line(trkd("fbank", d, "--seed", "1"))


def test_a_bad_entry_is_one_line_and_the_features_stay(made, tmp_path):
    d = tmp_path / "v"
    shutil.copytree(made / "virtual", d)
    good = (d / "feats.scp").read_text()
    wav = (d / "wav.scp").read_text().splitlines()
    n = next(i for i, line in enumerate(wav) if line.startswith("spk2-utt2-music "))
    gen = wav[n].split()[4]
    rx = f"trkd augment-wav --gen {gen} {d} spk2-utt2-musik |"
    wav[n] = f"spk2-utt2-music {rx}"
    (d / "wav.scp").write_text("\n".join(wav) + "\n")
    assert _fbank_error(d) == (f"{d}/wav.scp:{n + 1}: spk2-utt2-music: cannot make {rx!r}: {d}/conf/source/wav.scp: "
                               f"'spk2-utt2-musik': no source of this table makes it with the settings of "
                               f"{d}/conf/augment.yaml")
    assert (d / "feats.scp").read_text() == good
    # Every entry but that one names the first dir, whose noise list changes here: the first copy fails.
    lists = {p: p.read_text() for p in ((made / "noise" / "wav.scp"), (made / "noise" / "utt2type"))}
    try:
        for p, text in lists.items():  # one noise item fewer
            p.write_text("".join(line + "\n" for line in text.splitlines() if not line.startswith("noise1 ")))
        err = _fbank_error(d)
        assert err.startswith(f"{d}/wav.scp:1: sp0.9-spk1-utt1: cannot make ")
        assert err.endswith(f": {made / 'virtual'}/conf/augment.yaml: the RIR or noise lists changed since `trkd "
                            "augment` made this dir (items added, removed or of other lengths): rerun `trkd augment`")
        (made / "noise" / "wav.scp").unlink()
        assert _fbank_error(d).endswith(f": {made / 'noise' / 'wav.scp'}: no such file")
    finally:
        for p, text in lists.items():
            p.write_text(text)
    assert (d / "feats.scp").read_text() == good
