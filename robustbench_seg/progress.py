"""Progress of long commands: a tqdm bar on a terminal, plain lines elsewhere (SLURM, nohup, tee).

Off a terminal a line ``desc: done/total unit (pct%), rate unit/s, ETA h:mm:ss`` is written to
stderr at most every ``ROBUSTSEG_PROGRESS_INTERVAL`` seconds (default 30), and one summary line
when the work is complete.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO, TypeVar

__all__ = ["Progress", "progress_iter"]

T = TypeVar("T")
DEFAULT_INTERVAL = 30.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("ROBUSTSEG_PROGRESS_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """The tqdm calls the commands use (``update``, ``set_postfix_str``, ``set_postfix``,
    ``close``), shown as a bar on a terminal and as periodic lines otherwise.

    Args:
        total: Units of work.
        desc: What is being done (the line's prefix).
        unit: The unit's name.
        enabled: ``False`` shows nothing.
        initial: Units already done (a resumed run).
        stream: Where to write (default ``sys.stderr``).
        summary: Off a terminal, write a summary line when the work is complete (short
            preparatory steps, such as the input checks, leave it out).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        unit: str = "it",
        enabled: bool = True,
        initial: int = 0,
        stream: TextIO | None = None,
        summary: bool = True,
    ) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.done = self.initial = int(initial)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.summary = summary
        self.postfix = ""
        self.closed = False
        self.bar = None
        self.start = self.last = time.monotonic()
        self.interval = _interval()
        if enabled and _isatty(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                file=self.stream,
            )  # fmt: skip

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled:
            now = time.monotonic()
            if now - self.last >= self.interval and self.done < self.total:
                self.last = now
                self._write(self._line(now))

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        """Text after the counts (e.g. the current cell)."""
        self.postfix = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=refresh)

    def set_postfix(
        self, values: Mapping[str, Any] | None = None, refresh: bool = False, **more: Any
    ) -> None:
        """``key=value`` pairs after the counts (e.g. loss and learning rate)."""
        pairs = {**(values or {}), **more}
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in pairs.items()), refresh)

    def close(self) -> None:
        """Ends the bar; off a terminal, a summary line if the work is complete."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.summary and self.total and self.done >= self.total:
            elapsed = time.monotonic() - self.start
            rate = (self.done - self.initial) / elapsed if elapsed > 0 else float("inf")
            self._write(
                f"{self.desc}: done, {self.done}/{self.total} {self.unit} in {_clock(elapsed)} "
                f"({rate:.2f} {self.unit}/s)"
            )

    def _line(self, now: float) -> str:
        elapsed = now - self.start
        new = self.done - self.initial
        rate = new / elapsed if elapsed > 0 else 0.0
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        tail = f" [{self.postfix}]" if self.postfix else ""
        return (
            f"{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), "
            f"{rate:.2f} {self.unit}/s, ETA {eta}{tail}"
        )

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_iter(
    items: Iterable[T], total: int, desc: str, *, unit: str = "it", enabled: bool = True
) -> Iterator[T]:
    """``items`` with a :class:`Progress` advancing one unit per item."""
    with Progress(total, desc, unit=unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update()
