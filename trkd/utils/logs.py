"""Console logging of every `trkd` command, set up once by the CLI (the library configures none).

Lines look like ESPnet's: `2026-12-06 20:30:00 (features:120) INFO: message`. On a terminal they go
through `tqdm.write`, so they do not break a progress bar; otherwise (a cluster log, a pipe) they
are plain lines on stderr. The level comes from `trkd --log-level` or `TRKD_LOG_LEVEL`.
"""

from __future__ import annotations

import logging
import sys

from trkd.errors import InputError

LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LEVEL = "info"
ENV_VAR = "TRKD_LOG_LEVEL"
FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class TqdmHandler(logging.StreamHandler):
    """Log lines on stderr that do not break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm  # here: `trkd --help` need not import it

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never take the command down
            self.handleError(record)


def setup_logging(level: str = DEFAULT_LEVEL) -> None:
    """Route the `trkd` loggers to stderr at `level` (replacing an earlier call's handler)."""
    if level.lower() not in LEVELS:
        raise InputError(None, f"log level {level!r}: valid levels are {', '.join(LEVELS)} (--log-level or {ENV_VAR})")
    logger = logging.getLogger("trkd")
    for h in [h for h in logger.handlers if getattr(h, "_trkd_console", False)]:
        logger.removeHandler(h)
    handler = TqdmHandler(sys.stderr) if sys.stderr.isatty() else logging.StreamHandler(sys.stderr)
    handler._trkd_console = True
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    handler.setLevel(level.upper())
    logger.addHandler(handler)
    # The logger lets INFO through to file handlers (train.log, job logs) whatever the console shows.
    logger.setLevel(min(logging.INFO, handler.level))


def open_log(path, append: bool = False):
    """A log file opened for writing that never writes through a link.

    A symbolic link at PATH is refused (`O_NOFOLLOW`), and so is anything but a plain file with one
    name (a hard link shares its data with a file elsewhere), before anything is truncated: a log
    planted as a link to another file must not empty or grow that file.
    """
    import errno
    import os
    import stat

    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(path, "is a symbolic link: trkd writes no log through a link; remove it") from None
        raise InputError(path, f"cannot write: {err.strerror or err}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        what = "not a plain file" if not stat.S_ISREG(info.st_mode) else "a hard link to another file"
        raise InputError(path, f"is {what}: trkd writes no log through it; remove it")
    if not append:
        os.ftruncate(fd, 0)
    return os.fdopen(fd, "a", encoding="utf-8")


class LogFile(logging.FileHandler):
    """`logging.FileHandler` on `open_log`: mode "w" starts the file anew, "a" appends."""

    def _open(self):
        return open_log(self.baseFilename, append="a" in self.mode)
