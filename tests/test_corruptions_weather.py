"""Unit tests of the fast weather corruptions (corruptions/weather.py), on tiny images."""

from __future__ import annotations

import numpy as np
import pytest

from corruptions import corrupt, weather
from tests.conftest import natural_image

NAMES = ("snow", "frost", "fog", "spatter")
SEVERITIES = (1, 2, 3, 4, 5)
H, W = 64, 96


def _reference_order(mapsize: int) -> tuple[np.ndarray, np.ndarray]:
    """Points of imagecorruptions' plasma fractal in the order it draws their noise: per level,
    square centres, then top midpoints, then left midpoints, each row-major."""
    rows, cols = [], []
    step = mapsize
    while step >= 2:
        half = step // 2
        grid = np.arange(0, mapsize, step)
        for r0, c0 in ((half, half), (0, half), (half, 0)):
            rr, cc = np.meshgrid(grid + r0, grid + c0, indexing="ij")
            rows.append(rr.ravel())
            cols.append(cc.ravel())
        step = half
    return np.concatenate(rows), np.concatenate(cols)


def _image() -> np.ndarray:
    return natural_image(0, H, W).copy()


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_determinism(name, severity):
    img = _image()
    a = corrupt(img, name, severity, 7)
    assert a.shape == (H, W, 3) and a.dtype == np.uint8
    assert a.tobytes() == corrupt(img, name, severity, 7).tobytes()
    assert a.tobytes() != corrupt(img, name, severity, 8).tobytes()
    assert not np.array_equal(a, img)


@pytest.mark.parametrize("name", NAMES)
def test_input_not_modified(name):
    img = _image()
    before = img.copy()
    for severity in SEVERITIES:
        getattr(weather, name)(img, severity, np.random.default_rng(0))
    assert np.array_equal(img, before)
    ro = natural_image(1, H, W)  # read-only: any in-place write would raise
    assert not ro.flags.writeable
    for severity in SEVERITIES:
        getattr(weather, name)(ro, severity, np.random.default_rng(0))


@pytest.mark.parametrize("name", NAMES)
def test_no_global_random_state(name):
    img = _image()
    np.random.seed(123)  # noqa: NPY002
    state = np.random.get_state()  # noqa: NPY002
    a = getattr(weather, name)(img, 5, np.random.default_rng(3))
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    np.random.seed(456)  # noqa: NPY002 - must not matter
    b = getattr(weather, name)(img, 5, np.random.default_rng(3))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(H, W), (37, 53)])
def test_byte_identical_to_reference(name, severity, shape):
    """All four draw from a generator seeded like the reference backend's, in the reference's
    order, with its arithmetic: for the same seed both backends return the same bytes."""
    img = natural_image(1, *shape)
    for seed in (0, 1):
        fast = corrupt(img, name, severity, seed)
        assert fast.tobytes() == corrupt(img, name, severity, seed, backend="reference").tobytes()


@pytest.mark.parametrize(("mapsize", "decay"), [(4, 2.0), (64, 1.7), (256, 1.4)])
def test_plasma_fractal_is_imagecorruptions_bit_for_bit(mapsize, decay):
    from imagecorruptions.corruptions import plasma_fractal

    seed = int(np.random.default_rng(3).integers(2**32))  # what paired_random_state draws
    state = np.random.get_state()
    np.random.seed(seed)
    want = plasma_fractal(mapsize=mapsize, wibbledecay=decay)
    np.random.set_state(state)
    got = weather.plasma_fractal(mapsize, decay, np.random.default_rng(3))
    assert got.dtype == want.dtype == np.float32
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("mapsize", [2, 4, 32, 128])
@pytest.mark.parametrize("decay", [1.4, 2.0])
def test_plasma_fractal_range_and_shape(mapsize, decay):
    p = weather.plasma_fractal(mapsize, decay, np.random.default_rng(0))
    assert p.shape == (mapsize, mapsize) and p.dtype == np.float32
    assert p.min() == 0.0 and p.max() == 1.0
    q = weather.plasma_fractal(mapsize, decay, np.random.default_rng(0))
    assert np.array_equal(p, q)


@pytest.mark.parametrize("mapsize", [0, 1, 3, 48, 100])
def test_plasma_fractal_needs_power_of_two(mapsize):
    with pytest.raises(ValueError, match="power of two"):
        weather.plasma_fractal(mapsize, 2.0, np.random.default_rng(0))


