"""Fast digital corruptions, following imagecorruptions (Hendrycks & Dietterich 2019)."""

from __future__ import annotations

import io

import cv2
import numba
import numpy as np
from PIL import Image

from corruptions._util import to_uint8
from corruptions.blur import gaussian_kernel_1d


@numba.njit(cache=True, nogil=True)
def _hsv_kernel(img, unit, s_mul, s_add, v_add, out):  # pragma: no cover - compiled
    """skimage's rgb2hsv -> S' = clip(S s_mul + s_add), V' = clip(V + v_add) -> hsv2rgb.

    Per pixel in float64, the same operations in the same order as skimage (ties for the
    maximum resolved as skimage does: blue over green over red), then rint and clip to uint8.
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
        # the one clip-and-round, as to_uint8(clip(x, 0, 1) * 255)
        out[i, 0] = np.uint8(np.rint(min(max(r, 0.0), 1.0) * 255.0))
        out[i, 1] = np.uint8(np.rint(min(max(g, 0.0), 1.0) * 255.0))
        out[i, 2] = np.uint8(np.rint(min(max(b, 0.0), 1.0) * 255.0))


_UNIT = np.arange(256, dtype=np.float64) / 255.0  # grey level -> [0, 1], as x / 255.


def _hsv_adjust(image: np.ndarray, s_mul: float, s_add: float, v_add: float) -> np.ndarray:
    flat = image.reshape(-1, 3)
    out = np.empty_like(flat)
    _hsv_kernel(flat, _UNIT, float(s_mul), float(s_add), float(v_add), out)
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
    means = np.array(cv2.mean(image)[:3], dtype=np.float64) / 255.0  # (3,)
    x = np.arange(256, dtype=np.float64)[:, None] / 255.0  # (256, 1)
    lut = to_uint8(np.clip((x - means) * c + means, 0, 1), scale=255.0)  # (256, 3)
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


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian kernel, truncated at ``ELASTIC_TRUNCATE`` sigma, float32."""
    return gaussian_kernel_1d(sigma, ELASTIC_TRUNCATE).astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _reflect(i, n):  # pragma: no cover - compiled
    # scipy.ndimage mode "reflect" (half-sample symmetric), for shifts smaller than n
    if i < 0:
        i = -i - 1
    if i >= n:
        i = 2 * n - 1 - i
    return min(max(i, 0), n - 1)


@numba.njit(cache=True, nogil=True)
def _warp_kernel(img, dx, dy, out):  # pragma: no cover - compiled
    """Bilinear sampling of ``img`` at (row + dy, col + dx), reflect border, as map_coordinates
    (order=1, mode="reflect"); clip to [0, 255] and rint."""
    h, w = img.shape[0], img.shape[1]
    for i in range(h):
        for j in range(w):
            y = i + dy[i, j]
            x = j + dx[i, j]
            y0 = np.floor(y)
            x0 = np.floor(x)
            wy = y - y0
            wx = x - x0
            iy = int(y0)
            ix = int(x0)
            ya = _reflect(iy, h)
            yb = _reflect(iy + 1, h)
            xa = _reflect(ix, w)
            xb = _reflect(ix + 1, w)
            for ch in range(3):
                top = img[ya, xa, ch] * (1.0 - wx) + img[ya, xb, ch] * wx
                bot = img[yb, xa, ch] * (1.0 - wx) + img[yb, xb, ch] * wx
                val = top * (1.0 - wy) + bot * wy
                out[i, j, ch] = np.uint8(np.rint(min(max(val, 0.0), 255.0)))


def elastic_transform(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Elastic deformation: a Gaussian-smoothed uniform displacement field, bilinear warp.

    As imagecorruptions: dx, dy ~ alpha * gaussian(U(-m, m)), m = 0.005 * H, smoothing sigma
    (0.01 H, 0.01 W) truncated at 3 sigma, reflect borders; sampled at (y + dy, x + dx).

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: the only source of randomness.

    Returns:
        The corrupted uint8 image.
    """
    h, w = image.shape[:2]
    alpha = ELASTIC_ALPHA[severity - 1]
    m = h * ELASTIC_MAX_SHIFT
    ky = _gaussian_kernel(h * ELASTIC_SIGMA)
    kx = _gaussian_kernel(w * ELASTIC_SIGMA)
    # The mean change of a smooth random warp varies a lot from field to field (few independent
    # blobs), so we draw the uniforms with the reference's stream: a RandomState seeded from
    # ``rng`` exactly as the reference backend seeds it. Same law; the field matches the
    # reference's draw for draw (never the global state).
    legacy = np.random.RandomState(int(rng.integers(2**32)))  # noqa: NPY002
    fields = []
    for _ in range(2):  # dx, then dy (the reference's order)
        noise = legacy.uniform(-m, m, size=(h, w)).astype(np.float32)
        smooth = cv2.sepFilter2D(noise, -1, kx, ky, borderType=cv2.BORDER_REFLECT)
        fields.append(smooth * np.float32(alpha))
    out = np.empty_like(image)
    _warp_kernel(image, fields[0], fields[1], out)
    return out
