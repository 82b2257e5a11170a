"""Geometric corruptions move the labels with the pixels (issue 20, item 7): ``elastic_transform``
warps the label map by the displacement field that warps the image (nearest neighbour, ignore
where it samples outside the image), on the fly and in corrupted trees; the labels of every
other corruption stay as they are."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from corruptions import CORRUPTIONS, corrupt, corrupt_pair
from corruptions.digital import elastic_field
from corruptions.protocol import variant_rng
from robustbench_seg.cli import cli
from robustbench_seg.data.cityscapes_c import (
    CellView,
    generate_cityscapes_c,
    load_manifest,
    variant_label_path,
)
from robustbench_seg.data.datasets import get_dataset
from robustbench_seg.data.pairs import load_label
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.models.registry import Preprocessing
from tests.fake_cityscapes import make_fake_cityscapes
from tests.test_bad_inputs import snapshot

H = W = 256
SQUARE = (slice(100, 112), slice(140, 152))


def square_image() -> tuple[np.ndarray, np.ndarray]:
    """A bright 12x12 square on a dark image, and its label map: 1 inside, 0 outside."""
    image = np.full((H, W, 3), 30, np.uint8)
    label = np.zeros((H, W), np.uint8)
    image[SQUARE] = 220
    label[SQUARE] = 1
    return image, label


def centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([rows.mean(), cols.mean()])


def test_elastic_transform_is_the_only_geometric_corruption():
    assert [c.name for c in CORRUPTIONS.values() if c.geometric] == ["elastic_transform"]


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_a_labelled_square_moves_with_the_image(backend):
    if backend == "reference":
        pytest.importorskip("imagecorruptions")
    image, label = square_image()
    label[:20] = 255  # an ignored band: its value stays one of the map's
    moved_image, moved = corrupt_pair(image, label, "elastic_transform", 5, 1, backend=backend)
    assert np.array_equal(moved_image, corrupt(image, "elastic_transform", 5, 1))  # same bytes
    shift_image = centroid(moved_image[..., 0] > 125) - centroid(image[..., 0] > 125)
    shift_label = centroid(moved == 1) - centroid(label == 1)
    assert np.abs(shift_label).max() > 1.3  # it moved (rows +2.5, columns -1.4 for this seed)
    assert np.abs(shift_label - shift_image).max() < 0.05, (shift_label, shift_image)
    assert np.array_equal(moved == 1, moved_image[..., 0] > 125)
    assert set(np.unique(moved)) <= {0, 1, 255}


def test_the_label_follows_the_same_field_as_the_image_pixel_by_pixel():
    """An image whose red channel is 4 x column and green 4 x row shows, after the warp, where
    each pixel was sampled (to a quarter pixel); labels holding the column and the row index,
    moved by the same corruption, must hold the nearest ones, and 255 only at the border, where
    the sample fell outside the image."""
    h = w = 64
    rows, cols = np.mgrid[0:h, 0:w]
    image = np.stack([4 * cols, 4 * rows, np.zeros_like(rows)], axis=2).astype(np.uint8)
    outside = []
    for label, channel in ((cols.astype(np.uint8), 0), (rows.astype(np.uint8), 1)):
        rng = variant_rng(0, "x", "elastic_transform", 5)
        out, moved = corrupt_pair(image, label, "elastic_transform", 5, rng)
        sampled = (out[..., channel].astype(float) + 0.5) / 4  # where the image sampled
        inside = (moved != 255) & (sampled > 1) & (sampled < w - 2)  # away from the mirrors
        assert np.abs(moved[inside] - sampled[inside]).max() <= 0.5 + 0.125 + 1e-6
        assert np.abs(moved[inside].astype(int) - label[inside]).max() >= 2  # a real motion
        outside.append(moved == 255)
    # the field the image was warped by (checked above to a quarter pixel) leaves the image
    # (beyond the half-pixel border where it is mirrored) exactly where the labels hold 255
    dx, dy = elastic_field((h, w), 5, variant_rng(0, "x", "elastic_transform", 5))
    y, x = rows + dy.astype(float), cols + dx.astype(float)
    left = (y < -0.5) | (y >= h - 0.5) | (x < -0.5) | (x >= w - 0.5)
    assert np.array_equal(outside[0], left) and np.array_equal(outside[1], left)
    assert 0 < left.sum() and not left[8:-8, 8:-8].any()


@pytest.mark.parametrize("name", [n for n, c in CORRUPTIONS.items() if not c.geometric])
def test_other_corruptions_leave_the_labels_as_they_are(name):
    image, label = square_image()
    out, same = corrupt_pair(image[:64, :64], label[:64, :64], name, 3, 0)
    assert same is not None and np.array_equal(same, label[:64, :64])
    assert np.array_equal(out, corrupt(image[:64, :64], name, 3, 0))


# ----------------------------------------------------------------------------- evaluate, trees


class _Bright(nn.Module):
    """Predicts class 1 where the red channel is above half, else 0: a perfect model of the
    square, wherever the corruption moved it."""

    num_classes = 2

    def forward(self, x):
        r = x[:, :1]
        return torch.cat([0.5 - r, r - 0.5], dim=1)


PRE = Preprocessing(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))
FAST = dict(preprocessing=PRE, inference="whole", workers=0, progress=False, clean=False,
            corruptions="elastic_transform,fog", severities="5")  # fmt: skip


def make_square_folder(root):
    image, label = square_image()
    for split in ("val",):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        cv2.imwrite(str(root / "images" / split / "sq.png"), image[:, :, ::-1])
        cv2.imwrite(str(root / "labels" / split / "sq.png"), label)
    (root / "classes.txt").write_text("dark\nbright\n")
    return root


def expected_confusion(seed: int, moved: bool) -> np.ndarray:
    image, label = square_image()
    rng = variant_rng(seed, "sq", "elastic_transform", 5)
    out, moved_label = corrupt_pair(image, label, "elastic_transform", 5, rng)
    truth = moved_label if moved else label
    keep = truth != 255
    pred = (out[..., 0] > 127).astype(int)
    return np.bincount(truth[keep] * 2 + pred[keep], minlength=4).reshape(2, 2)


def test_evaluate_scores_the_moved_labels_on_the_fly_and_from_a_tree(tmp_path):
    data = make_square_folder(tmp_path / "f")
    kw = dict(dataset="folder", data_root=data, **FAST)
    evaluate(_Bright(), out=tmp_path / "fly", **kw)
    generate_cityscapes_c(data, tmp_path / "tree", dataset="folder", corruptions="elastic_transform,fog",
                          severities="5", workers=0, progress=False)  # fmt: skip
    evaluate(_Bright(), out=tmp_path / "tree-run", cityscapes_c=tmp_path / "tree", **kw)
    want = expected_confusion(0, moved=True)
    assert want[0, 1] + want[1, 0] <= 2  # the perfect model is (almost) perfect
    assert expected_confusion(0, moved=False)[1, 0] >= 40  # against the unmoved label: not
    for run in ("fly", "tree-run"):
        with np.load(tmp_path / run / "cells/elastic_transform-5.npz") as cell:
            assert np.array_equal(cell["confusion"], want), (run, cell["confusion"])
        with np.load(tmp_path / run / "cells/fog-5.npz") as cell:  # fog leaves labels in place
            _, label = square_image()
            assert cell["confusion"].sum(1).tolist() == np.bincount(label.ravel()).tolist()


def test_a_tree_holds_the_moved_labels_instead_of_the_link(tmp_path):
    city = tmp_path / "cs"
    make_fake_cityscapes(city, (2, 1), size=(64, 128))
    before = snapshot(city)
    tree = tmp_path / "tree"
    result = CliRunner().invoke(cli, ["make-cityscapes-c", "--cityscapes-root", str(city), "--out",
                                      str(tree), "--corruptions", "elastic_transform,fog",
                                      "--severities", "2", "--workers", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "written 6, 3 moved label maps" in result.output
    assert (tree / "fog/2/gtFine").is_symlink()
    assert not (tree / "elastic_transform/2/gtFine").is_symlink()
    pairs = get_dataset("cityscapes").pairs(city)
    rows = load_manifest(tree)
    for i, pair in enumerate(pairs):
        path = variant_label_path(tree, "elastic_transform", 2, pair)
        assert (
            path.name.endswith("_gtFine_labelIds.png") and path.relative_to(tree).as_posix() in rows
        )
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(stored)) <= set(np.unique(cv2.imread(str(pair.label_path), 0))) | {0}
        _, image, label = CellView(pairs, "elastic_transform", 2)[i]  # on the fly
        _, tree_image, tree_label = CellView(pairs, "elastic_transform", 2, cityscapes_c=tree)[i]
        assert np.array_equal(image, tree_image) and np.array_equal(label, tree_label)
        assert not np.array_equal(label, load_label(pair))
        _, _, fog_label = CellView(pairs, "fog", 2, cityscapes_c=tree)[i]
        assert np.array_equal(fog_label, load_label(pair))
    assert json.loads((tree / "metadata.json").read_text())["labels"].endswith("encoding)")
    assert snapshot(city) == before


def test_a_tree_that_linked_the_moved_labels_is_refused_then_resumed(tmp_path, monkeypatch):
    """A tree from before labels moved holds a link to the dataset's labels in the
    elastic_transform folder: evaluate refuses it in one line; make-corrupted resumes it, replacing
    the link (never writing through it into the dataset)."""
    monkeypatch.setenv("ROBUSTSEG_NO_PROGRESS", "1")
    data = make_square_folder(tmp_path / "f")
    tree = tmp_path / "tree"
    make = ["make-corrupted", "--dataset", "folder", "--data-root", str(data), "--out", str(tree),
            "--corruptions", "elastic_transform", "--severities", "5", "--workers", "0"]  # fmt: skip
    assert CliRunner().invoke(cli, make).exit_code == 0
    folder = tree / "elastic_transform/5/labels"
    moved = (folder / "val/sq.png").read_bytes()
    for p in sorted(folder.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    folder.rmdir()
    folder.symlink_to(data / "labels", target_is_directory=True)
    manifest = tree / "manifest.csv"
    manifest.write_text(
        "".join(x for x in manifest.read_text().splitlines(True) if "labels/" not in x)
    )
    dataset_before, tree_before = snapshot(data), snapshot(tree)
    result = CliRunner().invoke(cli, ["evaluate", "-m", "b0", "--weights", "none", "--workers", "0",
                                      "--dataset", "folder", "--data-root", str(data),
                                      "--cityscapes-c", str(tree), "--corruptions",
                                      "elastic_transform", "--severities", "5",
                                      "--out", str(tmp_path / "o")])  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert "is not the moved label map of elastic_transform" in lines[0]
    assert "(it resumes)" in lines[0]
    assert snapshot(tree) == tree_before and not (tmp_path / "o").exists()
    result = CliRunner().invoke(cli, make)
    assert result.exit_code == 0 and "1 moved label maps" in result.output, result.output
    assert not folder.is_symlink() and (folder / "val/sq.png").read_bytes() == moved
    assert snapshot(data) == dataset_before
