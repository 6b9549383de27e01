"""Mixed precision: the one place that resolves `--precision` (or `train.precision`) for a device.

`fp32` runs everything in float32. `bf16` and `fp16` run the networks' forward passes under
`torch.autocast` on the device in use: convolutions and matrix products in half precision, the
parameters, their gradients and the optimizer state in float32, so checkpoints stay float32. The
AAM head turns autocast off itself, and the trainer hands the objective float32 outputs, so every
loss is computed in float32. fp16's narrow range underflows small gradients: it
trains with a GradScaler, whose state is checkpointed. bf16 has float32's range and needs none.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Optional

import torch

from trkd.errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def default_precision(device: torch.device) -> str:
    """bf16 on a CUDA GPU that has it (Ampere and later), fp32 elsewhere (the CPU included)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def resolve_precision(name: Optional[str], device: torch.device) -> str:
    """`name` checked against the device; None is the device's default.

    fp16 on a CPU is refused rather than silently changed: CPU float16 kernels are slow and few,
    and a run asked for in fp16 that trains in another precision would not be the run asked for.
    """
    if name is None:
        return default_precision(device)
    if name not in PRECISIONS:
        raise InputError(None, f"--precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    if name == "fp16" and device.type != "cuda":
        raise InputError(None, f"--precision fp16 needs a CUDA GPU (the device is {device.type}); "
                               "use bf16 or fp32 on the CPU")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(None, f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; "
                               "use fp16 or fp32")
    return name


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The forward-pass context of `precision` on `device` (nothing at all for fp32)."""
    if precision not in _DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> Optional["torch.amp.GradScaler"]:
    """A GradScaler for fp16, None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
