"""Fast weather corruptions (snow, frost, fog, spatter), in law as imagecorruptions (imaug fork)."""

from __future__ import annotations

import functools
import importlib.resources

import cv2
import numba
import numpy as np

from corruptions._util import paired_random_state, to_uint8
from corruptions.blur import clipped_zoom, gaussian_filter, motion_blur_kernel_apply

# ----------------------------------------------------------------------------------------------
# snow


# imagecorruptions `snow`: (loc, scale, zoom, threshold, blur radius, blur sigma, blend weight)
SNOW_PARAMS: tuple[tuple[float, float, float, float, int, float, float], ...] = (
    (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
    (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
    (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
)


def snow(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Snow: a zoomed, thresholded, motion-blurred normal layer added twice (rotated by 180°).

    Args:
        image: uint8 RGB image, HxWx3.
        severity: 1..5.
        rng: the only source of randomness (layer and blur angle, U(-135°, -45°)).

    Returns:
        The corrupted uint8 HxWx3 image.
    """
    loc, scale, zoom, thresh, radius, sigma, weight = SNOW_PARAMS[severity - 1]
    h, w = image.shape[:2]
    # clipped_zoom reads only the central ceil(h/zoom) x ceil(w/zoom) window of its input, so
    # only that window is drawn (the reference draws the whole HxW layer and discards the rest).
    ch0, ch1 = int(np.ceil(h / zoom)), int(np.ceil(w / zoom))
    top0, top1 = (h - ch0) // 2, (w - ch1) // 2
    layer = np.zeros((h, w, 1), dtype=np.float32)
    layer[top0 : top0 + ch0, top1 : top1 + ch1, 0] = rng.standard_normal(
        (ch0, ch1), dtype=np.float32
    ) * np.float32(scale) + np.float32(loc)
    layer = clipped_zoom(layer, zoom)[..., 0]
    layer[layer < thresh] = 0
    np.clip(layer, 0, 1, out=layer)
    layer = motion_blur_kernel_apply(layer, radius, sigma, rng.uniform(-135, -45))
    # layer may be a few pixels larger than the image; _snow_blend reads its top-left HxW.
    return to_uint8(_snow_blend(image, layer, np.float32(weight)))


@numba.njit(cache=True, nogil=True)
def _snow_blend(img: np.ndarray, layer: np.ndarray, weight: np.float32) -> np.ndarray:
    """The reference's final snow step, fused, in 0..255 units (float32 HxWx3).

    ``weight * x + (1 - weight) * max(x, 1.5 * gray + 0.5)`` plus the snow layer, rounded to
    1/255 steps as the reference rounds it, and the layer rotated by 180 degrees.
    """
    h, w = img.shape[0], img.shape[1]
    out = np.empty((h, w, 3), np.float32)
    rest = np.float32(1.0) - weight
    for i in range(h):
        for j in range(w):
            r = np.float32(img[i, j, 0])
            g = np.float32(img[i, j, 1])
            b = np.float32(img[i, j, 2])
            # cv2 RGB2GRAY weights; + 127.5 is the reference's + 0.5 on [0, 1]
            lift = (r * np.float32(0.299) + g * np.float32(0.587) + b * np.float32(0.114)) * (
                np.float32(1.5)
            ) + np.float32(127.5)
            flake = np.rint(layer[i, j] * np.float32(255.0)) + np.rint(
                layer[h - 1 - i, w - 1 - j] * np.float32(255.0)
            )
            for c in range(3):
                v = np.float32(img[i, j, c])
                out[i, j, c] = weight * v + rest * max(v, lift) + flake
    return out


# ----------------------------------------------------------------------------------------------
# frost


# imagecorruptions `frost`: (image weight, frost weight)
FROST_PARAMS: tuple[tuple[float, float], ...] = (
    (1, 0.4),
    (0.8, 0.6),
    (0.7, 0.7),
    (0.65, 0.7),
    (0.6, 0.75),
)
# imagecorruptions' frost textures, in its order (the index is drawn uniformly). Shipped in
# corruptions/frost/ (byte-identical copies, with imagecorruptions' LICENSE and NOTICE), so that
# the fast backend needs no imagecorruptions, which pulls a second OpenCV wheel.
FROST_FILES: tuple[str, ...] = (
    "frost1.png",
    "frost2.png",
    "frost3.png",
    "frost4.jpg",
    "frost5.jpg",
    "frost6.jpg",
)


@functools.lru_cache(maxsize=len(FROST_FILES))
def _frost_texture(index: int) -> np.ndarray:
    """Frost texture ``index`` as decoded by cv2 (BGR uint8), read-only."""
    ref = importlib.resources.files("corruptions") / "frost" / FROST_FILES[index]
    with importlib.resources.as_file(ref) as path:
        tex = cv2.imread(str(path))
    if tex is None:
        raise FileNotFoundError(f"cannot read frost texture {ref}")
    tex.setflags(write=False)
    return tex


@functools.lru_cache(maxsize=4 * len(FROST_FILES))
def frost_texture(index: int, height: int, width: int) -> np.ndarray:
    """Frost texture ``index`` rescaled as imagecorruptions does for a ``height`` x ``width`` image.

    The texture is scaled (bicubic) so that it covers the image, then by another 1.1, and
    converted to RGB. Cached per (index, image size); the result is read-only.

    Args:
        index: 0..5, into ``FROST_FILES``.
        height: image height.
        width: image width.

    Returns:
        uint8 RGB texture, strictly larger than ``height`` x ``width`` in both dimensions.
    """
    tex = _frost_texture(index)
    th, tw = tex.shape[:2]
    # The reference's four cases reduce to: the larger of the two ratios, if any exceeds 1.
    factor = max(1.0, height / th, width / tw) * 1.1
    size = (int(np.ceil(tw * factor)), int(np.ceil(th * factor)))  # cv2 order: (w, h)
    out = np.ascontiguousarray(
        cv2.resize(tex, dsize=size, interpolation=cv2.INTER_CUBIC)[..., ::-1]
    )
    out.setflags(write=False)
    return out


def frost(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Frost: a blend with a random crop of one of six frost photographs.

    Args:
        image: uint8 RGB image, HxWx3.
        severity: 1..5.
        rng: the only source of randomness (texture index, crop offsets).

    Returns:
        The corrupted uint8 HxWx3 image.
    """
    a, b = FROST_PARAMS[severity - 1]
    h, w = image.shape[:2]
    rs = paired_random_state(rng)
    tex = frost_texture(int(rs.randint(len(FROST_FILES))), h, w)
    top = int(rs.randint(0, tex.shape[0] - h))
    left = int(rs.randint(0, tex.shape[1] - w))
    crop = tex[top : top + h, left : left + w]
    return to_uint8(cv2.addWeighted(image, a, crop, b, 0.0, dtype=cv2.CV_32F))


# ----------------------------------------------------------------------------------------------
# fog


# imagecorruptions `fog`: (fog strength, plasma fractal wibble decay)
FOG_PARAMS: tuple[tuple[float, float], ...] = (
    (1.5, 2),
    (2.0, 2),
    (2.5, 1.7),
    (2.5, 1.5),
    (3.0, 1.4),
)


@numba.njit(cache=True, nogil=True)
def _diamond_square(a: np.ndarray, wibbledecay: float) -> np.ndarray:
    """The reference's diamond-square loop, in place.

    On entry ``a`` (mapsize x mapsize, float32) holds one uniform in [0, 1) per point: each point
    takes its noise from its own entry, then is overwritten by its value (its inputs are points
    of coarser levels, already final). ``a[0, 0]`` is set to 0, as in the reference.
    """
    mapsize = a.shape[0]
    a[0, 0] = 0.0
    step = mapsize
    wibble = 100.0
    while step >= 2:
        half = step // 2
        n = mapsize // step
        amp = wibble * wibble  # wibble * U(-wibble, wibble), as in the reference
        # squares: centre = mean of the four corners (toroidal) + noise
        for i in range(n):
            i1 = i + 1 if i + 1 < n else 0
            for j in range(n):
                j1 = j + 1 if j + 1 < n else 0
                s = (a[i * step, j * step] + a[i1 * step, j * step]) + (
                    a[i * step, j1 * step] + a[i1 * step, j1 * step]
                )
                c = a[i * step + half, j * step + half]
                a[i * step + half, j * step + half] = s / 4 + amp * (2.0 * c - 1.0)
        # diamonds: edge midpoints = mean of the two adjacent centres and two corners + noise
        # (top midpoints, then left ones)
        for i in range(n):
            im = i - 1 if i > 0 else n - 1
            for j in range(n):
                j1 = j + 1 if j + 1 < n else 0
                top = (
                    a[i * step + half, j * step + half] + a[im * step + half, j * step + half]
                ) + (a[i * step, j * step] + a[i * step, j1 * step])
                c = a[i * step, j * step + half]
                a[i * step, j * step + half] = top / 4 + amp * (2.0 * c - 1.0)
        for i in range(n):
            i1 = i + 1 if i + 1 < n else 0
            for j in range(n):
                jm = j - 1 if j > 0 else n - 1
                left = (
                    a[i * step + half, j * step + half] + a[i * step + half, jm * step + half]
                ) + (a[i * step, j * step] + a[i1 * step, j * step])
                c = a[i * step + half, j * step]
                a[i * step + half, j * step] = left / 4 + amp * (2.0 * c - 1.0)
        step = half
        wibble /= wibbledecay
    return a


def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map, as imagecorruptions' ``plasma_fractal``, drawn from ``rng``.

    Args:
        mapsize: side length, a power of two.
        wibbledecay: factor by which the noise amplitude shrinks per level.
        rng: source of the uniform noise.

    Returns:
        float32 (mapsize, mapsize) map with minimum exactly 0 and maximum 1.
    """
    a = _plasma_raw(mapsize, wibbledecay, rng)
    a -= a.min()
    a /= a.max()
    return a


def _plasma_raw(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """The plasma fractal before its shift and scale to [0, 1]."""
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    return _diamond_square(_reference_order_uniforms(mapsize, paired_random_state(rng)),
                           float(wibbledecay))  # fmt: skip


def _reference_order_uniforms(mapsize: int, rs: np.random.RandomState) -> np.ndarray:
    """One uniform per map point ([0, 0] unused), drawn in the reference's order: per level,
    the square centres, then the top edge midpoints, then the left ones, each (n, n) row-major."""
    a = np.zeros((mapsize, mapsize), np.float32)
    step = mapsize
    while step >= 2:
        half, n = step // 2, mapsize // step
        a[half::step, half::step] = rs.random_sample((n, n))
        a[0::step, half::step] = rs.random_sample((n, n))
        a[half::step, 0::step] = rs.random_sample((n, n))
        step = half
    return a


def fog(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Fog: a plasma fractal added to the image, then rescaled.

    Args:
        image: uint8 RGB image, HxWx3.
        severity: 1..5.
        rng: the only source of randomness (the plasma fractal).

    Returns:
        The corrupted uint8 HxWx3 image.
    """
    strength, decay = FOG_PARAMS[severity - 1]
    h, w = image.shape[:2]
    mapsize = 1 << (max(h, w, 3) - 1).bit_length()  # next power of two of the longest side
    raw = _plasma_raw(mapsize, decay, rng)
    lo = raw.min()  # the fractal is (raw - lo) / (hi - lo), as plasma_fractal returns it
    hi = raw.max()
    peak = float(image.max()) / 255.0
    gain = peak / (peak + strength)
    return to_uint8(
        _fog_blend(image, raw, np.float32(lo), np.float32(hi - lo), 255.0 * strength, gain)
    )


@numba.njit(cache=True, nogil=True)
def _fog_blend(
    img: np.ndarray, raw: np.ndarray, lo: np.float32, span: np.float32, k: float, gain: float
) -> np.ndarray:
    """``(img + k * fractal) * gain`` with ``fractal = (raw - lo) / span``, float32 HxWx3."""
    h, w = img.shape[0], img.shape[1]
    out = np.empty((h, w, 3), np.float32)
    k32 = np.float32(k)
    g32 = np.float32(gain)
    for i in range(h):
        for j in range(w):
            f = k32 * ((raw[i, j] - lo) / span)
            for c in range(3):
                out[i, j, c] = (np.float32(img[i, j, c]) + f) * g32
    return out


# ----------------------------------------------------------------------------------------------
# spatter


# imagecorruptions `spatter`: (loc, scale, blur sigma, threshold, strength / mud sigma, mud?)
SPATTER_PARAMS: tuple[tuple[float, float, float, float, float, int], ...] = (
    (0.65, 0.3, 4, 0.69, 0.6, 0),
    (0.65, 0.3, 3, 0.68, 0.6, 0),
    (0.65, 0.3, 2, 0.68, 0.5, 0),
    (0.65, 0.3, 1, 0.65, 1.5, 1),
    (0.67, 0.4, 1, 0.65, 1.5, 1),
)
_WATER_RGB = np.array([175, 238, 238], dtype=np.float32)  # pale turquoise
_MUD_RGB = np.array([63, 42, 20], dtype=np.float32)  # mud brown
_EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)


def spatter(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Spatter: water drops (severities 1-3) or mud (4-5) from a thresholded, blurred normal layer.

    Args:
        image: uint8 RGB image, HxWx3.
        severity: 1..5.
        rng: the only source of randomness (the liquid layer).

    Returns:
        The corrupted uint8 HxWx3 image.
    """
    loc, scale, sigma, thresh, strength, mud = SPATTER_PARAMS[severity - 1]
    # the reference's draw, paired (see paired_random_state): few drops survive the threshold
    # at low severities, so unpaired layers differ a lot between seeds
    liquid = paired_random_state(rng).normal(loc, scale, image.shape[:2]).astype(np.float32)
    liquid = gaussian_filter(liquid, sigma)
    liquid[liquid < thresh] = 0
    if not mud:
        # The reference's cvtColor calls (BGR2BGRA, BGRA2BGR) only add and drop an alpha
        # channel: the colour is added to the RGB channels in the order written.
        liquid8 = (liquid * 255).astype(np.uint8)  # truncation, as in the reference
        dist = 255 - cv2.Canny(liquid8, 50, 150)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        dist = cv2.filter2D(dist, cv2.CV_8U, _EMBOSS)
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = liquid8 * dist
        peak = float(m.max())
        # The reference divides by zero here (NaN output) when no drop survives.
        m *= np.float32(strength / peak) if peak > 0 else np.float32(0)
        return to_uint8(_tint(image, m, _WATER_RGB, False))
    m = gaussian_filter((liquid > thresh).astype(np.float32), strength)
    m[m < 0.8] = 0
    return to_uint8(_tint(image, m, _MUD_RGB, True))


@numba.njit(cache=True, nogil=True)
def _tint(img: np.ndarray, m: np.ndarray, color: np.ndarray, cover: bool) -> np.ndarray:
    """``img * (1 - m) + m * color`` if ``cover`` (mud) else ``img + m * color`` (water)."""
    h, w = img.shape[0], img.shape[1]
    out = np.empty((h, w, 3), np.float32)
    one = np.float32(1.0)
    for i in range(h):
        for j in range(w):
            mij = m[i, j]
            keep = one - mij if cover else one
            for c in range(3):
                out[i, j, c] = np.float32(img[i, j, c]) * keep + mij * color[c]
    return out
