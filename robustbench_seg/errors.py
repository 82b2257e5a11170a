"""The one exception type for mistakes a user can make, and the one-line form of every error.

Exit codes of the CLI: 2 for a user mistake (a bad option, path, name, shape or format), 1 for a
failure of the system (permission denied, read-only file system, disk full, a path that is a
file, an unreadable input), 130 for an interruption. Each is shown as one line.
"""

from __future__ import annotations

import errno
import os
import re

from corruptions.errors import CorruptionError


class RobustSegError(ValueError):
    """A user-caused error; the CLI prints its message as one line and exits with 2."""

    exit_code = 2


class SystemFailure(RobustSegError):
    """A failure of the machine, not of the user's input (permission, disk, I/O); exit code 1."""

    exit_code = 1


# Both are shown by the CLI as one line.
USER_ERRORS = (RobustSegError, CorruptionError)

# torch re-raises an error of a DataLoader worker as the same type, its message holding the
# worker's traceback after this line.
_WORKER_MARK = "Original Traceback (most recent call last):"

_CAUSES = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "is a directory",
    errno.EEXIST: "already exists",
    errno.ENOENT: "no such file or directory",
    errno.EIO: "input/output error",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
}


def os_error_line(exc: OSError) -> str:
    """``<path>: <cause>`` for an OSError (both paths of a rename, when there are two)."""
    cause = _CAUSES.get(exc.errno) or (exc.strerror or str(exc) or type(exc).__name__).lower()
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(os.fsdecode(p) for p in paths)
    return f"{where}: {cause}" if where else cause


_ERRNO = re.compile(r"\[Errno (\d+)\] ([^:]+)(?:: '(.*)')?$")


def exception_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` of an exception from code we do not own (a
    user's model builder, transformers), for a one-line error."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _worker_origin(message: str) -> tuple[str, str] | None:
    """(exception type name, message) of the error a DataLoader worker raised, from the text
    torch re-raises it with; None when ``message`` is not such a text."""
    if _WORKER_MARK not in message:
        return None
    last = [line for line in message.split(_WORKER_MARK, 1)[1].splitlines() if line.strip()]
    if not last:
        return None
    kind, _, text = last[-1].partition(": ")
    return kind.rsplit(".", 1)[-1], text


def error_line(exc: BaseException) -> tuple[str, int] | None:
    """The one line and exit code the CLI shows for ``exc``; None for an unexpected error (a bug,
    which keeps its traceback).

    Handles errors raised inside DataLoader workers, which torch re-raises with the worker's
    traceback in the message: the line is the original error's message.
    """
    if isinstance(exc, OSError):
        origin = _worker_origin(str(exc))
        if origin is not None:
            match = _ERRNO.match(origin[1])
            if match:  # "[Errno 13] Permission denied: '/x'"
                exc = OSError(int(match[1]), match[2], match[3])
            else:
                return origin[1], 1
        return os_error_line(exc), 1
    if isinstance(exc, USER_ERRORS):
        text = str(exc)
        origin = _worker_origin(text)
        if origin is not None:
            text = origin[1]
        return " ".join(text.split()), getattr(exc, "exit_code", 2)
    if isinstance(exc, (RuntimeError, MemoryError)):
        origin = _worker_origin(str(exc))
        if origin is not None and origin[0] in ("RobustSegError", "CorruptionError"):
            return origin[1], 2
        if origin is not None and origin[0] == "SystemFailure":
            return origin[1], 1
        if isinstance(exc, MemoryError):
            return "out of memory; use a smaller --batch-size or fewer --workers", 1
    return None
