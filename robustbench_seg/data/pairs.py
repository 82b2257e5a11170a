"""Image/label pairs of any dataset, label decoding to train ids, and the checks run on every
pair before any work.

A label map is decoded through a 256-entry table (``label_lut``) from the stored value to the
train id: a class index, ``IGNORE_INDEX`` (255, not scored), or ``INVALID`` (a value the dataset
does not define: the pair is refused, naming the file and the value).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustbench_seg.data.images import check_image_file, read_label
from robustbench_seg.errors import RobustSegError

__all__ = [
    "IGNORE_INDEX", "ImageEntry", "Pair", "check_pairs", "cityscapes_style_pair", "label_lut",
    "label_rel_path", "load_label", "stored_ignore",
]  # fmt: skip

IGNORE_INDEX = 255
INVALID = -1


@dataclass(frozen=True)
class ImageEntry:
    """One image of a dataset.

    Attributes:
        image_id: Stable across machines (e.g. ``<city>/<city>_<seq>_<frame>`` for Cityscapes);
            seeds the corruptions and names the image in results.
        path: The image file.
        rel_path: Its path relative to the dataset root (where a corrupted tree puts it).
    """

    image_id: str
    path: Path
    rel_path: str


@dataclass(frozen=True)
class Pair:
    """An image and its label map.

    Attributes:
        image: The image.
        label_path: The label map (PNG).
        label_map: How its values decode to train ids (``label_lut``): ``cityscapes-labelIds``,
            ``trainIds:<K>`` (0..K-1, 255 ignored), ``reduce-zero:<K>`` (0 ignored, 1..K are
            classes 0..K-1: ADE20K), ``ids:<K>:<ignore>`` (0..K-1, ``ignore`` ignored).
    """

    image: ImageEntry
    label_path: Path
    label_map: str = "trainIds:19"

    @property
    def image_id(self) -> str:
        return self.image.image_id

    @property
    def train_ids(self) -> bool:
        """True when the file holds train ids as they are (Cityscapes ``labelTrainIds``)."""
        return self.label_map.startswith("trainIds:")


@functools.lru_cache(maxsize=64)
def label_lut(label_map: str) -> np.ndarray:
    """The decoding table of ``label_map`` (see :class:`Pair`): int16 ``(256,)``."""
    kind, _, rest = label_map.partition(":")
    lut = np.full(256, INVALID, np.int16)
    if kind == "cityscapes-labelIds":
        from robustbench_seg.data.cityscapes import LABELS

        for _, label_id, train_id in LABELS:
            lut[label_id] = train_id
    elif kind == "trainIds":
        lut[: int(rest)] = np.arange(int(rest))
        lut[IGNORE_INDEX] = IGNORE_INDEX
    elif kind == "reduce-zero":
        k = int(rest)
        lut[0] = IGNORE_INDEX
        lut[1 : k + 1] = np.arange(k)
    elif kind == "ids":
        k, ignore = (int(v) for v in rest.split(":"))
        lut[:k] = np.arange(k)
        lut[ignore] = IGNORE_INDEX
    else:
        raise RobustSegError(f"unknown label map {label_map!r}")
    lut.setflags(write=False)
    return lut


def stored_ignore(label_map: str) -> int:
    """The stored value that ``label_map`` decodes to ``IGNORE_INDEX`` (255 where it does,
    else the smallest: Cityscapes' ``unlabeled`` 0, ADE20K's 0): what a moved label map holds
    where its pixels came from outside the image."""
    lut = label_lut(label_map)
    if lut[IGNORE_INDEX] == IGNORE_INDEX:
        return IGNORE_INDEX
    return int(np.flatnonzero(lut == IGNORE_INDEX)[0])


def label_rel_path(pair: Pair) -> str:
    """The label file's path relative to the dataset root (the root the image's ``rel_path``
    is relative to): where a corrupted tree puts a moved label map."""
    depth = len(Path(pair.image.rel_path).parts)
    root = pair.image.path.parents[depth - 1]
    try:
        return pair.label_path.relative_to(root).as_posix()
    except ValueError:
        raise RobustSegError(
            f"label {pair.label_path} is not under the dataset root {root}"
        ) from None


def _described(label_map: str) -> str:
    kind, _, rest = label_map.partition(":")
    if kind == "cityscapes-labelIds":
        return "the Cityscapes label table (0..33)"
    if kind == "trainIds":
        return f"0..{int(rest) - 1} or 255"
    if kind == "reduce-zero":
        return f"0..{rest} (0: unlabelled)"
    k, ignore = rest.split(":")
    return f"0..{int(k) - 1} or {ignore} (ignored)"


def load_label(pair: Pair, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The label map of ``pair`` as uint8 train ids (255 = ignore).

    Raises:
        RobustSegError: not an 8-bit one-channel map, a value the dataset does not define, or a
        size that differs from ``image_shape``.
        OSError: the file cannot be read.
    """
    label = read_label(pair.label_path)
    if image_shape is not None and tuple(label.shape) != tuple(image_shape):
        raise RobustSegError(
            f"label {pair.label_path} is {label.shape[1]}x{label.shape[0]} but its image "
            f"is {image_shape[1]}x{image_shape[0]}"
        )
    decoded = label_lut(pair.label_map)[label]
    if decoded.min() < 0:
        bad = int(label[decoded < 0][0])
        raise RobustSegError(
            f"label {pair.label_path} holds {bad}, outside {_described(pair.label_map)}"
        )
    return decoded.astype(np.uint8)


