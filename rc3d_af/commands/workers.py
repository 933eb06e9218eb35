"""A process pool whose workers, and everything they started, end with the command that owns it.

``concurrent.futures.ProcessPoolExecutor`` alone outlives a ``kill PID`` of its parent: the parent
dies, its workers go on training, and a worker whose task ends takes the next queued one. Here
each worker leads a process group of its own (its training subprocesses join it), the parent turns
SIGTERM into an exception, and on that or on Ctrl-C it ends every worker's group before passing
the interrupt on. An ordinary exception of a task is not an interrupt: it reaches the caller
through its future and the other tasks go on.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from types import FrameType

# How long an interrupted worker group has to end after SIGTERM before it is killed, in seconds.
GRACE_SECONDS = 10.0


def _end_own_group(signum: int, frame: FrameType | None) -> None:
    """A worker's SIGTERM handler: the same signal to its whole group (itself and its subprocesses)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.killpg(os.getpgrp(), signal.SIGTERM)


def _start_worker() -> None:
    """Pool initializer: a process group of the worker's own, ended as a whole on SIGTERM. Ctrl-C
    in a terminal reaches only the foreground group, the parent's, which ends the workers
    (:func:`worker_pool`); SIGINT is left as it is since an ignored signal would pass on to the
    worker's subprocesses."""
    os.setpgrp()
    signal.signal(signal.SIGTERM, _end_own_group)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def end_workers(workers: list[multiprocessing.Process]) -> None:
    """SIGTERM to each worker (its handler passes it to its group), then SIGKILL to any that is
    still there after :data:`GRACE_SECONDS`."""
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(GRACE_SECONDS)
        if worker.is_alive():
            worker.kill()
            worker.join()


@contextmanager
def worker_pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    """``jobs`` spawned worker processes; SIGTERM or Ctrl-C to the caller ends them and their
    subprocesses, cancels the queued tasks and re-raises (SIGTERM as ``SystemExit(143)``)."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm) if in_main_thread else None
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker
    )
    try:
        yield pool
    except (KeyboardInterrupt, SystemExit):
        pool.shutdown(wait=False, cancel_futures=True)
        workers = multiprocessing.active_children()  # the pool's workers: the only children here
        print(f"interrupted: ending {len(workers)} worker process(es)", file=sys.stderr, flush=True)
        end_workers(workers)
        raise
    finally:
        pool.shutdown(wait=True)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
