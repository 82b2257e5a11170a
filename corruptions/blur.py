"""Blur corruptions, fast backend, following imagecorruptions (Hendrycks & Dietterich 2019)."""

from __future__ import annotations

import math

import cv2
import numpy as np
from numba import njit

from corruptions._util import UNIT, UNIT32, clip_truncate, paired_random_state

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


_TILE = 512  # elements per inner loop: an accumulator tile and its inputs stay in L1


@njit(cache=True, nogil=True, inline="always")
def _ndimage_index(i, n, mode):  # pragma: no cover - numba
    # scipy.ndimage boundary: mode 0 "nearest" (clamp), 1 "reflect" (d c b a | a b c d | d c b a)
    if mode == 0:
        return min(max(i, 0), n - 1)
    period = 2 * n
    i = i % period
    return i if i < n else period - 1 - i


@njit(cache=True, nogil=True)
def _correlate_rows(x, w, mode, out):  # pragma: no cover - numba
    # scipy's symmetric correlate1d along axis 0 of x (H, M), in its order: x[y] w0, then
    # + (x[y - j] + x[y + j]) w_j for j = r .. 1, in float64; stored in out's dtype.
    h, m = x.shape
    r = w.size // 2
    acc = np.empty(_TILE, np.float64)
    rows = np.empty(2 * r + 1, np.int64)
    for y in range(h):
        for j in range(-r, r + 1):
            rows[j + r] = _ndimage_index(y + j, h, mode)
        for k0 in range(0, m, _TILE):
            n = min(_TILE, m - k0)
            src = x[y, k0 : k0 + n]
            w0 = w[r]
            for k in range(n):
                acc[k] = np.float64(src[k]) * w0
            for j in range(r, 0, -1):
                a = x[rows[r - j], k0 : k0 + n]
                b = x[rows[r + j], k0 : k0 + n]
                wj = w[r - j]
                for k in range(n):
                    acc[k] += (np.float64(a[k]) + np.float64(b[k])) * wj
            o = out[y, k0 : k0 + n]
            for k in range(n):
                o[k] = acc[k]


@njit(cache=True, nogil=True)
def _correlate_cols(x, w, mode, ch, out):  # pragma: no cover - numba
    # The same along axis 1 of x (H, W * ch), channels interleaved.
    h, m = x.shape
    nw = m // ch
    r = w.size // 2
    buf = np.empty(m + 2 * r * ch, np.float64)
    acc = np.empty(_TILE, np.float64)
    for y in range(h):
        _pad_row(x[y], buf, nw, ch, r, mode)
        for k0 in range(0, m, _TILE):
            n = min(_TILE, m - k0)
            _correlate_tile(buf, r * ch + k0, n, w, ch, acc)
            o = out[y, k0 : k0 + n]
            for k in range(n):
                o[k] = acc[k]


@njit(cache=True, nogil=True, inline="always")
def _pad_row(src, buf, nw, ch, r, mode):  # pragma: no cover - numba
    # buf = src (nw pixels of ch values) extended by r pixels on both sides, as float64
    for k in range(nw * ch):
        buf[r * ch + k] = src[k]
    for p in range(r):
        ql = _ndimage_index(p - r, nw, mode) * ch
        qr = _ndimage_index(nw + p, nw, mode) * ch
        for c in range(ch):
            buf[p * ch + c] = src[ql + c]
            buf[(nw + r + p) * ch + c] = src[qr + c]


@njit(cache=True, nogil=True, inline="always")
def _correlate_tile(buf, base, n, w, ch, acc):  # pragma: no cover - numba
    # acc[k] = scipy's symmetric correlation at buf[base + k], neighbours ch elements apart
    r = w.size // 2
    c0 = buf[base : base + n]
    w0 = w[r]
    for k in range(n):
        acc[k] = c0[k] * w0
    for j in range(r, 0, -1):
        wj = w[r - j]
        lo = buf[base - j * ch : base - j * ch + n]
        hi = buf[base + j * ch : base + j * ch + n]
        for k in range(n):
            acc[k] += (lo[k] + hi[k]) * wj


