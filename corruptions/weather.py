"""Fast weather corruptions (snow, frost, fog, spatter): imagecorruptions' bytes, exactly."""

from __future__ import annotations

import functools
import importlib.resources

import cv2
import numba
import numpy as np

from corruptions._util import UNIT, UNIT32, paired_random_state
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

    The layer and the blur angle are drawn from a generator seeded from ``rng`` exactly as the
    reference backend seeds imagecorruptions, in its order, and every step is computed with
    its arithmetic: for the same ``rng`` the two backends return the same bytes.

    Args:
        image: uint8 RGB image, HxWx3.
        severity: 1..5.
        rng: the only source of randomness (layer and blur angle, U(-135°, -45°)).

    Returns:
        The corrupted uint8 HxWx3 image.
    """
    loc, scale, zoom, thresh, radius, sigma, weight = SNOW_PARAMS[severity - 1]
    h, w = image.shape[:2]
    rs = paired_random_state(rng)
    layer = clipped_zoom(rs.normal(loc, scale, (h, w)), zoom)  # float64, a bit larger than HxW
    layer[layer < thresh] = 0
    np.clip(layer, 0, 1, out=layer)
    layer = motion_blur_kernel_apply(layer, radius, sigma, rs.uniform(-135, -45))
    # the reference rounds the layer to 1/255 steps, then crops it to the image
    flakes = np.ascontiguousarray(np.round(layer * 255).astype(np.uint8)[:h, :w])
    x = UNIT32[image]  # np.array(image, dtype=np.float32) / 255.
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    out = np.empty_like(image)
    _snow_blend(x, gray, flakes, UNIT, np.float32(weight), np.float32(1 - weight), out)
    return out


@numba.njit(cache=True, nogil=True)
def _snow_blend(x, gray, flakes, unit, weight, rest, out):  # pragma: no cover - compiled
    """The reference's last step: ``x = weight x + (1 - weight) max(x, 1.5 gray + 0.5)`` in
    float32, then ``uint8(clip(x + s + rot180(s), 0, 1) * 255)`` in float64, s = flakes / 255."""
    h, w = x.shape[0], x.shape[1]
    for i in range(h):
        for j in range(w):
            lift = gray[i, j] * np.float32(1.5) + np.float32(0.5)
            s = unit[flakes[i, j]]
            s_rot = unit[flakes[h - 1 - i, w - 1 - j]]
            for c in range(3):
                v = x[i, j, c]
                b = weight * v + rest * max(v, lift)
                t = (np.float64(b) + s) + s_rot
                out[i, j, c] = np.uint8(min(max(t, 0.0), 1.0) * 255.0)


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
    out = np.empty_like(image)
    _frost_blend(image, crop, float(a), float(b), out)
    return out


@numba.njit(cache=True, nogil=True)
def _frost_blend(img, crop, a, b, out):  # pragma: no cover - compiled
    """``uint8(clip(a * img + b * crop, 0, 255))`` in float64, as the reference."""
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            for c in range(3):
                t = a * np.float64(img[i, j, c]) + b * np.float64(crop[i, j, c])
                out[i, j, c] = np.uint8(min(max(t, 0.0), 255.0))


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
def _diamond_square(a: np.ndarray, u: np.ndarray, wibbledecay: float) -> np.ndarray:
    """The reference's diamond-square loop on ``a`` (mapsize x mapsize, float32), in place.

    ``u`` (float64, same shape) holds one uniform in [0, 1) per point: each point takes its
    noise ``wibble * U(-wibble, wibble)`` (NumPy's ``low + (high - low) * u``) from its own
    entry. The arithmetic is the reference's: float32 sums of the neighbours, ``/ 4`` in
    float32 (exact), plus the float64 noise, stored as float32. ``a[0, 0]`` is 0.
    """
    mapsize = a.shape[0]
    a[0, 0] = 0.0
    step = mapsize
    wibble = 100.0
    while step >= 2:
        half = step // 2
        n = mapsize // step
        width = wibble - -wibble
        # squares: centre = mean of the four corners (toroidal) + noise
        for i in range(n):
            i1 = i + 1 if i + 1 < n else 0
            for j in range(n):
                j1 = j + 1 if j + 1 < n else 0
                s = (a[i * step, j * step] + a[i1 * step, j * step]) + (
                    a[i * step, j1 * step] + a[i1 * step, j1 * step]
                )
                noise = wibble * (-wibble + width * u[i * step + half, j * step + half])
                a[i * step + half, j * step + half] = s / np.float32(4) + noise
        # diamonds: edge midpoints = mean of the two adjacent centres and two corners + noise
        # (top midpoints, then left ones)
        for i in range(n):
            im = i - 1 if i > 0 else n - 1
            for j in range(n):
                j1 = j + 1 if j + 1 < n else 0
                top = (
                    a[i * step + half, j * step + half] + a[im * step + half, j * step + half]
                ) + (a[i * step, j * step] + a[i * step, j1 * step])
                noise = wibble * (-wibble + width * u[i * step, j * step + half])
                a[i * step, j * step + half] = top / np.float32(4) + noise
        for i in range(n):
            i1 = i + 1 if i + 1 < n else 0
            for j in range(n):
                jm = j - 1 if j > 0 else n - 1
                left = (
                    a[i * step + half, j * step + half] + a[i * step + half, jm * step + half]
                ) + (a[i * step, j * step] + a[i1 * step, j * step])
                noise = wibble * (-wibble + width * u[i * step + half, j * step])
                a[i * step + half, j * step] = left / np.float32(4) + noise
        step = half
        wibble /= wibbledecay
    return a


def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map, as imagecorruptions' ``plasma_fractal``, drawn from ``rng``.

    The uniforms come from a generator seeded from ``rng`` as the reference backend seeds
    imagecorruptions, in the reference's order; with its arithmetic, the map is the reference's
    map bit for bit.

    Args:
        mapsize: side length, a power of two.
        wibbledecay: factor by which the noise amplitude shrinks per level.
        rng: source of the uniform noise.

    Returns:
        float32 (mapsize, mapsize) map with minimum exactly 0 and maximum 1.
    """
    a = _plasma_raw(mapsize, wibbledecay, rng)
    a -= a.min()
    return a / a.max()


def _plasma_raw(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """The plasma fractal before its shift and scale to [0, 1]."""
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    u = _reference_order_uniforms(mapsize, paired_random_state(rng))
    return _diamond_square(np.zeros((mapsize, mapsize), np.float32), u, float(wibbledecay))


def _reference_order_uniforms(mapsize: int, rs: np.random.RandomState) -> np.ndarray:
    """One float64 uniform per map point ([0, 0] unused), drawn in the reference's order: per
    level, the square centres, then the top edge midpoints, then the left ones, each (n, n)
    row-major."""
    a = np.zeros((mapsize, mapsize), np.float64)
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
    fractal = plasma_fractal(mapsize, decay, rng)
    # the reference adds strength * fractal in float32 (a Python float times a float32 array)
    layer = np.ascontiguousarray(np.float32(strength) * fractal[:h, :w])
    peak = float(image.max()) / 255.0  # x.max() of x = image / 255.
    out = np.empty_like(image)
    _fog_blend(image, layer, UNIT, peak, peak + strength, out)
    return out


@numba.njit(cache=True, nogil=True)
def _fog_blend(img, layer, unit, peak, denom, out):  # pragma: no cover - compiled
    """``uint8(clip((x + layer) * peak / denom, 0, 1) * 255)`` with ``x = img / 255.``, float64."""
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            f = np.float64(layer[i, j])
            for c in range(3):
                t = (unit[img[i, j, c]] + f) * peak / denom
                out[i, j, c] = np.uint8(min(max(t, 0.0), 1.0) * 255.0)


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
# pale turquoise, as the reference's float32 layers (175 / 255. times a float32 array)
_WATER_RGB = np.array([175 / 255.0, 238 / 255.0, 238 / 255.0], dtype=np.float32)
# mud brown, as the reference's float64 layers (63 / 255. times a uint8 array)
_MUD_RGB = np.array([63 / 255.0, 42 / 255.0, 20 / 255.0], dtype=np.float64)
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
    liquid = paired_random_state(rng).normal(loc, scale, image.shape[:2])  # float64
    liquid = gaussian_filter(liquid, sigma)
    liquid[liquid < thresh] = 0
    out = np.empty_like(image)
    if not mud:
        # The reference's cvtColor calls (GRAY2BGRA, BGR2BGRA, BGRA2BGR) only add and drop
        # channels: the colour is added to the RGB channels in the order written.
        liquid8 = (liquid * 255).astype(np.uint8)  # truncation, as in the reference
        dist = 255 - cv2.Canny(liquid8, 50, 150)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        dist = cv2.filter2D(dist, cv2.CV_8U, _EMBOSS)
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = liquid8 * dist  # float32
        peak = m.max()
        if peak == 0:  # no drop survives: the reference divides 0 by 0 (NaN output)
            out[...] = image
            return out
        m /= peak
        m *= np.float32(strength)
        _water(image, m, UNIT32, _WATER_RGB, out)
        return out
    m = gaussian_filter((liquid > thresh).astype(np.float32), strength)  # float32, as skimage
    m[m < 0.8] = 0
    _mud(image, m, UNIT32, _MUD_RGB, out)
    return out


@numba.njit(cache=True, nogil=True)
def _water(img, m, unit32, color, out):  # pragma: no cover - compiled
    """``uint8(clip(x + m * color, 0, 1) * 255)``, all in float32, x = float32 image / 255."""
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            mij = m[i, j]
            for c in range(3):
                t = unit32[img[i, j, c]] + mij * color[c]
                t = min(max(t, np.float32(0)), np.float32(1)) * np.float32(255)
                out[i, j, c] = np.uint8(t)


@numba.njit(cache=True, nogil=True)
def _mud(img, m, unit32, color, out):  # pragma: no cover - compiled
    """``uint8(clip(x * (1 - m) + color * m, 0, 1) * 255)``: x * (1 - m) in float32, the mud
    colour (float64, as the reference's) times m in float64, the sum in float64."""
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            mij = m[i, j]
            keep = np.float32(1) - mij
            for c in range(3):
                t = np.float64(unit32[img[i, j, c]] * keep) + color[c] * np.float64(mij)
                out[i, j, c] = np.uint8(min(max(t, 0.0), 1.0) * 255.0)
