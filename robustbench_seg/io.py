"""Atomic file writes, file checksums and run provenance, shared by every command that writes."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it (Linux ``/proc``), else by setting it back."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(dest: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``dest`` that replaces ``dest`` when the block succeeds.

    ``dest`` either does not exist or holds a complete file: the temporary file
    (``.<name>.<random><suffix>``) is renamed over it at the end, or removed on any error. The
    file gets the mode a plain ``open`` would give it (``0o666`` less the umask: 0644 under
    umask 022), not ``mkstemp``'s private 0600, so shared outputs stay readable.

    Args:
        dest: the final path (its folder is created).
        suffix: ending of the temporary name; writers that infer a format from the name
            (``np.savez``, ``savefig``) need the real extension here.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomic(dest: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically (see :func:`atomic_path`)."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(dest: str | os.PathLike, obj: object) -> None:
    """Write ``obj`` as indented JSON to ``dest`` atomically."""
    write_atomic(dest, (json.dumps(obj, indent=2) + "\n").encode())


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Python's version and each installed distribution's version (absent ones are skipped)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, hex (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
