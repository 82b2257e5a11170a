"""Child processes that end with their parent (Linux ``prctl(PR_SET_PDEATHSIG)``); no torch."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "check_workers",
    "die_with_parent",
    "pool_worker_init",
    "run_pool",
    "worker_start_method",
]


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Asks the kernel to send ``sig`` to this process when its parent ends.

    Called in loader and pool workers and in the forkserver that starts them, so that a main
    process killed with SIGKILL leaves no worker behind (the forkserver dies with the main
    process, the workers with the forkserver). A no-op off Linux.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before the request was in place
        os.kill(os.getpid(), sig)


def worker_start_method() -> str:
    """``forkserver`` where available, else ``spawn``: workers start from a clean process.

    Not ``fork``: a forked child inherits OpenCV's (and OpenMP's) thread pools in a broken
    state, and ``cv2.setNumThreads`` there deadlocks when the parent had used them.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return "spawn"
    # The forkserver ends with this process, and its children with it (procs.die_with_parent).
    mp.set_forkserver_preload(["__main__", "robustbench_seg._forkserver_preload"])
    return "forkserver"


def pool_worker_init() -> None:
    """Start of a pool worker (make-cityscapes-c, make-synthetic-city): it ends with its parent
    and uses one OpenCV thread (the parallelism is across images)."""
    import cv2

    die_with_parent()
    cv2.setNumThreads(1)


def check_workers(workers: int | None, default: int) -> int:
    """The ``--workers`` value every command shares: worker processes beside the main one; 0
    does the work in the main process; ``None`` takes ``default``.

    Raises:
        RobustSegError: A negative count.
    """
    if workers is None:
        return default
    if isinstance(workers, bool) or int(workers) != workers or workers < 0:
        from robustbench_seg.errors import RobustSegError

        raise RobustSegError(f"--workers must be an integer >= 0, got {workers}")
    return int(workers)


def run_pool(fn: Callable[[T], R], jobs: Iterable[T], workers: int) -> Iterator[R]:
    """``fn`` over ``jobs`` in ``workers`` processes (results in completion order), or in this
    process, one job after the other, when ``workers`` is 0. OpenCV uses one thread per
    process either way (the parallelism is across jobs)."""
    jobs = list(jobs)
    if workers == 0 or not jobs:
        import cv2

        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            yield from map(fn, jobs)
        finally:
            cv2.setNumThreads(threads)
        return
    # Not fork: a forked child deadlocks in cv2.setNumThreads when the parent used OpenCV.
    ctx = mp.get_context(worker_start_method())
    with ctx.Pool(min(workers, len(jobs)), initializer=pool_worker_init) as pool:
        yield from pool.imap_unordered(fn, jobs, chunksize=1)
