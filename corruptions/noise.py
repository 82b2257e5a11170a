"""Fast noise corruptions: the laws of imagecorruptions (Hendrycks & Dietterich 2019), exactly."""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from scipy.special import ndtr, pdtr

# Each output element of gaussian, shot and speckle noise depends only on its clean grey value v
# and one random draw, and takes one of at most 256 grey levels. So instead of drawing a normal or
# Poisson variate, clipping and truncating it (imagecorruptions' np.uint8), we draw the final
# truncated value directly from its exact discrete law P(out = k | v), by inverse-CDF sampling of
# one 32-bit uniform per element (a guide table makes the search O(1)). The law is the
# reference's to 2**-32 per level; the float work is a (256, levels) table per severity, cached.
# The draws are ours, not the reference's: it draws Box-Muller normals and Poisson variates from
# NumPy's global state, and drawing the same ones would cost most of its time (this is 7-24x
# faster). The two backends agree in law, not pixel for pixel.
_GUIDE_BITS = 10  # guide table: 1024 bins of the 32-bit uniform per grey value
_SHIFT = 32 - _GUIDE_BITS
_LEVELS = np.arange(256, dtype=np.float64)


# Bit generators whose raw output is 64 uniform bits (MT19937's raw output is only 32 bits).
_RAW64 = (np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64)


