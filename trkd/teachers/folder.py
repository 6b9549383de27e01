"""`trkd import-teacher`: a model folder trained elsewhere written as a trkd model dir.

The dir holds what `trkd train` leaves and every command reads: `config.yaml` (a resolved trkd
config whose `model:` block rebuilds the network), `models/avg_model.pt` (`model`, and `head` where
the source had an AAM classifier), `spk2id` (only where that classifier's classes are named),
`fbank.yaml` (the source's front end, dither 0) and `imported.yaml` (where it came from). It is
built under a temporary name and renamed into place whole; an existing OUT is never touched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict, Optional

import torch
import yaml

from trkd import checkpoint as ckpt
from trkd.errors import InputError
from trkd.utils.atomic import make_dirs, os_error, temp_name, write_text_atomic

IMPORTED = "imported.yaml"


def imported_record(model_dir) -> Optional[Dict]:
    """MODEL/imported.yaml as a dict, None for a model trained by trkd."""
    path = Path(model_dir) / IMPORTED
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def write_model_dir(out: Path, cfg, model_state: Dict[str, torch.Tensor], head_weight: Optional[torch.Tensor],
                    spk2id: Optional[Dict[str, int]], fbank, record: Dict) -> Path:
    """Write the model dir OUT (which must not exist yet) in one rename."""
    from trkd.config import dump_config
    from trkd.data.chunks import write_spk2id

    out = Path(out)
    if out.exists():
        raise InputError(out, "already exists: import into a new --out (nothing was written)")
    make_dirs(out.parent)
    tmp = temp_name(out)
    try:
        state = {"model": model_state, "epochs": [], "config": cfg.to_dict()}
        if head_weight is not None:
            state["head"] = {"weight": head_weight}
        ckpt.save(ckpt.model_dir(tmp) / ckpt.AVG_NAME, state)
        write_text_atomic(tmp / "config.yaml", dump_config(cfg))
        if spk2id is not None:
            write_spk2id(tmp / "spk2id", spk2id)
        write_text_atomic(tmp / "fbank.yaml", yaml.safe_dump(fbank.to_dict(), sort_keys=False))
        write_text_atomic(tmp / IMPORTED, yaml.safe_dump(record, sort_keys=False))
        os.rename(tmp, out)
    except OSError as err:
        raise os_error(err, out) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
