"""fbank: parity with Kaldi's fbank, bit-identical splits, merge, skip on rerun, errors."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi
from typer.testing import CliRunner

from data_helpers import make_data_dir, voice, write_table, write_wav
from trkd.cli import app
from trkd.data.options import load_options
from trkd.errors import InputError
from trkd.features import FbankOptions, compute_fbank, fbank_of


@pytest.fixture()
def data(tmp_path):
    return make_data_dir(tmp_path)


def gen_of(out: Path) -> str:
    """The settings generation of the one fbank run in `out`."""
    (conf,) = out.glob("fbank.*.yaml")
    return conf.name.split(".")[1]


def load(scp: Path):
    return {k: v for k, v in kaldiio.load_scp(str(scp)).items()}


def test_fbank_of_equals_torchaudio_kaldi_fbank(tmp_path):
    path = write_wav(tmp_path / "a.wav", voice(0, 1.7, 130.0))
    x, rate = sf.read(str(path), dtype="float32")
    ours = fbank_of(torch.from_numpy(x), rate, FbankOptions(dither=0.0))
    ref = kaldi.fbank(torch.from_numpy(x)[None] * 32768, num_mel_bins=80, dither=0.0, energy_floor=0.0,
                      sample_frequency=16000)
    assert ours.shape == (168, 80) and ours.dtype == torch.float32
    assert torch.equal(ours, ref)


def test_fbank_of_matches_kaldi_native_fbank(tmp_path):
    knf = pytest.importorskip("kaldi_native_fbank")
    x = voice(1, 1.2, 200.0)
    o = knf.FbankOptions()
    o.frame_opts.dither, o.frame_opts.samp_freq, o.mel_opts.num_bins, o.energy_floor = 0.0, 16000, 80, 0.0
    f = knf.OnlineFbank(o)
    f.accept_waveform(16000, (x * 32768).tolist())
    f.input_finished()
    ref = np.stack([f.get_frame(i) for i in range(f.num_frames_ready)])
    ours = fbank_of(torch.from_numpy(x), 16000, FbankOptions(dither=0.0)).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_seeded_dither_is_private_and_reproducible():
    x = torch.from_numpy(voice(2, 1.0, 150.0))
    state = torch.random.get_rng_state()
    a, b = fbank_of(x, 16000, seed=5), fbank_of(x, 16000, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, fbank_of(x, 16000, seed=6))
    assert not torch.equal(a, fbank_of(x, 16000, FbankOptions(dither=0.0)))


def test_nj1_and_nj2_are_bit_identical_with_dither(data, tmp_path):
    assert compute_fbank(data, tmp_path / "f1", nj=1, seed=7) == data / "feats.scp"
    one = load(data / "feats.scp")
    frames1 = (data / "utt2num_frames").read_text()
    compute_fbank(data, tmp_path / "f2", nj=2, seed=7)
    two = load(data / "feats.scp")
    assert list(one) == list(two) == sorted(one)
    assert all(np.array_equal(one[u], two[u]) and one[u].dtype == np.float32 for u in one)
    assert (data / "utt2num_frames").read_text() == frames1
    assert frames1.splitlines()[0] == f"spk1-utt1 {one['spk1-utt1'].shape[0]}"
    g = gen_of(tmp_path / "f2")
    assert sorted(p.name for p in (tmp_path / "f2").iterdir()) == [
        f"fbank.{g}.yaml", "log", f"raw_fbank.{g}.1.ark", f"raw_fbank.{g}.1.scp", f"raw_fbank.{g}.2.ark",
        f"raw_fbank.{g}.2.scp", f"utt2num_frames.{g}.1", f"utt2num_frames.{g}.2"]
    log2 = (tmp_path / "f2" / "log" / "fbank.2.log").read_text().splitlines()
    assert "done: 4 utterances" in log2[-2] and log2[-1].startswith("# ended (code 0)")
    # Features of the stored audio with the utterance's dither seed, not merely "some" features.
    x, _ = sf.read(str(tmp_path / "wav" / "spk1-utt1.wav"), dtype="float32")
    from trkd.features import dither_seed
    assert np.array_equal(one["spk1-utt1"], fbank_of(torch.from_numpy(x), 16000, seed=dither_seed(7, "spk1-utt1")).numpy())


def test_split_parts_then_merge_equals_nj_run(data, tmp_path):
    compute_fbank(data, tmp_path / "ref", nj=3, seed=1)
    ref = load(data / "feats.scp")
    (data / "feats.scp").unlink()
    out = tmp_path / "parts"
    assert compute_fbank(data, out, split="2/3", seed=1) is None
    assert compute_fbank(data, out, split="3/3", seed=1) is None
    assert not (data / "feats.scp").exists()
    assert compute_fbank(data, out, split="1/3", seed=1) == data / "feats.scp"
    got = load(data / "feats.scp")
    assert list(got) == list(ref) and all(np.array_equal(got[u], ref[u]) for u in ref)


def test_rerun_skips_finished_parts_and_redoes_changed_options(data, tmp_path):
    out = tmp_path / "f"
    compute_fbank(data, out, nj=2, opts=FbankOptions(dither=0.0))
    g = gen_of(out)
    stamp = [(out / f"raw_fbank.{g}.{k}.ark").stat().st_mtime_ns for k in (1, 2)]
    (out / f"utt2num_frames.{g}.2").unlink()  # as if part 2 had been interrupted
    compute_fbank(data, out, nj=2, opts=FbankOptions(dither=0.0))
    assert (out / f"raw_fbank.{g}.1.ark").stat().st_mtime_ns == stamp[0]
    assert (out / f"raw_fbank.{g}.2.ark").stat().st_mtime_ns != stamp[1]
    first = load(data / "feats.scp")
    compute_fbank(data, out, nj=2, opts=FbankOptions(dither=0.0, num_mel_bins=40))
    assert next(iter(load(data / "feats.scp").values())).shape[1] == 40
    assert next(iter(first.values())).shape[1] == 80
    # The 80-bin generation is gone once the 40-bin one is in feats.scp.
    assert gen_of(out) != g and not list(out.glob(f"*.{g}.*"))


def test_segments(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    x = voice(4, 3.0, 140.0)
    write_wav(tmp_path / "rec.wav", x)
    write_table(d / "wav.scp", {"rec1": tmp_path / "rec.wav"})
    write_table(d / "utt2spk", {"a-1": "a", "a-2": "a"})
    write_table(d / "spk2utt", {"a": "a-1 a-2"})
    write_table(d / "segments", {"a-1": "rec1 0.10 1.30", "a-2": "rec1 1.30 3.20"})  # end past the file: clipped
    compute_fbank(d, opts=FbankOptions(dither=0.0))
    feats = load(d / "feats.scp")
    stored, _ = sf.read(str(tmp_path / "rec.wav"), dtype="float32")
    assert np.array_equal(feats["a-1"], fbank_of(torch.from_numpy(stored[1600:20800]), 16000, FbankOptions(dither=0.0)).numpy())
    assert np.array_equal(feats["a-2"], fbank_of(torch.from_numpy(stored[20800:]), 16000, FbankOptions(dither=0.0)).numpy())


def test_bad_audio_names_wav_scp_line_and_leaves_no_part(data, tmp_path):
    bad = tmp_path / "wav" / "spk3-utt1.wav"  # in part 2 of 2
    declared = bad.stat().st_size - 44
    bad.write_bytes(bad.read_bytes()[:1000])
    out = tmp_path / "f"
    with pytest.raises(InputError) as e:
        compute_fbank(data, out, nj=2)
    assert str(e.value) == (f"{data}/wav.scp:7: spk3-utt1: '{bad}': truncated WAV: header declares "
                            f"{declared} bytes of audio, file has 956")
    g = gen_of(out)
    assert sorted(p.name for p in out.iterdir()) == [f"fbank.{g}.yaml", "log", f"raw_fbank.{g}.1.ark",
                                                     f"raw_fbank.{g}.1.scp", f"utt2num_frames.{g}.1"]
    assert not (data / "feats.scp").exists()


def test_too_short_utterance_is_skipped_with_warning(data, tmp_path, caplog):
    write_wav(tmp_path / "wav" / "spk1-utt2.wav", voice(9, 0.01, 100.0))  # 160 samples < one 400-sample frame
    compute_fbank(data, tmp_path / "f", opts=FbankOptions(dither=0.0))
    assert "spk1-utt2" not in load(data / "feats.scp") and len(load(data / "feats.scp")) == 8
    assert "spk1-utt2" not in (data / "utt2num_frames").read_text()
    assert ("WARNING trkd.features: spk1-utt2: 160 samples are too few for one frame; skipped"
            in (tmp_path / "f" / "log" / "fbank.1.log").read_text())
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"][1:] == [f"1 utterances too short for one frame have no features (see {tmp_path}/f/log); "
                               f"`trkd fix-data {data}` drops them"]


def test_cli_config_and_flags(data, tmp_path):
    conf = tmp_path / "fbank.yaml"
    conf.write_text("num_mel_bins: 40\ndither: 0.0\n")
    r = CliRunner().invoke(app, ["fbank", str(data), "--config", str(conf), "--num-mel-bins", "64", "--nj", "2"])
    assert r.exit_code == 0, r.output
    assert r.output == f"wrote {data}/feats.scp\n"
    feats = load(data / "feats.scp")
    assert len(feats) == 9 and feats["spk1-utt1"].shape[1] == 64
    conf.write_text("dither: 0.0\nnum_mel_bin: 40\n")
    with pytest.raises(InputError) as e:
        load_options(FbankOptions, conf, {})
    assert str(e.value).startswith(f"{conf}:2: unknown key 'num_mel_bin' (valid: dither, energy_floor, frame_length,")
    r = CliRunner().invoke(app, ["fbank", str(data), "--split", "3/2"])
    assert r.exit_code == 1 and str(r.exception) == "--split '3/2': need 1 <= K <= N"
