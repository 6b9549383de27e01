"""Small real corpora for the data-side tests: WAV files written with soundfile and Kaldi data dirs."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import soundfile as sf

RATE = 16000


def voice(seed: int, seconds: float, f0: float, rate: int = RATE) -> np.ndarray:
    """A harmonic tone with vibrato plus a little noise: enough structure for fbank and SNR checks."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 3 * t))) / rate
    x = sum(np.sin(h * phase) / h for h in range(1, 8))
    x = 0.25 * x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def write_wav(path: Path, x: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype="PCM_16")
    return path


def make_data_dir(root: Path, n_spk: int = 3, n_utt: int = 3, seed: int = 0) -> Path:
    """`root/data` with `n_spk` speakers × `n_utt` utterances of 1–3 s under `root/wav`."""
    rng = np.random.default_rng(seed)
    d = root / "data"
    d.mkdir(parents=True)
    wav, u2s = {}, {}
    for s in range(n_spk):
        spk = f"spk{s + 1}"
        for u in range(n_utt):
            utt = f"{spk}-utt{u + 1}"
            x = voice(seed * 1000 + s * 10 + u, float(rng.uniform(1.0, 3.0)), 110.0 + 40 * s)
            wav[utt] = write_wav(root / "wav" / f"{utt}.wav", x)
            u2s[utt] = spk
    write_table(d / "wav.scp", wav)
    write_table(d / "utt2spk", u2s)
    spk2utt: Dict[str, list] = {}
    for utt in sorted(u2s):
        spk2utt.setdefault(u2s[utt], []).append(utt)
    write_table(d / "spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})
    return d


def write_table(path: Path, table: Dict[str, object]) -> None:
    path.write_text("".join(f"{k} {table[k]}\n" for k in sorted(table)))


def make_noise_dirs(root: Path, seed: int = 1):
    """A MUSAN-like noise list (noise, music, speech for babble) and an RIR list, Kaldi-style."""
    rng = np.random.default_rng(seed)
    noise = root / "noise"
    noise.mkdir(parents=True)
    wav, types = {}, {}
    for i in range(2):
        wav[f"noise{i}"] = write_wav(root / "noise_wav" / f"noise{i}.wav", (0.1 * rng.standard_normal(int(RATE * (0.7 + i)))).astype(np.float32))
        types[f"noise{i}"] = "noise"
        wav[f"music{i}"] = write_wav(root / "noise_wav" / f"music{i}.wav", voice(50 + i, 4.0, 440.0 * (i + 1)))
        types[f"music{i}"] = "music"
    for i in range(4):
        wav[f"speech{i}"] = write_wav(root / "noise_wav" / f"speech{i}.wav", voice(60 + i, 2.5, 150.0 + 20 * i))
        types[f"speech{i}"] = "speech"
    write_table(noise / "wav.scp", wav)
    write_table(noise / "utt2type", types)
    rirs = root / "rirs"
    rirs.mkdir()
    rwav = {}
    for i in range(2):
        n = int(0.3 * RATE)
        h = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.05 * RATE)) * 0.1
        h[: 40 + 20 * i] = 0.0
        h[40 + 20 * i] = 0.9  # the direct path, after a propagation delay
        rwav[f"rir{i}"] = write_wav(root / "rir_wav" / f"rir{i}.wav", h.astype(np.float32))
    write_table(rirs / "wav.scp", rwav)
    return noise, rirs
