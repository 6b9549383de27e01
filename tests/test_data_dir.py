"""Data dirs: validate-data (exact FILE:LINE messages), fix-data, splitting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from data_helpers import make_data_dir, voice, write_table, write_wav
from trkd.cli import app
from trkd.data.fix import fix_data_dir
from trkd.data.kaldi_dir import read_data_dir
from trkd.data.split import parse_split, split_data_dir, split_list
from trkd.data.validate import validate_data_dir
from trkd.errors import InputError

TRKD = Path(sys.executable).with_name("trkd")


@pytest.fixture()
def data(tmp_path):
    return make_data_dir(tmp_path)  # spk1..3 × utt1..3, sorted; wav.scp line n is the n-th utterance


def error_of(d: Path, **kw) -> str:
    with pytest.raises(InputError) as e:
        validate_data_dir(d, **kw)
    return str(e.value)


def drop_line(path: Path, n: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: n - 1] + lines[n:]))


def set_line(path: Path, n: int, text: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[n - 1] = text + "\n"
    path.write_text("".join(lines))


def test_good_dir_passes_with_audio(data):
    d = validate_data_dir(data)
    assert len(d.utts) == 9 and d.speakers == ["spk1", "spk2", "spk3"]


def test_wav_scp_line_with_one_field(data):
    set_line(data / "wav.scp", 2, "spk1-utt2")
    assert error_of(data) == f"{data}/wav.scp:2: expected at least 2 fields, got 1: 'spk1-utt2'"


def test_utterance_missing_from_utt2spk(data):
    drop_line(data / "utt2spk", 4)
    set_line(data / "spk2utt", 2, "spk2 spk2-utt2 spk2-utt3")
    assert error_of(data) == f"{data}/wav.scp:4: utterance 'spk2-utt1' is missing from utt2spk"


def test_utterance_without_audio(data):
    drop_line(data / "wav.scp", 9)
    assert error_of(data) == f"{data}/utt2spk:9: utterance 'spk3-utt3' has no entry in wav.scp"


def test_unsorted_and_duplicate_keys(data, tmp_path):
    lines = (data / "utt2spk").read_text().splitlines()
    (data / "utt2spk").write_text("\n".join([lines[1], lines[0]] + lines[2:]) + "\n")
    assert error_of(data) == (f"{data}/utt2spk:2: key 'spk1-utt1' is not sorted (it follows 'spk1-utt2'); "
                              "sort with LC_ALL=C sort")
    (data / "utt2spk").write_text("\n".join([lines[0], lines[0]] + lines[1:]) + "\n")
    assert error_of(data) == f"{data}/utt2spk:2: duplicate key 'spk1-utt1' (first on line 1)"


def test_spk2utt_must_agree(data):
    set_line(data / "spk2utt", 1, "spk1 spk1-utt1 spk1-utt2 spk2-utt1")
    assert error_of(data) == (f"{data}/spk2utt:1: utterance 'spk2-utt1' is listed under speaker 'spk1', "
                              "but utt2spk gives speaker 'spk2'")
    set_line(data / "spk2utt", 1, "spk1 spk1-utt1 spk1-utt2")
    assert error_of(data) == f"{data}/spk2utt:1: speaker 'spk1' is missing utterance 'spk1-utt3' (see utt2spk)"
    drop_line(data / "spk2utt", 1)
    assert error_of(data) == f"{data}/utt2spk:1: speaker 'spk1' is missing from spk2utt"
    (data / "spk2utt").unlink()
    assert error_of(data) == f"{data}/spk2utt: no such file (`trkd fix-data DIR` writes it from utt2spk)"


def test_utt2spk_with_two_speakers(data):
    set_line(data / "utt2spk", 3, "spk1-utt3 spk1 spk2")
    assert error_of(data) == f"{data}/utt2spk:3: expected 2 fields (utterance speaker), got 3"


def test_unreadable_truncated_and_wrong_rate_audio(data, tmp_path):
    path = tmp_path / "wav" / "spk2-utt2.wav"
    good = path.read_bytes()
    path.write_bytes(b"not a wav file at all" * 4)
    msg = error_of(data)
    assert msg.startswith(f"{data}/wav.scp:5: spk2-utt2: cannot read audio '{path}': ")
    assert validate_data_dir(data, check_audio=False)  # --no-audio does not open it

    path.write_bytes(good[: len(good) // 2])
    declared, present = len(good) - 44, len(good) // 2 - 44
    assert error_of(data) == (f"{data}/wav.scp:5: spk2-utt2: '{path}': truncated WAV: header declares "
                              f"{declared} bytes of audio, file has {present}")

    sf.write(str(path), voice(1, 1.0, 100.0, rate=8000), 8000, subtype="PCM_16")
    assert error_of(data) == f"{data}/wav.scp:5: spk2-utt2: '{path}' has sample rate 8000, expected 16000"

    path.unlink()
    assert error_of(data).startswith(f"{data}/wav.scp:5: spk2-utt2: cannot read audio '{path}': ")


def test_stereo_audio_is_an_error(data, tmp_path):
    path = tmp_path / "wav" / "spk1-utt1.wav"
    x = voice(3, 1.0, 100.0)
    sf.write(str(path), np.stack([x, x], axis=1), 16000, subtype="PCM_16")
    assert error_of(data) == f"{data}/wav.scp:1: spk1-utt1: '{path}' has 2 channels, expected 1"


def test_segments_are_checked(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    rec = write_wav(tmp_path / "rec.wav", voice(0, 3.0, 120.0))
    write_table(d / "wav.scp", {"rec1": rec})
    write_table(d / "utt2spk", {"a-1": "a", "a-2": "a"})
    write_table(d / "spk2utt", {"a": "a-1 a-2"})
    write_table(d / "segments", {"a-1": "rec1 0.00 1.50", "a-2": "rec1 1.50 3.00"})
    assert validate_data_dir(d).segments["a-2"] == ("rec1", 1.5, 3.0)
    write_table(d / "segments", {"a-1": "rec1 0.00 1.50", "a-2": "rec9 1.50 3.00"})
    assert error_of(d) == f"{d}/segments:2: recording 'rec9' of utterance 'a-2' is not in wav.scp"
    write_table(d / "segments", {"a-1": "rec1 1.50 1.00", "a-2": "rec1 1.50 3.00"})
    assert error_of(d) == f"{d}/segments:1: need 0 <= start < end, got 1.5 1"
    write_table(d / "segments", {"a-1": "rec1 0.00 1.50"})
    assert error_of(d) == f"{d}/utt2spk:2: utterance 'a-2' has no entry in segments"


def test_fix_data_keeps_the_consistent_subset(data):
    originals = {n: (data / n).read_text() for n in ("wav.scp", "utt2spk", "spk2utt")}
    set_line(data / "wav.scp", 2, "spk1-utt2")                     # malformed
    drop_line(data / "utt2spk", 4)                                  # spk2-utt1 has audio only
    with open(data / "utt2spk", "a") as f:
        f.write("spk3-utt9 spk3\nspk1-utt1 spk1\n")                 # no audio; repeated key
    broken = {n: (data / n).read_text() for n in ("wav.scp", "utt2spk", "spk2utt")}
    report = fix_data_dir(data)
    assert report.dropped == [
        f"{data}/wav.scp:2: dropped 'spk1-utt2' (malformed line)",
        f"{data}/utt2spk:10: dropped 'spk1-utt1' (repeated key; kept line 1)",
        f"{data}/utt2spk:2: dropped 'spk1-utt2' (no entry in wav.scp)",
        f"{data}/utt2spk:9: dropped 'spk3-utt9' (no entry in wav.scp)",
        f"{data}/wav.scp:4: dropped 'spk2-utt1' (missing from utt2spk)",
    ]
    assert (report.kept, report.total) == (7, 9)
    fixed = validate_data_dir(data)
    assert fixed.utts == sorted(set(read_data_dir(data).utts)) and "spk2-utt1" not in fixed.utts
    assert {n: (data / ".backup" / n).read_text() for n in broken} == broken
    assert (data / "spk2utt").read_text().splitlines()[1] == "spk2 spk2-utt2 spk2-utt3"
    assert originals["wav.scp"] != (data / "wav.scp").read_text()


def test_cli_validate_and_fix(data):
    runner = CliRunner()
    r = runner.invoke(app, ["validate-data", str(data)])
    assert r.exit_code == 0 and r.output == f"{data}: OK (9 utterances, 3 speakers)\n"
    drop_line(data / "utt2spk", 9)
    set_line(data / "spk2utt", 3, "spk3 spk3-utt1 spk3-utt2")
    proc = subprocess.run([str(TRKD), "validate-data", "--no-audio", str(data)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == f"trkd: error: {data}/wav.scp:9: utterance 'spk3-utt3' is missing from utt2spk\n"
    r = runner.invoke(app, ["fix-data", str(data)])
    assert r.exit_code == 0
    assert r.output.splitlines() == [f"{data}/wav.scp:9: dropped 'spk3-utt3' (missing from utt2spk)",
                                     f"{data}: kept 8 of 8 utterances; originals in {data}/.backup"]
    assert runner.invoke(app, ["validate-data", str(data)]).exit_code == 0


def test_parse_split():
    assert parse_split("3/8") == (3, 8)
    for bad, why in [("0/2", "need 1 <= K <= N"), ("3/2", "need 1 <= K <= N"), ("2", "expected K/N, e.g. 3/8"),
                     ("a/b", "expected K/N, e.g. 3/8")]:
        with pytest.raises(InputError) as e:
            parse_split(bad)
        assert str(e.value) == f"--split {bad!r}: {why}"


def test_split_list_is_contiguous_and_balanced():
    items = [f"u{i:02d}" for i in range(11)]
    parts = split_list(items, 4)
    assert [len(p) for p in parts] == [3, 3, 3, 2]
    assert sum(parts, []) == items


def test_split_data_dir(data):
    parts = split_data_dir(data, 2)
    assert parts == [data / "split2" / "1", data / "split2" / "2"]
    dirs = [validate_data_dir(p) for p in parts]
    assert dirs[0].utts + dirs[1].utts == read_data_dir(data).utts
    assert dirs[1].utts[0] == "spk2-utt3" and set(dirs[1].wav_scp) == set(dirs[1].utts)
    with pytest.raises(InputError) as e:
        split_data_dir(data, 10)
    assert str(e.value) == f"{data}/utt2spk: cannot split 9 utterances into 10 parts"
