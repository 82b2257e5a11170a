"""Helpers shared by the fast corruption implementations."""

from __future__ import annotations

import numpy as np


def to_uint8(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Scale, round half to even, clip to 0..255 and cast: the one clip-and-round at the end.

    Args:
        x: float image (any float dtype).
        scale: multiplied in before rounding (255 for images in [0, 1]).
    """
    if scale != 1.0:
        x = x * scale
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
