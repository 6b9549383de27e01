"""Trial lists: Kaldi and VoxCeleb forms, the VoxCeleb utterance-id mapping, errors with file and line."""

import numpy as np
import pytest

from trkd.data.trials import Trials, read_trials, trials_name, voxceleb_utt_id, write_trials
from trkd.errors import InputError


def test_voxceleb_utt_id():
    assert voxceleb_utt_id("id10270/x6uYqmx31kE/00001.wav") == "id10270-x6uYqmx31kE-00001"
    assert voxceleb_utt_id("id10270-x6uYqmx31kE-00001") == "id10270-x6uYqmx31kE-00001"


def test_kaldi_form(tmp_path):
    path = tmp_path / "trials"
    path.write_text("spk1-u1 spk2-u3 nontarget\n\nspk1-u1 spk1-u2 target\n")
    tr = read_trials(path)
    assert tr.enroll == ["spk1-u1", "spk1-u1"]
    assert tr.test == ["spk2-u3", "spk1-u2"]
    assert tr.labels.tolist() == [0, 1]


def test_voxceleb_form_keeps_ids_as_written_and_maps_to_data_prep_keys(tmp_path):
    path = tmp_path / "veri_test2.txt"
    path.write_text(
        "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
        "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n"
    )
    tr = read_trials(path)
    assert tr.enroll == ["id10270/x6uYqmx31kE/00001.wav"] * 2
    assert tr.test == ["id10270/8jEAjG6SegY/00008.wav", "id10300/ize_eiCFEg0/00003.wav"]
    assert tr.labels.tolist() == [1, 0]
    kaldi = tr.kaldi_form()
    assert kaldi.enroll == ["id10270-x6uYqmx31kE-00001"] * 2
    assert kaldi.test == ["id10270-8jEAjG6SegY-00008", "id10300-ize_eiCFEg0-00003"]
    assert trials_name(path) == "veri_test2"


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("a b target\na c maybe\n", 2, "unknown label 'maybe': expected target or nontarget"),
        ("1 a.wav b.wav\n0 a.wav c.wav\n2 a.wav d.wav\n", 3, "unknown label '2': expected 1 or 0 (VoxCeleb form)"),
        ("a b yes\n", 1, "unknown label in 'a b yes'"),
        ("a b target\na c\n", 2, "expected at least 3 fields, got 2"),
        ("a b target extra\n", 1, "expected 3 fields, got 4"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "trials"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_trials(path)
    assert err.value.path == str(path)
    assert err.value.line == line
    assert message in err.value.message


def test_empty_list_is_an_error(tmp_path):
    path = tmp_path / "trials"
    path.write_text("\n")
    with pytest.raises(InputError, match="no trials"):
        read_trials(path)


def test_write_then_read_round_trip(tmp_path):
    tr = Trials(["a", "b", "c"], ["d", "e", "f"], np.array([1, 0, 1], dtype=np.int8))
    write_trials(tmp_path / "t", tr)
    assert (tmp_path / "t").read_text() == "a d target\nb e nontarget\nc f target\n"
    back = read_trials(tmp_path / "t")
    assert (back.enroll, back.test, back.labels.tolist()) == (tr.enroll, tr.test, [1, 0, 1])
    assert back.subset(np.array([False, True, True])).enroll == ["b", "c"]
