"""`trkd plan`: items, bytes, steps per epoch and compute of every recipe stage, before it runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence

from trkd.errors import InputError
from trkd.plan.sizes import Corpus, Plan, render
from trkd.plan.stages import Network, data_rows, dump_row, extract_row, training_row
from trkd.utils.compressed import check_method


def dump_tables(methods: Sequence[str]) -> list:
    """The tables of the teacher dump that the methods read (the registry says which)."""
    from trkd.distill.methods import needed

    return list(needed(methods))


def make_plan(train: Corpus, test: Optional[Corpus], teacher_config, student_config=None,
              methods: Sequence[str] = ("none", "kd", "dkd", "enskd", "trkd"), aug_config=None,
              speed_perturb: bool = False, fbank_config=None, compression: Optional[int] = None,
              topk: int = 0, temperatures: Sequence[float] = (1.0, 4.0), quick: bool = False,
              write_wavs: bool = False, teacher_from: Optional[str] = None) -> Plan:
    """The plan of a whole recipe run: stages 1-6 from the source corpus and the configs; `write_wavs`:
    the augmented copies are WAVs (`trkd augment --write-wavs`), else entries made again by fbank;
    `teacher_from` (wespeaker): the teacher is that toolkit's model folder `teacher_config`,
    imported instead of trained."""
    from trkd.config import QUICK, load_config
    from trkd.data.augment import AugmentConfig
    from trkd.data.options import load_options
    from trkd.distill.kd_config import load_distill_config
    from trkd.features import FbankOptions

    check_method(compression, "--compress")
    if topk < 0:
        raise InputError(None, f"--topk {topk}: give 0 (full rows) or K > 0")
    aug = load_options(AugmentConfig, aug_config) if aug_config else AugmentConfig(copies=[], prob=0.0)
    fbank = load_options(FbankOptions, fbank_config) if fbank_config else FbankOptions()
    plan = Plan()
    f, w = data_rows(plan, train, test, aug, speed_perturb, fbank, compression, write_wavs)
    speeds = 1 + (len(aug.speed_factors) if speed_perturb else 0)
    num_classes = train.speakers * speeds
    topk = min(topk, num_classes - 1)  # as `trkd dump-logits` keeps every non-target of a small corpus
    overrides = dict(QUICK) if quick else {}
    sources = len(train.durations)
    stored = float(w.sum())
    if teacher_from is None:
        teacher = Network.from_config(Path(teacher_config).stem, load_config(teacher_config, overrides), num_classes)
        training_row(plan, "3", f"teacher {teacher.name} ({num_classes} classes)", teacher, sources, stored,
                     train.hours, compression=compression)
    else:  # `teacher_config` is the downloaded model folder
        from trkd.plan.imported import imported_teacher

        teacher = imported_teacher(plan, teacher_config, num_classes, sources, stored, train.hours)
    tables = dump_tables(methods)
    if tables:
        dump_row(plan, teacher, f, w, num_classes, topk, temperatures, tables, train.key_len, train.hours)
    nets = [teacher]
    if student_config is not None:
        student = Network.from_config(Path(student_config).stem, load_distill_config(student_config, overrides),
                                      num_classes)
        for m in methods:
            training_row(plan, "5", f"student {student.name}, {m}", student, sources, stored, train.hours,
                         compression=compression)
            nets.append(dataclasses.replace(student, name=f"{student.name}_{m}"))
    if test is not None:
        for net in nets:
            extract_row(plan, net, test)
    return plan


__all__ = ["Corpus", "Plan", "make_plan", "render", "dump_tables"]
