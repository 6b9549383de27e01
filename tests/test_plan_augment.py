"""`trkd plan`'s stage 2 against what `trkd augment` writes: WAVs with --write-wavs, else only
wav.scp entries, and the compute of making the copies again."""

from __future__ import annotations

import math

import pytest
from torchaudio.functional.functional import _get_sinc_resample_kernel

from data_helpers import make_data_dir, make_noise_dirs
from trkd.data.augment import AugmentConfig, augment_data_dir
from trkd.data.kaldi_dir import read_kv
from trkd.features import FbankOptions
from trkd.plan import Corpus, Plan
from trkd.plan.augment import copy_macs, resample_macs_per_sample
from trkd.plan.stages import data_rows


@pytest.mark.parametrize("orig", [14400, 17600, 12800])
def test_resample_cost_is_torchaudios_kernel_length(orig):
    g = math.gcd(orig, 16000)
    kernel, width = _get_sinc_resample_kernel(orig, 16000, g)
    assert resample_macs_per_sample(orig, 16000) == kernel.shape[-1] == 2 * width + orig // g


def _stage2(clean, write_wavs: bool, cfg: AugmentConfig) -> dict:
    plan = Plan()
    data_rows(plan, Corpus.from_data_dir(clean), None, cfg, True, FbankOptions(), None, write_wavs)
    return {r.what: r for r in plan.rows if r.stage == "2" and r.what.startswith("augment")}


def test_stage_two_against_what_augment_writes(tmp_path, monkeypatch):
    clean = make_data_dir(tmp_path / "src", n_spk=2, n_utt=2)
    noise, rirs = make_noise_dirs(tmp_path / "src")
    cfg = AugmentConfig(speed_factors=[0.9, 1.1])  # every kind of copy, probability 1: no expectation
    monkeypatch.chdir(tmp_path)  # the plan counts entries naming CWD/data/train_aug
    out = tmp_path / "data" / "train_aug"
    augment_data_dir(clean, out, rirs, noise, speed_perturb=True, cfg=cfg)
    entries = [f"{k} {v}\n" for k, v in read_kv(out / "wav.scp").items() if v.endswith("|")]
    (row,) = _stage2(clean, False, cfg).values()
    assert row.items == len(entries) == 4 * (2 + 3 * 4)
    assert row.bytes == pytest.approx(sum(len(e) for e in entries), rel=0.10)
    assert row.macs == pytest.approx(copy_macs(cfg, True, Corpus.from_data_dir(clean).durations))
    assert row.macs > copy_macs(AugmentConfig(copies=["noise"], speed_factors=[0.9, 1.1]), True,
                                Corpus.from_data_dir(clean).durations) > 0
    augment_data_dir(clean, out, rirs, noise, speed_perturb=True, cfg=cfg, write_wavs=True)
    rows = _stage2(clean, True, cfg)
    assert sorted(rows) == ["augment: augmented copies (WAV)", "augment: speed copies (WAV)"]
    wavs = list((out / "wav").glob("*.wav"))
    assert sum(r.items for r in rows.values()) == len(wavs) == len(entries)
    assert sum(r.bytes for r in rows.values()) == pytest.approx(sum(p.stat().st_size for p in wavs), rel=0.01)
