"""The synthetic corpus: layout and Kaldi dirs, determinism over --nj, open-set trials with hard
impostors, realistic signals, speaker (not channel) structure, and the difficulty knobs."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from corpus_helpers import make_quick_corpus
from trkd.corpus.config import Difficulty, Sizes
from trkd.corpus.voices import population
from trkd.data.kaldi_dir import read_data_dir, read_kv, read_list_table
from trkd.data.validate import validate_data_dir
from trkd.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
TRKD = ROOT / "tools" / "venv" / "bin" / "trkd"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_quick_corpus(tmp_path_factory.getbasetemp(), seed=0)


def _session(corpus):
    return {u: dict(kv.split("=") for kv in v.split()) for u, v in read_kv(corpus / "utt2session").items()}


def _f_ratio(values, groups):
    """One-way ANOVA F: between-group over within-group variance (~1 when groups mean nothing)."""
    values, groups = np.asarray(values, float), np.asarray(groups)
    labels = np.unique(groups)
    means = np.array([values[groups == g].mean() for g in labels])
    ss_b = sum((groups == g).sum() * (m - values.mean()) ** 2 for g, m in zip(labels, means))
    ss_w = sum(((values[groups == g] - m) ** 2).sum() for g, m in zip(labels, means))
    return (ss_b / (len(labels) - 1)) / (ss_w / (len(values) - len(labels)))


def _f0_autocorr(x, fs=16000):
    """Median f0 of the loud, clearly periodic 40 ms frames: peak of the (unbiased, normalised)
    autocorrelation of the band below 1 kHz, searched over 60-400 Hz."""
    frame, hop = 640, 320
    lags = np.arange(fs // 400, fs // 60)
    frames = np.stack([x[s:s + frame] for s in range(0, len(x) - frame, hop)]) * np.hanning(frame)
    power = np.abs(np.fft.rfft(frames, 2 * frame, axis=1)) ** 2 * (np.fft.rfftfreq(2 * frame, 1 / fs) < 1000)
    ac = np.fft.irfft(power, axis=1)
    r = ac[:, lags] / (ac[:, :1] + 1e-12) / (1 - lags / frame)
    keep = (ac[:, 0] > ac[:, 0].max() * 0.1) & (r.max(axis=1) > 0.6)
    return float(np.median(fs / lags[np.argmax(r[keep], axis=1)])) if keep.any() else np.nan


def test_layout_and_kaldi_dirs(corpus):
    meta = yaml.safe_load((corpus / "corpus.yaml").read_text())
    q = Sizes.quick()
    assert meta["seed"] == 0 and meta["sizes"]["train_speakers"] == q.train_speakers
    spk2family = read_kv(corpus / "spk2family")
    for split, n_spk in (("train", q.train_speakers), ("test", q.test_speakers)):
        data = validate_data_dir(corpus / split, check_audio=True, rate=16000)
        again = read_data_dir(corpus / split)
        assert list(read_kv(corpus / split / "utt2spk")) == sorted(again.utt2spk)
        assert read_list_table(corpus / split / "spk2utt") == again.spk2utt
        assert len(data.speakers) == n_spk and all(len(u) == q.utts_per_speaker for u in data.spk2utt.values())
        assert set(data.speakers) <= set(spk2family)
        for utt, path in data.wav_scp.items():
            spk = data.utt2spk[utt]
            assert utt.startswith(spk + "-") and Path(path) == corpus / "wav" / spk / f"{utt}.wav"
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert 2.0 <= info.duration <= 6.0
        durs = read_kv(corpus / split / "utt2dur")
        assert abs(float(durs[utt]) - sf.info(data.wav_scp[utt]).duration) < 1e-3
    types = read_kv(corpus / "noise" / "utt2type")
    assert set(types.values()) == {"noise", "music", "babble"}
    for table in (corpus / "noise" / "wav.scp", corpus / "rir" / "wav.scp"):
        for path in read_kv(table).values():
            x, fs = sf.read(path)
            assert fs == 16000 and x.ndim == 1 and np.abs(x).max() > 0.1


def test_open_set_trials_with_hard_impostors(corpus):
    train, test = read_data_dir(corpus / "train"), read_data_dir(corpus / "test")
    assert not set(train.speakers) & set(test.speakers)
    fam = read_kv(corpus / "spk2family")
    assert not {fam[s] for s in train.speakers} & {fam[s] for s in test.speakers}
    trials = [line.split() for line in (corpus / "test" / "trials").read_text().splitlines()]
    pairs = set()
    for enroll, tst, label in trials:
        assert label == ("target" if test.utt2spk[enroll] == test.utt2spk[tst] else "nontarget")
        assert enroll != tst and frozenset((enroll, tst)) not in pairs
        pairs.add(frozenset((enroll, tst)))
    labels = np.array([t[2] for t in trials])
    assert 0.09 <= np.mean(labels == "target") <= 0.11
    non = [t for t in trials if t[2] == "nontarget"]
    hard = np.mean([fam[test.utt2spk[a]] == fam[test.utt2spk[b]] for a, b, _ in non])
    assert 0.28 <= hard <= 0.5, hard


def _tree_digest(root: Path):
    """Every file's bytes, with the corpus root replaced so two roots compare equal."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes().replace(str(root).encode(), b"ROOT")).hexdigest()
    return out


