"""The dataset registry: each dataset a small adapter that finds its image/label pairs in its
official layout, decodes its labels to train ids, and names its classes.

| name | layout (source) | classes | conditions |
|---|---|---|---|
| ``cityscapes`` | ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``, ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` or ``_labelIds.png`` (cityscapesScripts) | 19 | — |
| ``foggy-cityscapes`` | ``leftImg8bit_foggy/<split>/<city>/*_leftImg8bit_foggy_beta_<β>.png`` next to Cityscapes' ``gtFine`` (Sakaridis et al. 2018, the dataset's README; mmseg-based ``FoggyCityscapesDataset``) | 19 | ``fog-1`` β=0.005, ``fog-2`` β=0.01, ``fog-3`` β=0.02 |
| ``acdc`` | ``rgb_anon/<condition>/<split>/<sequence>/*_rgb_anon.png``, ``gt/<condition>/<split>/<sequence>/*_gt_labelTrainIds.png`` (ACDC devkit README; mmseg configs ``data_prefix=rgb_anon/fog/val``) | 19 | ``fog``, ``night``, ``rain``, ``snow`` |
| ``dark-zurich`` | ``rgb_anon/<split>/night/<sequence>/*_rgb_anon.png``, ``gt/<split>/night/<sequence>/*_gt_labelTrainIds.png`` (mmseg ``DarkZurichDataset``, ``rgb_anon/val/night/GOPR0356``) | 19 | ``night`` |
| ``ade20k`` | ``ADEChallengeData2016/images/{training,validation}/*.jpg``, ``annotations/.../*.png``, 0 = unlabelled (mmseg ``ADE20KDataset``, ``reduce_zero_label``) | 150 | — |
| ``folder`` | ``images/**/*.{png,jpg,jpeg}``, ``labels/**/<same stem>.png`` holding class indices (255 ignored), ``classes.txt`` (UTF-8, one class per line, optionally ``name R G B``); with ``images/{train,val,test}/`` folders, splits (a split asked for and absent is refused) | from ``classes.txt`` | — |
"""

from __future__ import annotations

import difflib
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from robustbench_seg.data import cityscapes as cs
from robustbench_seg.data.pairs import IGNORE_INDEX, ImageEntry, Pair, cityscapes_style_pair, scan
from robustbench_seg.errors import RobustSegError
from robustbench_seg.results.cells import Cell

