"""Cityscapes (Cordts et al. 2016): locating the dataset and listing a split's images."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from robustbench_seg.errors import RobustSegError

IMAGE_SUFFIX = "_leftImg8bit.png"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CityscapesImage:
    """One image of a split.

    Attributes:
        image_id: ``<city>/<city>_<seq>_<frame>``: stable across machines; used for seeding.
        path: the ``*_leftImg8bit.png`` file.
        rel_path: path relative to the dataset root (``leftImg8bit/<split>/<city>/<file>``).
    """

    image_id: str
    path: Path
    rel_path: str

    @property
    def city(self) -> str:
        return self.image_id.split("/", 1)[0]


def resolve_root(root: str | os.PathLike | None) -> Path:
    """The dataset root: ``root``, else ``$CITYSCAPES_DATASET``; it must be a directory."""
    if root is None or str(root) == "":
        root = os.environ.get("CITYSCAPES_DATASET")
        if not root:
            raise RobustSegError(
                "no Cityscapes root: pass --cityscapes-root DIR or set CITYSCAPES_DATASET"
            )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise RobustSegError(f"Cityscapes root {path} does not exist or is not a directory")
    return path


def list_images(root: str | os.PathLike | None, split: str = "val") -> list[CityscapesImage]:
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
    for path in sorted(split_dir.glob(f"*/*{IMAGE_SUFFIX}")):
        city = path.parent.name
        stem = path.name[: -len(IMAGE_SUFFIX)]
        images.append(
            CityscapesImage(f"{city}/{stem}", path, path.relative_to(root).as_posix())
        )
    if not images:
        raise RobustSegError(f"no images matching leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX} in {root}")
    return images
