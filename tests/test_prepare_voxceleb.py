"""`trkd prepare voxceleb` on a tiny tree in the official layouts (tests/voxceleb_tree.py)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from voxceleb_tree import VOX1_DEV, VOX1_TEST, VOX2_DEV, make_voxceleb_tree
from trkd.commands import prepare
from trkd.data.kaldi_dir import read_data_dir, read_kv, read_list_table
from trkd.data.prepare_voxceleb import prepare_voxceleb
from trkd.data.validate import validate_data_dir
from trkd.errors import InputError


def utt_id(rel: str) -> str:
    return rel.rsplit(".", 1)[0].replace("/", "-")


def check_sorted_consistent(d: Path) -> None:
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        keys = [line.split()[0] for line in (d / name).read_text().splitlines()]
        assert keys == sorted(keys) and len(keys) == len(set(keys)), f"{d / name} not sorted/unique"
    data = read_data_dir(d)
    assert set(data.wav_scp) == set(data.utt2spk)
    assert read_list_table(d / "spk2utt") == data.spk2utt
    for path in data.wav_scp.values():
        assert Path(path).is_absolute()
    validate_data_dir(d, check_audio=True, rate=16000)  # Kaldi's validate_data_dir.sh rules, audio read


def fake_ffmpeg(bindir: Path, fail: bool = False) -> Path:
    """A stand-in ffmpeg on PATH: records its arguments, copies the (WAV-bytes) input to the output."""
    bindir.mkdir(parents=True, exist_ok=True)
    calls = bindir / "calls"
    script = bindir / "ffmpeg"
    script.write_text(
        "#!/bin/sh\n"
        f"echo \"$*\" >> {calls}\n"
        + ("echo 'x.m4a: Invalid data found when processing input' >&2; exit 1\n" if fail else "")
        + 'while [ $# -gt 1 ]; do [ "$1" = -i ] && src=$2; shift; done\n'
        'cp "$src" "$1"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return calls


def test_prepare_all_official_layouts(tmp_path):
    tree = make_voxceleb_tree(tmp_path / "db", vox2_audio="wav")
    out = tmp_path / "data"
    prepare_voxceleb(out, tree.vox1, tree.vox2, tree.musan, tree.rirs, nj=2)

    for name in ("vox2_dev", "vox1", "vox1_dev", "musan", "rirs"):
        check_sorted_consistent(out / name)

    vox2 = read_data_dir(out / "vox2_dev")
    assert sorted(vox2.utt2spk) == sorted(utt_id(r) for r in tree.vox2_utts)
    assert vox2.speakers == sorted(VOX2_DEV)
    assert vox2.utt2spk["id00012-v00Ab-c_0-00001"] == "id00012"
    # WAVs found in the m4a layout are used in place, nothing converted.
    assert vox2.wav_scp["id00012-v00Ab-c_0-00001"] == str((tree.vox2 / "dev/aac/id00012/v00Ab-c_0/00001.wav").resolve())
    assert not (out / "wav").exists()

    vox1 = read_data_dir(out / "vox1")
    assert sorted(vox1.utt2spk) == sorted(utt_id(r) for r in tree.vox1_utts)
    assert read_data_dir(out / "vox1_dev").speakers == sorted(VOX1_DEV)  # test speakers = those of Vox1-O

    musan_types = read_kv(out / "musan" / "utt2type")
    assert musan_types["music-fma-0001"] == "music"
    assert musan_types["noise-free-sound-0000"] == "noise"
    assert musan_types["speech-librivox-0001"] == "babble"
    assert sorted(set(musan_types.values())) == ["babble", "music", "noise"] and len(musan_types) == 8

    rirs = read_kv(out / "rirs" / "wav.scp")
    assert len(rirs) == 12
    assert rirs["mediumroom-Room002-00001"] == str(tree.rirs / "simulated_rirs/mediumroom/Room002/Room002-00001.wav")


@pytest.mark.parametrize("official,kaldi", [("veri_test2.txt", "vox1_O"), ("list_test_all2.txt", "vox1_E"),
                                            ("list_test_hard2.txt", "vox1_H")])
def test_trials_converted_to_kaldi_form(tmp_path, official, kaldi):
    tree = make_voxceleb_tree(tmp_path / "db")
    prepare_voxceleb(tmp_path / "data", vox1=tree.vox1)
    src = (tree.vox1 / official).read_text().splitlines()
    got = (tmp_path / "data" / "vox1" / "trials" / kaldi).read_text().splitlines()
    assert len(got) == len(src) > 0
    for s, g in zip(src, got):
        label, a, b = s.split()
        assert g == f"{utt_id(a)} {utt_id(b)} {'target' if label == '1' else 'nontarget'}"
    labels = [g.split()[2] for g in got]
    assert "target" in labels and "nontarget" in labels
    if kaldi == "vox1_O":
        assert {g.split()[0].split("-")[0] for g in got} <= set(VOX1_TEST)


def test_cli_through_typer(tmp_path):
    tree = make_voxceleb_tree(tmp_path / "db")
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    prepare.register(app)
    out = tmp_path / "data"
    res = CliRunner().invoke(app, ["prepare", "voxceleb", "--vox1", str(tree.vox1), "--vox2", str(tree.vox2),
                                   "--musan", str(tree.musan), "--rirs", str(tree.rirs), "--out", str(out), "--nj", "1"])
    assert res.exit_code == 0, res.output
    assert f"{out / 'vox2_dev'}: 12 recordings, 3 speakers" in res.output
    assert (out / "vox1" / "trials" / "vox1_H").is_file()


def test_m4a_converted_once_in_parallel(tmp_path, monkeypatch):
    tree = make_voxceleb_tree(tmp_path / "db", vox2_audio="m4a-bytes")
    calls = fake_ffmpeg(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    out, wav_dir = tmp_path / "data", tmp_path / "vox2_wav"
    prepare_voxceleb(out, vox2=tree.vox2, wav_dir=wav_dir, nj=3)

    lines = calls.read_text().splitlines()
    assert len(lines) == len(tree.vox2_utts) == 12
    assert all(" -ar 16000 -ac 1 " in line for line in lines)
    wav = read_kv(out / "vox2_dev" / "wav.scp")
    assert wav["id00017-v21Ab-c_1-00002"] == str(wav_dir / "id00017/v21Ab-c_1/00002.wav")
    check_sorted_consistent(out / "vox2_dev")

    prepare_voxceleb(out, vox2=tree.vox2, wav_dir=wav_dir)  # already converted: ffmpeg not run again
    assert len(calls.read_text().splitlines()) == 12
    (wav_dir / "id00012/v00Ab-c_0/00002.wav").unlink()
    prepare_voxceleb(out, vox2=tree.vox2, wav_dir=wav_dir)
    assert len(calls.read_text().splitlines()) == 13


def test_ffmpeg_failure_names_the_file_and_leaves_no_wav(tmp_path, monkeypatch):
    tree = make_voxceleb_tree(tmp_path / "db", vox2_audio="m4a-bytes")
    fake_ffmpeg(tmp_path / "bin", fail=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(InputError, match=r"\.m4a: ffmpeg could not convert it: x\.m4a: Invalid data"):
        prepare_voxceleb(tmp_path / "data", vox2=tree.vox2, wav_dir=tmp_path / "w", nj=1)
    assert not list((tmp_path / "w").rglob("*.wav"))


def test_missing_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
    tree = make_voxceleb_tree(tmp_path / "db", vox2_audio="m4a-bytes")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InputError) as err:
        prepare_voxceleb(tmp_path / "data", vox2=tree.vox2)
    assert err.value.path == str(tree.vox2 / "dev/aac/id00012/v00Ab-c_0/00001.m4a")
    assert "ffmpeg not found on PATH" in err.value.message and "12 VoxCeleb2 .m4a" in err.value.message


def test_no_convert_uses_existing_wavs_or_names_the_missing_one(tmp_path, monkeypatch):
    tree = make_voxceleb_tree(tmp_path / "db", vox2_audio="m4a-bytes")
    monkeypatch.setenv("PATH", str(tmp_path))
    wav_dir = tmp_path / "w"
    with pytest.raises(InputError, match=r"w/id00012/v00Ab-c_0/00001\.wav: no converted WAV .*\(12 missing\)"):
        prepare_voxceleb(tmp_path / "data", vox2=tree.vox2, convert_m4a=False, wav_dir=wav_dir)
    for m4a in (tree.vox2 / "dev/aac").rglob("*.m4a"):
        dst = wav_dir / m4a.relative_to(tree.vox2 / "dev/aac").with_suffix(".wav")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(m4a, dst)
    prepare_voxceleb(tmp_path / "data", vox2=tree.vox2, convert_m4a=False, wav_dir=wav_dir)
    check_sorted_consistent(tmp_path / "data" / "vox2_dev")


@pytest.fixture
def ffmpeg_on_path(tmp_path, monkeypatch):
    """The machine's ffmpeg, or else the one the imageio-ffmpeg wheel ships, as `ffmpeg` on PATH."""
    if shutil.which("ffmpeg") is None:
        import imageio_ffmpeg

        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return shutil.which("ffmpeg")


