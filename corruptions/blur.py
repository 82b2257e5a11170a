"""Blur corruptions, fast backend, following imagecorruptions (Hendrycks & Dietterich 2019)."""

from __future__ import annotations

import math

import cv2
import numpy as np
from numba import njit

from corruptions._util import paired_random_state, to_uint8

# ---------------------------------------------------------------------------------------------
# Helpers (also used by corruptions.weather)
# ---------------------------------------------------------------------------------------------


def gaussian_kernel_1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The 1-D taps of ``scipy.ndimage.gaussian_filter``, which skimage's ``gaussian`` uses.

    Args:
        sigma: standard deviation in pixels.
        truncate: radius in standard deviations; the radius is ``int(truncate * sigma + 0.5)``.

    Returns:
        float64 taps of length ``2 * radius + 1``, summing to 1.
    """
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 / float(sigma) ** 2 * x**2)
    return k / k.sum()


def gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """skimage ``gaussian(image, sigma, channel_axis=-1)`` (``nearest``, truncate 4) in float32.

    Args:
        image: HxW or HxWxC array (uint8 or float); values are kept on their own scale.
        sigma: spatial standard deviation in pixels (the channel axis is not blurred).

    Returns:
        float32 array of the same shape.
    """
    k = gaussian_kernel_1d(sigma).astype(np.float32)
    return cv2.sepFilter2D(image, cv2.CV_32F, k, k, borderType=cv2.BORDER_REPLICATE)


def motion_blur_offsets(
    radius: int, sigma: float, angle: float, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The integer shifts and Gaussian taps of imagecorruptions' ``_motion_blur``.

    Args:
        radius: kernel radius; the kernel has ``2 * radius + 1`` taps.
        sigma: standard deviation of the (half-)Gaussian taps.
        angle: direction of motion in degrees.
        shape: shape of the image the kernel is applied to (for the early break).

    Returns:
        ``(dy, dx, w)``: int64 row and column shifts and float64 weights of the taps that the
        reference applies (taps after the first shift that exceeds the image are dropped, as
        the reference breaks out of its loop there; weights are not renormalized).
    """
    width = radius * 2 + 1
    k = np.exp(-(np.arange(width) ** 2) / (2 * (sigma**2))) / (np.sqrt(2 * np.pi) * sigma)
    k = k / np.sum(k)
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    dys, dxs = [], []
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if abs(dy) >= shape[0] or abs(dx) >= shape[1]:
            break  # simulated motion exceeded image borders
        dys.append(dy)
        dxs.append(dx)
    n = len(dys)
    return np.array(dys, np.int64), np.array(dxs, np.int64), k[:n]


@njit(cache=True, nogil=True, fastmath=True)
def _shift_sum(xp, dys, dxs, ws, pad, channels):  # pragma: no cover - numba
    # xp: (H, (W + 2 * pad) * C) uint8 or float32, edge-replicated by `pad` pixels left and right.
    h = xp.shape[0]
    wc = xp.shape[1] - 2 * pad * channels
    out = np.zeros((h, wc), np.float32)
    for y in range(h):
        row = out[y]
        for t in range(ws.size):
            sy = min(max(y - dys[t], 0), h - 1)
            start = (pad - dxs[t]) * channels
            src = xp[sy, start : start + wc]
            w = ws[t]
            for k in range(wc):
                row[k] += w * np.float32(src[k])
    return out


