"""Noise and RIR lists for augmentation, Kaldi-style: `DIR/wav.scp` (`id path`), `DIR/utt2type` for noises.

Items are checked (readable, rate, mono) when the list is opened and read on demand, since a
MUSAN-sized set does not fit in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

from trkd.data.audio import audio_info, read_samples
from trkd.data.kaldi_dir import PathLike, iter_table, read_kv
from trkd.errors import InputError

# utt2type values → the pool they feed; MUSAN's speech is what Kaldi sums into babble.
TYPES: Dict[str, str] = {"noise": "noise", "music": "music", "babble": "babble", "speech": "babble"}


class NoiseBank:
    """The items of one list, grouped into pools by type (one pool, "all", for an untyped list)."""

    def __init__(self, d: PathLike, rate: int, typed: bool, need: Sequence[str] = ()):
        self.dir = Path(d)
        self.scp = self.dir / "wav.scp"
        self.paths = read_kv(self.scp)
        self.frames = {k: audio_info(p, self.scp, k, rate).frames for k, p in self.paths.items()}
        self.pools: Dict[str, List[str]] = {}
        if not typed:
            self.pools["all"] = sorted(self.paths)
        else:
            u2t = self.dir / "utt2type"
            typed_ids = set()
            for n, (key, kind) in iter_table(u2t):
                if kind not in TYPES:
                    raise InputError(u2t, f"unknown type {kind!r} (valid: {', '.join(TYPES)})", n)
                if key not in self.paths:
                    raise InputError(u2t, f"{key!r} is not in {self.scp}", n)
                self.pools.setdefault(TYPES[kind], []).append(key)
                typed_ids.add(key)
            for key in self.paths:
                if key not in typed_ids:
                    raise InputError(u2t, f"{key!r} of wav.scp has no type")
            for pool in self.pools.values():
                pool.sort()
        for kind in need:
            if not self.pools.get(kind):
                valid = [t for t, p in TYPES.items() if p == kind]
                raise InputError(self.dir / "utt2type", f"no items of type {' or '.join(valid)}, needed for {kind} copies")

    def draw(self, rng: np.random.Generator, length: int, kind: str = "all", whole: bool = False) -> torch.Tensor:
        """A random item of the pool: whole, or a random `length`-sample stretch (looped if shorter)."""
        pool = self.pools[kind]
        key = pool[int(rng.integers(len(pool)))]
        frames = self.frames[key]
        if whole:
            x = read_samples(self.paths[key], self.scp, key, 0, frames)
        elif frames >= length:
            start = int(rng.integers(frames - length + 1))
            x = read_samples(self.paths[key], self.scp, key, start, start + length)
        else:
            x = np.resize(read_samples(self.paths[key], self.scp, key, 0, frames), length)
        return torch.from_numpy(x)
