"""Augmentation: what each copy does to the signal, data-dir output, determinism, errors."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from data_helpers import make_data_dir, make_noise_dirs, voice, write_table, write_wav
from trkd.cli import app
from trkd.data.audio import load_utt
from trkd.data.augment import AugmentConfig, add_at_snr, augment_data_dir, reverberate, speed
from trkd.data.kaldi_dir import read_data_dir
from trkd.data.options import load_options
from trkd.data.validate import validate_data_dir
from trkd.errors import InputError


@pytest.fixture()
def setup(tmp_path):
    data = make_data_dir(tmp_path, n_spk=2, n_utt=2)
    noise, rirs = make_noise_dirs(tmp_path)
    return data, noise, rirs


def read(path) -> np.ndarray:
    return sf.read(str(path), dtype="float32")[0]


def test_reverberate_aligns_on_the_direct_path():
    x = torch.from_numpy(voice(0, 0.5, 120.0))
    rir = torch.zeros(800)
    rir[123] = 0.5  # a pure delayed impulse: after alignment and power matching, the signal itself
    torch.testing.assert_close(reverberate(x, rir), x, atol=1e-5, rtol=0)
    rir[300] = 0.4  # an echo 177 samples after the direct path
    y = reverberate(x, rir)
    assert y.shape == x.shape
    torch.testing.assert_close(y.pow(2).mean(), x.pow(2).mean(), rtol=1e-5, atol=0)
    echo = torch.cat([torch.zeros(177), x[:-177]])
    expected = (0.5 * x + 0.4 * echo)
    torch.testing.assert_close(y, expected * (x.pow(2).mean() / expected.pow(2).mean()).sqrt(), atol=1e-5, rtol=0)


def test_add_at_snr_hits_the_snr():
    x = torch.from_numpy(voice(1, 1.0, 150.0))
    n = torch.from_numpy(np.random.default_rng(0).standard_normal(x.shape[0]).astype(np.float32))
    y = add_at_snr(x, n, 7.5)
    snr = 10 * torch.log10(x.pow(2).sum() / (y - x).pow(2).sum())
    assert abs(float(snr) - 7.5) < 1e-3
    assert torch.equal(add_at_snr(x, torch.zeros_like(x), 5.0), x)


def test_speed_changes_length_by_the_factor():
    x = torch.from_numpy(voice(2, 1.0, 150.0))
    assert speed(x, 1.1, 16000).shape[0] == 14546  # ceil(16000 / 1.1)
    assert speed(x, 0.9, 16000).shape[0] == 17778


def test_augmented_data_dir(setup, tmp_path):
    data, noise, rirs = setup
    out = tmp_path / "aug"
    result = augment_data_dir(data, out, rirs, noise, speed_perturb=True, seed=3, write_wavs=True)
    assert validate_data_dir(out) == result  # every WAV readable at 16 kHz, tables consistent
    kinds = ["", "-babble", "-music", "-noise", "-reverb"]
    bases = ["spk1-utt1", "spk1-utt2", "spk2-utt1", "spk2-utt2"]
    expected = sorted(f"{p}{b}{k}" for p in ("", "sp0.9-", "sp1.1-") for b in bases for k in kinds)
    assert result.utts == expected
    assert result.speakers == ["sp0.9-spk1", "sp0.9-spk2", "sp1.1-spk1", "sp1.1-spk2", "spk1", "spk2"]
    assert result.utt2spk["sp1.1-spk2-utt1-music"] == "sp1.1-spk2"
    assert result.wav_scp["spk1-utt1"] == str(tmp_path / "wav" / "spk1-utt1.wav")  # clean audio referenced
    clean = read(tmp_path / "wav" / "spk1-utt1.wav")
    for kind in ("reverb", "noise", "music", "babble"):
        y = read(result.wav_scp[f"spk1-utt1-{kind}"])
        assert y.shape == clean.shape and not np.allclose(y, clean, atol=1e-3), kind
    for f in (0.9, 1.1):
        assert abs(len(read(result.wav_scp[f"sp{f:g}-spk1-utt1"])) - len(clean) / f) < 2
        assert len(read(result.wav_scp[f"sp{f:g}-spk1-utt1-noise"])) == len(read(result.wav_scp[f"sp{f:g}-spk1-utt1"]))
    assert (out / "conf" / "augment.yaml").read_text().startswith("seed: 3\nspeed_perturb: true\n")


def test_deterministic_given_seed_and_independent_of_nj(setup, tmp_path):
    data, noise, rirs = setup
    augment_data_dir(data, tmp_path / "a", rirs, noise, seed=5, write_wavs=True)
    augment_data_dir(data, tmp_path / "b", rirs, noise, seed=5, nj=2, write_wavs=True)
    augment_data_dir(data, tmp_path / "c", rirs, noise, seed=6, write_wavs=True)
    names = sorted(p.name for p in (tmp_path / "a" / "wav").iterdir())
    assert len(names) == 16
    assert all(filecmp.cmp(tmp_path / "a" / "wav" / n, tmp_path / "b" / "wav" / n, shallow=False) for n in names)
    # Another seed draws other SNRs and excerpts (reverb may pick the same one of the two RIRs).
    assert not any(filecmp.cmp(tmp_path / "a" / "wav" / n, tmp_path / "c" / "wav" / n, shallow=False)
                   for n in names if "reverb" not in n)
    # A copy does not depend on which other kinds are made.
    augment_data_dir(data, tmp_path / "d", None, noise, seed=5, cfg=AugmentConfig(copies=["music"]), write_wavs=True)
    assert filecmp.cmp(tmp_path / "a" / "wav" / "spk2-utt1-music.wav", tmp_path / "d" / "wav" / "spk2-utt1-music.wav",
                       shallow=False)


def test_rerun_reuses_written_wavs(setup, tmp_path):
    data, noise, rirs = setup
    cfg = AugmentConfig(copies=["noise"])
    augment_data_dir(data, tmp_path / "a", rirs, noise, seed=5, cfg=cfg, write_wavs=True)
    wav = tmp_path / "a" / "wav" / "spk1-utt1-noise.wav"
    stamp = wav.stat().st_mtime_ns
    augment_data_dir(data, tmp_path / "a", rirs, noise, seed=5, cfg=cfg, write_wavs=True)
    assert wav.stat().st_mtime_ns == stamp
    augment_data_dir(data, tmp_path / "a", rirs, noise, seed=6, cfg=cfg, write_wavs=True)
    assert wav.stat().st_mtime_ns != stamp


def test_segments_input(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    write_wav(tmp_path / "rec.wav", voice(4, 3.0, 140.0))
    write_table(d / "wav.scp", {"rec1": tmp_path / "rec.wav"})
    write_table(d / "utt2spk", {"a-1": "a", "a-2": "a"})
    write_table(d / "spk2utt", {"a": "a-1 a-2"})
    write_table(d / "segments", {"a-1": "rec1 0.00 1.25", "a-2": "rec1 1.25 3.00"})
    noise, _ = make_noise_dirs(tmp_path)
    cfg = AugmentConfig(copies=["noise"], speed_factors=[0.8])
    out = augment_data_dir(d, tmp_path / "aug", noise_dir=noise, cfg=cfg, speed_perturb=True)
    assert out.segments["a-1-noise"] == ("a-1-noise", 0.0, 1.25)
    assert out.segments["sp0.8-a-2-noise"] == ("sp0.8-a-2-noise", 0.0, 2.187)  # 1.75 s / 0.8
    assert out.segments["a-2"] == ("rec1", 1.25, 3.0)
    assert validate_data_dir(tmp_path / "aug") == read_data_dir(tmp_path / "aug")  # copies made from the segments
    wavs = augment_data_dir(d, tmp_path / "wavs", noise_dir=noise, cfg=cfg, speed_perturb=True, write_wavs=True)
    assert wavs.segments == out.segments
    for utt in ("sp0.8-a-2-noise", "a-1-noise"):
        assert np.array_equal(load_utt(tmp_path / "aug", out, utt), load_utt(tmp_path / "wavs", wavs, utt))


def test_config_and_list_errors(setup, tmp_path):
    data, noise, rirs = setup
    with pytest.raises(InputError) as e:
        augment_data_dir(data, tmp_path / "o", None, noise)
    assert str(e.value) == "copies include reverb: give --rir-dir (or leave reverb out of --copies)"
    conf = tmp_path / "aug.yaml"
    conf.write_text("noise_snr: [0, 15]\nmusic_snr: [15, 5]\n")
    with pytest.raises(InputError) as e:
        load_options(AugmentConfig, conf).check(str(conf))
    assert str(e.value) == f"{conf}: music_snr must be [low, high], got [15, 5]"
    conf.write_text("noise_snr: [0, 15]\nsnr: 3\n")
    with pytest.raises(InputError) as e:
        load_options(AugmentConfig, conf)
    assert str(e.value).startswith(f"{conf}:2: unknown key 'snr' (valid: augment_speed, babble_count,")
    lines = (noise / "utt2type").read_text().splitlines()
    (noise / "utt2type").write_text("\n".join(lines[:2] + [lines[2].replace("noise", "hum")] + lines[3:]) + "\n")
    with pytest.raises(InputError) as e:
        augment_data_dir(data, tmp_path / "o", rirs, noise)
    assert str(e.value) == f"{noise}/utt2type:3: unknown type 'hum' (valid: noise, music, babble, speech)"
    (noise / "utt2type").write_text("\n".join(l for l in lines if "speech" not in l) + "\n")
    for line in lines:
        if "speech" in line:
            (noise / "wav.scp").write_text("".join(l + "\n" for l in (noise / "wav.scp").read_text().splitlines()
                                                  if not l.startswith(line.split()[0] + " ")))
    with pytest.raises(InputError) as e:
        augment_data_dir(data, tmp_path / "o", rirs, noise)
    assert str(e.value) == f"{noise}/utt2type: no items of type babble or speech, needed for babble copies"
    bad = tmp_path / "rir_wav" / "rir1.wav"
    bad.write_bytes(b"RIFF")
    with pytest.raises(InputError) as e:
        augment_data_dir(data, tmp_path / "o", rirs, noise, cfg=AugmentConfig(copies=["reverb"]))
    assert str(e.value).startswith(f"{rirs}/wav.scp:2: rir1: cannot read audio '{bad}': ")
    assert not (tmp_path / "o" / "wav").exists()


def test_cli(setup, tmp_path):
    data, noise, rirs = setup
    out = tmp_path / "aug"
    r = CliRunner().invoke(app, ["augment", str(data), str(out), "--noise-dir", str(noise), "--copies", "noise,babble",
                                 "--speed-perturb", "--seed", "2"])
    assert r.exit_code == 0, r.output
    assert r.output == f"{out}: 36 utterances, 6 speakers\n"
    r = CliRunner().invoke(app, ["augment", str(data), str(out), "--noise-dir", str(noise), "--copies", "noise,echo"])
    assert r.exit_code == 1
    assert str(r.exception) == "--copies: unknown copy kind 'echo' (valid: reverb, noise, music, babble)"
