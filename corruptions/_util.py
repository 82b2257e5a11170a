"""Helpers shared by the fast corruption implementations."""

from __future__ import annotations

import cv2
import numpy as np


def to_uint8(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Scale, round half to even, clip to 0..255 and cast: the one clip-and-round at the end.

    OpenCV's saturating conversion does exactly ``clip(rint(x))`` (round half to even) in one
    pass, ~4x faster than NumPy's three; other layouts take the NumPy path.

    Args:
        x: float image (any float dtype).
        scale: multiplied in before rounding (255 for images in [0, 1]).
    """
    if (
        x.dtype in (np.float32, np.float64)
        and x.ndim in (2, 3)
        and (x.ndim == 2 or x.shape[2] <= 4)
    ):
        return _cv2_to_uint8(x, scale)
    if scale != 1.0:
        x = x * scale
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _cv2_to_uint8(x: np.ndarray, scale: float) -> np.ndarray:
    out = np.empty(x.shape, np.uint8)
    src = np.ascontiguousarray(x)
    # saturate_cast<uchar>(x * scale); cvRound rounds half to even like np.rint
    if scale != 1.0:
        cv2.multiply(src, scale, dst=out, dtype=cv2.CV_8U)
    else:
        cv2.add(src, 0.0, dst=out, dtype=cv2.CV_8U)
    return out


def paired_random_state(rng: np.random.Generator) -> np.random.RandomState:
    """A private legacy generator seeded from ``rng`` exactly as the reference backend seeds
    imagecorruptions (``rng.integers(2**32)``).

    Motion blur (the angle), frost (texture and crop), fog (the fractal's noise) and spatter
    (the liquid layer, of which only a few drops survive at low severities) draw random
    parameters whose spread between seeds dwarfs everything else; drawing
    them from this generator, in the reference's order, gives the two backends the same draws
    for the same ``rng``: the law is unchanged (it is the reference's), and fast-vs-reference
    comparisons become paired instead of being swamped by seed-to-seed variance. No global
    state is used.
    """
    return np.random.RandomState(int(rng.integers(2**32)))
