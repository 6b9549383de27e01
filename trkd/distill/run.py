"""`trkd distill`: a student trained by the shared trainer with a distillation objective."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from trkd import checkpoint as ckpt
from trkd.errors import InputError

# `--quick` also squeezes the KD warm-up and τ's curriculum into its two epochs.
QUICK_KD = {"kd.warmup_epochs": 1, "kd.trkd.start_epoch": 1, "kd.trkd.stop_epoch": 2}


def resolve(config, method: str, overrides: Dict[str, Any]):
    """The student's DistillConfig (its `kd` block typed and checked), and the parsed method names."""
    from trkd.distill.kd_config import load_distill_config
    from trkd.distill.methods import method_name, parse_method

    methods = parse_method(method)
    cfg = load_distill_config(config, overrides)
    cfg.kd.method = method_name(methods)
    return cfg, methods


def distill(teacher_dir, config, method: str, data_dir, exp, online: bool = False, resume: bool = False,
            device: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None,
            checkpoint: str = ckpt.AVG_NAME, dump_dir=None, command: Optional[str] = None) -> Path:
    """Train the student of CONFIG on DATA into EXP, distilled from TEACHER by METHOD.

    Teacher outputs come from the dump (TEACHER/logits by default) when there is one, else from
    the teacher run online on the student's batch; the student's classes are the teacher's.
    Returns the averaged model's path.
    """
    from trkd.data.chunks import SpecAugment
    from trkd.model_fbank import check_data_fbank
    from trkd.distill.datasets import GridDataset
    from trkd.distill.dump import Dump, find_dump, read_meta
    from trkd.distill.dump_teacher import check_dump_teacher
    from trkd.distill.methods import METHODS, Context, build
    from trkd.distill.objective import DistillObjective
    from trkd.distill.teacher import DumpedTeacher, OnlineTeacher, load_teacher
    from trkd.models import build_model
    from trkd.trainer import train

    teacher_dir, exp = Path(teacher_dir), Path(exp)
    cfg, methods = resolve(config, method, overrides or {})
    kd = cfg.kd
    cfg.command = command
    if not resume and ckpt.saved_epochs(exp):
        raise InputError(ckpt.model_dir(exp), "already holds checkpoints: pass --resume or use a new --exp")
    check_data_fbank(teacher_dir, data_dir)
    spk2id_path, spk2id = _classes(teacher_dir, data_dir, method, methods)
    dump_dir = Path(dump_dir) if dump_dir is not None else teacher_dir / "logits"
    needs_online = any(METHODS[m].online_only for m in methods)
    use_dump = bool(methods) and not online and not needs_online and find_dump(dump_dir)
    teacher = None if not methods or use_dump else load_teacher(teacher_dir, checkpoint)
    aug = SpecAugment.from_config(cfg.data)
    meta = read_meta(dump_dir) if use_dump else None
    if meta is not None:  # before anything is written: a dump of another teacher is one line
        temps = [float(getattr(kd, m).temperature) for m in methods
                 if "logits" in METHODS[m].needs and hasattr(getattr(kd, m), "temperature")]
        check_dump_teacher(dump_dir, meta, teacher_dir, checkpoint, spk2id, temps)
    level_dims = meta["level_dims"] if meta else (teacher.model.level_dims if teacher else [])
    dataset = GridDataset(data_dir, cfg.data.num_frms, cfg.train.seed, spk2id, spk2id_path, aug,
                          aug_prob=cfg.data.aug_prob)
    if teacher is not None and teacher.model.feat_dim != dataset.feat_dim:
        raise InputError(dataset.scp_path, f"features have {dataset.feat_dim} dims, the teacher expects "
                         f"{teacher.model.feat_dim}")
    student_dim = build_model(dict(cfg.model, feat_dim=dataset.feat_dim)).embed_dim
    torch.manual_seed(cfg.train.seed)  # learned heads start the same in every run of this config
    try:
        built = build(methods, Context(kd, student_dim, level_dims, teacher))
    except ValueError as err:
        raise InputError(config, str(err)) from None
    needs = sorted({n for m in built for n in m.needs})
    if use_dump and needs:
        if meta["num_frms"] != cfg.data.num_frms:
            raise InputError(config, f"data.num_frms {cfg.data.num_frms} differs from the dump's chunks "
                             f"({meta['num_frms']} frames, {dump_dir / 'meta.yaml'})")
        dataset.teacher = Dump(dump_dir, needs, kd.logits)
        dataset.teacher.check_grid(dataset.chunk_ids())
    if use_dump:
        source = DumpedTeacher(level_dims, dataset.teacher.sparse if dataset.teacher else None)
    else:
        source = OnlineTeacher(teacher, kd.logits) if teacher else None
    kd.teacher, kd.online = str(teacher_dir.resolve()), teacher is not None
    objective = DistillObjective(built, source, kd.warmup_epochs)
    return train(cfg, data_dir, exp, dataset=dataset, objective=objective, resume=resume, device=device)


def _classes(teacher_dir: Path, data_dir, method: str, methods):
    """(the class map's file, the student's class map): the teacher's, or, for a teacher without a
    named classifier (an imported one), the data's own speakers, which only embedding-level
    methods accept."""
    from trkd.data.chunks import make_spk2id, read_spk2id
    from trkd.data.kaldi_dir import read_kv
    from trkd.distill.methods import METHODS
    from trkd.distill.teacher import missing_classifier

    why = missing_classifier(teacher_dir)
    if why is None:
        return teacher_dir / "spk2id", read_spk2id(teacher_dir / "spk2id")
    logit = [m for m in methods if METHODS[m].level == "logit"]
    if logit:
        raise InputError(teacher_dir, f"--method {method}: {logit[0]} distils the teacher's logits, and {why}; "
                         f"emb and mlkd (embedding level) need no classifier")
    utt2spk = Path(data_dir) / "utt2spk"
    return utt2spk, make_spk2id(read_kv(utt2spk).values())
