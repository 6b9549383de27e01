"""The one job runner of every parallel stage (fbank, dump-logits, extract, augment, synth-corpus).

Policy, stated once:
- Start method `spawn`: a child forked from the command inherits torch's and OpenMP's thread pools
  in whatever state they were (a known source of hangs). The price is an import of torch in every
  worker: `trkd fbank --nj 2` of 48 × 8 s on a loaded 2-core machine took 8-9 s with fork and
  20-22 s with spawn; beside a VoxCeleb part, which takes hours, it is noise. (`forkserver`, 15-17 s,
  was tried: its server outlived a `kill -9` of the command, and the workers with it.)
- Workers die with their parent: on Linux the kernel kills them (PR_SET_PDEATHSIG); elsewhere, and
  against the race where the parent dies before that call, a thread polls the parent's pid.
- A dead worker is one whose exit code is set and non-zero while the parent still waits for it.
- A job's error reaches the user as one line: an `InputError` as it is (file:line: cause), anything
  else as `LOG: STEP job J failed: Type: message`, the traceback in that log.
- Each job logs to `LOG_DIR/STEP.J.log` (Kaldi's `exp/log/make_fbank.J.log`): a header, what the job
  logs through `logging`, and how it ended.
- Progress is a tqdm bar on a terminal only (plain runs and cluster logs stay quiet).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

from trkd.errors import InputError
from trkd.utils.atomic import make_dirs
from trkd.utils.logs import LogFile

START_METHOD = "spawn"
POLL_S = 0.2  # how often the parent looks for a dead worker, and a worker for a dead parent
# The resource tracker (a process started with the first queue, reading PYTHONWARNINGS) can lose a
# semaphore's unregister message in a race at exit on a loaded machine, and then reports the
# semaphore as leaked although it was unlinked (its second warning says "No such file"). That
# spurious report would follow the one-line error of a failed job; nothing leaks.
QUIET_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"


class JobError(InputError):
    """A job failed for a reason other than bad input; the one line names its log."""


@dataclass
class Context:
    """What a job function sees: the worker's `setup` result and a progress callback."""

    state: Any = None
    tick: Callable[[int], None] = field(default=lambda n=1: None)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    parent = os.getppid()
    if parent == 1:  # orphaned before the call above
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


class _QuietFileHandler(LogFile):
    """A job log on a full disk loses lines; it must not print tracebacks over the one error line."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass

    def write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.flush()


class _JobLog:
    """Routes the `trkd` logger of the running job to `LOG_DIR/STEP.J.log` (one handler at a time)."""

    def __init__(self, log_dir: Optional[Path], step: str):
        self.log_dir, self.step, self.handler, self.opened, self.ok = log_dir, step, None, set(), True
        self.level = None  # the `trkd` logger's own level, lowered to INFO while a job logs

    def path(self, job: int) -> Optional[Path]:
        return None if self.log_dir is None else self.log_dir / f"{self.step}.{job}.log"

    def start(self, job: int) -> None:
        path = self.path(job)
        if path is None:
            return
        logger = logging.getLogger("trkd")
        if self.handler is not None and self.handler.baseFilename == str(path.resolve()):
            return
        self.stop()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = _QuietFileHandler(path, mode="a" if job in self.opened else "w")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(self.handler)
        if logger.getEffectiveLevel() > logging.INFO:
            # The job's log keeps its INFO lines whatever the console shows (the console
            # handler has its own level, see trkd/utils/logs.py).
            self.level = logger.level
            logger.setLevel(logging.INFO)
        if job not in self.opened:
            self.handler.write(f"# {self.step} job {job}, pid {os.getpid()}, started {time.ctime()}\n")
        self.opened.add(job)

    def stop(self) -> None:
        if self.handler is not None:
            self.handler.write(f"# ended (code {0 if self.ok else 1}) {time.ctime()}\n")
            logger = logging.getLogger("trkd")
            logger.removeHandler(self.handler)
            self.handler.close()
            self.handler = None
            if self.level is not None:
                logger.setLevel(self.level)
                self.level = None

    def failed(self, job: int, exc: BaseException) -> Tuple:
        """What the parent needs to raise `exc` as one line; the traceback goes to the job's log."""
        if self.handler is not None:
            self.handler.write(traceback.format_exc())
        self.ok = False
        if isinstance(exc, InputError) and not isinstance(exc, JobError):
            return (exc.path, exc.message, exc.line)
        text = str(exc).splitlines()[0] if str(exc) else ""
        return (str(self.path(job)) if self.log_dir else None,
                f"{self.step} job {job} failed: {type(exc).__name__}: {text}".rstrip(": "), None, "job")


def _raise(err: Tuple) -> None:
    if len(err) == 4:
        raise JobError(*err[:3])
    raise InputError(*err)


def _worker(wid: int, step: str, log_dir, fn, setup, tasks, results, stop, current) -> None:
    _die_with_parent()
    import torch

    from trkd.utils.heap import keep_freed_heap

    keep_freed_heap()  # a spawned worker starts with glibc's defaults, not the command's
    torch.set_num_threads(1)  # nj processes share the cores
    log = _JobLog(log_dir, step)
    ctx = Context(tick=lambda n=1: results.put(("tick", n)))
    ready = setup is None
    while True:
        task = tasks.get()
        if task is None or stop.is_set():
            break
        index, job, items = task
        job = wid if job is None else job
        # Written to shared memory, not sent: a queued message is flushed by a thread that a worker
        # dying at once (os._exit, a signal) takes with it, and the parent must name the right job.
        current[wid - 1] = job
        try:
            log.start(job)
            if not ready:  # in the first job's log, so that a failed setup is found there
                ctx.state, ready = setup[0](*setup[1]), True
            results.put(("done", index, [fn(ctx, *item) for item in items]))
        except BaseException as exc:
            results.put(("error", index, log.failed(job, exc)))
            break
    log.stop()


