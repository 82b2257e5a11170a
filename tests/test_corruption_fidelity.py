"""Fidelity to imagecorruptions: both backends clip, then truncate (its final ``np.uint8``).

1. The reference backend returns ``imagecorruptions.corrupt(image, severity, name)`` byte for
   byte, the global state seeded as the backend seeds it (19 corruptions x 5 severities).
2. The fast backend returns the reference's bytes for the same rng for every corruption but
   ``NOT_PAIRED`` (corruptions/reference.py), 16 of 19, on three natural photos (scikit-image's
   astronaut, coffee, chelsea) at 97x131 (odd), 256x320 and 480x640, and at 1024x2048.
3. ``NOT_PAIRED`` (gaussian, shot and speckle noise draw their own numbers): pixel comparison
   means nothing; the mean and per-channel std of (output - clean) and the mean |output -
   clean|, averaged over 8 seeds, agree within 5% (+ 0.1 grey level, the sampling floor) at
   256x512. Truncation moves the mean by ~0.5 grey level from rounding's: caught. (A paired
   corruption that could not be byte-identical would be held to a mean signed difference
   within +-0.05 and >= 99.9% of pixels within +-1; none is left.)
The 480x640 size, the full 1024x2048 pass and the 8-seed statistics run under the `slow` marker.
"""

from __future__ import annotations

import numpy as np
import pytest

from corruptions import corrupt, get_corruption_names
from corruptions.reference import NOT_PAIRED
from tests.conftest import natural_image

ALL = tuple(get_corruption_names("all"))
EXACT = tuple(n for n in ALL if n not in NOT_PAIRED)
SEVERITIES = (1, 2, 3, 4, 5)
PHOTOS = (0, 1, 2)  # astronaut, coffee, chelsea (tests/conftest.py)
SIZES = ((97, 131), (256, 320), pytest.param((480, 640), marks=pytest.mark.slow))
N_SEEDS = 8
REL_TOL = 0.05
ABS_FLOOR = 0.1


def _imagecorruptions(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """imagecorruptions.corrupt itself, the global state seeded with ``seed`` (and restored)."""
    import imagecorruptions

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        kwargs = {"seed": seed} if name in ("impulse_noise", "glass_blur") else {}
        return imagecorruptions.corrupt(image, severity, corruption_name=name, **kwargs)
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize("name", ALL)
def test_reference_backend_is_imagecorruptions_byte_for_byte(name):
    image = natural_image(2, 97, 131)  # odd-sized
    for severity in SEVERITIES:
        rng = np.random.default_rng(severity)
        seed = int(np.random.default_rng(severity).integers(2**32))  # the backend's one draw
        got = corrupt(image, name, severity, rng, backend="reference")
        want = _imagecorruptions(image, name, severity, seed)
        assert got.dtype == want.dtype == np.uint8
        assert got.tobytes() == want.tobytes(), f"{name} s{severity}"


def test_rounding_would_fail_the_byte_test():
    """imagecorruptions' float results are not integers: rounding them differs from its bytes."""
    import imagecorruptions
    from PIL import Image

    image = natural_image(2, 97, 131)
    raw = imagecorruptions.corruption_dict["brightness"](Image.fromarray(image), 3)
    rounded = np.clip(np.rint(raw), 0, 255).astype(np.uint8)
    got = corrupt(image, "brightness", 3, 0, backend="reference")
    assert np.array_equal(got, np.uint8(raw))
    assert np.mean(rounded != got) > 0.2  # about half the pixels one level brighter


def _pair(name: str, severity: int, photo: int, size: tuple[int, int], seed: int = 0):
    image = natural_image(photo, *size)
    fast = corrupt(image, name, severity, seed)
    ref = corrupt(image, name, severity, seed, backend="reference")
    return fast, ref


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", EXACT)
def test_fast_is_reference_byte_for_byte(name, size):
    for severity in SEVERITIES:
        for photo in PHOTOS:
            fast, ref = _pair(name, severity, photo, size)
            assert fast.tobytes() == ref.tobytes(), f"{name} s{severity} photo {photo} {size}"


def change_stats(clean: np.ndarray, out: np.ndarray) -> np.ndarray:
    """[mean(d), std(d_R), std(d_G), std(d_B), mean|d|] with d = out - clean."""
    d = out.astype(np.float64) - clean.astype(np.float64)
    return np.array([d.mean(), *d.reshape(-1, 3).std(axis=0), np.abs(d).mean()])


def averaged_stats(name: str, severity: int, backend: str, h: int, w: int) -> np.ndarray:
    stats = []
    for seed in range(N_SEEDS):
        clean = natural_image(seed % 4, h, w)
        stats.append(change_stats(clean, corrupt(clean, name, severity, seed, backend=backend)))
    return np.mean(stats, axis=0)


@pytest.mark.slow
@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NOT_PAIRED)
def test_unpaired_noise_has_the_reference_law(name, severity):
    ref = averaged_stats(name, severity, "reference", 256, 512)
    fast = averaged_stats(name, severity, "fast", 256, 512)
    tol = REL_TOL * np.abs(ref) + ABS_FLOOR
    labels = ["mean", "std_R", "std_G", "std_B", "mean_abs"]
    bad = [
        f"{lab}: fast {f:.3f} ref {r:.3f}"
        for lab, f, r, t in zip(labels, fast, ref, tol, strict=True)
        if abs(f - r) > t
    ]
    assert not bad, f"{name} s{severity}: " + "; ".join(bad)


@pytest.mark.parametrize("name", NOT_PAIRED)
def test_unpaired_noise_mean_is_truncated(name):
    """One seed, one photo, severity 1 (std of the change ~20): the mean change is the
    reference's within 0.2 grey level (4 standard errors); rounding would be ~0.5 higher."""
    image = natural_image(0, 256, 512)
    d_fast = corrupt(image, name, 1, 1).astype(np.float64) - image
    d_ref = corrupt(image, name, 1, 1, backend="reference").astype(np.float64) - image
    assert abs(d_fast.mean() - d_ref.mean()) < 0.2, (d_fast.mean(), d_ref.mean())


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_full_size(name):
    """1024x2048 (as Cityscapes), severity 3: the same bytes, or the same law."""
    fast, ref = _pair(name, 3, 3, (1024, 2048))  # rocket
    if name in EXACT:
        assert fast.tobytes() == ref.tobytes()
    else:
        assert abs(fast.mean() - ref.mean()) < 0.15  # 5 standard errors
