"""A fast lossless PNG writer (PNG spec, ISO/IEC 15948) and a structural PNG check.

Encoding: every row uses filter type 1 (Sub), computed vectorized, then deflate at level 1
through ISA-L (``isal``), which is 5-10x faster than zlib at level 1 and gives files of the
same size as Pillow's default settings on photographs (benchmarks/bench_corruptions.py). Output
is a standard 8-bit RGB PNG that every decoder reads; it is deterministic for the same pixels.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np

try:  # ISA-L deflate: the fast path; plain zlib is the portable fallback (same format).
    from isal import isal_zlib as _deflate_lib
except ImportError:  # pragma: no cover - isal is a declared dependency
    _deflate_lib = zlib

from robustbench_seg.data.images import PNG_SIGNATURE
from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import write_atomic


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """Encode an 8-bit RGB (HxWx3) or grey (HxW) image as PNG bytes.

    Args:
        image: uint8 array, HxWx3 RGB or HxW.
        level: deflate level (ISA-L: 0-3; 1 is the measured best speed/size trade-off).
    """
    if (
        image.dtype != np.uint8
        or image.ndim not in (2, 3)
        or (image.ndim == 3 and image.shape[2] != 3)
    ):
        raise ValueError(f"encode_png takes uint8 HxW or HxWx3, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    c = 1 if image.ndim == 2 else 3
    x = image.reshape(h, w, c)
    # Filter type 1 (Sub): each byte minus the byte one pixel to the left, modulo 256.
    rows = np.empty((h, w * c + 1), np.uint8)
    rows[:, 0] = 1
    f = rows[:, 1:].reshape(h, w, c)
    f[:, 0] = x[:, 0]
    np.subtract(x[:, 1:], x[:, :-1], out=f[:, 1:])
    idat = _deflate_lib.compress(rows.tobytes(), level)
    color_type = 2 if c == 3 else 0
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def write_png_atomic(path: Path, image: np.ndarray) -> tuple[str, int]:
    """Encode ``image`` as PNG and write it atomically; returns (sha256 hex, size in bytes)."""
    data = encode_png(image)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest(), len(data)


def check_png(path: Path) -> tuple[int, int]:
    """Check that ``path`` is a complete 8-bit PNG (signature, every chunk's CRC, IHDR first,
    IEND last, bit depth) without decoding the pixels; returns (height, width).

    Raises:
        RobustSegError: Naming the file: not a PNG, truncated, corrupt, or 16-bit.
        OSError: The file cannot be read.
    """
    return check_png_bytes(Path(path).read_bytes(), path)


def check_png_bytes(data: bytes, path: str | Path) -> tuple[int, int]:
    """:func:`check_png` of a file's bytes (``path`` names it in messages)."""
    if not data.startswith(PNG_SIGNATURE):
        raise RobustSegError(f"not a PNG file: {path}")
    pos, size, seen_ihdr, hw = 8, len(data), False, (0, 0)
    while True:
        if pos + 12 > size:
            raise RobustSegError(f"truncated PNG (no IEND chunk): {path}")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > size:
            raise RobustSegError(f"truncated PNG (chunk {kind!r} cut off): {path}")
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise RobustSegError(f"corrupt PNG (bad CRC in chunk {kind!r}): {path}")
        if not seen_ihdr:
            if kind != b"IHDR":
                raise RobustSegError(f"corrupt PNG (IHDR is not the first chunk): {path}")
            w, h, depth = struct.unpack(">IIB", data[pos + 8 : pos + 17])
            if depth > 8:
                raise RobustSegError(
                    f"{path} is a {depth}-bit PNG; robustseg reads 8-bit images (convert it to "
                    "8 bits per channel first)"
                )
            hw, seen_ihdr = (h, w), True
        if kind == b"IEND":
            return hw
        pos = end
