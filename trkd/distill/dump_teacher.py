"""A dump knows its teacher: what `trkd dump-logits` records of it, and `trkd distill`'s check.

The dump's `meta.yaml` records the sha256 of the teacher's checkpoint file, its class count, the
sha256 of its class map (`spk2id`), and K and the temperatures of a top-K dump. `trkd distill`
compares them with the teacher it is given (`--teacher`, `--checkpoint`) and with the student's
methods before the exp folder exists, so a dump of another teacher, of another class map, or
without the temperature a method needs is one line, not a student trained on the wrong teacher.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Dict, Sequence

from trkd import checkpoint as ckpt
from trkd.errors import InputError

log = logging.getLogger(__name__)
CHECKED = ("teacher_sha256", "spk2id_sha256")


def checkpoint_file(model_dir, checkpoint: str) -> Path:
    """MODEL/models/CHECKPOINT, or CHECKPOINT when it is an absolute path (as `load_model_dir`)."""
    return Path(checkpoint) if Path(checkpoint).is_absolute() else ckpt.model_dir(model_dir) / checkpoint


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from None
    return h.hexdigest()


def spk2id_sha256(spk2id: Dict[str, int]) -> str:
    """The hash of a class map as `write_spk2id` writes it (one `speaker index` line per class)."""
    text = "".join(f"{s} {i}\n" for s, i in sorted(spk2id.items(), key=lambda kv: kv[1]))
    return hashlib.sha256(text.encode()).hexdigest()


def teacher_fields(model_dir, checkpoint: str, spk2id: Dict[str, int]) -> Dict[str, str]:
    """What a dump records of its teacher, beside num_classes, topk and temperatures."""
    return {"teacher_sha256": file_sha256(checkpoint_file(model_dir, checkpoint)),
            "spk2id_sha256": spk2id_sha256(spk2id)}


def check_dump_teacher(dump_dir: Path, meta: Dict, teacher_dir: Path, checkpoint: str, spk2id: Dict[str, int],
                       temperatures: Sequence[float]) -> None:
    """Refuse a dump that is not of this teacher, or that the student cannot use (see the module doc).

    `temperatures` are those of the student's logit methods, which a top-K dump must hold. The
    student's class count is the teacher's (`spk2id`), which the trainer checks against its config.
    """
    where = dump_dir / "meta.yaml"
    classes = meta.get("num_classes")
    if classes != len(spk2id):
        raise InputError(where, f"the dump has {classes} classes, the teacher {len(spk2id)} "
                                f"({teacher_dir / 'spk2id'}): dump this teacher again")
    _check_topk(where, meta, temperatures)
    if any(name not in meta for name in CHECKED):
        # A dump written before these fields: accepted, since a VoxCeleb dump costs GPU-hours and
        # what can be checked still is (the class map it wrote beside it, below); only the weights
        # cannot be, which the warning says.
        log.warning("%s records no teacher checkpoint hash (an older trkd wrote it): it cannot be checked "
                    "against %s; run `trkd dump-logits` again to record it", where, teacher_dir)
        dumped = dump_dir / "spk2id"
        if dumped.is_file():
            from trkd.data.chunks import read_spk2id

            if read_spk2id(dumped) != spk2id:
                raise InputError(dumped, f"is not the class map of the teacher ({teacher_dir / 'spk2id'}): "
                                         "the dump is of another teacher; dump this teacher again")
        return
    if meta["spk2id_sha256"] != spk2id_sha256(spk2id):
        raise InputError(where, f"the dump was made with another class map than {teacher_dir / 'spk2id'} "
                                "(spk2id_sha256 differs): the dump is of another teacher; dump this teacher again")
    path = checkpoint_file(teacher_dir, checkpoint)
    if not path.is_file():
        raise InputError(path, f"no such checkpoint: the dump in {dump_dir} was made from "
                               f"{meta.get('checkpoint')}; pass --checkpoint {meta.get('checkpoint')}")
    if meta["teacher_sha256"] != file_sha256(path):
        raise InputError(where, f"the dump was made from another teacher checkpoint than {path} "
                                f"(teacher_sha256 differs; dumped from {meta.get('teacher')}/models/"
                                f"{meta.get('checkpoint')}): dump this teacher again, or pass the --checkpoint "
                                "it was dumped from")


def _check_topk(where: Path, meta: Dict, temperatures: Sequence[float]) -> None:
    topk, classes = meta.get("topk") or 0, meta["num_classes"]
    if not isinstance(topk, int) or isinstance(topk, bool) or not 0 <= topk < classes:
        raise InputError(where, f"topk {topk!r} must be an integer in [0, {classes - 1}] (the classes but "
                                "the target): dump again")
    if not topk:
        return
    held = meta.get("temperatures")
    if not isinstance(held, list) or not held or not all(
            isinstance(t, (int, float)) and math.isfinite(t) and t > 0 for t in held):
        raise InputError(where, f"temperatures {held!r} must be a list of positive numbers for a top-{topk} "
                                "dump: dump again")
    for t in temperatures:
        if not any(abs(float(h) - t) < 1e-9 for h in held):
            raise InputError(where, f"the top-{topk} dump holds the rest's mass at T = "
                                    f"{', '.join(f'{h:g}' for h in held)}, a method needs T = {t:g} "
                                    f"(kd.*.temperature): dump again with --temperatures including {t:g}")
