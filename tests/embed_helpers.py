"""A tiny model trained by the real CLI on `trkd fbank` of the quick corpus, and its test set's fbank.

    from embed_helpers import corpus_model
    corpus, exp, test_feats = corpus_model(tmp_path_factory)

Built once per session: the WAVs of `corpus/test` are what `trkd embed` and the WAV-in export are
checked on, `test_feats` (a copy of corpus/test with feats.scp, dither 0) what `trkd extract` reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Tuple

from corpus_helpers import make_quick_corpus
from train_helpers import run_cli, write_config

_BUILT = {}


def corpus_model(tmp_path_factory) -> Tuple[Path, Path, Path]:
    base = tmp_path_factory.getbasetemp()
    if base in _BUILT:
        return _BUILT[base]
    corpus = make_quick_corpus(base, seed=0)
    root = base / "embed_model"
    train, test = root / "train", root / "test"
    for src, dst in ((corpus / "train", train), (corpus / "test", test)):
        shutil.copytree(src, dst)
    for d, dither in ((train, "1.0"), (test, "0")):
        r = run_cli("fbank", d, "--dither", dither)
        assert r.exit_code == 0, r.output + repr(r.exception)
    conf = write_config(root / "tiny.yaml", train={"epochs": 1, "avg_last": 1, "log_interval": 50, "seed": 1})
    exp = root / "exp"
    r = run_cli("train", "--config", conf, "--data", train, "--exp", exp, "--device", "cpu")
    assert r.exit_code == 0, r.output + repr(r.exception)
    _BUILT[base] = (corpus, exp, test)
    return _BUILT[base]
