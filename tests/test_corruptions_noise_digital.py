"""Unit tests of the fast noise and digital corruptions (corruptions/noise.py, digital.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import poisson

from corruptions import corrupt, digital, noise

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
DIGITAL = (
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "saturate",
)
NAMES = NOISE + DIGITAL
RANDOM = (*NOISE, "elastic_transform")
H, W = 64, 96


def _image(seed: int = 0) -> np.ndarray:
    """A smooth colour gradient plus texture: every grey level range, not constant."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x * 255 / (W - 1), y * 255 / (H - 1), (x + y) * 255 / (H + W - 2)], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _constant(value: int) -> np.ndarray:
    return np.full((H, W, 3), value, dtype=np.uint8)


@pytest.mark.parametrize("severity", [1, 3, 5])
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_no_mutation_no_global_state(name, severity):
    img = _image()
    before = img.copy()
    state = np.random.get_state()  # noqa: NPY002 - checking the global state is untouched
    out = corrupt(img, name, severity, 7)
    after = np.random.get_state()  # noqa: NPY002
    assert out.shape == (H, W, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(img, before)
    assert state[0] == after[0] and state[2:] == after[2:]
    np.testing.assert_array_equal(state[1], after[1])


@pytest.mark.parametrize("name", NAMES)
def test_determinism(name):
    img = _image()
    a = corrupt(img, name, 3, 123)
    b = corrupt(img, name, 3, 123)
    c = corrupt(img, name, 3, 124)
    assert a.tobytes() == b.tobytes()
    if name in RANDOM:
        assert a.tobytes() != c.tobytes()
    else:
        assert a.tobytes() == c.tobytes()


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", [n for n in NAMES if n not in RANDOM])
def test_deterministic_parity_with_reference(name, severity):
    img = _image(1)
    fast = corrupt(img, name, severity, 0)
    ref = corrupt(img, name, severity, 0, backend="reference")
    assert fast.tobytes() == ref.tobytes()  # byte for byte (clip, then truncate)


@pytest.mark.parametrize("name", ["elastic_transform", "impulse_noise"])
def test_paired_random_ones_match_reference_byte_for_byte(name):
    # the reference backend's seeding, the reference's draws and arithmetic: the same bytes
    img = _image(2)
    for seed in (5, 6):
        fast = corrupt(img, name, 4, seed)
        assert fast.tobytes() == corrupt(img, name, 4, seed, backend="reference").tobytes()


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_contrast_constant_image_as_reference(severity):
    # (v/255 - m) c + m with m NumPy's mean of v/255: a hair below v/255 for v = 77, 128, so
    # imagecorruptions' truncation gives v - 1 there; the fast backend gives its bytes
    import imagecorruptions

    for value, want in ((0, 0), (77, 76), (128, 127), (200, 200), (255, 255)):
        img = _constant(value)
        out = corrupt(img, "contrast", severity, 0)
        assert np.all(out == want), value
        assert out.tobytes() == imagecorruptions.corrupt(img, severity, "contrast").tobytes()


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_brightness_black_image(severity):
    c = digital.BRIGHTNESS_SHIFT[severity - 1]
    out = corrupt(_constant(0), "brightness", severity, 0)
    assert np.all(out == int(255 * c))  # H = S = 0, V = c -> grey c, truncated
    assert int(out[0, 0, 0]) == [25, 51, 76, 102, 127][severity - 1]


@pytest.mark.parametrize("severity", [1, 2, 3])
def test_saturate_grey_image_unchanged_without_offset(severity):
    img = _constant(140)  # S = 0 stays 0 when the offset is 0 (severities 1-3)
    np.testing.assert_array_equal(corrupt(img, "saturate", severity, 0), img)


def test_speckle_keeps_black_black():
    np.testing.assert_array_equal(corrupt(_constant(0), "speckle_noise", 5, 0), _constant(0))


@pytest.mark.parametrize("severity", [1, 5])
def test_impulse_noise_fractions(severity):
    c = noise.IMPULSE_NOISE_AMOUNT[severity - 1]
    out = corrupt(_constant(128), "impulse_noise", severity, 3)
    n = out.size
    sigma = np.sqrt(c / 2 * (1 - c / 2) / n)  # std of a fraction with p = c / 2
    assert abs(np.mean(out == 255) - c / 2) < 5 * sigma
    assert abs(np.mean(out == 0) - c / 2) < 5 * sigma
    assert np.all((out == 0) | (out == 255) | (out == 128))


@pytest.mark.parametrize("value", [10, 128, 250])
def test_shot_noise_small_lambda_is_poisson(value):
    # severity 5: c = 3 photons per unit, lambda = 3 v / 255 <= 3; output = 85 * min(k, 3)
    c = noise.SHOT_NOISE_PHOTONS[4]
    out = corrupt(_constant(value), "shot_noise", 5, 11).reshape(-1)
    lam = value / 255 * c
    expected = np.append(poisson.pmf(np.arange(c), lam), poisson.sf(c - 1, lam))
    levels = [int(np.clip(k / float(c), 0, 1) * 255) for k in range(c + 1)]  # truncated
    assert levels == [0, 85, 170, 255]
    observed = np.array([np.mean(out == level) for level in levels])
    assert np.isclose(observed.sum(), 1.0)
    tol = 5 * np.sqrt(expected * (1 - expected) / out.size) + 1e-12
    assert np.all(np.abs(observed - expected) <= tol), (observed, expected)


@pytest.mark.parametrize("severity", [1, 3])
def test_gaussian_noise_moments(severity):
    c = noise.GAUSSIAN_NOISE_STD[severity - 1]
    out = corrupt(np.full((512, 512, 3), 128, np.uint8), "gaussian_noise", severity, 4)
    out = out.astype(np.float64)
    # E[floor(y)] = sum_k P(y >= k + 1), y = clip(128 + 255 c z, 0, 255): ~127.5, where
    # rounding would give ~128 (0.5 is > 5 standard errors here)
    k = np.arange(1, 256)
    expected = np.sum(ndtr((128 - k) / (255 * c)))
    assert abs(expected - 127.5) < 0.01
    assert abs(out.mean() - expected) < 5 * out.std() / np.sqrt(out.size)
    # 255 c <= 46, so clipping at 0 and 255 is beyond 2.7 sigma; the spread barely moves
    assert abs(out.std() / (255 * c) - 1) < 0.03


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox])
def test_noise_law_for_any_bit_generator(bit_generator):
    # MT19937's raw output has 32 bits only: the sampler must not split it like PCG64's 64
    rng = np.random.Generator(bit_generator(9))
    out = corrupt(_constant(128), "gaussian_noise", 1, rng).astype(np.float64)
    c = noise.GAUSSIAN_NOISE_STD[0]
    assert abs(out.mean() - 127.5) < 0.5  # truncation: E[floor(128 + e)] = 127.5
    assert abs(out.std() / (255 * c) - 1) < 0.03
