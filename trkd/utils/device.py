"""The one place that picks the device and the DDP backend (NCCL on GPU, gloo on CPU).

Under `torchrun` the rank and world size come from its environment variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT); a plain run is rank 0 of a world of 1 and never initialises a
process group, so single-process training has no distributed code path at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Optional

import torch
import torch.distributed as dist

from trkd.errors import InputError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def choose_device(device: Optional[str] = None, local_rank: int = 0) -> torch.device:
    """`cuda` when asked for or (with `device=None`) available, else `cpu`; a device that does not
    exist here is one `InputError` line, not a traceback from the first tensor moved to it."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(None, f"--device {device!r}: not a device name (use cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise InputError(None, f"--device {device!r}: trkd runs on cpu or cuda, not {dev.type}")
    if not torch.cuda.is_available():
        raise InputError(None, f"--device {device!r}: no CUDA GPU is available on this machine (use --device cpu)")
    if dev.index is None:
        return torch.device("cuda", local_rank)
    if dev.index >= torch.cuda.device_count():
        raise InputError(None, f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def setup(device: Optional[str] = None) -> Runtime:
    """Pick the device and, under torchrun, join the process group with the matching backend."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = choose_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, rank, world, local_rank)


def teardown(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        dist.barrier()


def all_reduce_sum(rt: Runtime, t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over the ranks (in place on a copy); identity in a single process."""
    if not rt.distributed:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(rt: Runtime, obj: Any) -> List[Any]:
    """Every rank's `obj` (picklable), in rank order."""
    if not rt.distributed:
        return [obj]
    out: List[Any] = [None] * rt.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(rt: Runtime, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not rt.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
