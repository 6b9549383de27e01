"""Shell commands in data files: one policy for every table (wav.scp, feats.scp, xvector.scp, a
teacher dump's scps, the paths of rspecifiers).

Kaldi runs an entry that ends (or starts) with `|` as a shell command, and kaldiio does so even
after stripping a `:OFFSET` or `[RANGE]` from its end (`touch x |:0`). Data dirs and embedding
scps are copied between machines and people, so trkd refuses every value that holds a `|`
anywhere unless the user opts in with `TRKD_ALLOW_PIPES=1`; the refusal names the file and line.
With the opt-in, `cmd |` (and `cmd |[RANGE]`) is run and its output read, as Kaldi does.

One command is trkd's own: `trkd augment-wav DIR UTT |`, the wav.scp entry of an augmented copy
that `trkd augment` did not write as a WAV (`trkd.data.virtual`). Kaldi tools and sox-style readers
run it; trkd's audio readers never do: they parse it (without a shell) and make the copy in-process
from DIR's recorded settings, lists and sources, which reads files as a WAV path does and runs
nothing, so the pipe policy does not apply to it there. Wherever trkd would hand it to a shell (a
feats.scp or ark), it is a command like any other.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import tempfile
from io import BytesIO
from typing import IO, Iterator, List, Optional

from trkd.errors import InputError
from trkd.utils import PathLike

PIPE_ENV = "TRKD_ALLOW_PIPES"
OWN_COMMAND = "trkd augment-wav"


def pipes_allowed() -> bool:
    return os.environ.get(PIPE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_command(rx: str) -> bool:
    """Kaldi's rxfile rule: `cmd |` is read from a command's output (`| cmd` is its wxfile twin)."""
    s = rx.strip()
    return s.endswith("|") or s.startswith("|")


def own_entry(rx: str) -> Optional[List[str]]:
    """The arguments after `trkd augment-wav` of such an entry (read in-process, never by a shell), else None."""
    s = rx.strip()
    if not (s.endswith("|") and s.startswith(OWN_COMMAND + " ")):
        return None
    try:
        return shlex.split(s[:-1])[2:]
    except ValueError:  # unbalanced quotes: not an entry trkd wrote
        return None


def check_command(rx: str, source: PathLike, line: Optional[int] = None, key: Optional[str] = None,
                  shell: bool = False) -> None:
    """Refuse a value holding a `|` unless `TRKD_ALLOW_PIPES=1` is set; trkd's own audio entries pass
    unless the caller would run them in a shell (`shell`)."""
    if "|" in rx and not pipes_allowed() and (shell or own_entry(rx) is None):
        who = f"{key}: " if key else ""
        raise InputError(source, f"{who}{rx.strip()!r} holds a '|', which Kaldi-style readers run as a shell "
                                 f"command; trkd runs commands from data files only with {PIPE_ENV}=1", line)


def _shell_text(rx: str) -> str:
    s = rx.strip()
    return s[:-1] if s.endswith("|") else s[1:]


def _failure(rx: str, status: int, stderr: bytes) -> str:
    tail = stderr.decode(errors="replace").strip().splitlines()
    return f"command {rx.strip()!r} failed with status {status}" + (f": {tail[-1]}" if tail else "")


def run_command(rx: str, source: PathLike, line: Optional[int] = None, key: Optional[str] = None) -> BytesIO:
    """The standard output of an allowed `cmd |` entry (e.g. `ffmpeg … |` in wav.scp)."""
    check_command(rx, source, line, key, shell=True)
    proc = subprocess.run(_shell_text(rx), shell=True, capture_output=True)
    if proc.returncode != 0:
        raise InputError(source, f"{key + ': ' if key else ''}{_failure(rx, proc.returncode, proc.stderr)}", line)
    return BytesIO(proc.stdout)


@contextlib.contextmanager
def command_output(rx: str, source: PathLike) -> Iterator[IO[bytes]]:
    """The standard output of an allowed `cmd |` as a stream (a whole archive: `ark:cmd |`); a
    command that fails is an error once its output is read."""
    check_command(rx, source, shell=True)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(_shell_text(rx), shell=True, stdout=subprocess.PIPE, stderr=err)
        try:
            yield proc.stdout
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            status = proc.wait()
        if status != 0:
            err.seek(0)
            raise InputError(source, _failure(rx, status, err.read()))
