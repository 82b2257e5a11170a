"""Fast digital corruptions, following imagecorruptions (Hendrycks & Dietterich 2019)."""

from __future__ import annotations

import io

import cv2
import numba
import numpy as np
from PIL import Image

from corruptions._util import UNIT, UNIT32, paired_random_state
from corruptions.blur import gaussian_filter


@numba.njit(cache=True, nogil=True)
def _hsv_kernel(img, unit, s_mul, s_add, v_add, out):  # pragma: no cover - compiled
    """skimage's rgb2hsv -> S' = clip(S s_mul + s_add), V' = clip(V + v_add) -> hsv2rgb.

    Per pixel in float64, the same operations in the same order as skimage (ties for the
    maximum resolved as skimage does: blue over green over red), then clip and truncate to
    uint8 (``np.uint8(np.clip(x, 0, 1) * 255)``): the reference's bytes.
    """
    for i in range(img.shape[0]):
        r = unit[img[i, 0]]
        g = unit[img[i, 1]]
        b = unit[img[i, 2]]
        v = max(r, g, b)
        delta = v - min(r, g, b)
        if delta == 0.0:
            s = 0.0
            h = 0.0
        else:
            s = delta / v
            if b == v:
                h = 4.0 + (r - g) / delta
            elif g == v:
                h = 2.0 + (b - r) / delta
            else:
                h = (g - b) / delta
            h = h / 6.0
            if h < 0.0:  # Python's / NumPy's h % 1.0 for h in (-1/6, 1)
                h += 1.0
        s = min(max(s * s_mul + s_add, 0.0), 1.0)
        v = min(max(v + v_add, 0.0), 1.0)
        h6 = h * 6.0
        hi = np.floor(h6)
        f = h6 - hi
        p = v * (1.0 - s)
        q = v * (1.0 - f * s)
        t = v * (1.0 - (1.0 - f) * s)
        sector = int(hi) % 6
        if sector == 0:
            r, g, b = v, t, p
        elif sector == 1:
            r, g, b = q, v, p
        elif sector == 2:
            r, g, b = p, v, t
        elif sector == 3:
            r, g, b = p, q, v
        elif sector == 4:
            r, g, b = t, p, v
        else:
            r, g, b = v, p, q
        # clip, then truncate, as np.uint8(np.clip(x, 0, 1) * 255)
        out[i, 0] = np.uint8(min(max(r, 0.0), 1.0) * 255.0)
        out[i, 1] = np.uint8(min(max(g, 0.0), 1.0) * 255.0)
        out[i, 2] = np.uint8(min(max(b, 0.0), 1.0) * 255.0)


def _hsv_adjust(image: np.ndarray, s_mul: float, s_add: float, v_add: float) -> np.ndarray:
    flat = image.reshape(-1, 3)
    out = np.empty_like(flat)
    _hsv_kernel(flat, UNIT, float(s_mul), float(s_add), float(v_add), out)
    return out.reshape(image.shape)


# imagecorruptions: brightness, value added to V in HSV (image in [0, 1]).
BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)


