"""The one error type that the CLI turns into a single line, Kaldi-style: `file:line: what is wrong`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class InputError(Exception):
    """Bad user input (a data dir, a trials list, a config, a model dir).

    The message always names the file, and the line when there is one, so that a person can go
    straight to it; the CLI prints it as one line and exits with status 1.
    """

    def __init__(self, path: Union[str, Path, None], message: str, line: Optional[int] = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        where = "" if self.path is None else self.path + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {message}" if where else message)

    def __reduce__(self):
        # Worker processes (fbank, extract) raise it back to the parent through pickle.
        return (InputError, (self.path, self.message, self.line))


def from_loader_worker(err: BaseException) -> Optional[InputError]:
    """The InputError that a DataLoader worker raised, recovered from torch's re-raise.

    torch re-raises a worker's exception as `RuntimeError("Caught InputError in DataLoader worker
    process N.\\nOriginal Traceback …")` (InputError's constructor takes more than one message), so
    the one line the user must see is the traceback's last `trkd.errors.InputError: …` line.
    """
    text = str(err)
    if not (isinstance(err, RuntimeError) and text.startswith(f"Caught {InputError.__name__} ")):
        return None
    prefix = f"{InputError.__module__}.{InputError.__name__}: "
    lines = [ln[len(prefix):] for ln in text.splitlines() if ln.startswith(prefix)]
    return InputError(None, lines[-1]) if lines else None
