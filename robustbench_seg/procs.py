"""Child processes that end with their parent (Linux ``prctl(PR_SET_PDEATHSIG)``); no torch."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys

__all__ = ["die_with_parent", "pool_worker_init", "worker_start_method"]


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