def motion_blur_kernel_apply(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """imagecorruptions' ``_motion_blur``: a sum of edge-replicated shifts with Gaussian weights.

    Each tap ``i`` shifts the image by ``(dy_i, dx_i)`` (output pixel ``(y, x)`` reads input
    ``(clip(y - dy_i), clip(x - dx_i))``, the reference's ``shift`` with edge replication) and
    weighs it by the ``i``-th normalized half-Gaussian tap. Stops at the first shift that
    exceeds the image, as the reference does.

    Args:
        x: HxW or HxWxC image (uint8 is read as is, other dtypes as float32; computed in
            float32).
        radius: kernel radius (``2 * radius + 1`` taps).
        sigma: standard deviation of the taps.
        angle: direction of motion in degrees.

    Returns:
        float32 array of the same shape as ``x``.
    """
    shape = x.shape
    dtype = np.uint8 if x.dtype == np.uint8 else np.float32
    x3 = np.asarray(x, dtype=dtype).reshape(shape[0], shape[1], -1)
    dys, dxs, ws = motion_blur_offsets(radius, sigma, angle, shape)
    if ws.size == 0:
        return np.zeros(shape, np.float32)
    pad = int(np.abs(dxs).max())
    xp = cv2.copyMakeBorder(x3, 0, 0, pad, pad, cv2.BORDER_REPLICATE) if pad else x3
    channels = x3.shape[2]
    xp = np.ascontiguousarray(xp).reshape(shape[0], -1)  # (H, (W + 2 pad) * C)
    out = _shift_sum(xp, dys, dxs, ws.astype(np.float32), pad, channels)
    return out.reshape(shape)


def _zoom_coords(n_in: int, n_out: int, offset: int, n_keep: int) -> tuple[np.ndarray, np.ndarray]:
    # scipy.ndimage.zoom (order=1, grid_mode=False): output o samples input o * (n_in-1)/(n_out-1).
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 1.0
    pos = np.arange(n_keep, dtype=np.float64) * scale
    i0 = np.minimum(np.floor(pos), n_in - 1)
    frac = pos - i0
    return (i0 + offset).astype(np.int64), frac.astype(np.float32)


@njit(cache=True, nogil=True, fastmath=True)
def _zoom_accumulate(x, out, r0, rw, ga, gb, gf, lo, hi):  # pragma: no cover - numba
    # Separable bilinear: blend two source rows, then interpolate along the row. out += layer.
    # x: (H, W * C), out: (Ho, Wo * C); ga/gb/gf: per output value, the flat indices of its
    # left and right neighbours within a row and the weight of the right one.
    h = x.shape[0]
    n = out.shape[1]
    buf = np.empty(x.shape[1], np.float32)
    for i in range(out.shape[0]):
        xa = x[r0[i]]
        xb = x[min(r0[i] + 1, h - 1)]
        fy = rw[i]
        for k in range(lo, hi):
            buf[k] = xa[k] + fy * (xb[k] - xa[k])
        o = out[i]
        for k in range(n):
            a = buf[ga[k]]
            o[k] += a + gf[k] * (buf[gb[k]] - a)


def _zoom_into(x3: np.ndarray, out: np.ndarray, zoom_factor: float) -> None:
    # out (Ho, Wo, C) += the first Ho x Wo pixels of clipped_zoom(x3, zoom_factor).
    h, w, ch = x3.shape
    (r0, rw, _), (c0, cw, _) = _zoom_layer_coords(x3.shape, zoom_factor, out.shape[:2])
    c1 = np.minimum(c0 + 1, w - 1)
    chans = np.arange(ch)
    ga = (c0[:, None] * ch + chans).ravel().astype(np.int64)
    gb = (c1[:, None] * ch + chans).ravel().astype(np.int64)
    gf = np.repeat(cw, ch)
    lo, hi = int(c0[0]) * ch, (int(c1[-1]) + 1) * ch
    _zoom_accumulate(x3.reshape(h, -1), out.reshape(out.shape[0], -1), r0, rw, ga, gb, gf, lo, hi)


def _zoom_layer_coords(
    shape: tuple[int, ...], zoom_factor: float, keep: tuple[int, int] | None
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    # Per axis: (first source index, weight of the next one, number of output samples kept).
    coords = []
    for axis in (0, 1):
        n = shape[axis]
        crop = int(np.ceil(n / float(zoom_factor)))
        top = (n - crop) // 2
        n_out = int(round(crop * zoom_factor))
        n_keep = n_out if keep is None else min(keep[axis], n_out)
        coords.append((*_zoom_coords(crop, n_out, top, n_keep), n_keep))
    return coords


def clipped_zoom(x: np.ndarray, zoom_factor: float) -> np.ndarray:
    """imagecorruptions' ``clipped_zoom``: bilinear zoom of the central crop.

    Crops the central ``ceil(n / zoom_factor)`` rows and columns and zooms them by
    ``zoom_factor`` exactly as ``scipy.ndimage.zoom(order=1)`` does (output size
    ``round(crop * zoom_factor)``, output index ``o`` samples input ``o * (crop - 1) /
    (out - 1)``: corners aligned, which ``cv2.resize`` does not do). Like the reference, the
    result is not cropped back to the input size.

    Args:
        x: HxW or HxWxC image (any real dtype; computed in float32).
        zoom_factor: zoom factor (>= 1 in imagecorruptions).

    Returns:
        float32 array of shape ``(round(ceil(H / z) * z), round(ceil(W / z) * z)[, C])``.
    """
    x3 = np.ascontiguousarray(x, dtype=np.float32).reshape(x.shape[0], x.shape[1], -1)
    (_, _, ho), (_, _, wo) = _zoom_layer_coords(x.shape, zoom_factor, None)
    out = np.zeros((ho, wo, x3.shape[2]), np.float32)
    _zoom_into(x3, out, zoom_factor)
    return out if x.ndim == 3 else out[:, :, 0]


# ---------------------------------------------------------------------------------------------
# Corruptions
# ---------------------------------------------------------------------------------------------

# imagecorruptions `gaussian_blur`: sigma.
GAUSSIAN_BLUR = (1, 2, 3, 4, 6)


def gaussian_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur (skimage ``gaussian``, mode ``nearest``, truncate 4).

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: unused (deterministic corruption); part of the common signature.

    Returns:
        uint8 HxWx3 image.
    """
    return to_uint8(gaussian_filter(image, GAUSSIAN_BLUR[severity - 1]))


# imagecorruptions `glass_blur`: (sigma, max_delta, iterations).
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))


@njit(cache=True, nogil=True, inline="always")
def _bounded(raw, pos, span, threshold):  # pragma: no cover - numba
    # The next integer uniform in [0, span) from the 16-bit chunks of raw 64-bit words
    # (Lemire's multiply-shift with rejection, rare: 65536 % span < span), or -1 once raw is
    # used up. pos: one-element array holding the index of the next chunk.
    n = raw.size * 4
    while pos[0] < n:
        p = pos[0]
        pos[0] = p + 1
        m = ((raw[p >> 2] >> np.uint64(16 * (p & 3))) & np.uint64(0xFFFF)) * np.uint64(span)
        if (m & np.uint64(0xFFFF)) >= threshold:
            return np.int64(m >> np.uint64(16))
    return -1


@njit(cache=True, nogil=True)
def _glass_shuffle(x, raw, max_delta, iterations, start):  # pragma: no cover - numba
    # The reference's loop `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on pixel views copies
    # x[h', w'] into x[h, w] and then writes x[h, w]'s new value back to x[h', w']: it is a copy,
    # not a swap. Reproduced as such. Offsets (dx, then dy) come from raw; visits before
    # `start` are skipped. Returns the number of visits done, or the index of the visit at which
    # raw ran out (that visit is not done; call again from there with fresh raw words).
    h, w, ch = x.shape
    span = 2 * max_delta
    threshold = np.uint64((65536 - span) % span)
    pos = np.zeros(1, np.int64)
    t = 0
    for _ in range(iterations):
        for i in range(h - max_delta, max_delta, -1):
            for j in range(w - max_delta, max_delta, -1):
                if t < start:
                    t += 1
                    continue
                dx = _bounded(raw, pos, span, threshold)
                dy = _bounded(raw, pos, span, threshold)
                if dy < 0:
                    return t
                ip = i + dy - max_delta
                jp = j + dx - max_delta
                t += 1
                if ch == 3:
                    x[i, j, 0] = x[ip, jp, 0]
                    x[i, j, 1] = x[ip, jp, 1]
                    x[i, j, 2] = x[ip, jp, 2]
                else:
                    for c in range(ch):
                        x[i, j, c] = x[ip, jp, c]
    return t


def glass_shuffle(
    x: np.ndarray, max_delta: int, iterations: int, rng: np.random.Generator
) -> np.ndarray:
    """imagecorruptions' glass-blur pixel shuffle, in place on a uint8 HxWxC image.

    Scans rows ``H - max_delta .. max_delta + 1`` and columns ``W - max_delta .. max_delta + 1``
    (both descending), ``iterations`` times; each visited pixel takes the value of the pixel at
    an offset ``(dy, dx)``, each uniform in ``[-max_delta, max_delta)`` (the reference's
    "swap" is a copy; see ``_glass_shuffle``). The offsets are drawn from ``rng``'s raw bit
    stream (16 bits an offset, unbiased) inside the sequential numba loop.

    Args:
        x: uint8 HxWxC array, modified in place.
        max_delta: the largest displacement.
        iterations: number of passes.
        rng: the generator to draw offsets from.

    Returns:
        ``x``.
    """
    visits = iterations * max(x.shape[0] - 2 * max_delta, 0) * max(x.shape[1] - 2 * max_delta, 0)
    done = 0
    while done < visits:
        words = (visits - done) // 2 + (visits - done) // 1000 + 64  # 4 offsets a word + margin
        done = _glass_shuffle(x, rng.bit_generator.random_raw(words), max_delta, iterations, done)
    return x


def glass_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Glass blur: Gaussian blur, local pixel shuffling, Gaussian blur.

    The first blur is truncated to uint8 as in the reference (part of the corruption).

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: source of the shuffle offsets.

    Returns:
        uint8 HxWx3 image.
    """
    sigma, max_delta, iterations = GLASS_BLUR[severity - 1]
    x = gaussian_filter(image, sigma).astype(np.uint8)  # truncation, as np.uint8 in the reference
    glass_shuffle(x, max_delta, iterations, rng)
    return to_uint8(gaussian_filter(x, sigma))


# imagecorruptions `defocus_blur`: (disk radius, anti-alias sigma).
DEFOCUS_BLUR = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))


