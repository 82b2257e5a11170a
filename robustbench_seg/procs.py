"""Child processes that end with their parent (Linux ``prctl(PR_SET_PDEATHSIG)``); no torch."""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["die_with_parent"]


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