def test_same_seed_same_bytes_whatever_nj(tmp_path):
    from trkd.corpus.build import synth_corpus

    sizes = dict(train_speakers=3, test_speakers=2, utts_per_speaker=2, quick=True)
    a = _tree_digest(synth_corpus(tmp_path / "a", 7, nj=1, **sizes))
    b = _tree_digest(synth_corpus(tmp_path / "b", 7, nj=2, **sizes))
    assert a == b and len(a) > 20
    c = _tree_digest(synth_corpus(tmp_path / "c", 8, nj=1, **sizes))
    assert c.keys() == a.keys()
    assert all(a[k] != c[k] for k in a if k.endswith(".wav"))


def test_realistic_levels_spectra_and_pauses(corpus):
    data = read_data_dir(corpus / "train")
    sess = _session(corpus)
    rms_db, paused, ltas = [], [], 0.0
    for utt, path in sorted(data.wav_scp.items()):
        x, _ = sf.read(path, dtype="int16")
        assert np.abs(x.astype(int)).max() < 32767 * 0.9  # headroom, never clipped
        y = x / 32768.0
        rms_db.append(20 * np.log10(np.sqrt(np.mean(y * y))))
        frames = y[: len(y) // 320 * 320].reshape(-1, 320)
        e = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
        if float(sess[utt]["snr"]) > 20:  # pauses are only visible above the noise
            paused.append(np.percentile(e, 10) < np.percentile(e, 90) - 15)
        ltas = ltas + np.mean(np.abs(np.fft.rfft(frames * np.hanning(320), axis=1)) ** 2, axis=0)
    assert -28 <= np.median(rms_db) <= -22 and 1.5 <= np.std(rms_db) <= 5
    assert len(paused) > 20 and np.mean(paused) > 0.8
    f = np.fft.rfftfreq(320, 1 / 16000)
    low, high = ltas[(f >= 100) & (f < 1000)].sum(), ltas[f >= 4000].sum()
    assert 10 * np.log10(low / high) > 8  # speech-like: energy falls with frequency


def test_every_utterance_has_speech_even_for_slow_speakers():
    """A speaker at half the usual rate in a 2 s recording still says a word (once, the first
    word did not fit, the utterance was silence alone and its level normalisation wrote zeros)."""
    from trkd.corpus.phones import utterance_segments
    from trkd.corpus.rng import rng_for

    for k in range(200):
        segs = utterance_segments(rng_for(0, "slow", k), 2000.0, 0.45)
        spoken = [s for s in segs if s.name != "sil"]
        assert spoken, k
        assert abs(sum(s.ms for s in segs) - 2000.0) < 1e-6


def test_speaker_not_channel_separates_utterances(corpus):
    """f0 read off the audio clusters by speaker; the channel tilt drawn per session does not."""
    data = read_data_dir(corpus / "train")
    sess = _session(corpus)
    utts = sorted(data.utt2spk)
    spk = [data.utt2spk[u] for u in utts]
    f0 = np.array([_f0_autocorr(sf.read(data.wav_scp[u])[0]) for u in utts])
    ok = np.isfinite(f0)
    assert ok.mean() > 0.9
    assert np.corrcoef(np.log(f0[ok]), np.log([float(sess[u]["f0"]) for u, k in zip(utts, ok) if k]))[0, 1] > 0.9
    f_f0 = _f_ratio(np.log(f0[ok]), np.array(spk)[ok])
    f_channel = _f_ratio([float(sess[u]["tilt"]) for u in utts], spk)
    f_snr = _f_ratio([float(sess[u]["snr"]) for u in utts], spk)
    assert f_f0 > 30, f_f0
    assert f_channel < 2.0 and f_snr < 2.0, (f_channel, f_snr)


def test_families_are_confusable_groups():
    spks = population(0, "train", 400, Difficulty(), "spk")
    feats = np.array([[np.log(s.voice.f0_hz), np.log(s.voice.vtl), s.voice.tilt_db / 3, s.voice.oq] for s in spks])
    feats = (feats - feats.mean(0)) / feats.std(0)
    fam = np.array([s.family for s in spks])
    d = np.linalg.norm(feats[:, None] - feats[None], axis=-1)
    same = (fam[:, None] == fam[None]) & ~np.eye(len(spks), dtype=bool)
    assert same.sum() > 100
    assert d[same].mean() < 0.5 * d[~same & ~np.eye(len(spks), dtype=bool)].mean()
    sizes = np.unique(fam, return_counts=True)[1]
    assert sizes.min() == 1 and sizes.max() >= 5  # long-tailed: singletons and big families


def test_difficulty_knobs_from_yaml_reach_the_corpus(tmp_path):
    conf = tmp_path / "hard.yaml"
    conf.write_text("snr_db: [7, 7]\nreverb_prob: 1.0\n")
    out = tmp_path / "c"
    r = subprocess.run([str(TRKD), "synth-corpus", str(out), "--seed", "3", "--quick", "--train-speakers", "2",
                        "--test-speakers", "2", "--utts-per-speaker", "2", "--difficulty", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sess = _session(out)
    assert len(sess) == 8 and all(s["snr"] == "7.0" and s["reverb"] == "1" for s in sess.values())
    assert yaml.safe_load((out / "corpus.yaml").read_text())["difficulty"]["reverb_prob"] == 1.0


def test_unknown_difficulty_key_is_one_line_error(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("snr_db: [5, 30]\nfamily_spred: 0.2\n")
    r = subprocess.run([str(TRKD), "synth-corpus", str(tmp_path / "c"), "--seed", "0", "--quick",
                        "--difficulty", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"trkd: error: {conf}: unknown difficulty key 'family_spred'")
    with pytest.raises(InputError, match="needs two values"):
        Difficulty.from_dict({"snr_db": [5]})


def test_voices_from_the_tail_of_a_large_corpus_are_finite_audio():
    """At egs/mini's difficulty, 3 of 5 000 speakers draw a frication shift 1 + fric <= 0; their
    fricatives once rendered as NaN, which int16 turned into arbitrary samples without a word."""
    from trkd.corpus.utterance import make_utterance

    diff = Difficulty.from_yaml(Path(__file__).parents[1] / "egs/mini/conf/corpus.yaml")
    worst = min(population(0, "train", 5000, diff, "spk"), key=lambda s: s.voice.fric)
    assert worst.voice.fric < -1.0
    audio, _ = make_utterance(0, worst, "utt-tail", diff, n_noise=4, noise_seconds=2.0)
    assert audio.dtype == np.int16 and np.abs(audio.astype(np.int32)).max() > 1000
