"""Corrupting single files and rendering contact sheets (``robustseg corrupt``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from corruptions import corrupt, get_corruption_names
from robustbench_seg.data.images import read_rgb
from robustbench_seg.data.png import write_png_atomic
from robustbench_seg.errors import RobustSegError


def _load(image: Path) -> np.ndarray:
    if not Path(image).is_file():
        raise RobustSegError(f"no such image: {image}")
    return read_rgb(image)


def _check_dest(image: Path, out: Path, overwrite: bool) -> None:
    """No file is replaced unless asked, and never the input image."""
    if Path(out).exists() and Path(image).exists() and Path(out).resolve() == Path(image).resolve():
        raise RobustSegError(f"the output {out} is the input image; choose another file")
    if Path(out).is_dir():
        raise RobustSegError(f"the output {out} is a directory; give a file name (.png)")
    if Path(out).exists() and not overwrite:
        raise RobustSegError(f"{out} exists; pass --overwrite to replace it")


def corrupt_file(image: Path, name: str, severity: int, out: Path, *, seed: int = 0,
                 backend: str = "fast", overwrite: bool = False) -> np.ndarray:  # fmt: skip
    """Corrupt the image file ``image`` and write a PNG to ``out``; returns the array.

    An existing ``out`` is replaced only with ``overwrite`` (never the input image)."""
    _check_dest(image, out, overwrite)
    result = corrupt(_load(image), name, severity, seed, backend=backend)
    write_png_atomic(Path(out), result)
    return result


def contact_sheet(image: Path, severity: int, out: Path, *, seed: int = 0, backend: str = "fast",
                  tile_width: int = 512, overwrite: bool = False) -> np.ndarray:  # fmt: skip
    """A 4x4 grid of ``image`` under the 16 Cityscapes-C corruptions at ``severity`` (rows:
    blur, noise, digital, weather), each tile labelled; written as PNG to ``out`` (an existing
    file only with ``overwrite``)."""
    import cv2

    _check_dest(image, out, overwrite)
    src = _load(image)
    h, w = src.shape[:2]
    th = max(32, round(h * tile_width / w))
    tiles = []
    for name in get_corruption_names("benchmark"):
        tile = cv2.resize(corrupt(src, name, severity, seed, backend=backend), (tile_width, th),
                          interpolation=cv2.INTER_AREA)  # fmt: skip
        band = max(14, th // 12)
        tile[:band] = (tile[:band] * 0.35).astype(np.uint8)
        cv2.putText(tile, f"{name} s{severity}", (4, band - 4), cv2.FONT_HERSHEY_SIMPLEX,
                    band / 32, (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
        tiles.append(tile)
    rows = [np.concatenate(tiles[i : i + 4], axis=1) for i in range(0, 16, 4)]
    sheet = np.concatenate(rows, axis=0)
    write_png_atomic(Path(out), sheet)
    return sheet