__all__ = [
    "DATASETS",
    "Dataset",
    "default_palette",
    "get_dataset",
    "read_classes_file",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


@dataclass(frozen=True)
class Dataset:
    """One dataset's adapter.

    Attributes:
        name: Registry name (``--dataset``).
        title: For reports.
        splits: Its splits; ``default_split`` is what evaluation uses.
        conditions: Natural-shift conditions (``acdc``'s weather, ``foggy-cityscapes``' β).
        env: Environment variable naming its root, if any (``CITYSCAPES_DATASET``).
        lister: ``(root, split, condition) -> pairs``.
        class_source: ``root -> (class names, palette)``; fixed datasets ignore ``root``.
        tree_labels: Label folders a corrupted tree links back to (relative to the root).
    """

    name: str
    title: str
    splits: tuple[str, ...]
    default_split: str
    lister: Callable[[Path, str, str | None], list[Pair]]
    class_source: Callable[[Path | None], tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]]
    conditions: tuple[str, ...] = ()
    env: str | None = None
    tree_labels: tuple[str, ...] = field(default=())
    image_lister: Callable[[Path, str], list[ImageEntry]] | None = None

    def resolve_root(self, root: str | os.PathLike | None, option: str = "--data-root") -> Path:
        """The dataset's root folder (``root``, else ``$env``)."""
        return cs.resolve_root(root, env=self.env, what=self.title, option=option)

    def root_from_options(self, data_root: str | os.PathLike | None,
                          cityscapes_root: str | os.PathLike | None = None) -> Path:  # fmt: skip
        """The root a command was given: ``--data-root``, or for Cityscapes ``--cityscapes-root``
        (one of them), else ``$env``.

        Raises:
            RobustSegError: Both given, ``--cityscapes-root`` for another dataset, no root.
        """
        if data_root is not None and cityscapes_root is not None:
            raise RobustSegError("pass either --cityscapes-root or --data-root, not both")
        if cityscapes_root is not None and self.name != "cityscapes":
            raise RobustSegError(
                f"--cityscapes-root is Cityscapes' root; use --data-root for {self.name}"
            )
        if data_root is not None or self.name != "cityscapes":
            return self.resolve_root(data_root, "--data-root")
        return self.resolve_root(cityscapes_root, "--cityscapes-root")

    def classes(self, root: Path | None = None) -> tuple[str, ...]:
        """Class names in train-id order."""
        return self.class_source(root)[0]

    def palette(self, root: Path | None = None) -> tuple[tuple[int, int, int], ...]:
        """One RGB colour per class."""
        return self.class_source(root)[1]

    def pairs(self, root: str | os.PathLike | None, split: str | None = None,
              condition: str | None = None) -> list[Pair]:  # fmt: skip
        """Every image/label pair of ``split`` (default: ``default_split``) and ``condition``,
        sorted by image id.

        Raises:
            RobustSegError: Unknown split or condition, a missing layout, no images, an image
                without its label.
        """
        split = self._split(split)
        if self.conditions:
            if condition is None:
                raise RobustSegError(
                    f"dataset {self.name} needs a condition: {', '.join(self.conditions)}"
                )
            if condition not in self.conditions:
                raise RobustSegError(
                    f"dataset {self.name} has no condition {condition!r}; its conditions: "
                    f"{', '.join(self.conditions)}"
                )
        elif condition is not None:
            raise RobustSegError(f"dataset {self.name} has no conditions (got {condition!r})")
        pairs = self.lister(self.resolve_root(root), split, condition)
        if not pairs:
            raise RobustSegError(f"dataset {self.name}: no images in split {split}")
        pairs = sorted(pairs, key=lambda p: p.image_id)
        _check_unique([p.image for p in pairs])
        return pairs

    def _split(self, split: str | None) -> str:
        """``split`` (default: the dataset's), checked."""
        split = split or self.default_split
        if split not in self.splits:
            raise RobustSegError(
                f"dataset {self.name} has no split {split!r}; its splits: {', '.join(self.splits)}"
            )
        return split

    def images(self, root: str | os.PathLike | None, split: str | None = None,
               condition: str | None = None) -> list[ImageEntry]:  # fmt: skip
        """The images of ``split`` sorted by id (what a corrupted tree is made of); Cityscapes
        lists them without their labels (its test split has none)."""
        if self.image_lister is not None and condition is None:
            images = self.image_lister(self.resolve_root(root), self._split(split))
            return _check_unique(sorted(images, key=lambda im: im.image_id))
        return [p.image for p in self.pairs(root, split, condition)]


def _check_unique(images: list[ImageEntry]) -> list[ImageEntry]:
    """Refuses two files with one image id (``x.png`` beside ``x.jpg``): they would share one
    seed, one corrupted variant's file and one row of the results. ``images`` sorted by id."""
    for a, b in itertools.pairwise(images):
        if a.image_id == b.image_id:
            raise RobustSegError(
                f"{a.path} and {b.path} have the same image id {a.image_id!r} (one seed, one "
                "corrupted file, one result row for both); keep one of them"
            )
    return images


# ----------------------------------------------------------------------------- adapters


def _cityscapes_classes(_root: Path | None):
    return cs.CLASS_NAMES, cs.PALETTE


def _cityscapes(root: Path, split: str, _condition: str | None) -> list[Pair]:
    return cs.list_pairs(root, split)


# Foggy Cityscapes' attenuation coefficients (Sakaridis et al. 2018): meteorological optical
# range 600, 300 and 150 m; its file names carry them.
FOG_BETAS = (0.005, 0.01, 0.02)
FOGGY_BETAS = {f"fog-{k}": beta for k, beta in enumerate(FOG_BETAS, 1)}


def foggy_suffix(beta: float) -> str:
    """The end of a Foggy Cityscapes file name: ``_leftImg8bit_foggy_beta_0.01.png``."""
    return f"_leftImg8bit_foggy_beta_{beta}.png"


def _foggy(root: Path, split: str, condition: str | None) -> list[Pair]:
    folder = root / "leftImg8bit_foggy" / split
    if not folder.is_dir():
        raise RobustSegError(
            f"no folder {folder}: expected Foggy Cityscapes' leftImg8bit_foggy/{split}/<city>/"
            "*_leftImg8bit_foggy_beta_<beta>.png next to Cityscapes' gtFine/"
        )
    suffix = foggy_suffix(FOGGY_BETAS[condition])
    pairs = []
    for path in scan(folder, (suffix,)):
        stem = path.name[: -len(suffix)]
        image = ImageEntry(f"{path.parent.name}/{stem}", path, path.relative_to(root).as_posix())
        pairs.append(cs.gtfine_pair(root, split, image))
    return pairs


