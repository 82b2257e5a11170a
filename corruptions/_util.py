"""Helpers shared by the fast corruption implementations."""

from __future__ import annotations

import numba
import numpy as np

# Grey level -> [0, 1], as imagecorruptions computes it: ``x / 255.`` in float64, and the
# float32 image where it uses one (``np.float32`` levels / 255 round to the same values).
UNIT = np.arange(256, dtype=np.float64) / 255.0
UNIT32 = UNIT.astype(np.float32)
UNIT.setflags(write=False)
UNIT32.setflags(write=False)


def clip_truncate(x: np.ndarray, unit: bool = False) -> np.ndarray:
    """``np.uint8(np.clip(x, 0, 255))``: clip, then truncate, as imagecorruptions ends.

    imagecorruptions returns ``np.uint8(y)`` of its clipped float result ``y``; the cast
    truncates, so 254.9999 becomes 254. One pass in numba (OpenCV's saturating conversion
    rounds instead, and NumPy takes two passes): 1.9 ms for a 1024x2048x3 float32 image,
    4.2 ms for float64 (the rounding it replaces took 3.3 and 5.2 ms).

    Args:
        x: float image (float32 or float64, any shape), in grey levels (0..255).
        unit: ``x`` is in [0, 1] units: ``np.uint8(np.clip(x, 0, 1) * 255)`` instead, the
            reference's own expression (the product in ``x``'s dtype).

    Returns:
        uint8 array of the same shape.
    """
    src = np.ascontiguousarray(x)
    out = np.empty(src.shape, np.uint8)
    (_clip_truncate_unit if unit else _clip_truncate)(src.reshape(-1), out.reshape(-1))
    return out


@numba.njit(cache=True, nogil=True)
def _clip_truncate(x, out):  # pragma: no cover - compiled
    lo = x.dtype.type(0)
    hi = x.dtype.type(255)
    for i in range(x.size):
        out[i] = np.uint8(min(max(x[i], lo), hi))


@numba.njit(cache=True, nogil=True)
def _clip_truncate_unit(x, out):  # pragma: no cover - compiled
    lo = x.dtype.type(0)
    hi = x.dtype.type(1)
    scale = x.dtype.type(255)
    for i in range(x.size):
        out[i] = np.uint8(min(max(x[i], lo), hi) * scale)


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


def warp_nearest(label: np.ndarray, dx: np.ndarray, dy: np.ndarray, fill: int) -> np.ndarray:
    """``label`` sampled at ``(y + dy, x + dx)`` by nearest neighbour: what a geometric
    corruption that samples its image there does to the image's label map.

    The coordinates are ``y + float64(dy)`` as ``map_coordinates`` computes them; the nearest
    pixel is ``floor(c + 0.5)``. A sample outside the image (beyond the half-pixel border where
    ``mode="reflect"`` mirrors it) gets ``fill``: its pixel shows a mirrored neighbour, not the
    labelled scene.

    Args:
        label: ``(H, W)`` array (uint8 label map).
        dx, dy: ``(H, W)`` displacements (columns, rows).
        fill: The value of samples from outside the image.

    Returns:
        A new ``(H, W)`` array of ``label``'s dtype holding only ``label``'s values and ``fill``.
    """
    out = np.empty(label.shape, label.dtype)
    _nearest_kernel(np.ascontiguousarray(label), dx, dy, fill, out)
    return out


@numba.njit(cache=True, nogil=True)
def _nearest_kernel(label, dx, dy, fill, out):  # pragma: no cover - compiled
    h, w = label.shape
    for i in range(h):
        for j in range(w):
            r = np.floor(i + np.float64(dy[i, j]) + 0.5)
            c = np.floor(j + np.float64(dx[i, j]) + 0.5)
            if r < 0 or r >= h or c < 0 or c >= w:
                out[i, j] = fill
            else:
                out[i, j] = label[int(r), int(c)]