def test_plasma_uniforms_follow_the_reference_draw_order():
    # one uniform per point ([0, 0] unused), consumed in imagecorruptions' order
    got = weather._reference_order_uniforms(16, np.random.RandomState(5))
    rows, cols = _reference_order(16)
    want = np.zeros((16, 16))
    want[rows, cols] = np.random.RandomState(5).random_sample(rows.size)
    assert np.array_equal(got, want) and got[0, 0] == 0


def test_reference_order_is_a_permutation():
    rows, cols = _reference_order(16)
    flat = np.sort(rows * 16 + cols)
    assert np.array_equal(flat, np.arange(1, 16 * 16))  # every point but [0, 0], once


@pytest.mark.parametrize(("h", "w", "mapsize"), [(32, 32, 32), (64, 96, 128), (33, 32, 64)])
def test_fog_map_is_next_power_of_two(monkeypatch, h, w, mapsize):
    seen = []
    real = weather._plasma_raw

    def spy(size, decay, rng):
        seen.append(size)
        return real(size, decay, rng)

    monkeypatch.setattr(weather, "_plasma_raw", spy)
    weather.fog(natural_image(0, h, w).copy(), 3, np.random.default_rng(0))
    assert seen == [mapsize]


class _Extreme:
    """Draws the largest value each ``integers`` call allows (texture 5, crop at the far end)."""

    def __init__(self, index: int | None = None):
        self.index = index

    def randint(self, low, high=None):
        if high is None:
            return len(weather.FROST_FILES) - 1 if self.index is None else self.index
        return high - 1


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize(("h", "w"), [(32, 32), (64, 96), (1024, 2048)])
def test_frost_texture_covers_image(index, h, w):
    tex = weather.frost_texture(index, h, w)
    assert tex.dtype == np.uint8 and tex.ndim == 3 and tex.shape[2] == 3
    assert tex.shape[0] > h and tex.shape[1] > w
    assert not tex.flags.writeable
    raw = weather._frost_texture(index)
    if raw.shape[0] >= h and raw.shape[1] >= w:  # no upscaling needed: only the 1.1 margin
        assert tex.shape[:2] == (int(np.ceil(raw.shape[0] * 1.1)), int(np.ceil(raw.shape[1] * 1.1)))
    else:  # upscaled by the larger of the two ratios, then 1.1
        assert min(tex.shape[0] - h, tex.shape[1] - w) >= 1
        assert max(tex.shape[0] / (1.1 * h), tex.shape[1] / (1.1 * w)) >= 1.0 - 1e-3


@pytest.mark.parametrize("index", range(6))
def test_frost_crop_in_bounds_tiny(index, monkeypatch):
    monkeypatch.setattr(weather, "paired_random_state", lambda rng: rng)
    img = _image()
    out = weather.frost(img, 3, _Extreme(index))
    tex = weather.frost_texture(index, H, W)
    crop = tex[tex.shape[0] - 1 - H : tex.shape[0] - 1, tex.shape[1] - 1 - W : tex.shape[1] - 1]
    expect = np.uint8(np.clip(0.7 * img + 0.7 * crop, 0, 255))  # the reference's arithmetic
    assert out.tobytes() == expect.tobytes()


def test_frost_crop_in_bounds_full_size(monkeypatch):
    monkeypatch.setattr(weather, "paired_random_state", lambda rng: rng)
    img = natural_image(0, 1024, 2048)
    out = weather.frost(img, 5, _Extreme())
    assert out.shape == img.shape and out.dtype == np.uint8


def test_frost_texture_is_rgb():
    raw = weather._frost_texture(0)  # cv2: BGR
    tex = weather.frost_texture(0, 32, 32)  # 1.1 x the raw size, RGB
    small = np.asarray(tex, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    assert np.allclose(small, raw.reshape(-1, 3).mean(axis=0)[::-1], atol=1.0)


def test_spatter_water_without_drops_is_identity(monkeypatch):
    """No drop survives the threshold: the reference divides 0 by 0 (NaN); we return the image."""

    class Flat:
        def normal(self, loc, scale, size):
            return np.full(size, loc)  # layer = loc (0.65) < threshold (0.68, 0.69)

    monkeypatch.setattr(weather, "paired_random_state", lambda rng: rng)
    img = _image()
    for severity in (1, 2, 3):  # water; for mud (4, 5) loc == threshold, a float coin toss
        assert np.array_equal(weather.spatter(img, severity, Flat()), img)


def test_severity_tables():
    for table in (weather.SNOW_PARAMS, weather.FROST_PARAMS, weather.FOG_PARAMS):
        assert len(table) == 5
    assert len(weather.SPATTER_PARAMS) == 5
    assert [p[-1] for p in weather.SPATTER_PARAMS] == [0, 0, 0, 1, 1]  # water 1-3, mud 4-5