def _rgb_anon(root: Path, image_dir: Path, label_dir: Path, id_prefix: str) -> list[Pair]:
    """ACDC / Dark Zurich: ``*_rgb_anon.png`` with ``*_gt_labelTrainIds.png`` (else
    ``_gt_labelIds.png``) at the same relative place under ``label_dir``."""
    if not image_dir.is_dir():
        raise RobustSegError(f"no folder {image_dir}: expected the dataset's rgb_anon/ layout")
    pairs = []
    for path in scan(image_dir, ("_rgb_anon.png",)):
        rel = path.relative_to(image_dir)
        stem = path.name[: -len("_rgb_anon.png")]
        image = ImageEntry(f"{id_prefix}{rel.parent.as_posix()}/{stem}", path,
                           path.relative_to(root).as_posix())  # fmt: skip
        base = label_dir / rel.parent / stem
        pairs.append(cityscapes_style_pair(image, Path(f"{base}_gt_labelTrainIds.png"),
                                           Path(f"{base}_gt_labelIds.png")))  # fmt: skip
    return pairs


def _acdc(root: Path, split: str, condition: str | None) -> list[Pair]:
    return _rgb_anon(root, root / "rgb_anon" / condition / split, root / "gt" / condition / split,
                     f"{condition}/")  # fmt: skip


def _dark_zurich(root: Path, split: str, condition: str | None) -> list[Pair]:
    return _rgb_anon(root, root / "rgb_anon" / split / condition, root / "gt" / split / condition,
                     f"{condition}/")  # fmt: skip


_ADE_SPLITS = {"train": "training", "val": "validation"}


def _ade20k_classes(_root: Path | None):
    from robustbench_seg.data.ade20k import CLASS_NAMES, PALETTE

    return CLASS_NAMES, PALETTE


def _ade20k(given: Path, split: str, _condition: str | None) -> list[Pair]:
    root = given / "ADEChallengeData2016" if (given / "ADEChallengeData2016").is_dir() else given
    image_dir = root / "images" / _ADE_SPLITS[split]
    if not image_dir.is_dir():
        raise RobustSegError(
            f"no folder {image_dir}: expected ADEChallengeData2016/images/{_ADE_SPLITS[split]}/"
            "*.jpg and annotations/ (pass the folder that holds them as --data-root)"
        )
    pairs = []
    for path in scan(image_dir, (".jpg",)):
        label = root / "annotations" / _ADE_SPLITS[split] / f"{path.stem}.png"
        if not label.is_file():
            raise RobustSegError(f"image {path} has no label: expected {label}")
        rel = path.relative_to(given).as_posix()
        pairs.append(Pair(ImageEntry(path.stem, path, rel), label, "reduce-zero:150"))
    return pairs


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """``n`` distinct colours (golden-ratio hues, alternating brightness), for classes without
    a colour of their own."""
    import colorsys

    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.6180339887) % 1.0, 0.65, 0.95 if i % 2 else 0.7)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(out)


def read_classes_file(root: Path | None):
    """``classes.txt`` of a ``folder`` dataset: one class per line, ``name`` or ``name R G B``
    (palette); blank lines and ``#`` comments are skipped."""
    if root is None:
        raise RobustSegError("the folder dataset's classes come from DATA_ROOT/classes.txt")
    path = Path(root) / "classes.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RobustSegError(
            f"no {path}: a folder dataset lists its classes there, one per line (index order)"
        ) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise RobustSegError(
            f"{path}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the file "
            "as UTF-8"
        ) from None
    names, palette = [], []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) >= 4 and all(p.isdigit() for p in parts[-3:]):
            name, rgb = " ".join(parts[:-3]), tuple(int(p) for p in parts[-3:])
            if max(rgb) > 255:
                raise RobustSegError(f"{path}:{number}: colour values are 0..255, got {rgb}")
        else:
            name, rgb = line, None
        names.append(name)
        palette.append(rgb)
    if not names or len(names) > IGNORE_INDEX:
        raise RobustSegError(f"{path} must list 1..255 classes, found {len(names)}")
    if len(set(names)) != len(names):
        raise RobustSegError(f"{path} lists a class twice")
    fallback = default_palette(len(names))
    return tuple(names), tuple(rgb or fallback[i] for i, rgb in enumerate(palette))


# A folder dataset with any of these folders under images/ is split: images/<split>/...
FOLDER_SPLITS = ("train", "val", "test")