def test_real_m4a_with_real_ffmpeg(tmp_path, ffmpeg_on_path):
    tree = make_voxceleb_tree(tmp_path / "db", vox2_audio="m4a")
    prepare_voxceleb(tmp_path / "data", vox2=tree.vox2, nj=2)
    check_sorted_consistent(tmp_path / "data" / "vox2_dev")
    info = sf.info(read_kv(tmp_path / "data" / "vox2_dev" / "wav.scp")["id00015-v10Ab-c_0-00001"])
    assert (info.samplerate, info.channels) == (16000, 1)


def test_missing_official_trial_list(tmp_path):
    tree = make_voxceleb_tree(tmp_path / "db")
    (tree.vox1 / "list_test_hard2.txt").unlink()
    with pytest.raises(InputError, match=r"list_test_hard2\.txt: no such file"):
        prepare_voxceleb(tmp_path / "data", vox1=tree.vox1)


def test_bad_trial_label_and_unknown_utterance_name_the_line(tmp_path):
    tree = make_voxceleb_tree(tmp_path / "db")
    trials = tree.vox1 / "veri_test2.txt"
    lines = trials.read_text().splitlines()
    good = "\n".join(lines) + "\n"
    lines[2] = "2" + lines[2][1:]
    trials.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"veri_test2\.txt:3: unknown label '2'"):
        prepare_voxceleb(tmp_path / "data", vox1=tree.vox1)
    trials.write_text(good + "1 id10270/v20Ab-c_0/00001.wav id10270/nosuch/00009.wav\n")
    with pytest.raises(InputError, match=rf"veri_test2\.txt:{len(lines) + 1}: utterance id10270/nosuch/00009\.wav is not"):
        prepare_voxceleb(tmp_path / "data", vox1=tree.vox1)


def test_layout_errors(tmp_path):
    tree = make_voxceleb_tree(tmp_path / "db")
    stray = tree.vox2 / "dev/aac/id00012/00009.wav"
    shutil.copy(tree.vox2 / "dev/aac/id00012/v00Ab-c_0/00001.wav", stray)
    with pytest.raises(InputError, match=r"00009\.wav: not in the VoxCeleb layout"):
        prepare_voxceleb(tmp_path / "data", vox2=tree.vox2)
    shutil.rmtree(tree.musan / "speech")
    with pytest.raises(InputError, match=r"musan/speech: no such directory"):
        prepare_voxceleb(tmp_path / "data", musan=tree.musan)
    (tree.rirs / "simulated_rirs/largeroom/rir_list").unlink()
    with pytest.raises(InputError, match=r"largeroom/rir_list: no such file"):
        prepare_voxceleb(tmp_path / "data", rirs=tree.rirs)
    with pytest.raises(InputError, match=r"nothing to prepare"):
        prepare_voxceleb(tmp_path / "data")