def brightness(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Brightness: ``V += c`` (clipped) in HSV space.

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: unused (deterministic corruption).

    Returns:
        The corrupted uint8 image.
    """
    return _hsv_adjust(image, 1.0, 0.0, BRIGHTNESS_SHIFT[severity - 1])


# imagecorruptions: saturate, (scale, offset) of S in HSV space.
SATURATE_FACTORS = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))


def saturate(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Saturation: ``S = S * a + b`` (clipped) in HSV space.

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: unused (deterministic corruption).

    Returns:
        The corrupted uint8 image.
    """
    a, b = SATURATE_FACTORS[severity - 1]
    return _hsv_adjust(image, a, b, 0.0)


# imagecorruptions: contrast, factor applied to the deviation from the per-channel mean.
CONTRAST_FACTOR = (0.4, 0.3, 0.2, 0.1, 0.05)


def contrast(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Contrast: ``(x - mean) * c + mean`` with per-channel means, as a per-channel lookup table.

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: unused (deterministic corruption).

    Returns:
        The corrupted uint8 image.
    """
    c = CONTRAST_FACTOR[severity - 1]
    x = UNIT[:, None]  # (256, 1): the grey levels / 255.
    # The reference's means are NumPy's float64 mean of image / 255. Their exact value is
    # S / (255 N), S the channel's integer sum (recovered exactly from cv2.mean); the two
    # differ by a few ulps, which changes a truncated level only if the level lies within
    # ~1e-11 of an integer. So the LUT is built from the exact means unless some level is that
    # close (e.g. a constant image), and then from NumPy's own mean, as the reference.
    n = image.shape[0] * image.shape[1]
    means = np.rint(np.array(cv2.mean(image)[:3]) * n) / (255.0 * n)
    y = ((x - means) * c + means) * 255  # (256, 3), in [0, 255]: c < 1, a convex combination
    if np.any(np.abs(y - np.rint(y)) < 1e-6):
        means = np.mean(image / 255.0, axis=(0, 1))
    lut = (np.clip((x - means) * c + means, 0, 1) * 255).astype(np.uint8)  # the reference's
    return cv2.LUT(image, lut.reshape(1, 256, 3))


# imagecorruptions: pixelate, downscale factor (PIL box down, nearest up).
PIXELATE_SCALE = (0.6, 0.5, 0.4, 0.3, 0.25)


def pixelate(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pixelate: PIL box downscale by ``c`` then nearest upscale back (as imagecorruptions).

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: unused (deterministic corruption).

    Returns:
        The corrupted uint8 image.
    """
    c = PIXELATE_SCALE[severity - 1]
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.NEAREST)).copy()


# imagecorruptions: jpeg_compression, PIL JPEG quality.
JPEG_QUALITY = (25, 18, 15, 10, 7)


def jpeg_compression(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """JPEG round trip through PIL at quality ``c`` (the same encoder as imagecorruptions).

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: unused (deterministic corruption).

    Returns:
        The corrupted uint8 image.
    """
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=JPEG_QUALITY[severity - 1])
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.array(decoded.convert("RGB"))


# imagecorruptions: elastic_transform, displacement scale alpha (= 250 * factor).
ELASTIC_ALPHA = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)
ELASTIC_SIGMA = 0.01  # Gaussian smoothing sigma, fraction of (height, width)
ELASTIC_MAX_SHIFT = 0.005  # uniform noise amplitude, fraction of the height (both axes)
ELASTIC_TRUNCATE = 3.0  # Gaussian kernel radius in sigmas (skimage gaussian, truncate=3)


@numba.njit(cache=True, nogil=True, inline="always")
def _reflect(c, n):  # pragma: no cover - compiled
    # scipy.ndimage's map_coordinate for mode "reflect" (half-sample symmetric), on a float
    if c < 0:
        if n <= 1:
            return 0.0
        sz2 = 2 * n
        if c < -sz2:
            c = sz2 * int(-c / sz2) + c
        c = c + sz2 if c < -n else (1e-15 if c > -1e-15 else -c) - 1
    elif c > n - 1:
        if n <= 1:
            return 0.0
        sz2 = 2 * n
        c -= sz2 * int(c / sz2)
        if c >= n:
            c = sz2 - c - 1
    return c


@numba.njit(cache=True, nogil=True, inline="always")
def _linear(c, n):  # pragma: no cover - compiled
    # scipy's order-1 spline along one axis at coordinate c (mode "reflect"): the two input
    # indices and their weights (w0 = 1 - frac, w1 = 1 - w0), or indices -1 outside (cval 0).
    cc = _reflect(c, n)
    if cc <= -1.0:
        return -1, -1, 0.0, 0.0
    f = np.floor(cc)
    start = int(f)
    w0 = 1.0 - (cc - f)
    w1 = 1.0 - w0
    i0, i1 = start, start + 1
    if start < 0 or start + 1 >= n:
        i0 = int(_reflect(np.float64(start), n))
        i1 = int(_reflect(np.float64(start + 1), n))
    return i0, i1, w0, w1


