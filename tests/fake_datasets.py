"""Tiny trees in the official layouts of ACDC, Dark Zurich, Foggy Cityscapes, ADE20K and a
folder dataset (natural-photo crops, random labels), for the dataset adapters' tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from robustbench_seg.data.cityscapes import CLASS_NAMES
from tests.conftest import natural_image


def _write(path: Path, array: np.ndarray, *, jpeg: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if jpeg:
        cv2.imwrite(str(path), array[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    else:
        cv2.imwrite(str(path), array[:, :, ::-1] if array.ndim == 3 else array)


def _train_ids(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    label = rng.integers(0, 19, (h, w)).astype(np.uint8)
    label[: h // 8] = 255
    return label


def make_acdc(root: Path, per_condition: int = 2, size=(48, 96), seed=0) -> list[str]:
    """``rgb_anon/<cond>/val/<seq>/*_rgb_anon.png`` + ``gt/<cond>/val/<seq>/*_gt_labelTrainIds.png``
    for fog, night, rain, snow; returns the image ids."""
    rng = np.random.default_rng(seed)
    ids = []
    for c, cond in enumerate(("fog", "night", "rain", "snow")):
        for j in range(per_condition):
            seq, name = f"GOPR04{c}{j}", f"GOPR04{c}{j}_frame_0000{j}1"
            img = natural_image(c + j, *size)
            _write(root / "rgb_anon" / cond / "val" / seq / f"{name}_rgb_anon.png", img)
            _write(root / "gt" / cond / "val" / seq / f"{name}_gt_labelTrainIds.png",
                   _train_ids(rng, *size))  # fmt: skip
            # the reference images next to them are not part of the split
            _write(
                root / "rgb_anon" / cond / "val_ref" / f"{seq}_ref" / f"{name}_ref_rgb_anon.png",
                img,
            )
            ids.append(f"{cond}/{seq}/{name}")
    return ids


def make_dark_zurich(root: Path, n: int = 2, size=(48, 96), seed=1) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = []
    for j in range(n):
        name = f"GOPR0356_frame_00032{j}"
        _write(
            root / "rgb_anon/val/night/GOPR0356" / f"{name}_rgb_anon.png", natural_image(j, *size)
        )
        _write(
            root / "gt/val/night/GOPR0356" / f"{name}_gt_labelTrainIds.png", _train_ids(rng, *size)
        )
        ids.append(f"night/GOPR0356/{name}")
    return ids


def make_foggy(cityscapes_root: Path) -> None:
    """``leftImg8bit_foggy/val/<city>/*_leftImg8bit_foggy_beta_<beta>.png`` for every image of a
    (fake) Cityscapes root: the clean image blended with grey, denser for larger beta."""
    for path in sorted((cityscapes_root / "leftImg8bit/val").rglob("*_leftImg8bit.png")):
        img = cv2.imread(str(path))
        stem = path.name[: -len("_leftImg8bit.png")]
        for beta, a in (("0.005", 0.2), ("0.01", 0.4), ("0.02", 0.7)):
            fog = (img * (1 - a) + 200 * a).astype(np.uint8)
            out = cityscapes_root / "leftImg8bit_foggy/val" / path.parent.name
            out.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / f"{stem}_leftImg8bit_foggy_beta_{beta}.png"), fog)


def make_ade20k(root: Path, n: int = 3, size=(40, 56), seed=2) -> list[str]:
    """``ADEChallengeData2016/images/validation/*.jpg`` + ``annotations/validation/*.png``
    (0 = unlabelled, 1..150 the classes)."""
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    ids = []
    for j in range(n):
        stem = f"ADE_val_{j + 1:08d}"
        _write(base / "images/validation" / f"{stem}.jpg", natural_image(j, *size), jpeg=True)
        _write(base / "annotations/validation" / f"{stem}.png",
               rng.integers(0, 151, size).astype(np.uint8))  # fmt: skip
        ids.append(stem)
    return ids


def cityscapes_as_folder(cityscapes_root: Path, folder: Path) -> None:
    """The same images and labels (as train ids) arranged as a ``folder`` dataset."""
    from robustbench_seg.data.cityscapes import list_pairs, load_label

    for pair in list_pairs(cityscapes_root, "val"):
        rel = pair.image_id
        img = cv2.imread(str(pair.image.path))
        (folder / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "images" / f"{rel}.png"), img)
        (folder / "labels" / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "labels" / f"{rel}.png"), load_label(pair))
    (folder / "classes.txt").write_text("".join(f"{n}\n" for n in CLASS_NAMES))