def run_jobs(step: str, fn: Callable, tasks: Sequence[tuple], nj: int, log_dir=None, *,
             jobs: Optional[Sequence[int]] = None, setup: Optional[Tuple[Callable, tuple]] = None,
             chunksize: int = 1, total: Optional[int] = None, desc: Optional[str] = None,
             unit: str = "it", auto_tick: bool = True) -> Iterator[Any]:
    """Yield `fn(ctx, *task)` for every task, in the order of `tasks`, computed by `nj` workers.

    `jobs[i]` is task i's job number (its log is `STEP.J.log`); without it, J is the worker number.
    `setup = (f, args)` runs once per worker and its result is `ctx.state` (e.g. a loaded model).
    Progress counts one per task unless `auto_tick` is off and `fn` calls `ctx.tick(n)`.
    With `nj <= 1` everything runs in this process, through the same logs and error lines.
    """
    log_dir = None if log_dir is None else make_dirs(log_dir)
    with tqdm(total=total if total is not None else len(tasks), desc=desc or step, unit=unit,
              disable=None, dynamic_ncols=True) as bar:
        if nj <= 1 or len(tasks) <= 1:
            yield from _run_here(step, fn, tasks, log_dir, jobs, setup, bar, auto_tick)
        else:
            yield from _run_pool(step, fn, tasks, nj, log_dir, jobs, setup, chunksize, bar, auto_tick)


def _run_here(step, fn, tasks, log_dir, jobs, setup, bar, auto_tick) -> Iterator[Any]:
    log = _JobLog(log_dir, step)
    ctx = Context(tick=bar.update)
    try:
        log.start(jobs[0] if jobs else 1)
        ctx.state = setup[0](*setup[1]) if setup else None
        for i, task in enumerate(tasks):
            job = jobs[i] if jobs else 1
            log.start(job)
            try:
                result = fn(ctx, *task)
            except Exception as exc:
                _raise(log.failed(job, exc))
            if auto_tick:
                bar.update(1)
            yield result
    finally:
        log.stop()


def quiet_resource_tracker() -> None:
    """Start the resource tracker, if it is not running yet, with QUIET_TRACKER added to its
    PYTHONWARNINGS (the user's own filters kept); this process's environment is left as it was."""
    from multiprocessing import resource_tracker

    saved = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{saved},{QUIET_TRACKER}" if saved else QUIET_TRACKER
    try:
        resource_tracker.ensure_running()
    finally:
        if saved is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = saved


def _run_pool(step, fn, tasks, nj, log_dir, jobs, setup, chunksize, bar, auto_tick) -> Iterator[Any]:
    quiet_resource_tracker()
    ctx = mp.get_context(START_METHOD)
    task_q, result_q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    # A task of its own job number is never batched with another job's, so each lands in its own log.
    size = 1 if jobs else max(1, chunksize)
    chunks = [(i, jobs[i] if jobs else None, list(tasks[i:i + size])) for i in range(0, len(tasks), size)]
    nw = min(nj, len(chunks))
    current = ctx.Array("i", nw, lock=False)  # worker -> the job it runs (0: none yet)
    procs = [ctx.Process(target=_worker, args=(w + 1, step, log_dir, fn, setup, task_q, result_q, stop, current),
                         daemon=True) for w in range(nw)]
    for p in procs:
        p.start()
    sent = 0
    for _ in range(min(len(chunks), 2 * nw)):
        task_q.put(chunks[sent])
        sent += 1
    done: Dict[int, List[Any]] = {}
    next_index, received, error = 0, 0, None
    try:
        while received < len(chunks) and error is None:
            try:
                msg = result_q.get(timeout=POLL_S)
            except queue_mod.Empty:
                dead = [(w + 1, p.exitcode) for w, p in enumerate(procs) if p.exitcode not in (None, 0)]
                if dead:
                    w, code = dead[0]
                    why = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                    job = current[w - 1] or w
                    path = _JobLog(log_dir, step).path(job) if log_dir else None
                    error = (str(path) if path else None, f"{step} job {job} died ({why})", None, "job")
                    # A worker that died may have held a queue's lock: the others could block on it
                    # for ever, so they are not waited for.
                    for p in procs:
                        p.kill()
                continue
            if msg[0] == "tick":
                bar.update(msg[1])
                continue
            if msg[0] == "error":
                error = msg[2]
                break
            _, index, values = msg
            done[index], received = values, received + 1
            if auto_tick:
                bar.update(len(values))
            if sent < len(chunks):
                task_q.put(chunks[sent])
                sent += 1
            while next_index in done:
                values = done.pop(next_index)
                yield from values
                next_index += len(values)
    finally:
        stop.set()
        for _ in procs:
            task_q.put(None)
        if error is not None or received == len(chunks):
            # Running jobs finish (a finished fbank part is kept for the rerun); none starts anew.
            # Their messages are drained: a worker cannot exit while its queue's pipe is full.
            while any(p.is_alive() for p in procs):
                with contextlib.suppress(queue_mod.Empty):
                    result_q.get(timeout=POLL_S)
        for p in procs:  # left early (the caller stopped reading): nothing is waited for
            if p.is_alive():
                p.kill()
            p.join()
        task_q.cancel_join_thread()
        for q in (task_q, result_q):
            q.close()
        # Dropped before an error propagates: its traceback would keep the queues' semaphores alive
        # until exit, where the resource tracker reports them as leaked.
        del task_q, result_q, stop
    if error is not None:
        _raise(error)


def run_all(*args, **kwargs) -> List[Any]:
    """`run_jobs` collected into a list."""
    return list(run_jobs(*args, **kwargs))
