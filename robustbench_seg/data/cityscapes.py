"""Cityscapes (Cordts et al. 2016): locating the dataset, listing a split's images and labels
(layout of cityscapesScripts: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``,
``gtFine/<split>/<city>/*_gtFine_label{TrainIds,Ids}.png``), and the label table."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from robustbench_seg.data.pairs import (
    IGNORE_INDEX,
    ImageEntry,
    Pair,
    check_pairs,
    cityscapes_style_pair,
    load_label,
)
from robustbench_seg.errors import RobustSegError

IMAGE_SUFFIX = "_leftImg8bit.png"
SPLITS = ("train", "val", "test")


def resolve_root(
    root: str | os.PathLike | None,
    *,
    env: str | None = "CITYSCAPES_DATASET",
    what: str = "Cityscapes",
    option: str = "--cityscapes-root",
) -> Path:
    """The dataset root: ``root``, else ``$<env>``; it must be a directory."""
    if root is None or str(root) == "":
        root = os.environ.get(env) if env else None
        if not root:
            hint = f" or set {env}" if env else ""
            raise RobustSegError(f"no {what} root: pass {option} DIR{hint}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise RobustSegError(f"{what} root {path} does not exist or is not a directory")
    return path


def list_images(root: str | os.PathLike | None, split: str = "val") -> list[ImageEntry]:
    """All ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` images of a split, sorted by id.

    Raises:
        RobustSegError: the root is missing, or the split has no images.
    """
    root = resolve_root(root)
    split_dir = root / "leftImg8bit" / split
    if not split_dir.is_dir():
        raise RobustSegError(
            f"no folder {split_dir}: expected Cityscapes layout leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX}"
        )
    images = []
    # Every folder is read, and a folder that cannot be read stops here (no city is skipped).
    for city_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for name in sorted(os.listdir(city_dir)):
            if name.endswith(IMAGE_SUFFIX) and not name.startswith("."):
                path = city_dir / name
                stem = name[: -len(IMAGE_SUFFIX)]
                images.append(
                    ImageEntry(f"{city_dir.name}/{stem}", path, path.relative_to(root).as_posix())
                )
    if not images:
        raise RobustSegError(
            f"no images matching leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX} in {root}"
        )
    return images


# ----------------------------------------------------------------------------- labels

# Cityscapes label table (cityscapesScripts helpers/labels.py): (name, labelId, trainId).
# trainId 255 = not evaluated. License plate (-1) is not in the label images.
LABELS: tuple[tuple[str, int, int], ...] = (
    ("unlabeled", 0, 255), ("ego vehicle", 1, 255), ("rectification border", 2, 255),
    ("out of roi", 3, 255), ("static", 4, 255), ("dynamic", 5, 255), ("ground", 6, 255),
    ("road", 7, 0), ("sidewalk", 8, 1), ("parking", 9, 255), ("rail track", 10, 255),
    ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4), ("guard rail", 14, 255),
    ("bridge", 15, 255), ("tunnel", 16, 255), ("pole", 17, 5), ("polegroup", 18, 255),
    ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8), ("terrain", 22, 9),
    ("sky", 23, 10), ("person", 24, 11), ("rider", 25, 12), ("car", 26, 13), ("truck", 27, 14),
    ("bus", 28, 15), ("caravan", 29, 255), ("trailer", 30, 255), ("train", 31, 16),
    ("motorcycle", 32, 17), ("bicycle", 33, 18),
)  # fmt: skip
NUM_CLASSES = 19
CLASS_NAMES: tuple[str, ...] = tuple(
    name for name, _, tid in sorted(LABELS, key=lambda r: r[2]) if tid != IGNORE_INDEX
)
# Cityscapes palette for the 19 train classes (cityscapesScripts colours).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip


def label_id_to_train_id_lut() -> np.ndarray:
    """A 256-entry uint8 lookup table labelId → trainId; ids outside the table map to 255."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for _, lid, tid in LABELS:
        lut[lid] = tid
    return lut


def train_id_to_label_id_lut() -> np.ndarray:
    """trainId (0..18) → labelId, for writing predictions in the official format."""
    lut = np.zeros(NUM_CLASSES, np.uint8)
    for _, lid, tid in LABELS:
        if tid != IGNORE_INDEX:
            lut[tid] = lid
    return lut


# ----------------------------------------------------------------------------- pairs


def gtfine_pair(root: Path, split: str, image: ImageEntry) -> Pair:
    """An image id ``<city>/<stem>`` with its ``gtFine`` label (``labelTrainIds``, else
    ``labelIds``): Cityscapes' and Foggy Cityscapes' labels."""
    city, stem = image.image_id.split("/", 1)
    base = root / "gtFine" / split / city / stem
    return cityscapes_style_pair(image, Path(f"{base}_gtFine_labelTrainIds.png"),
                                 Path(f"{base}_gtFine_labelIds.png"))  # fmt: skip


def list_pairs(root: str | os.PathLike | None, split: str = "val") -> list[Pair]:
    """Images of a split with their ``gtFine`` labels.

    Raises:
        RobustSegError: no dataset, an empty split, or an image without its label.
    """
    root = resolve_root(root)
    return [gtfine_pair(root, split, image) for image in list_images(root, split)]


__all__ = [
    "CLASS_NAMES", "IGNORE_INDEX", "LABELS", "NUM_CLASSES", "PALETTE", "check_pairs", "list_images", "list_pairs", "load_label", "resolve_root",
]  # fmt: skip
