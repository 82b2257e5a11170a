"""Atomic file writes, file checksums and run provenance, shared by every command that writes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from robustbench_seg.errors import RobustSegError, SystemFailure


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
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix)
    except OSError as exc:
        raise _naming(exc, dest) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        raise _naming(exc, dest, tmp) from None
    except Exception as exc:
        # Writers in C++/Rust (torch.save, safetensors) report a full disk as their own error
        # type; the file system tells what happened.
        if _disk_full(dest.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(dest)) from exc
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)


def _disk_full(folder: Path) -> bool:
    """Less than 1 MiB left for this user on ``folder``'s file system."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def _naming(exc: OSError, dest: Path, tmp: str | None = None) -> OSError:
    """``exc`` naming ``dest`` where it names nothing or our temporary file (the user knows the
    destination, not the temporary name); a folder it names (``mkdir``) is kept."""
    name = exc.filename
    if name is None or (tmp is not None and os.fspath(name) == tmp):
        name = dest
    elif Path(name).name.startswith(f".{dest.name}."):
        name = dest
    return OSError(exc.errno, exc.strerror, os.fspath(name))


def write_atomic(dest: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically (see :func:`atomic_path`)."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(dest: str | os.PathLike, obj: object) -> None:
    """Write ``obj`` as indented JSON to ``dest`` atomically."""
    write_atomic(dest, (json.dumps(obj, indent=2) + "\n").encode())


def write_text_atomic(dest: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``dest`` atomically (a link at ``dest`` is replaced, never
    written through); returns ``dest`` as a ``Path``."""
    write_atomic(dest, text.encode("utf-8"))
    return Path(dest)


def write_csv_atomic(dest: str | os.PathLike, frame: object, **kwargs: object) -> Path:
    """Write a pandas ``DataFrame`` as CSV to ``dest`` atomically (``kwargs``: ``to_csv``'s);
    returns ``dest`` as a ``Path``."""
    with atomic_path(dest, suffix=".csv") as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(dest)


def copy_atomic(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy ``src``'s bytes to ``dest`` atomically (a link at ``dest`` is replaced, never written
    through; the copy gets the umask's mode, not ``src``'s); returns ``dest`` as a ``Path``."""
    import shutil

    with atomic_path(dest, suffix=Path(dest).suffix) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


def open_append(path: str | os.PathLike, **kwargs: object):
    """Open ``path`` for appending text (created with 0666 less the umask): a link at ``path``
    is refused (``O_NOFOLLOW``: ELOOP), never written through. ``kwargs``: ``open``'s."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    return open(fd, "a", encoding="utf-8", **kwargs)


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


# The SIMD levels that decide which kernels numpy, OpenCV, torch and numba run, and so the last
# bit of some float results (numpy's names; x86-64 and Arm).
_SIMD = ("SSE42", "AVX", "F16C", "FMA3", "AVX2", "AVX512F", "AVX512CD", "AVX512_SKX", "AVX512_CLX",
         "AVX512_CNL", "AVX512_ICL", "AVX512_SPR", "ASIMD", "ASIMDHP", "SVE")  # fmt: skip


def cpu_info() -> dict[str, object]:
    """The processor's model and SIMD features: with the package versions they decide a
    corrupted variant's bytes (a blur can round the other way on an AVX2-only CPU)."""
    from numpy._core._multiarray_umath import __cpu_features__ as features

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    info: dict[str, object] = {
        "machine": platform.machine(),
        "model": model,
        "simd": [name for name in _SIMD if features.get(name)],
    }
    if "torch" in sys.modules:  # the kernels torch dispatches to (ATEN_CPU_CAPABILITY)
        info["torch"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    return info


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, hex (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- output folders

MARKER = ".robustseg.json"  # {"kind": ...}: which kind of job made the folder
LOCK = ".robustseg.lock"  # the PID of the process writing the folder


class DirLock:
    """The lock a writing job holds on its output folder; :meth:`release` removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def release(self) -> None:
        """Removes the lock file if this process still holds it."""
        try:
            if self.path.read_text().strip() == str(os.getpid()):
                self.path.unlink()
        except OSError:
            pass

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_holder(folder: Path) -> int | None:
    """The PID of a live process (not this one) holding ``folder``'s lock, else ``None``."""
    try:
        pid = int((folder / LOCK).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and pid != os.getpid() and _alive(pid) else None


def _check_lock(folder: Path) -> None:
    pid = _lock_holder(folder)
    if pid is not None:
        raise RobustSegError(
            f"{folder} is being written by process {pid} (another robustseg run); wait for it to "
            "finish or choose another folder"
        )


def _write_pid(path: Path, flags: int) -> None:
    """Writes this process's PID into a new file ``path`` (``os.open`` ``flags`` added to
    ``O_CREAT | O_WRONLY``); a failure to write (a full disk) removes it."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | flags, 0o666)
    try:
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _take_lock(folder: Path) -> DirLock:
    """Takes ``folder``'s lock: its file appears complete (a hard link to a written file, or
    ``O_EXCL`` where the file system has no hard links), so that no other process reads it empty
    and a full disk leaves no lock (the error names the lock)."""
    lock = folder / LOCK
    tmp = lock.with_name(f"{LOCK}.{os.getpid()}.tmp")
    try:
        _write_pid(tmp, os.O_TRUNC)
        for _ in range(3):
            try:
                try:
                    os.link(tmp, lock)
                except FileExistsError:
                    raise
                except OSError:  # no hard links here
                    _write_pid(lock, os.O_EXCL)
            except FileExistsError:
                _check_lock(folder)
                lock.unlink(missing_ok=True)  # stale: the process that held it is gone
                continue
            return DirLock(lock)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, os.fspath(lock)) from None
    finally:
        tmp.unlink(missing_ok=True)
    raise RobustSegError(f"cannot lock {folder} ({lock} keeps reappearing)")


def check_dir(
    folder: str | os.PathLike,
    kind: str,
    *,
    recognise: Callable[[Path], bool] | None = None,
    option: str = "--out",
) -> None:
    """The checks of :func:`claim_dir`, writing nothing (to refuse before any other work)."""
    folder = Path(folder)
    marker = folder / MARKER
    if folder.exists() and not folder.is_dir():
        raise SystemFailure(f"{option} {folder} exists and is not a directory")
    if marker.is_file():
        try:
            made_by = json.loads(marker.read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            made_by = None
        if made_by != kind:
            raise RobustSegError(
                f"{option} {folder} holds the output of robustseg {made_by or '(unreadable)'}, "
                f"not of {kind}; choose another folder"
            )
    _check_lock(folder)
    if not marker.is_file() and folder.is_dir():
        entries = sorted(p.name for p in folder.iterdir() if not p.name.startswith(LOCK))
        if entries and not (recognise is not None and recognise(folder)):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise RobustSegError(
                f"{option} {folder} is not empty ({shown}) and was not made by robustseg "
                f"{kind}; choose a new or empty folder (nothing was changed)"
            )


def claim_dir(
    folder: str | os.PathLike,
    kind: str,
    *,
    recognise: Callable[[Path], bool] | None = None,
    option: str = "--out",
) -> DirLock:
    """Claims an output folder for a job of ``kind`` and locks it.

    The folder may be missing or empty (it is created and marked), marked by a job of the same
    kind, or, for folders made before markers existed, recognised by ``recognise``. Anything
    else is refused before any work, so that no file of the user's is replaced. A folder locked
    by a live process is refused with its PID; a lock whose process is gone is taken over.

    Args:
        folder: The output folder.
        kind: The kind of job (``"evaluate"``, ``"cityscapes-c"``, ...).
        recognise: Tells an unmarked folder of this kind from a foreign one.
        option: The option that named the folder (for the messages).

    Returns:
        The lock; release it when the job ends (also on failure).

    Raises:
        RobustSegError: A file, a folder of another kind, a foreign non-empty folder, or a
            folder in use.
    """
    folder = Path(folder)
    check_dir(folder, kind, recognise=recognise, option=option)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # innermost first
    lock = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = _take_lock(folder)
        if not (folder / MARKER).is_file():
            write_json_atomic(folder / MARKER, {"kind": kind, "made_by": "robustseg"})
    except BaseException:  # e.g. a full disk: leave nothing behind
        if lock is not None:
            lock.release()
        for made in created:
            with contextlib.suppress(OSError):
                made.rmdir()
        raise
    return lock


# ----------------------------------------------------------------------------- figures

# What matplotlib would stamp with the time of writing (PDF ``CreationDate``, SVG ``Date``):
# left out, so that the same figure gives the same bytes (the committed demo output stays
# unchanged when the demo is run again). PNG carries no date. SVG element ids are salted with a
# random UUID unless ``svg.hashsalt`` is set: a fixed salt.
_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}
_FIXED_RC = {"svg.hashsalt": "robustseg"}


def save_figure(fig: object, dest: str | os.PathLike, **kwargs: object) -> Path:
    """Saves a matplotlib figure atomically, in the format of ``dest``'s extension, undated.

    Args:
        fig: A ``matplotlib.figure.Figure``.
        dest: The file (``.png``, ``.pdf``, ``.svg``, ...).
        **kwargs: Passed to ``savefig`` (``dpi``, ``bbox_inches``, ...).

    Returns:
        ``dest`` as a ``Path``.
    """
    import matplotlib

    dest = Path(dest)
    fmt = dest.suffix[1:].lower()
    with atomic_path(dest, suffix=dest.suffix) as tmp, matplotlib.rc_context(_FIXED_RC):
        fig.savefig(tmp, format=fmt, metadata=_NO_DATE.get(fmt), **kwargs)
    return dest
