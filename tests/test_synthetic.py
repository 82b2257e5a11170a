"""The synthetic city: Cityscapes layout, class coverage, determinism, refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from robustbench_seg.data.cityscapes import (
    IGNORE_INDEX,
    LABELS,
    NUM_CLASSES,
    label_id_to_train_id_lut,
    list_pairs,
    load_label,
)
from robustbench_seg.data.images import read_rgb
from robustbench_seg.data.synthetic import (
    METADATA,
    make_synthetic_city,
    pair_paths,
    render_image,
    render_scene,
)
from robustbench_seg.errors import RobustSegError

SIZE = (64, 128)  # (H, W): the smallest allowed, for the file-level tests
COVERAGE_SIZE = (128, 256)


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("city")
    make_synthetic_city(out, train=2, val=3, size=SIZE, seed=7, progress=False)
    return out


def test_cityscapes_layout_read_by_list_pairs(city):
    pairs = list_pairs(city, "val")
    assert [p.image_id for p in pairs] == [
        "deltaheim/deltaheim_000000_000019",
        "deltaheim/deltaheim_000001_000019",
        "epsilonau/epsilonau_000000_000019",
    ]
    assert len(list_pairs(city, "train")) == 2
    for pair in pairs:
        assert not pair.train_ids and pair.label_path.name.endswith("_gtFine_labelIds.png")
        image = read_rgb(pair.image.path)
        assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
        label = load_label(pair, image.shape[:2])
        assert label.shape == SIZE
        assert set(np.unique(label)) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}
        # Most pixels are evaluated (the ego bonnet and slivers are ignored, as in Cityscapes).
        assert (label != IGNORE_INDEX).mean() > 0.85
    assert (city / METADATA).is_file()


def test_written_files_are_the_rendered_arrays(city):
    image, labels = render_image(7, "val", 2, SIZE)
    image_path, label_path = pair_paths(city, "val", 2)
    np.testing.assert_array_equal(read_rgb(image_path), image)
    pair = next(p for p in list_pairs(city, "val") if p.label_path == label_path)
    np.testing.assert_array_equal(load_label(pair), label_id_to_train_id_lut()[labels])


def test_every_train_class_occurs_in_20_images():
    lut = label_id_to_train_id_lut()
    pixels = np.zeros(NUM_CLASSES, np.int64)
    colours: dict[int, list[np.ndarray]] = {c: [] for c in range(NUM_CLASSES)}
    for i in range(20):
        image, labels = render_image(0, "train", i, COVERAGE_SIZE)
        train_ids = lut[labels]
        counts = np.bincount(train_ids.ravel(), minlength=256)
        pixels += counts[:NUM_CLASSES]
        for c in range(NUM_CLASSES):
            colours[c].append(image[train_ids == c].astype(np.float64))
    missing = [c for c in range(NUM_CLASSES) if pixels[c] == 0]
    assert not missing, f"trainIds without pixels in 20 images: {missing}"
    # No class has one exact colour: instances are jittered and textured.
    for c in range(NUM_CLASSES):
        rgb = np.concatenate(colours[c])
        assert rgb.std(axis=0).max() > 8.0, c


def test_render_scene_contract():
    valid = {lid for _, lid, _ in LABELS}
    for h, w in ((64, 128), (100, 300), COVERAGE_SIZE):
        image, labels = render_scene(np.random.default_rng(3), h, w)
        assert image.shape == (h, w, 3) and image.dtype == np.uint8
        assert labels.shape == (h, w) and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= valid
    a = render_scene(np.random.default_rng(5), *SIZE)
    b = render_scene(np.random.default_rng(5), *SIZE)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = render_scene(np.random.default_rng(6), *SIZE)
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(RobustSegError, match="too small"):
        render_scene(np.random.default_rng(0), 63, 128)


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, city):
    make_synthetic_city(
        tmp_path / "a", train=2, val=3, size=SIZE, seed=7, workers=2, progress=False
    )
    assert _digests(tmp_path / "a") == _digests(city)
    make_synthetic_city(tmp_path / "b", train=0, val=3, size=SIZE, seed=8, progress=False)
    other = _digests(tmp_path / "b")
    assert all(other[k] != v for k, v in _digests(city).items() if k in other)


def test_rerun_is_idempotent_and_extends(tmp_path):
    out = tmp_path / "c"
    first = make_synthetic_city(out, train=1, val=2, size=SIZE, seed=1, progress=False)
    assert (first.written, first.skipped) == (3, 0) and first.bytes_written > 0
    before = _digests(out)
    again = make_synthetic_city(out, train=1, val=2, size=SIZE, seed=1, progress=False)
    assert (again.written, again.skipped) == (0, 3)
    assert _digests(out) == before
    more = make_synthetic_city(out, train=1, val=3, size=SIZE, seed=1, progress=False)
    assert (more.written, more.skipped) == (1, 3)
    after = _digests(out)
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 2
    # An interrupted run's temporary file is cleaned up; a missing label is re-rendered.
    (out / "gtFine" / "val" / ".junk.png.123.tmp").write_bytes(b"x")
    pair_paths(out, "val", 0)[1].unlink()
    fixed = make_synthetic_city(out, train=1, val=3, size=SIZE, seed=1, progress=False)
    assert (fixed.written, fixed.skipped) == (1, 3)
    assert _digests(out) == after
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train": 0, "val": 0}, "nothing to render"),
        ({"train": -1, "val": 2}, ">= 0"),
        ({"train": 1, "val": 0, "size": (63, 128)}, "too small"),
        ({"train": 1, "val": 0, "size": (64, 127)}, "too small"),
        ({"train": 1, "val": 0, "workers": -1}, "--workers"),
        ({"train": 1, "val": 0, "seed": -1}, "--seed"),
    ],
)
def test_bad_arguments_write_nothing(tmp_path, kwargs, match):
    with pytest.raises(RobustSegError, match=match):
        make_synthetic_city(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_refuses_foreign_or_mismatched_out(tmp_path):
    foreign = tmp_path / "foreign"
    (foreign / "leftImg8bit").mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RobustSegError, match="not empty"):
        make_synthetic_city(foreign, train=1, val=0, size=SIZE, progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["leftImg8bit", "notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(RobustSegError, match="not a directory"):
        make_synthetic_city(a_file, train=1, val=0, size=SIZE, progress=False)
    ours = tmp_path / "ours"
    make_synthetic_city(ours, train=1, val=0, size=SIZE, seed=0, progress=False)
    before = _digests(ours)
    for kwargs in ({"seed": 1, "size": SIZE}, {"seed": 0, "size": COVERAGE_SIZE}):
        with pytest.raises(RobustSegError, match="new --out"):
            make_synthetic_city(ours, train=2, val=0, progress=False, **kwargs)
    assert _digests(ours) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert make_synthetic_city(empty, train=1, val=0, size=SIZE, progress=False).written == 1


def test_fog_is_koschmieder_on_the_scene_depth_in_foggy_cityscapes_layout(tmp_path):
    from robustbench_seg.data.datasets import get_dataset
    from robustbench_seg.data.synthetic import FOG_BETAS, foggy, render_image

    out = tmp_path / "city"
    make_synthetic_city(out, train=0, val=2, size=(128, 256), fog=True, workers=0, progress=False)
    foggy_set = get_dataset("foggy-cityscapes")
    clean = get_dataset("cityscapes").pairs(out)
    for k, beta in enumerate(FOG_BETAS, 1):
        pairs = foggy_set.pairs(out, condition=f"fog-{k}")
        assert [p.image_id for p in pairs] == [p.image_id for p in clean]  # same scenes, labels
        assert all(p.label_path == c.label_path for p, c in zip(pairs, clean, strict=True))
        assert pairs[0].image.path.name.endswith(f"_leftImg8bit_foggy_beta_{beta}.png")
    image, labels, depth = render_image(0, "val", 0, (128, 256), with_depth=True)
    assert np.isinf(depth[labels == 23]).all() and np.isfinite(depth[labels != 23]).all()
    road = labels == 7
    near, far = (
        road & (depth < np.percentile(depth[road], 20)),
        road & (depth > np.percentile(depth[road], 80)),
    )
    # the road recedes: rows nearer the bottom are nearer
    assert np.argwhere(near)[:, 0].mean() > np.argwhere(far)[:, 0].mean()
    dense = foggy(image, depth, 0.02).astype(float)
    change = np.abs(dense - image).sum(-1)
    assert change[far].mean() > 1.5 * change[near].mean()  # fog grows with depth
    written = read_rgb(foggy_set.pairs(out, condition="fog-3")[0].image.path)
    assert np.array_equal(written, foggy(image, depth, 0.02))  # the file is what foggy() gives
    again = tmp_path / "again"
    make_synthetic_city(again, train=0, val=2, size=(128, 256), fog=True, workers=2, progress=False)
    for p in sorted((out / "leftImg8bit_foggy").rglob("*.png")):
        assert p.read_bytes() == (again / p.relative_to(out)).read_bytes()
