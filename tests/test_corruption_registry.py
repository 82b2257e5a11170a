"""The corruption registry, the Cityscapes-C protocol, the seeding rule and the reference backend."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from corruptions import CorruptionError, corrupt, get_corruption_names
from corruptions.protocol import (
    ALL_SEVERITIES,
    CITYSCAPES_C,
    make_protocol,
    resolve_severities,
    stable_hash,
    variant_rng,
    variant_seed_sequence,
)
from corruptions.registry import CORRUPTIONS, get_corruption

ALL = get_corruption_names("all")


def test_names_and_order_match_imagecorruptions():
    import imagecorruptions

    assert ALL == imagecorruptions.get_corruption_names("all")
    assert get_corruption_names("common") == imagecorruptions.get_corruption_names("common")
    assert get_corruption_names("validation") == imagecorruptions.get_corruption_names("validation")
    assert [CORRUPTIONS[n].index for n in ALL] == list(range(19))


def test_subsets():
    assert len(get_corruption_names("benchmark")) == 16
    assert get_corruption_names("extra") == ["zoom_blur", "elastic_transform", "pixelate"]
    assert set(get_corruption_names("benchmark")) | set(get_corruption_names("extra")) == set(ALL)
    assert get_corruption_names("noise") == [
        "gaussian_noise",
        "impulse_noise",
        "shot_noise",
        "speckle_noise",
    ]
    assert get_corruption_names("blur") == [
        "motion_blur",
        "defocus_blur",
        "glass_blur",
        "gaussian_blur",
    ]
    assert get_corruption_names("digital") == [
        "brightness",
        "contrast",
        "saturate",
        "jpeg_compression",
    ]
    assert get_corruption_names("weather") == ["snow", "spatter", "fog", "frost"]
    cats = {get_corruption(n).category for n in get_corruption_names("benchmark")}
    assert cats == {"noise", "blur", "digital", "weather"}
    with pytest.raises(CorruptionError, match="did you mean 'weather'"):
        get_corruption_names("wether")


def test_protocol_counts():
    assert len(CITYSCAPES_C.variants()) == 72
    assert len(ALL_SEVERITIES.variants()) == 80
    assert CITYSCAPES_C.severities["speckle_noise"] == (1, 2, 3)
    assert CITYSCAPES_C.severities["frost"] == (1, 2, 3, 4, 5)
    assert make_protocol() is CITYSCAPES_C
    assert make_protocol("benchmark", "all") is ALL_SEVERITIES
    p = make_protocol("blur,gaussian_noise", "1-2,5")
    assert p.name == "custom" and len(p.variants()) == 15
    assert resolve_severities("protocol", ["zoom_blur"]) == {"zoom_blur": (1, 2, 3, 4, 5)}
    for bad in ("0", "6", "1,x", "2-7"):
        with pytest.raises(CorruptionError):
            resolve_severities(bad, ["fog"])


def test_unknown_name_lists_valid_and_closest():
    with pytest.raises(CorruptionError) as exc:
        get_corruption("motion_blurr")
    msg = str(exc.value)
    assert "did you mean 'motion_blur'" in msg and all(n in msg for n in ALL)


def test_stable_hash_is_fixed_across_processes():
    # Frozen values: changing them would silently change every generated Cityscapes-C byte.
    code = "from corruptions.protocol import stable_hash; print(stable_hash('aachen/aachen_000000_000019'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == stable_hash("aachen/aachen_000000_000019")
    assert stable_hash("") == 13020603013274838756
    ss = variant_seed_sequence(0, "", "fog", 2)
    assert ss.entropy == [0, 13020603013274838756, 9, 2]
    a = variant_rng(0, "a", "fog", 2).integers(1 << 30, size=4)
    assert np.array_equal(a, variant_rng(0, "a", "fog", 2).integers(1 << 30, size=4))
    for other_args in (
        (1, "a", "fog", 2),
        (0, "b", "fog", 2),
        (0, "a", "frost", 2),
        (0, "a", "fog", 3),
    ):
        assert not np.array_equal(a, variant_rng(*other_args).integers(1 << 30, size=4))


def test_bad_inputs(small_image):
    with pytest.raises(CorruptionError, match="1..5"):
        corrupt(small_image, "fog", 6)
    with pytest.raises(CorruptionError, match="uint8"):
        corrupt(small_image.astype(np.float32), "fog", 1)
    with pytest.raises(CorruptionError, match="32x32"):
        corrupt(small_image[:20], "fog", 1)
    with pytest.raises(CorruptionError, match="backend"):
        corrupt(small_image, "fog", 1, backend="gpu")
    grey = corrupt(small_image[:, :, 0], "contrast", 2, 0)
    assert grey.shape == small_image.shape


@pytest.mark.parametrize("name", ALL)
def test_reference_backend_is_seeded_and_leaves_global_state(name, small_image):
    np.random.seed(1234)
    state = np.random.get_state()[1].copy()
    a = corrupt(small_image, name, 3, 7, backend="reference")
    assert np.array_equal(np.random.get_state()[1], state)
    b = corrupt(small_image, name, 3, 7, backend="reference")
    assert a.dtype == np.uint8 and a.shape == small_image.shape
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_fast_backend_contract(name, small_image):
    np.random.seed(99)
    state = np.random.get_state()[1].copy()
    before = small_image.copy()
    a = corrupt(small_image, name, 2, np.random.default_rng(5))
    b = corrupt(small_image, name, 2, 5)
    assert np.array_equal(np.random.get_state()[1], state), "fast backend touched np.random"
    assert np.array_equal(small_image, before), "input modified"
    assert a.dtype == np.uint8 and a.shape == small_image.shape
    assert np.array_equal(a, b)
    odd = corrupt(np.ascontiguousarray(small_image[:37, :53]), name, 5, 1)
    assert odd.shape == (37, 53, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(37, 53, 3), (64, 64), (5, 7, 1), (3, 4, 5)])
def test_clip_truncate_is_imagecorruptions_uint8(dtype, shape):
    """clip, then truncate: np.uint8 of the clipped float, as imagecorruptions ends."""
    from corruptions._util import clip_truncate

    rng = np.random.default_rng(0)
    x = (rng.random(shape) * 400 - 70).astype(dtype)
    edges = np.concatenate([np.arange(25) - 0.5, 255 + np.arange(25) - 0.5]).astype(dtype)
    edges[::3] = np.nextafter(np.rint(edges[::3]), dtype(-np.inf))  # just below integers
    x.flat[:50] = edges  # halves, integers and values just below them, around 0 and 255
    got = clip_truncate(x)
    assert got.dtype == np.uint8 and got.shape == shape
    np.testing.assert_array_equal(got, np.uint8(np.clip(x, 0, 255)))
    assert clip_truncate(np.array([254.9999, 0.5, -0.5, 255.5, 3.0], dtype)).tolist() == [
        254, 0, 0, 255, 3,
    ]  # fmt: skip
    assert clip_truncate(x[:, ::2]).shape == x[:, ::2].shape  # any layout


def test_reference_backend_is_imagecorruptions_corrupt(small_image):
    """The reference backend returns imagecorruptions.corrupt's own (truncated) bytes."""
    import imagecorruptions

    state = np.random.get_state()
    for name in ("brightness", "gaussian_blur", "impulse_noise"):
        seed = int(np.random.default_rng(3).integers(2**32))
        np.random.seed(seed)
        kwargs = {"seed": seed} if name == "impulse_noise" else {}
        want = imagecorruptions.corrupt(small_image, 2, corruption_name=name, **kwargs)
        np.random.set_state(state)
        got = corrupt(small_image, name, 2, np.random.default_rng(3), backend="reference")
        assert got.tobytes() == want.tobytes(), name
        assert got.flags.c_contiguous and got.flags.writeable


def test_reference_backend_without_imagecorruptions(small_image, monkeypatch):
    """imagecorruptions is optional: the reference backend then refuses in one line."""
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)  # import raises ImportError
    with pytest.raises(CorruptionError, match=r"pip install 'robustseg\[reference\]'"):
        corrupt(small_image, "fog", 1, 0, backend="reference")
    assert corrupt(small_image, "frost", 1, 0).shape == small_image.shape  # fast: no need
