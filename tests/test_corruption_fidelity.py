"""Fidelity of the `fast` backend against `reference` (imagecorruptions) on natural photos.

Deterministic corruptions: >= 99.9% of pixels within +-1 grey level of the reference.
Random corruptions: mean and per-channel std of (output - clean) and mean |output - clean|,
averaged over 8 seeds, within 5% of the reference's (plus 0.1 grey level absolute, the sampling
noise floor of a mean over ~6M values, which matters only for statistics near zero).
Full size (1024x2048, as Cityscapes) runs under the `slow` marker; a 256x512 pass runs always.
"""

from __future__ import annotations

import numpy as np
import pytest

from corruptions import corrupt, get_corruption_names

DETERMINISTIC = (
    "defocus_blur", "gaussian_blur", "zoom_blur", "brightness", "contrast", "saturate",
    "jpeg_compression", "pixelate",
)  # fmt: skip
RANDOM = tuple(n for n in get_corruption_names("all") if n not in DETERMINISTIC)
SEVERITIES = (1, 2, 3, 4, 5)
N_SEEDS = 8
REL_TOL = 0.05
ABS_FLOOR = 0.1


def _natural(index: int, h: int, w: int) -> np.ndarray:
    from tests.conftest import natural_image

    return natural_image(index, h, w)


def change_stats(clean: np.ndarray, out: np.ndarray) -> np.ndarray:
    """[mean(d), std(d_R), std(d_G), std(d_B), mean|d|] with d = out - clean."""
    d = out.astype(np.float64) - clean.astype(np.float64)
    return np.array([d.mean(), *d.reshape(-1, 3).std(axis=0), np.abs(d).mean()])


def averaged_stats(name: str, severity: int, backend: str, h: int, w: int) -> np.ndarray:
    stats = []
    for seed in range(N_SEEDS):
        clean = _natural(seed % 4, h, w)
        stats.append(change_stats(clean, corrupt(clean, name, severity, seed, backend=backend)))
    return np.mean(stats, axis=0)


def check_random(name: str, severity: int, h: int, w: int) -> None:
    ref = averaged_stats(name, severity, "reference", h, w)
    fast = averaged_stats(name, severity, "fast", h, w)
    tol = REL_TOL * np.abs(ref) + ABS_FLOOR
    labels = ["mean", "std_R", "std_G", "std_B", "mean_abs"]
    bad = [
        f"{lab}: fast {f:.3f} ref {r:.3f}"
        for lab, f, r, t in zip(labels, fast, ref, tol, strict=True)
        if abs(f - r) > t
    ]
    assert not bad, f"{name} s{severity} {h}x{w}: " + "; ".join(bad)


def check_deterministic(name: str, severity: int, h: int, w: int) -> None:
    clean = _natural(0, h, w)
    ref = corrupt(clean, name, severity, 0, backend="reference").astype(np.int16)
    fast = corrupt(clean, name, severity, 0, backend="fast").astype(np.int16)
    close = np.mean(np.abs(fast - ref) <= 1)
    assert close >= 0.999, f"{name} s{severity}: only {close:.5f} of pixels within +-1"


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_small(name, severity):
    check_deterministic(name, severity, 256, 512)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", RANDOM)
def test_random_small(name, severity):
    check_random(name, severity, 256, 512)


@pytest.mark.slow
@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_full(name, severity):
    check_deterministic(name, severity, 1024, 2048)


@pytest.mark.slow
@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", RANDOM)
def test_random_full(name, severity):
    check_random(name, severity, 1024, 2048)
