"""Keep freed heap memory in the process instead of giving it back to the kernel at every free.

glibc trims the top of its heap once more than a threshold (by default twice the mmap threshold,
a few MB) is free, and serves blocks above the mmap threshold by fresh mappings. A training step
frees its activations and allocates them again at the next step, so with the defaults every step
maps, zero-fills and faults in the same memory again: on the 2-core Xeon of CI the mini recipe's
teacher trains 1.11x as fast with the heap kept (bench/train_procs.py), bit for bit the same.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt's parameter numbers (malloc.h) and the values set: no trimming below 1 GiB of free heap;
# blocks up to 32 MiB (the largest mmap threshold glibc accepts on 64-bit) from the heap.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_BYTES, MMAP_BYTES = 1 << 30, 32 << 20


def user_set_malloc() -> bool:
    """Whether the environment tunes glibc's malloc itself (MALLOC_*_ variables, GLIBC_TUNABLES)."""
    return any(k.startswith("MALLOC_") for k in os.environ) or "malloc" in os.environ.get("GLIBC_TUNABLES", "")


def keep_freed_heap() -> bool:
    """Set the thresholds in this process (glibc on Linux only), unless the user tunes malloc in
    the environment: their setting wins. Whether the thresholds were taken."""
    if not sys.platform.startswith("linux") or user_set_malloc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's C library, found without a subprocess
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES))