_MODES = {"nearest": 0, "reflect": 1}


def gaussian_filter(
    x: np.ndarray,
    sigma: float | tuple[float, float],
    mode: str = "nearest",
    truncate: float = 4.0,
) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter`` over the two spatial axes, bit for bit.

    The same taps, the same order of operations (float64 sums of symmetric pairs, outermost
    first), rows then columns, and the intermediate stored in the input's dtype, as scipy does:
    so skimage's ``gaussian(x, sigma, channel_axis=-1)`` (which calls it) is reproduced exactly.

    Args:
        x: HxW or HxWxC float32 or float64 array.
        sigma: standard deviation in pixels, or ``(sigma_rows, sigma_cols)``.
        mode: ``nearest`` or ``reflect`` (scipy's meaning).
        truncate: kernel radius in standard deviations.

    Returns:
        Array of ``x``'s shape and dtype.
    """
    sy, sx = (sigma, sigma) if np.isscalar(sigma) else sigma
    h, w = x.shape[:2]
    ch = x.shape[2] if x.ndim == 3 else 1
    src = np.ascontiguousarray(x).reshape(h, w * ch)
    tmp = np.empty_like(src)
    _correlate_rows(src, gaussian_kernel_1d(sy, truncate), _MODES[mode], tmp)
    out = np.empty_like(src)
    _correlate_cols(tmp, gaussian_kernel_1d(sx, truncate), _MODES[mode], ch, out)
    return out.reshape(x.shape)


@njit(cache=True, nogil=True)
def _gaussian_uint8(img, unit, w, ch, out):  # pragma: no cover - numba
    # out = uint8(clip(G(unit[img]), 0, 1) * 255) with G scipy's Gaussian (mode nearest), fused:
    # input rows are converted once into a ring of 2r + 1 float64 rows, each output row is
    # correlated down the ring, then along itself.
    h, m = img.shape
    nw = m // ch
    r = w.size // 2
    slots = 2 * r + 1
    ring = np.empty((slots, m), np.float64)
    for y in range(min(r, h - 1) + 1):
        for k in range(m):
            ring[y % slots, k] = unit[img[y, k]]
    rows = np.empty(slots, np.int64)
    vrow = np.empty(m, np.float64)
    buf = np.empty(m + 2 * r * ch, np.float64)
    acc = np.empty(_TILE, np.float64)
    for y in range(h):
        new = y + r
        if y > 0 and new < h:
            for k in range(m):
                ring[new % slots, k] = unit[img[new, k]]
        for j in range(-r, r + 1):
            rows[j + r] = min(max(y + j, 0), h - 1) % slots
        for k0 in range(0, m, _TILE):
            n = min(_TILE, m - k0)
            src = ring[rows[r], k0 : k0 + n]
            w0 = w[r]
            for k in range(n):
                acc[k] = src[k] * w0
            for j in range(r, 0, -1):
                a = ring[rows[r - j], k0 : k0 + n]
                b = ring[rows[r + j], k0 : k0 + n]
                wj = w[r - j]
                for k in range(n):
                    acc[k] += (a[k] + b[k]) * wj
            vrow[k0 : k0 + n] = acc[:n]
        _pad_row(vrow, buf, nw, ch, r, 0)
        for k0 in range(0, m, _TILE):
            n = min(_TILE, m - k0)
            _correlate_tile(buf, r * ch + k0, n, w, ch, acc)
            o = out[y, k0 : k0 + n]
            for k in range(n):
                o[k] = np.uint8(min(max(acc[k], 0.0), 1.0) * 255.0)


def gaussian_blur_uint8(image: np.ndarray, sigma: float) -> np.ndarray:
    """imagecorruptions' ``np.uint8(np.clip(gaussian(image / 255., sigma), 0, 1) * 255)``, exactly.

    skimage's ``gaussian`` (``channel_axis=-1``, mode ``nearest``, truncate 4) with scipy's
    arithmetic (see ``gaussian_filter``), fused with the conversions in one pass.

    Args:
        image: uint8 HxWxC image.
        sigma: standard deviation in pixels.

    Returns:
        uint8 array of the image's shape.
    """
    h, w, ch = image.shape
    out = np.empty((h, w * ch), np.uint8)
    src = np.ascontiguousarray(image).reshape(h, w * ch)
    _gaussian_uint8(src, UNIT, gaussian_kernel_1d(sigma), ch, out)
    return out.reshape(image.shape)


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


@njit(cache=True, nogil=True, inline="always")
def _shift_tile(xp, y, k0, n, dys, dxs, ws, pad, channels, acc):  # pragma: no cover - numba
    # acc[:n] = the motion blur of row y, elements k0 .. k0 + n. xp: (H, (W + 2 * pad) * C),
    # edge-replicated by `pad` pixels left and right. The reference's
    # `blurred = blurred + kernel[i] * shifted`: float64 products, summed tap after tap (no
    # FMA: numba contracts nothing without fastmath).
    h = xp.shape[0]
    for k in range(n):
        acc[k] = 0.0
    for t in range(ws.size):
        sy = min(max(y - dys[t], 0), h - 1)
        start = (pad - dxs[t]) * channels + k0
        src = xp[sy, start : start + n]
        w = ws[t]
        for k in range(n):
            acc[k] += w * np.float64(src[k])


@njit(cache=True, nogil=True)
def _shift_sum(xp, dys, dxs, ws, pad, channels, out):  # pragma: no cover - numba
    # out (H, W * C) float64 = the motion blur
    acc = np.empty(_TILE, np.float64)
    for y in range(out.shape[0]):
        for k0 in range(0, out.shape[1], _TILE):
            n = min(_TILE, out.shape[1] - k0)
            _shift_tile(xp, y, k0, n, dys, dxs, ws, pad, channels, acc)
            out[y, k0 : k0 + n] = acc[:n]


@njit(cache=True, nogil=True)
def _shift_sum_uint8(xp, dys, dxs, ws, pad, channels, out):  # pragma: no cover - numba
    # out (H, W * C) uint8 = the motion blur, clipped to 0..255 and truncated
    acc = np.empty(_TILE, np.float64)
    for y in range(out.shape[0]):
        for k0 in range(0, out.shape[1], _TILE):
            n = min(_TILE, out.shape[1] - k0)
            _shift_tile(xp, y, k0, n, dys, dxs, ws, pad, channels, acc)
            o = out[y, k0 : k0 + n]
            for k in range(n):
                o[k] = np.uint8(min(max(acc[k], 0.0), 255.0))


def motion_blur_kernel_apply(
    x: np.ndarray, radius: int, sigma: float, angle: float, truncate: bool = False
) -> np.ndarray:
    """imagecorruptions' ``_motion_blur``: a sum of edge-replicated shifts with Gaussian weights.

    Each tap ``i`` shifts the image by ``(dy_i, dx_i)`` (output pixel ``(y, x)`` reads input
    ``(clip(y - dy_i), clip(x - dx_i))``, the reference's ``shift`` with edge replication) and
    weighs it by the ``i``-th normalized half-Gaussian tap. Stops at the first shift that
    exceeds the image, as the reference does. The arithmetic is the reference's for uint8 and
    float64 input (float64 weights and sums, tap by tap), so the result is its, bit for bit.

    Args:
        x: HxW or HxWxC image (uint8, float32 or float64).
        radius: kernel radius (``2 * radius + 1`` taps).
        sigma: standard deviation of the taps.
        angle: direction of motion in degrees.
        truncate: return ``np.uint8(np.clip(blurred, 0, 255))`` (fused) instead.

    Returns:
        float64 (or, with ``truncate``, uint8) array of the same shape as ``x``.
    """
    shape = x.shape
    x3 = np.ascontiguousarray(x).reshape(shape[0], shape[1], -1)
    dys, dxs, ws = motion_blur_offsets(radius, sigma, angle, shape)
    if ws.size == 0:
        return np.zeros(shape, np.uint8 if truncate else np.float64)
    pad = int(np.abs(dxs).max())
    xp = cv2.copyMakeBorder(x3, 0, 0, pad, pad, cv2.BORDER_REPLICATE) if pad else x3
    channels = x3.shape[2]
    xp = np.ascontiguousarray(xp).reshape(shape[0], -1)  # (H, (W + 2 pad) * C)
    out = np.empty((shape[0], shape[1] * channels), np.uint8 if truncate else np.float64)
    (_shift_sum_uint8 if truncate else _shift_sum)(xp, dys, dxs, ws, pad, channels, out)
    return out.reshape(shape)


def _zoom_axis(
    n_in: int, n_out: int, offset: int, n_keep: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scipy.ndimage.zoom's sampling along one axis (order 1, mode "constant", no grid mode).

    Output index ``o`` samples input coordinate ``o * (n_in - 1) / (n_out - 1)`` (corners
    aligned); its neighbours ``floor`` and the next one (mirrored at the last sample) weigh
    ``w0 = 1 - frac`` and ``w1 = 1 - w0``; a coordinate that rounds past the last sample gives
    0 (mode "constant"), as scipy does.

    Returns:
        For the first ``n_keep`` outputs: first and second input index (plus ``offset``), their
        float64 weights, and a flag for outputs that are 0.
    """
    zoom = (n_in - 1) / (n_out - 1) if n_out > 1 else 1.0
    cc = np.arange(n_keep, dtype=np.float64) * zoom
    zero = cc > n_in - 1
    cc[zero] = 0.0
    start = np.floor(cc)
    w0 = 1.0 - (cc - start)
    w1 = 1.0 - w0
    i0 = start.astype(np.int64)
    i1 = i0 + 1
    i1[i1 >= n_in] = max(n_in - 2, 0)  # scipy mirrors there; the weight is 0
    return i0 + offset, i1 + offset, w0, w1, zero


def _zoom_plan(shape: tuple[int, ...], zoom_factor: float, keep: tuple[int, int] | None):
    # Per axis, _zoom_axis for imagecorruptions' clipped_zoom: the central ceil(n / z) crop,
    # zoomed to round(crop * z) samples, of which the first `keep` are wanted.
    plan = []
    for axis in (0, 1):
        n = shape[axis]
        crop = int(np.ceil(n / float(zoom_factor)))
        top = (n - crop) // 2
        n_out = int(round(crop * zoom_factor))
        n_keep = n_out if keep is None else min(keep[axis], n_out)
        plan.append(_zoom_axis(crop, n_out, top, n_keep))
    return plan


@njit(cache=True, nogil=True)
def _zoom_bilinear(
    x, r0, r1, rw0, rw1, rzero, c0, c1, cw0, cw1, czero, out, add
):  # pragma: no cover
    # scipy's order-1 sum for each output (i, j, k): ((v * wy) * wx) over the four neighbours,
    # rows outer, in float64, stored in out's dtype (added to it if `add`, as `out +=` does).
    ch = x.shape[2]
    for i in range(out.shape[0]):
        if rzero[i]:
            if not add:
                out[i] = 0
            continue
        a0 = x[r0[i]]
        a1 = x[r1[i]]
        wy0 = rw0[i]
        wy1 = rw1[i]
        for j in range(out.shape[1]):
            if czero[j]:
                if not add:
                    out[i, j] = 0
                continue
            p = c0[j]
            q = c1[j]
            wx0 = cw0[j]
            wx1 = cw1[j]
            for k in range(ch):
                t = np.float64(a0[p, k]) * wy0 * wx0
                t += np.float64(a0[q, k]) * wy0 * wx1
                t += np.float64(a1[p, k]) * wy1 * wx0
                t += np.float64(a1[q, k]) * wy1 * wx1
                if add:
                    out[i, j, k] += out.dtype.type(t)
                else:
                    out[i, j, k] = t


def clipped_zoom(x: np.ndarray, zoom_factor: float) -> np.ndarray:
    """imagecorruptions' ``clipped_zoom``: bilinear zoom of the central crop, bit for bit.

    Crops the central ``ceil(n / zoom_factor)`` rows and columns and zooms them by
    ``zoom_factor`` as ``scipy.ndimage.zoom(order=1)`` does (output size
    ``round(crop * zoom_factor)``, corners aligned, scipy's arithmetic and its "constant"
    border; see ``_zoom_axis``). Like the reference, the result is not cropped back to the
    input size.

    Args:
        x: HxW or HxWxC float32 or float64 image.
        zoom_factor: zoom factor (>= 1 in imagecorruptions).

    Returns:
        Array of ``x``'s dtype, of shape ``(round(ceil(H / z) * z), round(ceil(W / z) * z)[, C])``.
    """
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    rows, cols = _zoom_plan(x.shape, zoom_factor, None)
    out = np.empty((rows[0].size, cols[0].size, x3.shape[2]), x3.dtype)
    _zoom_bilinear(x3, *rows, *cols, out, False)
    return out if x.ndim == 3 else out[:, :, 0]


# ---------------------------------------------------------------------------------------------
# Corruptions
# ---------------------------------------------------------------------------------------------

# imagecorruptions `gaussian_blur`: sigma.
GAUSSIAN_BLUR = (1, 2, 3, 4, 6)


def gaussian_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur (skimage ``gaussian``, mode ``nearest``, truncate 4): the reference's bytes.

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: unused (deterministic corruption); part of the common signature.

    Returns:
        uint8 HxWx3 image.
    """
    return gaussian_blur_uint8(image, GAUSSIAN_BLUR[severity - 1])


# imagecorruptions `glass_blur`: (sigma, max_delta, iterations).
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))


_MT_N = 624  # MT19937 state size
_MT_M = 397


@njit(cache=True, nogil=True)
def _mt_seed(seed):  # pragma: no cover - numba
    # MT19937 state after init_genrand(seed), as numba's (and NumPy's legacy) np.random.seed;
    # the last entry is the position of the next word (624: twist first).
    mt = np.empty(_MT_N + 1, np.int64)
    mt[0] = seed & 0xFFFFFFFF
    for i in range(1, _MT_N):
        prev = mt[i - 1]
        mt[i] = (1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF
    mt[_MT_N] = _MT_N
    return mt


@njit(cache=True, nogil=True, inline="always")
def _mt_next(mt):  # pragma: no cover - numba
    # The next 32-bit word of MT19937 (twist, then tempering).
    if mt[_MT_N] >= _MT_N:
        for i in range(_MT_N):
            i1 = i + 1 if i + 1 < _MT_N else 0
            im = i + _MT_M if i + _MT_M < _MT_N else i + _MT_M - _MT_N
            y = (mt[i] & 0x80000000) | (mt[i1] & 0x7FFFFFFF)
            mt[i] = mt[im] ^ (y >> 1) ^ ((y & 1) * 0x9908B0DF)
        mt[_MT_N] = 0
    y = mt[mt[_MT_N]]
    mt[_MT_N] += 1
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    return y


@njit(cache=True, nogil=True, inline="always")
def _mt_randint(mt, low, n, mask):  # pragma: no cover - numba
    # numba's np.random.randint(low, low + n) for n > 1: the low bits of one word (mask: as
    # many as n - 1 needs), redrawn while out of range.
    while True:
        r = _mt_next(mt) & mask
        if r < n:
            return low + r


@njit(cache=True, nogil=True)
def _glass_shuffle(x, seed, max_delta, iterations):  # pragma: no cover - numba
    # imagecorruptions' _shuffle_pixels_njit_glass_blur, draw for draw: numba's global generator
    # seeded with `seed`, (dx, dy) = randint(-d, d, size=2) per visited pixel. Its "swap"
    # `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on pixel views copies x[h', w'] into x[h, w] and
    # writes that back to x[h', w']: a copy, not a swap; reproduced as such.
    h, w, ch = x.shape
    mt = _mt_seed(seed)
    n = 2 * max_delta
    mask = 1
    while mask < n - 1:
        mask = 2 * mask + 1
    for _ in range(iterations):
        for i in range(h - max_delta, max_delta, -1):
            for j in range(w - max_delta, max_delta, -1):
                dx = _mt_randint(mt, -max_delta, n, mask)
                dy = _mt_randint(mt, -max_delta, n, mask)
                ip = i + dy
                jp = j + dx
                for c in range(ch):
                    x[i, j, c] = x[ip, jp, c]
    return x


def glass_shuffle(x: np.ndarray, max_delta: int, iterations: int, seed: int) -> np.ndarray:
    """imagecorruptions' glass-blur pixel shuffle, in place on a uint8 HxWxC image.

    Scans rows ``H - max_delta .. max_delta + 1`` and columns ``W - max_delta .. max_delta + 1``
    (both descending), ``iterations`` times; each visited pixel takes the value of the pixel at
    an offset ``(dy, dx)``, each uniform in ``[-max_delta, max_delta)`` (the reference's "swap"
    is a copy; see ``_glass_shuffle``). The offsets are the ones imagecorruptions draws for the
    same ``seed`` (numba's MT19937 seeded with it, numba's ``randint``), so the result is the
    reference's, byte for byte.

    Args:
        x: uint8 HxWxC array, modified in place.
        max_delta: the largest displacement.
        iterations: number of passes.
        seed: 0 .. 2**32 - 1, the ``seed`` imagecorruptions' ``glass_blur`` is given.

    Returns:
        ``x``.
    """
    return _glass_shuffle(x, int(seed), int(max_delta), int(iterations))


def glass_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Glass blur: Gaussian blur, local pixel shuffling, Gaussian blur.

    The first blur is truncated to uint8 as in the reference (part of the corruption). The
    shuffle is seeded from ``rng`` exactly as the reference backend seeds imagecorruptions, so
    for the same ``rng`` the two backends return the same bytes.

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: source of the shuffle's seed.

    Returns:
        uint8 HxWx3 image.
    """
    sigma, max_delta, iterations = GLASS_BLUR[severity - 1]
    seed = int(rng.integers(2**32))  # the reference backend's seed for the same rng
    x = gaussian_blur_uint8(image, sigma)  # np.uint8(gaussian(x / 255.) * 255), as the reference
    glass_shuffle(x, max_delta, iterations, seed)
    return gaussian_blur_uint8(x, sigma)


# imagecorruptions `defocus_blur`: (disk radius, anti-alias sigma).
DEFOCUS_BLUR = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))


