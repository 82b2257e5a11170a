"""Child processes that end with their parent (Linux ``prctl(PR_SET_PDEATHSIG)``), and SIGTERM
unwinding like Ctrl-C; no torch."""

from __future__ import annotations

import ast
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "Terminated",
    "check_main_guard",
    "check_workers",
    "die_with_parent",
    "pool_worker_init",
    "run_pool",
    "terminated",
    "terminate_unwinds",
    "unguarded_main_script",
    "worker_start_method",
]


class Terminated(BaseException):  # noqa: N818 - named as the signal's effect, like KeyboardInterrupt
    """Raised in the main thread by SIGTERM (``kill``, SLURM's ``scancel`` and time limit, the
    first step of an out-of-memory kill) inside :func:`terminate_unwinds`: the run unwinds as on
    Ctrl-C (workers shut down, the folder's lock released, finished work kept).

    A ``BaseException``, like ``KeyboardInterrupt``: no ``except Exception`` swallows it.
    """

    exit_code = 128 + signal.SIGTERM  # 143, what a shell reports for a process SIGTERM ended


_TERMINATED: list[int] = []  # the SIGTERMs received inside terminate_unwinds


def _on_sigterm(signum: int, _frame: object) -> None:
    _TERMINATED.append(signum)
    if len(_TERMINATED) == 1:  # later ones leave the clean-up to finish
        raise Terminated(signum)


@contextmanager
def terminate_unwinds() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated` in the main thread (once; a second
    SIGTERM does not interrupt the clean-up). Outside the main thread a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def terminated() -> bool:
    """Whether a SIGTERM arrived inside :func:`terminate_unwinds` (an error seen while unwinding
    from it, e.g. a loader worker that the same signal ended, is its consequence)."""
    return bool(_TERMINATED)


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
    check_main_guard()
    if "forkserver" not in mp.get_all_start_methods():
        return "spawn"
    # The forkserver ends with this process, and its children with it (procs.die_with_parent).
    mp.set_forkserver_preload(["__main__", "robustbench_seg._forkserver_preload"])
    return "forkserver"


def pool_worker_init() -> None:
    """Start of a pool worker (make-cityscapes-c, make-synthetic-city) and of a loader worker:
    it ends with its parent, leaves Ctrl-C to the parent (which stops the workers; a worker's
    own ``KeyboardInterrupt`` would print its traceback) and uses one OpenCV thread (the
    parallelism is across images)."""
    import cv2

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either side)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    texts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and texts == ["__main__"]


def unguarded_main_script() -> str | None:
    """The main script's path when this call comes from its top level outside an
    ``if __name__ == "__main__":`` block, else ``None``.

    Worker processes (forkserver, spawn) run the main script again to start; such a call would
    run again in each of them. ``python -m robustbench_seg``, ``python -c``, notebooks and
    guarded scripts give ``None``.
    """
    main = sys.modules.get("__main__")
    spec = getattr(getattr(main, "__spec__", None), "name", None)
    path = getattr(main, "__file__", None)
    if main is None or path is None or (spec is not None and spec.split(".")[-1] == "__main__"):
        return None
    line, frame = None, sys._getframe(1)
    while frame is not None:  # the outermost statement of the main module on the stack
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return None
    try:
        tree = ast.parse(open(path, "rb").read())  # noqa: SIM115 - read at once
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if node.lineno <= line <= (node.end_lineno or node.lineno):
            return None if _is_main_guard(node) else os.fspath(path)
    return None


def check_main_guard() -> None:
    """Refuses to start worker processes from an unguarded script (see
    :func:`unguarded_main_script`), in one line that says what to add.

    Raises:
        RobustSegError: The call is at the top level of the main script.
    """
    path = unguarded_main_script()
    if path is not None:
        from robustbench_seg.errors import RobustSegError

        raise RobustSegError(
            f'{path}: put the call under `if __name__ == "__main__":` (worker processes '
            "re-import your script), or use workers=0"
        )


def check_workers(workers: int | None, default: int) -> int:
    """The ``--workers`` value every command shares: worker processes beside the main one; 0
    does the work in the main process; ``None`` takes ``default``.

    Raises:
        RobustSegError: A negative count, or workers asked for from an unguarded script
            (:func:`check_main_guard`).
    """
    if workers is None:
        workers = default
    elif isinstance(workers, bool) or int(workers) != workers or workers < 0:
        from robustbench_seg.errors import RobustSegError

        raise RobustSegError(f"--workers must be an integer >= 0, got {workers}")
    if workers > 0:  # before any work: worker processes would re-import an unguarded script
        check_main_guard()
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
