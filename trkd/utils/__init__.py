"""Helpers every area shares (atomic writes, stamps, typed yaml, devices, logs)."""

from pathlib import Path
from typing import Union

PathLike = Union[str, Path]   # a file or folder name, as every function of the API accepts it
