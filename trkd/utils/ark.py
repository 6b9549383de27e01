"""Writing a Kaldi ark with its scp, whole or not at all (the one ark/scp writer of the toolkit)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable, Iterator, Optional

import kaldiio
import numpy as np

from trkd.utils.atomic import PathLike, atomic_path


@contextlib.contextmanager
def ark_scp_writer(ark: PathLike, scp: PathLike, write_function: Optional[str] = None,
                   compression_method: Optional[int] = None) -> Iterator[Callable[[str, np.ndarray], None]]:
    """Yield `write(key, matrix)`; on success `ark` then `scp` appear, the scp pointing into `ark`.

    kaldiio computes the offsets. Its `WriteHelper` opens files by name, so its scp would name the
    temporary ark; `kaldiio.save_ark`, which WriteHelper calls, records the name of an open file
    instead, so the temporary file is given the final name (absolute, as Kaldi's scps are).
    """
    ark = Path(ark).resolve()
    lines = io.StringIO()
    with atomic_path(ark) as tmp, open(tmp, "wb") as f:
        f.raw.name = str(ark)

        def write(key: str, mat: np.ndarray) -> None:
            kaldiio.save_ark(f, {key: mat}, scp=lines, write_function=write_function,
                             compression_method=compression_method)
        yield write
    with atomic_path(scp) as tmp:
        tmp.write_text(lines.getvalue())