def check_pairs(
    pairs: Sequence[Pair], *, progress: bool = False, digests: dict[str, str] | None = None
) -> list[tuple[int, int]]:
    """Checks every pair before any work: the image's header (8-bit, a format ``read_rgb``
    reads; a PNG checked whole), its label map decoded (8-bit one channel, defined values) and
    of the same size. Returns each image's ``(height, width)``; with ``digests``, also fills it
    with each image's sha256 by relative path (from the same read of the file).

    Raises:
        RobustSegError: The first bad file, named, with what is wrong.
        OSError: A file that cannot be read.
    """
    from robustbench_seg.progress import Progress

    shapes = []
    with Progress(
        len(pairs), "checking inputs", unit="img", enabled=progress, summary=False
    ) as bar:
        for pair in pairs:
            shape, sha = check_image_file(pair.image.path, digest=digests is not None)
            if digests is not None:
                digests[pair.image.rel_path] = sha
            load_label(pair, shape)
            shapes.append(shape)
            bar.update()
    return shapes


def cityscapes_style_pair(image: ImageEntry, train_ids: Path, label_ids: Path) -> Pair:
    """The pair of ``image`` with its ``*_labelTrainIds.png`` if there is one, else its
    ``*_labelIds.png`` (Cityscapes' label ids); the layout Cityscapes, ACDC and Dark Zurich
    share.

    Raises:
        RobustSegError: Neither file exists.
    """
    if train_ids.is_file():
        return Pair(image, train_ids, "trainIds:19")
    if label_ids.is_file():
        return Pair(image, label_ids, "cityscapes-labelIds")
    raise RobustSegError(f"image {image.rel_path} has no label: expected {label_ids}")


def images_sha256(pairs: Sequence[Pair] | Sequence[ImageEntry]) -> str:
    """The hash of an image list (relative paths, in order): what runs and trees compare."""
    import hashlib

    rel = [p.image.rel_path if isinstance(p, Pair) else p.rel_path for p in pairs]
    return hashlib.sha256("\n".join(rel).encode()).hexdigest()


def scan(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Every file under ``folder`` (recursively, sorted) whose name ends in one of ``suffixes``;
    a folder that cannot be read stops the scan with its OSError (no folder is skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_raise, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(suffixes) and not name.startswith("."):
                out.append(Path(dirpath) / name)
    return out


def _raise(exc: OSError) -> None:
    raise exc
