"""The one size notation of every command: ``WIDTHxHEIGHT`` (``1024x512``), or ``N`` for NxN."""

from __future__ import annotations

from collections.abc import Sequence

from robustbench_seg.errors import RobustSegError

__all__ = ["format_size", "hw", "parse_size", "size_value"]


def parse_size(text: str, *, option: str = "size") -> tuple[int, int]:
    """``"WxH"`` or ``"N"`` → ``(height, width)``; both at least 1.

    Raises:
        RobustSegError: Anything else (``512,1024``, ``x512``, ``0x3``, ...).
    """
    parts = str(text).strip().lower().split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) not in (1, 2) or min(nums, default=0) < 1:
        raise RobustSegError(
            f"{option} {text!r} is not a size: use WIDTHxHEIGHT (e.g. 1024x512), or N for NxN"
        )
    w, h = (nums[0], nums[0]) if len(nums) == 1 else nums
    return h, w


def hw(size: int | Sequence[int]) -> tuple[int, int]:
    """One int (a square) or ``(h, w)`` -> ``(h, w)`` as ints."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def format_size(size: int | Sequence[int]) -> str:
    """``(height, width)`` (or one int for a square) → ``"WxH"``: how every message prints a
    size."""
    if isinstance(size, int):
        return f"{size}x{size}"
    h, w = size
    return f"{w}x{h}"


def size_value(size: int | Sequence[int]) -> int | list[int]:
    """``(h, w)`` as recorded in run files: one int for a square (as runs always recorded it),
    else ``[h, w]``."""
    if isinstance(size, int):
        return size
    h, w = (int(v) for v in size)
    return h if h == w else [h, w]