@numba.njit(cache=True, nogil=True)
def _warp_kernel(img, unit32, dx, dy, out):  # pragma: no cover - compiled
    """imagecorruptions' ``map_coordinates(image, (y + dy, x + dx, c), order=1,
    mode="reflect")`` on the float32 image, then ``uint8(clip(., 0, 1) * 255)`` in float32.

    scipy's arithmetic: per output, the four neighbours' ``(v * wy) * wx`` summed in float64
    (rows outer), stored as float32 (the channel axis samples an integer coordinate: weight 1
    on its own channel, 0 on the next)."""
    h, w = img.shape[0], img.shape[1]
    for i in range(h):
        for j in range(w):
            y0, y1, wy0, wy1 = _linear(i + np.float64(dy[i, j]), h)
            x0, x1, wx0, wx1 = _linear(j + np.float64(dx[i, j]), w)
            for ch in range(3):
                if y0 < 0 or x0 < 0:
                    t = 0.0
                else:
                    t = np.float64(unit32[img[y0, x0, ch]]) * wy0 * wx0
                    t += np.float64(unit32[img[y0, x1, ch]]) * wy0 * wx1
                    t += np.float64(unit32[img[y1, x0, ch]]) * wy1 * wx0
                    t += np.float64(unit32[img[y1, x1, ch]]) * wy1 * wx1
                v = min(max(np.float32(t), np.float32(0)), np.float32(1)) * np.float32(255)
                out[i, j, ch] = np.uint8(v)


def elastic_field(shape: tuple[int, int], severity: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The displacement field of :func:`elastic_transform`: float32 ``(dx, dy)``, each ``shape``.

    As imagecorruptions: ``alpha * gaussian(U(-m, m))``, m = 0.005 H, smoothing sigma (0.01 H,
    0.01 W) truncated at 3 sigma, reflect borders; the uniforms (dx's, then dy's) from a
    generator seeded from ``rng`` exactly as the reference backend seeds imagecorruptions, so
    one ``rng`` state gives one field to the image, to its label map and to both backends.
    Output pixel ``(y, x)`` samples the input at ``(y + dy, x + dx)``.
    """
    h, w = shape
    alpha = ELASTIC_ALPHA[severity - 1]
    m = h * ELASTIC_MAX_SHIFT
    sigma = (h * ELASTIC_SIGMA, w * ELASTIC_SIGMA)
    legacy = paired_random_state(rng)
    fields = []
    for _ in range(2):  # dx, then dy (the reference's order)
        noise = legacy.uniform(-m, m, size=(h, w))
        smooth = gaussian_filter(noise, sigma, "reflect", ELASTIC_TRUNCATE)
        fields.append((smooth * alpha).astype(np.float32))
    return fields[0], fields[1]


def elastic_warp(image: np.ndarray, field: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``image`` sampled at ``(y + dy, x + dx)`` for ``field = (dx, dy)``, as imagecorruptions'
    ``map_coordinates(order=1, mode="reflect")`` on the float32 image, then clip and truncate."""
    out = np.empty_like(image)
    _warp_kernel(np.ascontiguousarray(image), UNIT32, field[0], field[1], out)
    return out


def elastic_transform(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Elastic deformation: a Gaussian-smoothed uniform displacement field, bilinear warp.

    The field is :func:`elastic_field`, the warp :func:`elastic_warp` (the mean change of a
    smooth random warp varies a lot from field to field, so the uniforms are paired with the
    reference's, see :func:`elastic_field`); every step uses the reference's arithmetic: for
    the same ``rng`` the two backends return the same bytes. imagecorruptions' version has no
    other geometric step (no affine transform, no crop): the field is the whole motion, and a
    label map moves by it (``corruptions.corrupt_pair``).

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: the only source of randomness.

    Returns:
        The corrupted uint8 image.
    """
    return elastic_warp(image, elastic_field(image.shape[:2], severity, rng))
