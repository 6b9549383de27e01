"""Checkpoints: `EXP/models/model_<epoch>.pt` (everything a resume needs) and `avg_model.pt`.

A checkpoint holds the model, head and extra trainable modules, the optimizer, the global step and
epoch, the RNG states of python / numpy / torch (every rank's), the sampler state and the history
of per-epoch records. Files are written atomically and read with `weights_only=True`, so every
value is a tensor or a plain python type.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from trkd.errors import InputError
from trkd.layout import AVG_NAME  # noqa: F401  (ckpt.AVG_NAME)
from trkd.utils import PathLike
from trkd.utils.atomic import write_bytes_atomic


def model_dir(exp: PathLike) -> Path:
    return Path(exp) / "models"


def epoch_path(exp: PathLike, epoch: int) -> Path:
    return model_dir(exp) / f"model_{epoch}.pt"


def saved_epochs(exp: PathLike) -> List[int]:
    """Epochs with a checkpoint in `EXP/models`, ascending."""
    found = (re.fullmatch(r"model_(\d+)\.pt", p.name) for p in model_dir(exp).glob("model_*.pt"))
    return sorted(int(m.group(1)) for m in found if m)


def save(path: PathLike, state: Dict[str, Any]) -> None:
    # Serialised in memory first: torch's file writer reports a full disk as "unexpected pos".
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getbuffer())


def load(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """A checkpoint as a dict; a missing or unreadable file is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise InputError(path, f"not a readable trkd checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise InputError(path, "not a trkd checkpoint (no 'model' entry)")
    return state


def rng_state() -> Dict[str, Any]:
    """This process's RNG states, as tensors and plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def average_state_dicts(states: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Element-wise mean of float tensors (in float64); integer buffers (BN counters) from the last."""
    out = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            out[key] = (sum(s[key].double() for s in states) / len(states)).to(last.dtype)
        else:
            out[key] = last.clone()
    return out


def average(exp: PathLike, last: int, out: Optional[PathLike] = None) -> Path:
    """Average the model (and head) of the last `last` epoch checkpoints into `avg_model.pt`."""
    epochs = saved_epochs(exp)
    if not epochs:
        raise InputError(model_dir(exp), "no model_<epoch>.pt checkpoint to average")
    chosen = epochs[-max(last, 1):]
    states = [load(epoch_path(exp, e)) for e in chosen]
    result: Dict[str, Any] = {"epochs": chosen, "config": states[-1].get("config")}
    for part in ("model", "head", "extras"):
        if all(part in s for s in states):
            if part == "extras":
                result[part] = {k: average_state_dicts([s[part][k] for s in states]) for k in states[-1][part]}
            else:
                result[part] = average_state_dicts([s[part] for s in states])
    path = Path(out) if out is not None else model_dir(exp) / AVG_NAME
    save(path, result)
    return path