def _folder(root: Path, split: str, _condition: str | None) -> list[Pair]:
    images, labels = root / "images", root / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise RobustSegError(
            f"a folder dataset holds images/ and labels/ (and classes.txt); {root} does not"
        )
    found = sorted(d.name for d in images.iterdir() if d.name in FOLDER_SPLITS and d.is_dir())
    if found:  # images/<split>/..., labels/<split>/...: the split asked for, and nothing else
        if split not in found:
            raise RobustSegError(
                f"folder dataset {root} has no split {split!r} (no {images / split}); its "
                f"splits: {', '.join(found)}"
            )
        images, labels = images / split, labels / split
    n = len(read_classes_file(root)[0])
    pairs = []
    for path in scan(images, IMAGE_SUFFIXES):
        rel = path.relative_to(images).with_suffix("")
        label = labels / f"{rel}.png"
        if not label.is_file():
            raise RobustSegError(f"image {path} has no label: expected {label}")
        entry = ImageEntry(rel.as_posix(), path, path.relative_to(root).as_posix())
        pairs.append(Pair(entry, label, f"ids:{n}:{IGNORE_INDEX}"))
    return pairs


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("cityscapes", "Cityscapes", cs.SPLITS, "val", _cityscapes, _cityscapes_classes,
                env="CITYSCAPES_DATASET", tree_labels=("gtFine",), image_lister=cs.list_images),
        Dataset("foggy-cityscapes", "Foggy Cityscapes", ("train", "val", "test"), "val", _foggy,
                _cityscapes_classes, conditions=tuple(FOGGY_BETAS), tree_labels=("gtFine",)),
        Dataset("acdc", "ACDC", ("train", "val", "test"), "val", _acdc, _cityscapes_classes,
                conditions=("fog", "night", "rain", "snow"), tree_labels=("gt",)),
        Dataset("dark-zurich", "Dark Zurich", ("val",), "val", _dark_zurich,
                _cityscapes_classes, conditions=("night",), tree_labels=("gt",)),
        Dataset("ade20k", "ADE20K", ("train", "val"), "val", _ade20k, _ade20k_classes,
                tree_labels=("annotations",)),
        Dataset("folder", "image folder", FOLDER_SPLITS, "val", _folder,
                read_classes_file, tree_labels=("labels",)),
    )
}  # fmt: skip


def get_dataset(name: str) -> Dataset:
    """The adapter named ``name``; an unknown name lists the valid ones (and the closest)."""
    try:
        return DATASETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(DATASETS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RobustSegError(
            f"unknown dataset {name!r}{hint}; valid datasets: {', '.join(DATASETS)}"
        ) from None


@dataclass(frozen=True)
class NaturalSet:
    """The images of one natural-shift condition, evaluated as a cell next to the synthetic ones.

    Attributes:
        cell: Its cell name (``acdc:fog``, ``foggy-cityscapes:fog-2``).
        dataset: The dataset adapter.
        condition: The condition.
        root: The dataset's root.
        pairs: Its image/label pairs (the dataset's evaluation split).
    """

    cell: str
    dataset: Dataset
    condition: str | None
    root: Path
    pairs: list[Pair]


def parse_natural(spec: str, *, default_roots: dict[str, Path] | None = None,
                  split: str | None = None) -> list[NaturalSet]:  # fmt: skip
    """``--natural`` ``NAME[:CONDITION[,CONDITION...]][=ROOT]`` -> its natural sets.

    ``acdc=~/data/acdc`` is every ACDC condition, ``acdc:fog,night=~/data/acdc`` two of them,
    ``foggy-cityscapes`` the three fog densities under ``default_roots["foggy-cityscapes"]``
    (the Cityscapes root when evaluating Cityscapes). Each set is the dataset's evaluation split
    (``split`` to choose another).

    Raises:
        RobustSegError: An unknown dataset or condition, a dataset without conditions, no root.
    """
    head, sep, root_text = spec.partition("=")
    name, _, conds = head.partition(":")
    data = get_dataset(name.strip())
    if not data.conditions:
        raise RobustSegError(
            f"--natural {spec}: {data.name} has no natural-shift conditions; natural sets: "
            f"{', '.join(d.name for d in DATASETS.values() if d.conditions)}"
        )
    conditions = [c.strip() for c in conds.split(",") if c.strip()] or list(data.conditions)
    for c in conditions:
        if c not in data.conditions:
            raise RobustSegError(
                f"--natural {spec}: {data.name} has no condition {c!r}; its conditions: "
                f"{', '.join(data.conditions)}"
            )
    given = root_text.strip() if sep else (default_roots or {}).get(data.name)
    root = data.resolve_root(given, option=f"--natural {data.name}=DIR")
    return [
        NaturalSet(Cell.of_natural(data.name, c).name, data, c, root, data.pairs(root, split, c))
        for c in conditions
    ]
