"""Unit tests of corruptions.blur on tiny images: contract, exact kernels, parity of the helpers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from corruptions import blur

NAMES = ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur")
SEVERITIES = (1, 2, 3, 4, 5)


def _image(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NAMES)
def test_contract(name, severity):
    fn = getattr(blur, name)
    image = _image()
    before = image.copy()
    state = np.random.get_state()  # noqa: NPY002
    out = fn(image, severity, np.random.default_rng(7))
    assert out.shape == (64, 96, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(image, before)  # input untouched
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    np.random.seed(123)  # noqa: NPY002  (global state must not matter)
    again = fn(image, severity, np.random.default_rng(7))
    assert again.tobytes() == out.tobytes()  # same seed, same bytes


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NAMES)
def test_constant_image_is_fixed_point(name, severity):
    image = np.full((64, 96, 3), 137, np.uint8)
    out = getattr(blur, name)(image, severity, np.random.default_rng(0))
    expected = 137
    if name == "defocus_blur":  # the reference's disk sums to 1.013 at radius 8 and 10
        kernel = blur.disk_kernel(*blur.DEFOCUS_BLUR[severity - 1])
        expected = int(np.rint(137 * float(kernel.sum())))
    assert np.all(out == expected)


@pytest.mark.parametrize("name", ("glass_blur", "motion_blur"))
def test_random_ones_depend_on_seed(name):
    image = _image()
    a = getattr(blur, name)(image, 3, np.random.default_rng(0))
    b = getattr(blur, name)(image, 3, np.random.default_rng(1))
    assert a.tobytes() != b.tobytes()


@pytest.mark.parametrize("sigma", (3.0, 8.0))
def test_motion_kernel_angle0_impulse_gives_gaussian_taps(sigma):
    radius = 10
    x = np.zeros((40, 64), np.float32)
    x[20, 40] = 1.0
    out = blur.motion_blur_kernel_apply(x, radius, sigma, 0.0)
    i = np.arange(2 * radius + 1)
    taps = np.exp(-(i**2) / (2 * sigma**2))
    taps /= taps.sum()
    # angle 0: tap i reads x[y, x + i], so the impulse lands at columns 40, 39, ..., 20.
    np.testing.assert_allclose(out[20, 40 - i], taps, rtol=1e-6, atol=1e-9)
    assert np.count_nonzero(out) == 2 * radius + 1


@pytest.mark.parametrize("angle", (0.0, 17.3, -45.0, 44.99, -30.2))
@pytest.mark.parametrize("shape", ((48, 64, 3), (40, 33), (32, 32, 1)))
def test_motion_kernel_matches_imagecorruptions(angle, shape):
    from imagecorruptions.corruptions import _motion_blur

    x = np.random.default_rng(1).random(shape).astype(np.float32)
    got = blur.motion_blur_kernel_apply(x, 20, 15, angle)  # 41 taps: breaks early at width 32/33
    ref = _motion_blur(x, radius=20, sigma=15, angle=angle)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, ref, atol=2e-6)


def test_motion_offsets_break_at_border():
    dy, dx, w = blur.motion_blur_offsets(20, 15, 0.0, (64, 32))
    assert len(w) == 32 and np.all(dx == -np.arange(32)) and np.all(dy == 0)
    assert w.sum() < 1.0  # dropped taps are not renormalized (as in the reference)


@pytest.mark.parametrize("zoom", (1.0, 1.01, 1.07, 1.13, 1.3, 2.0))
@pytest.mark.parametrize("shape", ((64, 96, 3), (37, 50), (33, 41, 1)))
def test_clipped_zoom_matches_scipy(zoom, shape):
    x = np.random.default_rng(2).random(shape).astype(np.float32)
    h, w = shape[:2]
    ch0, ch1 = int(np.ceil(h / zoom)), int(np.ceil(w / zoom))
    t0, t1 = (h - ch0) // 2, (w - ch1) // 2
    factors = (zoom, zoom, 1)[: len(shape)]
    ref = scipy.ndimage.zoom(x[t0 : t0 + ch0, t1 : t1 + ch1], factors, order=1)
    got = blur.clipped_zoom(x, zoom)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_clipped_zoom_matches_imagecorruptions():
    from imagecorruptions.corruptions import clipped_zoom

    x = np.random.default_rng(3).random((50, 70, 1)).astype(np.float32)
    np.testing.assert_allclose(blur.clipped_zoom(x, 1.5), clipped_zoom(x, 1.5), atol=1e-6)


@pytest.mark.parametrize("sigma", (0.7, 1.5, 3.0))
def test_gaussian_filter_matches_scipy_nearest(sigma):
    image = _image(40, 50)
    ref = scipy.ndimage.gaussian_filter(
        image.astype(np.float64), sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0
    )
    np.testing.assert_allclose(blur.gaussian_filter(image, sigma), ref, atol=1e-3)


def test_disk_kernel_matches_imagecorruptions():
    from imagecorruptions.corruptions import disk

    for radius, alias in blur.DEFOCUS_BLUR:
        ref = disk(radius, alias)
        k = blur.disk_kernel(radius, alias)
        c, e = ref.shape[0] // 2, k.shape[0] // 2
        np.testing.assert_array_equal(k, ref[c - e : c + e + 1, c - e : c + e + 1])
        outside = ref.copy()
        outside[c - e : c + e + 1, c - e : c + e + 1] = 0
        assert np.abs(outside).max() <= 1e-12
    assert blur.disk_kernel(3, 0.1).shape == (7, 7)  # taps of ~1e-22 cropped
    # the reference's anti-aliasing reflects at the kernel's edge: for radius 8 the taps sum
    # to more than 1 (the image gets brighter); kept, as it is part of the corruption
    assert blur.disk_kernel(8, 0.5).sum() > 1.01


def _encode_offsets(offsets: np.ndarray, max_delta: int) -> np.ndarray:
    """Raw 64-bit words that make ``blur._glass_shuffle`` read these (dx, dy) offsets."""
    span = 2 * max_delta
    v = offsets.astype(np.int64).ravel() + max_delta
    chunks = -((-v * 65536) // span) + 1  # ceil(v * 65536 / span) + 1: decodes to v, never rejected
    chunks = np.concatenate([chunks, np.zeros(-len(chunks) % 4, np.int64)]).astype(np.uint64)
    c = chunks.reshape(-1, 4)
    return c[:, 0] | (c[:, 1] << 16) | (c[:, 2] << 32) | (c[:, 3] << 48)


@pytest.mark.parametrize("max_delta", (1, 2, 3, 4))
def test_glass_offsets_law(max_delta):
    """On a (2d+1)^2 image one pixel is visited per pass: its new value gives (dy, dx)."""
    n = 2 * max_delta + 1
    x = np.zeros((n, n, 3), np.uint8)
    x[..., 0] = np.arange(n)[:, None]
    x[..., 1] = np.arange(n)[None, :]
    rng = np.random.default_rng(0)
    draws = np.array(
        [
            blur.glass_shuffle(x.copy(), max_delta, 1, rng)[max_delta + 1, max_delta + 1, :2]
            for _ in range(6000)
        ],
        np.int64,
    ) - (max_delta + 1)  # (dy, dx) per draw: the one pixel visited is (d + 1, d + 1)
    assert draws.min() == -max_delta and draws.max() == max_delta - 1
    for d in draws.T:
        counts = np.bincount(d + max_delta, minlength=2 * max_delta)
        expected = len(d) / (2 * max_delta)
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    assert abs(np.corrcoef(draws.T)[0, 1]) < 0.05


def test_glass_shuffle_copies_from_the_window():
    x = np.stack([np.arange(30 * 40) % 256, np.arange(30 * 40) // 256, np.zeros(1200)], -1)
    x = x.reshape(30, 40, 3).astype(np.uint8)  # every pixel distinct
    out = blur.glass_shuffle(x.copy(), 2, 1, np.random.default_rng(0))
    src = {tuple(p) for p in x.reshape(-1, 3)}
    assert {tuple(p) for p in out.reshape(-1, 3)} <= src  # values are copied, never made up
    np.testing.assert_array_equal(out[:3], x[:3])  # rows outside the scan keep their values
    np.testing.assert_array_equal(out[:, :3], x[:, :3])
    np.testing.assert_array_equal(out[-1], x[-1])
    np.testing.assert_array_equal(out[:, -1], x[:, -1])
    assert not np.array_equal(out, x)


def test_glass_shuffle_kernel_matches_imagecorruptions():
    """Same offsets, same bytes: the reference's numba loop vs ours (its 'swap' is a copy)."""
    from imagecorruptions.corruptions import _shuffle_pixels_njit_glass_blur
    from numba import njit

    @njit
    def offsets_of(d0, d1, max_delta, iterations, seed):
        np.random.seed(seed)  # noqa: NPY002  (the reference's own draws)
        out = []
        for _ in range(iterations):
            for _h in range(d0 - max_delta, max_delta, -1):
                for _w in range(d1 - max_delta, max_delta, -1):
                    dx, dy = np.random.randint(-max_delta, max_delta, size=(2,))  # noqa: NPY002
                    out.append((dx, dy))
        return out

    x = _image(40, 56, seed=4)
    for _sigma, max_delta, iterations in blur.GLASS_BLUR:
        ref = _shuffle_pixels_njit_glass_blur(40, 56, x.copy(), (0, max_delta, iterations), 11)
        offs = np.array(offsets_of(40, 56, max_delta, iterations, 11), np.int64)
        got = x.copy()
        raw = _encode_offsets(offs, max_delta)
        assert blur._glass_shuffle(got, raw, max_delta, iterations, 0) == len(offs)
        assert got.tobytes() == ref.tobytes()
        assert not np.array_equal(np.sort(got, axis=None), np.sort(x, axis=None))  # not a swap