def disk_kernel(radius: int, alias_blur: float = 0.1) -> np.ndarray:
    """imagecorruptions' ``disk``: a normalized aliased disk, anti-aliased by a small Gaussian.

    Args:
        radius: disk radius in pixels.
        alias_blur: sigma of the 3x3 (radius <= 8) or 5x5 Gaussian applied to the disk.

    Returns:
        float32 square kernel (17x17 for radius <= 8, else ``2 * radius + 1``), cropped to the
        taps above 1e-12 (the dropped ones, ~1e-22 at ``alias_blur=0.1``, change nothing).
    """
    if radius <= 8:
        ax = np.arange(-8, 8 + 1)
        ksize = (3, 3)
    else:
        ax = np.arange(-radius, radius + 1)
        ksize = (5, 5)
    xx, yy = np.meshgrid(ax, ax)
    aliased = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    aliased /= np.sum(aliased)
    k = cv2.GaussianBlur(aliased, ksize=ksize, sigmaX=alias_blur)
    c = k.shape[0] // 2
    extent = int(np.max(np.abs(np.nonzero(k > 1e-12)[0] - c)))
    return np.ascontiguousarray(k[c - extent : c + extent + 1, c - extent : c + extent + 1])


@njit(cache=True, nogil=True)
def _disk_sum(p, half_widths, ch):  # pragma: no cover - numba
    # Sum of p over a disk given by its rows' half-widths (index dy + r), through row prefix
    # sums (exact, int32). p: (Hp, Wp * ch) uint8; returns (Hp - 2r, (Wp - 2r) * ch) int32,
    # element (y, x) being the disk centred at p's (y + r, x + r).
    hp, wpc = p.shape
    r = half_widths.size // 2
    n = wpc - 2 * r * ch
    s = np.zeros((hp, wpc + ch), np.int32)  # s[y, i * ch + c] = sum of p[y, x * ch + c], x < i
    for y in range(hp):
        for k in range(wpc):
            s[y, k + ch] = s[y, k] + np.int32(p[y, k])
    out = np.zeros((hp - 2 * r, n), np.int32)
    for y in range(hp - 2 * r):
        o = out[y]
        for d in range(2 * r + 1):
            hw = half_widths[d]
            hi = s[y + d, (r + hw + 1) * ch : (r + hw + 1) * ch + n]
            lo = s[y + d, (r - hw) * ch : (r - hw) * ch + n]
            for k in range(n):
                o[k] += hi[k] - lo[k]
    return out


