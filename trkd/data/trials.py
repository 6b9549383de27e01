"""Verification trial lists, in Kaldi form or in the official VoxCeleb form.

Kaldi: `enroll test target|nontarget`. VoxCeleb (`veri_test2.txt`, `list_test_all2.txt`, …):
`1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav`, label 1/0 first. Ids are kept
as written: scoring matches them to embedding keys as written or through `voxceleb_utt_id`, and
errors name them as the user wrote them. Data prep turns them into Kaldi ids with `kaldi_form`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np

from trkd.data.kaldi_dir import iter_table
from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.atomic import write_lines_atomic


KALDI_LABELS = {"target": 1, "nontarget": 0}
VOXCELEB_LABELS = {"1": 1, "0": 0}


def voxceleb_utt_id(path: str) -> str:
    """The utterance id that data prep gives a VoxCeleb file: its relative path without `.wav`, `/` → `-`.

    `id10270/x6uYqmx31kE/00001.wav` → `id10270-x6uYqmx31kE-00001`. Speaker id first, so that
    Kaldi's sort order groups a speaker's utterances (as `utt2spk` requires).
    """
    if path.endswith(".wav"):
        path = path[: -len(".wav")]
    return path.replace("/", "-")


@dataclass
class Trials:
    """A trial list: parallel enrollment keys, test keys and labels (1 target, 0 nontarget)."""

    enroll: List[str]
    test: List[str]
    labels: np.ndarray  # int8, one per trial

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> "Trials":
        """The trials where the boolean mask `keep` is true, in order."""
        idx = np.flatnonzero(keep)
        return Trials([self.enroll[i] for i in idx], [self.test[i] for i in idx], self.labels[idx])

    def kaldi_form(self) -> "Trials":
        """The same trials with data prep's utterance ids (`voxceleb_utt_id` of each)."""
        return Trials([voxceleb_utt_id(e) for e in self.enroll], [voxceleb_utt_id(t) for t in self.test], self.labels)


def read_trials(path: PathLike) -> Trials:
    """Read a trial list; the form (Kaldi or VoxCeleb) is decided by its first line."""
    enroll: List[str] = []
    test: List[str] = []
    labels: List[int] = []
    form = None
    for n, fields in iter_table(path, min_fields=3, max_fields=None):
        if len(fields) != 3:
            raise InputError(path, f"expected 3 fields, got {len(fields)}: {' '.join(fields)!r}", n)
        if form is None:
            if fields[2] in KALDI_LABELS:
                form = "kaldi"
            elif fields[0] in VOXCELEB_LABELS:
                form = "voxceleb"
            else:
                raise InputError(
                    path,
                    f"unknown label in {' '.join(fields)!r}: expected 'enroll test target|nontarget' "
                    "(Kaldi) or '1|0 enroll.wav test.wav' (VoxCeleb)",
                    n,
                )
        if form == "kaldi":
            label = KALDI_LABELS.get(fields[2])
            if label is None:
                raise InputError(path, f"unknown label {fields[2]!r}: expected target or nontarget", n)
            enroll.append(fields[0])
            test.append(fields[1])
        else:
            label = VOXCELEB_LABELS.get(fields[0])
            if label is None:
                raise InputError(path, f"unknown label {fields[0]!r}: expected 1 or 0 (VoxCeleb form)", n)
            enroll.append(fields[1])
            test.append(fields[2])
        labels.append(label)
    if not labels:
        raise InputError(path, "no trials")
    return Trials(enroll, test, np.asarray(labels, dtype=np.int8))


def write_trials(path: PathLike, trials: Trials) -> None:
    """Write a trial list in Kaldi form, in the given order."""
    names = ("nontarget", "target")
    write_lines_atomic(path, (f"{e} {t} {names[l]}" for e, t, l in zip(trials.enroll, trials.test, trials.labels)))


def trials_name(path: PathLike) -> str:
    """The name a trial list's outputs carry: its file name without a `.txt`/`.lst` suffix."""
    path = Path(path)
    return path.stem if path.suffix in (".txt", ".lst") else path.name