@pytest.mark.parametrize("shape", ((64, 96), (33, 47)))
@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", ("defocus_blur", "gaussian_blur", "zoom_blur"))
def test_deterministic_match_reference_tiny(name, severity, shape):
    from corruptions import reference

    image = _image(*shape, seed=5)
    ref = getattr(reference, name)(image, severity, np.random.default_rng(0)).astype(np.int16)
    got = getattr(blur, name)(image, severity, np.random.default_rng(0)).astype(np.int16)
    assert np.abs(got - ref).max() <= 1


def test_glass_shuffle_resumes_when_raw_runs_out():
    x = _image(20, 24, seed=6)
    rng = np.random.default_rng(8)
    visits = 2 * (20 - 4) * (24 - 4)
    offs = rng.integers(-2, 2, (visits, 2))
    whole = x.copy()
    assert blur._glass_shuffle(whole, _encode_offsets(offs, 2), 2, 2, 0) == visits
    split = x.copy()
    k = 4 * 37  # whole words: the first k visits use exactly 2k chunks
    assert blur._glass_shuffle(split, _encode_offsets(offs[:k], 2), 2, 2, 0) == k
    assert blur._glass_shuffle(split, _encode_offsets(offs[k:], 2), 2, 2, k) == visits
    assert split.tobytes() == whole.tobytes()