def _uniform_u32(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` iid uniform 32-bit integers from ``rng``.

    For 64-bit bit generators (``default_rng``'s PCG64 among them) raw draws split in two
    halves: about twice as fast as ``rng.integers``.
    """
    if isinstance(rng.bit_generator, _RAW64):
        return rng.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n]
    return rng.integers(0, 2**32, size=n, dtype=np.uint32)


def _sampling_table(cdf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds and guide table for inverse-CDF sampling with 32-bit uniforms.

    Args:
        cdf: (256, m) float64, ``cdf[v, j] = P(category <= j | grey value v)``; the last column
            is taken as 1.

    Returns:
        ``thresh`` (256, m) uint64, category ``j`` is chosen for ``u < thresh[v, j]`` (the first
        such ``j``), and ``guide`` (256, 2**_GUIDE_BITS) uint16, the first candidate category for
        uniforms in each bin.
    """
    thresh = np.rint(np.clip(cdf, 0.0, 1.0) * 2.0**32).astype(np.uint64)
    thresh = np.maximum.accumulate(thresh, axis=1)
    thresh[:, -1] = 2**32
    edges = np.arange(2**_GUIDE_BITS, dtype=np.uint64) << np.uint64(_SHIFT)
    guide = np.stack([np.searchsorted(row, edges, side="right") for row in thresh])
    guide = guide.astype(np.uint16)
    thresh.setflags(write=False)
    guide.setflags(write=False)
    return thresh, guide


@numba.njit(cache=True, nogil=True)
def _sample_kernel(img, u, thresh, guide, lut, out):  # pragma: no cover - compiled
    for i in range(img.size):
        v = img[i]
        ui = u[i]
        k = guide[v, ui >> _SHIFT]
        while ui >= thresh[v, k]:
            k += 1
        out[i] = lut[k]


def _sample(
    image: np.ndarray, rng: np.random.Generator, table: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    thresh, guide, lut = table  # cached: read-only
    flat = image.reshape(-1)
    out = np.empty_like(flat)
    _sample_kernel(flat, _uniform_u32(rng, flat.size), thresh, guide, lut, out)
    return out.reshape(image.shape)


def _identity_table(cdf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Table for an output that is a grey level: ``cdf[v, k] = P(floor(y) <= k) = P(y < k + 1)``."""
    thresh, guide = _sampling_table(cdf)
    return thresh, guide, np.arange(256, dtype=np.uint8)


# imagecorruptions: gaussian_noise, std of the added normal noise (image in [0, 1]).
GAUSSIAN_NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)


@functools.lru_cache(maxsize=8)
def _gaussian_table(c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # y = 255 * clip(v/255 + c z, 0, 1), z ~ N(0, 1); floor(y) <= k  <=>  v + 255 c z < k + 1
    upper = _LEVELS[None, :] + 1.0 - _LEVELS[:, None]
    return _identity_table(ndtr(upper / (255.0 * c)))


def gaussian_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, ``clip(x + N(0, c^2))`` on the image in [0, 1].

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: the only source of randomness.

    Returns:
        The corrupted uint8 image.
    """
    return _sample(image, rng, _gaussian_table(GAUSSIAN_NOISE_STD[severity - 1]))


# imagecorruptions: shot_noise, photons per unit intensity (Poisson(x c) / c).
SHOT_NOISE_PHOTONS = (60, 25, 12, 5, 3)


@functools.lru_cache(maxsize=8)
def _shot_table(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # categories j = 0..c photon counts (j = c stands for every count >= c, all clipped to 1)
    lam = _LEVELS * c / 255.0
    j = np.arange(c + 1, dtype=np.float64)
    cdf = pdtr(j[None, :], lam[:, None])
    lut = (np.clip(j / float(c), 0, 1) * 255).astype(np.uint8)  # the reference's arithmetic
    thresh, guide = _sampling_table(cdf)
    return thresh, guide, lut


def shot_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson (shot) noise, ``clip(Poisson(x c) / c)`` on the image in [0, 1].

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: the only source of randomness.

    Returns:
        The corrupted uint8 image.
    """
    return _sample(image, rng, _shot_table(SHOT_NOISE_PHOTONS[severity - 1]))


# imagecorruptions: speckle_noise, std of the multiplicative normal noise.
SPECKLE_NOISE_STD = (0.15, 0.2, 0.35, 0.45, 0.6)


@functools.lru_cache(maxsize=8)
def _speckle_table(c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # y = 255 * clip(x + x c z, 0, 1); for v > 0: floor(y) <= k  <=>  z < ((k + 1)/v - 1)/c
    with np.errstate(divide="ignore"):
        upper = ((_LEVELS[None, :] + 1.0) / _LEVELS[:, None] - 1.0) / c
    cdf = ndtr(upper)
    cdf[0] = 1.0  # a black pixel stays black
    return _identity_table(cdf)


def speckle_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative Gaussian noise, ``clip(x + x N(0, c^2))`` on the image in [0, 1].

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: the only source of randomness.

    Returns:
        The corrupted uint8 image.
    """
    return _sample(image, rng, _speckle_table(SPECKLE_NOISE_STD[severity - 1]))


# imagecorruptions: impulse_noise, fraction of elements replaced (skimage random_noise 's&p').
IMPULSE_NOISE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)


_IMPULSE_CHUNK = 1 << 16  # elements per chunk of raw draws


@numba.njit(cache=True, nogil=True)
def _impulse_kernel(img, flip_raw, salt_raw, t_flip, out):  # pragma: no cover - compiled
    # skimage's s&p: flipped = U1 <= amount, salted = U2 <= 0.5, with U = (raw >> 11) * 2**-53
    # (NumPy's double from a 64-bit draw), so U <= p  <=>  raw >> 11 <= floor(p * 2**53).
    for i in range(img.size):
        if (flip_raw[i] >> np.uint64(11)) <= t_flip:
            out[i] = 255 if (salt_raw[i] >> np.uint64(11)) <= np.uint64(1 << 52) else 0
        else:
            out[i] = img[i]


def impulse_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise per element, as skimage's ``random_noise(mode="s&p")``.

    Each element independently becomes 255 with probability ``c / 2``, 0 with probability
    ``c / 2`` (amount ``c``, salt_vs_pepper 0.5), and is otherwise unchanged. The draws are
    the reference's: imagecorruptions passes its ``seed`` to skimage, which draws
    ``default_rng(seed).random(shape)`` twice (flips, then salt); the fast backend takes the
    same seed from ``rng`` as the reference backend, reads the same PCG64 stream (the second
    array through ``advance``) in chunks, and compares the raw draws with integer thresholds:
    the same bytes as the reference, without its float arrays.

    Args:
        image: uint8 HxWx3 RGB image.
        severity: 1..5.
        rng: the only source of randomness.

    Returns:
        The corrupted uint8 image.
    """
    c = IMPULSE_NOISE_AMOUNT[severity - 1]
    seed = int(rng.integers(2**32))  # the reference backend's seed for the same rng
    flat = image.reshape(-1)
    out = np.empty_like(flat)
    flips = np.random.PCG64(seed)  # default_rng(seed)'s bit generator
    salts = np.random.PCG64(seed)
    salts.advance(flat.size)  # past the flips' draws: one 64-bit draw per double
    t_flip = np.uint64(math.floor(c * 2.0**53))
    for start in range(0, flat.size, _IMPULSE_CHUNK):
        stop = min(start + _IMPULSE_CHUNK, flat.size)
        n = stop - start
        _impulse_kernel(flat[start:stop], flips.random_raw(n), salts.random_raw(n), t_flip,
                        out[start:stop])  # fmt: skip
    return out.reshape(image.shape)
