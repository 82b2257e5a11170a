"""Shared fixtures: natural test photos (scikit-image samples), tiny sizes by default."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@functools.lru_cache(maxsize=16)
def natural_image(index: int = 0, height: int = 1024, width: int = 2048) -> np.ndarray:
    """A scikit-image sample photo, resized (area/cubic) to ``height`` x ``width`` RGB uint8."""
    import skimage.data

    img = getattr(skimage.data, _PHOTOS[index % len(_PHOTOS)])()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3]
    interp = cv2.INTER_AREA if img.shape[0] > height else cv2.INTER_CUBIC
    out = cv2.resize(img, (width, height), interpolation=interp)
    out.setflags(write=False)
    return out


@pytest.fixture
def small_image() -> np.ndarray:
    return natural_image(0, 96, 160).copy()
