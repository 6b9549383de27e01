"""A WeSpeaker model folder imported as a trkd teacher: read, checked key by key, written whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from trkd.errors import InputError
from trkd.layout import AVG_NAME
from trkd.teachers.folder import write_model_dir
from trkd.teachers.keymap import convert, load_state_dict_file
from trkd.teachers.wespeaker import PROJECTION, WeSpeakerModel, class_names, read_config

SOURCES = ("wespeaker",)


@dataclass
class Imported:
    out: Path
    model: str              # the source's architecture name
    params: int
    num_classes: Optional[int]   # of the imported classifier; None: none imported
    named: bool                  # its classes have names (spk2id written)
    why_no_logits: Optional[str]  # why logit methods cannot use it, None where they can


def trkd_config(src: WeSpeakerModel, num_classes: Optional[int], command: str):
    """The resolved trkd config of an imported network: its model block, its AAM head's settings
    (WeSpeaker's margin fallback), the chunk length and epochs it was trained with."""
    from trkd.config import Config

    cfg = Config(model=dict(src.block), command=command)
    cfg.head.scale, cfg.head.margin, cfg.head.margin_fallback = src.scale, src.margin, "wespeaker"
    cfg.head.num_classes = num_classes
    cfg.data.num_frms, cfg.train.epochs = src.num_frms, src.epochs
    return cfg


def import_wespeaker(source_dir, out, spk2id_file=None, checkpoint: str = AVG_NAME,
                     command: str = "") -> Imported:
    """Import WeSpeaker's SOURCE_DIR (config.yaml + CHECKPOINT) into the trkd model dir OUT."""
    import torch

    from trkd.models import build_model

    source_dir, out = Path(source_dir), Path(out)
    if not source_dir.is_dir():
        raise InputError(source_dir, "no such WeSpeaker model folder")
    src = read_config(source_dir / "config.yaml")
    ckpt_path = Path(checkpoint) if Path(checkpoint).is_absolute() else source_dir / checkpoint
    theirs = load_state_dict_file(ckpt_path)
    if src.name.startswith("ECAPA") and isinstance(theirs.get("conv.weight"), torch.Tensor):
        # WeSpeaker before July 2022 aggregated into 3·C channels, later releases into 1536
        width = theirs["conv.weight"].shape[0]
        if width == 3 * src.block["channels"]:
            src.block["mfa_channels"] = width
    model = build_model(dict(src.block))
    what = f"a {src.name} of {source_dir / 'config.yaml'}"
    state = convert(theirs, model.state_dict(), src.keymap, ckpt_path, what, optional=(PROJECTION,))
    model.load_state_dict(state)
    head, why = _classifier(src, theirs.get(PROJECTION), ckpt_path, model.embed_dim)
    num_classes = None if head is None else head.shape[0]
    spk2id = None
    if head is not None and spk2id_file is not None:
        spk2id = class_names(Path(spk2id_file), num_classes)
    elif head is not None:
        why = (f"its {num_classes} classes are unnamed: import again with --spk2id (WeSpeaker's speaker "
               f"list, in the sorted order it numbers them)")
    elif spk2id_file is not None:
        raise InputError(spk2id_file, f"--spk2id names classes, but {why}")
    record = {"from": "wespeaker", "source": str(source_dir.resolve()), "checkpoint": str(ckpt_path.resolve()),
              "model": src.name, "classes": num_classes, "class_names": spk2id is not None,
              "speed_perturb": src.speed_perturb, "no_logits": why if spk2id is None else None}
    cfg = trkd_config(src, num_classes, command)
    write_model_dir(out, cfg, state, head, spk2id, src.fbank, record)
    return Imported(out, src.name, sum(p.numel() for p in model.parameters()), num_classes,
                    spk2id is not None, None if spk2id is not None else why)


def _classifier(src: WeSpeakerModel, weight, ckpt_path: Path, embed_dim: int):
    """(the AAM weight to import or None, why there is none)."""
    if weight is None:
        return None, f"{ckpt_path} holds no classifier ({PROJECTION!r})"
    if not src.aam:
        return None, "its projection is not an AAM (arc_margin) classifier without easy margin"
    if weight.dim() != 2 or weight.shape[1] != embed_dim or not weight.is_floating_point():
        raise InputError(ckpt_path, f"key {PROJECTION!r} has shape {list(weight.shape)}, an AAM classifier of "
                         f"{embed_dim}-dim embeddings has [num_classes, {embed_dim}]")
    if src.num_classes is not None and weight.shape[0] != src.num_classes:
        raise InputError(ckpt_path, f"key {PROJECTION!r} has {weight.shape[0]} classes, config.yaml's "
                         f"projection_args.num_class says {src.num_classes}")
    return weight.float(), None


def summary(result: Imported) -> str:
    """The lines `trkd import-teacher` prints."""
    lines = [f"imported {result.model} ({result.params / 1e6:.2f} M parameters) into {result.out}"]
    if result.named:
        lines.append(f"classifier: {result.num_classes} named classes (spk2id): every method can distil it")
    else:
        lines.append(f"no usable classifier: {result.why_no_logits}; embedding-level methods (emb, mlkd) only")
    return "\n".join(lines)