def disk_kernel(radius: int, alias_blur: float = 0.1) -> np.ndarray:
    """imagecorruptions' ``disk``: a normalized aliased disk, anti-aliased by a small Gaussian.

    The same calls, so the same float32 taps (their sum is 1 - 4e-9 .. 1 - 3e-8 for radius
    <= 6, and 1.013 / 1.011 for radius 8 / 10, where the Gaussian reflects at the array's edge).

    Args:
        radius: disk radius in pixels.
        alias_blur: sigma of the 3x3 (radius <= 8) or 5x5 Gaussian applied to the disk.

    Returns:
        float32 square kernel, 17x17 for radius <= 8, else ``2 * radius + 1``.
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
    return cv2.GaussianBlur(aliased, ksize=ksize, sigmaX=alias_blur)


def defocus_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Defocus blur: correlation with an anti-aliased disk (reflect-101 border): the reference's
    bytes.

    The reference's own call: ``cv2.filter2D`` on the float64 image / 255. with its float32
    disk (one call on the three channels gives the bytes of its three per-channel calls, at
    any OpenCV thread count), then ``uint8(clip(., 0, 1) * 255)``.

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: unused (deterministic corruption); part of the common signature.

    Returns:
        uint8 HxWx3 image.
    """
    kernel = disk_kernel(*DEFOCUS_BLUR[severity - 1])
    return clip_truncate(cv2.filter2D(UNIT[image], -1, kernel), unit=True)


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
    return motion_blur_kernel_apply(image, radius, sigma, angle, truncate=True)


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
    x = UNIT32[image]  # (image / 255.).astype(np.float32), as the reference
    out = np.zeros_like(x)
    for z in factors:  # out += clipped_zoom(x, z)[:H, :W], in float32
        rows, cols = _zoom_plan(x.shape, z, x.shape[:2])
        _zoom_bilinear(x, *rows, *cols, out, True)
    return clip_truncate((x + out) / np.float32(len(factors) + 1), unit=True)  # float32