def defocus_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Defocus blur: correlation with an anti-aliased disk (reflect-101 border, as cv2.filter2D).

    Where the disk and its anti-aliasing Gaussian fit inside the reference's kernel array
    (severities 1-3), the kernel is exactly the aliased disk convolved with that Gaussian, so
    it is applied as an exact disk sum (row prefix sums) followed by the small Gaussian.
    Otherwise the reference's anti-aliasing reflects at the array's edge and the kernel is
    applied as is with ``cv2.filter2D``.

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: unused (deterministic corruption); part of the common signature.

    Returns:
        uint8 HxWx3 image.
    """
    radius, alias_blur = DEFOCUS_BLUR[severity - 1]
    half_array = 8 if radius <= 8 else radius  # the reference's kernel array is 17x17 or 2r+1
    reach = 1 if radius <= 8 else 2  # its anti-aliasing Gaussian is 3x3 or 5x5
    if radius + reach > half_array:
        kernel = disk_kernel(radius, alias_blur)
        out = cv2.filter2D(image, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT_101)
        return to_uint8(out)
    h, w, ch = image.shape
    dy = np.arange(-radius, radius + 1)
    half_widths = np.array([math.isqrt(radius * radius - d * d) for d in dy], np.int64)
    pad = radius + reach
    p = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    disk = _disk_sum(p.reshape(h + 2 * pad, -1), half_widths, ch)  # (H + 2 reach, (W + 2 reach) ch)
    disk = disk.astype(np.float32).reshape(h + 2 * reach, w + 2 * reach, ch)
    g = cv2.getGaussianKernel(2 * reach + 1, alias_blur, ktype=cv2.CV_32F)
    out = cv2.sepFilter2D(disk, cv2.CV_32F, g, g)[reach : reach + h, reach : reach + w]
    area = np.float32(2 * half_widths.sum() + len(half_widths))  # the disk's pixel count
    return to_uint8(out * (np.float32(1) / area))


# imagecorruptions `motion_blur`: (radius, sigma); the angle is uniform in [-45, 45).
MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))


def motion_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Motion blur along a random direction (angle uniform in [-45, 45) degrees).

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: source of the angle.

    Returns:
        uint8 HxWx3 image.
    """
    radius, sigma = MOTION_BLUR[severity - 1]
    angle = paired_random_state(rng).uniform(-45, 45)  # the reference's draw, paired
    return to_uint8(motion_blur_kernel_apply(image, radius, sigma, angle))


# imagecorruptions `zoom_blur`: the zoom factors averaged with the image.
ZOOM_BLUR = (
    np.arange(1, 1.11, 0.01),
    np.arange(1, 1.16, 0.01),
    np.arange(1, 1.21, 0.02),
    np.arange(1, 1.26, 0.02),
    np.arange(1, 1.31, 0.03),
)


def zoom_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Zoom blur: the mean of the image and its central zooms (``clipped_zoom``, cropped).

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: unused (deterministic corruption); part of the common signature.

    Returns:
        uint8 HxWx3 image.
    """
    factors = ZOOM_BLUR[severity - 1]
    x = image.astype(np.float32)
    out = x.copy()
    for z in factors:
        _zoom_into(x, out, z)
    return to_uint8(out / np.float32(len(factors) + 1))
