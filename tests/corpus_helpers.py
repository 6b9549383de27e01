"""A small synthetic corpus for any test that needs real WAVs and Kaldi dirs, built once per session.

    from corpus_helpers import make_quick_corpus
    corpus = make_quick_corpus(tmp_path_factory.getbasetemp(), seed=0)   # corpus/train, corpus/test, ...

Sizes default to `--quick` (40 train / 10 test speakers, 6 utterances); pass `train_speakers`,
`test_speakers`, `utts_per_speaker` or `difficulty` to change them (each variant is cached).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

from trkd.corpus.build import synth_corpus

_BUILT: Dict[Tuple, Path] = {}


def make_quick_corpus(tmp_dir, seed: int = 0, **sizes) -> Path:
    """Build (or reuse from this session) a quick corpus under `tmp_dir`; returns its root."""
    key = (str(tmp_dir), seed, tuple(sorted((k, repr(v)) for k, v in sizes.items())))
    if key in _BUILT and (_BUILT[key] / "corpus.yaml").is_file():
        return _BUILT[key]
    name = f"corpus-s{seed}" + "".join(f"-{k}{v}" for k, v in sorted(sizes.items()) if k != "difficulty")
    if "difficulty" in sizes:
        name += f"-d{len(_BUILT)}"
    out = synth_corpus(Path(tmp_dir) / name, seed, quick=True, **sizes)
    _BUILT[key] = out
    return out
