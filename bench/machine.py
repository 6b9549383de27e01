"""The machine and its load, printed beside every figure (a shared 2-core machine's load moves them),
and the median and spread of repeated measurements."""

from __future__ import annotations

import os
import platform
from typing import Sequence

import numpy as np


def cpu_model() -> str:
    """`lscpu`'s model name (from /proc/cpuinfo, which it reads), else the platform's processor."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpu_model()}, {os.cpu_count()} cores, load average {load} (1, 5, 15 min)"


def median_spread(values: Sequence[float], digits: int = 0) -> str:
    """`median [min-max]` of repeated measurements."""
    v = np.asarray(values, dtype=float)
    return f"{np.median(v):.{digits}f} [{v.min():.{digits}f}-{v.max():.{digits}f}]"
