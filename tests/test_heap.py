"""trkd.utils.heap: glibc keeps freed heap in the process, set from the CLI and in job workers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trkd.utils.heap import keep_freed_heap

CHECK = r"""
import ctypes, sys
from trkd.utils.heap import keep_freed_heap
def faults():  # the process's minor page faults so far
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
def churn():  # a training step's pattern: 64 blocks of 1 MB (activations) made and freed, 20 times
    before = faults()
    for _ in range(20):
        blocks = [ctypes.create_string_buffer(1 << 20) for _ in range(64)]
        del blocks
    return faults() - before
if sys.argv[1] == "keep":
    assert keep_freed_heap()
print(churn())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_heap_stops_faulting_freed_memory_back_in():
    """With glibc's defaults the freed 64 MB at the heap's top is trimmed and faulted in again at
    every round (256 faults a block); with the heap kept, later rounds reuse resident memory."""
    runs = {mode: int(subprocess.run([sys.executable, "-c", CHECK, mode], capture_output=True, text=True,
                                     check=True).stdout) for mode in ("default", "keep")}
    assert runs["default"] > 100_000
    assert runs["keep"] < runs["default"] / 10


def test_keep_freed_heap_is_idempotent():
    assert keep_freed_heap() == keep_freed_heap()


def test_a_malloc_setting_of_the_user_wins(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.perturb=0")
    assert not keep_freed_heap()
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert not keep_freed_heap()
