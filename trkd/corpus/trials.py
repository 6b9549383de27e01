"""Open-set verification trials: every same-speaker pair as a target (~10 % of trials), and
non-targets that mix same-family impostors (hard) with random impostors (mostly easy)."""

from __future__ import annotations

from itertools import combinations
from typing import Dict, List, Tuple

import numpy as np

Trial = Tuple[str, str, str]


def make_trials(spk2utt: Dict[str, List[str]], spk2family: Dict[str, str], rng: np.random.Generator,
                target_fraction: float = 0.1, hard_fraction: float = 0.4) -> List[Trial]:
    """`(enroll, test, target|nontarget)` over utterance ids, sorted; no pair appears twice.

    Hard impostors are capped by the number of same-family pairs; the rest are random pairs of
    different speakers.
    """
    spks = sorted(spk2utt)
    targets = [(a, b) for s in spks for a, b in combinations(sorted(spk2utt[s]), 2)]
    n_non = int(round(len(targets) * (1 - target_fraction) / target_fraction))
    utts = [u for s in spks for u in sorted(spk2utt[s])]
    owner = np.array([i for i, s in enumerate(spks) for _ in spk2utt[s]])
    n_cross = (len(utts) ** 2 - int(np.sum(np.bincount(owner) ** 2))) // 2
    n_non = min(n_non, n_cross)  # only a toy corpus runs out of distinct pairs
    fam = {s: spk2family[s] for s in spks}
    hard_pool = [(a, b) for i, s in enumerate(spks) for t in spks[i + 1:] if fam[s] == fam[t]
                 for a in spk2utt[s] for b in spk2utt[t]]
    n_hard = min(int(round(hard_fraction * n_non)), len(hard_pool))
    chosen = set()
    for k in rng.choice(len(hard_pool), n_hard, replace=False):
        a, b = hard_pool[k]
        chosen.add((a, b) if rng.random() < 0.5 else (b, a))
    while len(chosen) < n_non:
        i = rng.integers(len(utts), size=2 * (n_non - len(chosen)))
        j = rng.integers(len(utts), size=len(i))
        for a, b in zip(i, j):
            if owner[a] != owner[b] and len(chosen) < n_non:
                pair = (utts[a], utts[b])
                if pair not in chosen and pair[::-1] not in chosen:
                    chosen.add(pair)
    trials = [(a, b, "target") for a, b in targets] + [(a, b, "nontarget") for a, b in chosen]
    return sorted(trials)
