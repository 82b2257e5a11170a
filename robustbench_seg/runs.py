"""The evaluation run directory: the one module that knows its files (written by ``evaluate``,
read by ``report``).

A run directory holds:

- ``run.json``: the configuration (the model contract and the images' content digest
  included), its hash, settings, versions and device, the image ids and each image's sha256;
- ``timing.json``: when the run started and finished, and its seconds: the one file that differs
  when the same configuration is run again on the same machine (``run.json``'s timing keys,
  kept apart so that a committed run, such as the demo's, stays byte-identical);
- ``cells/<cell>.npz``: per cell the arrays of every measure (``results.measures``): the
  confusion matrix (int64, rows ground truth), the per-image TP, FP and FN of every class
  (``per_image``, ``(N, K, 3)``, in the split's image order), the calibration sums (``cal_*``,
  ``metrics.Calibration``), and any registered measure's; with the image count, the
  configuration hash and the hash of its image ids (``ids``), each written atomically when the
  cell is complete;
- ``predictions/<cell>.npz``: the predicted trainIds (uint8) of the first images of the cell
  (``evaluate --save-predictions``), with their image ids, for the report's qualitative grid;
- ``results.csv``: one tidy row per cell and class (IoU, mIoU with its 95% bootstrap interval
  ``miou_lo``/``miou_hi``, pixel accuracy, as fractions; the cell's ``ece``, ``nll``, ``brier``);
- ``summary.csv``: the Table 5 row in percent (clean, each corruption's mean over its
  severities, mPC, rPC), each figure ``X`` with its interval ``X_lo``, ``X_hi``;
- ``per_image.csv``: one row per image and cell: ``image_id``, ``cell``, ``miou`` (over the
  classes present in the image or predicted), for worst-case analysis.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from robustbench_seg import metrics
from robustbench_seg import stats as stats_mod
from robustbench_seg.data.cityscapes import CLASS_NAMES
from robustbench_seg.errors import RobustSegError, SystemFailure
from robustbench_seg.io import DirLock, atomic_path, claim_dir, write_json_atomic
from robustbench_seg.results import measures
from robustbench_seg.results.cells import CLEAN, NATURAL, Cell

__all__ = [
    "RESULTS_COLUMNS",
    "RUN_JSON",
    "TIMING_JSON",
    "SCHEMA_VERSION",
    "CellRecord",
    "ImageSet",
    "RunInfo",
    "RunStatistics",
    "load_statistics",
    "check_run_files",
    "claim_run_dir",
    "content_sha256",
    "describe_change",
    "format_summary",
    "ids_sha256",
    "load_cell",
    "load_predictions",
    "prepare_run_dir",
    "read_results",
    "read_run_info",
    "results_frame",
    "save_cell",
    "save_predictions",
    "summary_frame",
    "upgrade_run_info",
    "record",
    "write_cell",
    "write_run_info",
    "write_tables",
]

RUN_JSON = "run.json"
TIMING_JSON = "timing.json"
TIMING_KEYS = ("started", "finished", "seconds")  # run info stored in TIMING_JSON
CELLS = "cells"
PREDICTIONS = "predictions"
RESULTS = "results.csv"
SUMMARY = "summary.csv"
PER_IMAGE = "per_image.csv"
RESULTS_COLUMNS = ("model", "cell", "corruption", "category", "severity", "class", "iou", "miou")


# ----------------------------------------------------------------------------- run.json


# The layout of run.json. 1: every run.json without the key (robustseg 0.1: the timing keys
# inside it, later in timing.json; image_sha256, the model contract and the images' content
# digest, natural_image_ids added along the way); 2: the same keys, with schema_version.
SCHEMA_VERSION = 2


class ImageSet(NamedTuple):
    """The images a run (or one of its natural-shift cells) was evaluated on, as ``run.json``
    records them; ``None`` where the run does not record it (a run from an earlier robustseg)."""

    split: str | None = None
    count: int | None = None
    names_sha256: str | None = None  # config's images_sha256: the hash of the image list
    content_sha256: str | None = None  # config's images_content_sha256: the images' pixels


@dataclass(frozen=True)
class RunInfo:
    """A run's ``run.json`` (with its timing keys, kept in ``timing.json``): the one typed record
    of it. :func:`read_run_info` reads it (upgrading a run of an earlier schema, refusing a newer
    one), :func:`write_run_info` writes it.

    Attributes:
        config: The configuration, as hashed into ``config_hash`` (``EvalConfig``'s fields; kept
            as written: a run of an earlier robustseg lacks some, see the properties).
        config_hash: Its hash (what resume compares).
        settings: What does not change the numbers (batch size, workers, device, world size,
            saved predictions).
        versions: Package versions.
        device: The device's name.
        image_ids: The evaluated dataset's image ids, in order (``None``: not recorded).
        image_sha256: Each image's sha256, in that order (``None``: not recorded).
        class_names: The dataset's classes (``None``: not recorded).
        natural_image_ids: Natural-shift cell -> its image ids (empty: none, or not recorded).
        started, finished, seconds: When the run started and finished, and its seconds
            (``timing.json``; ``None`` until known).
        schema_version: The layout of ``run.json`` (:data:`SCHEMA_VERSION` once written).
    """

    config: dict[str, Any]
    config_hash: str
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    device: str | None = None
    image_ids: tuple[str, ...] | None = None
    image_sha256: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = None
    natural_image_ids: dict[str, tuple[str, ...]] = field(default_factory=dict)
    started: str | None = None
    finished: str | float | None = None
    seconds: float | None = None
    schema_version: int = SCHEMA_VERSION

    # The configuration's fields that readers use, typed. ``config`` is kept as hashed: the
    # fields a run of an earlier robustseg lacks read as None here (or the value then in effect).
    @property
    def cells(self) -> list[str]:
        """The run's cells, in order."""
        return [str(c) for c in self.config.get("cells") or []]

    @property
    def images(self) -> ImageSet:
        """The evaluated dataset's images."""
        c = self.config
        return ImageSet(c.get("split"), c.get("num_images"), c.get("images_sha256"),
                        c.get("images_content_sha256"))  # fmt: skip

    @property
    def natural(self) -> dict[str, ImageSet]:
        """Natural-shift cell -> its images (empty for a run without natural-shift cells)."""
        sets = [n for n in self.config.get("natural") or [] if isinstance(n, dict)]
        return {str(n.get("cell")): ImageSet(None, n.get("num_images"), n.get("images_sha256"),
                                             n.get("images_content_sha256")) for n in sets}  # fmt: skip

    @property
    def contract(self) -> dict[str, Any] | None:
        """The model contract (``None``: a run from before it was recorded)."""
        return self.config.get("contract")

    @property
    def dataset(self) -> str:
        """The evaluated dataset (Cityscapes for runs from before other datasets)."""
        return str(self.config.get("dataset", "cityscapes"))

    @property
    def data_root(self) -> str | None:
        """The evaluated dataset's root folder."""
        return self.config.get("cityscapes_root")

    @property
    def seed(self) -> int:
        """The corruptions' seed."""
        return int(self.config.get("seed", 0))

    @property
    def backend(self) -> str:
        """The corruptions' backend."""
        return str(self.config.get("backend", "fast"))

    def to_json(self) -> dict[str, Any]:
        """``run.json``'s content: its schema version, then the keys it always held, in order."""
        return {
            "schema_version": self.schema_version, "config": self.config,
            "config_hash": self.config_hash, "settings": self.settings,
            "versions": self.versions, "device": self.device, "image_ids": _listed(self.image_ids),
            "image_sha256": _listed(self.image_sha256), "class_names": _listed(self.class_names),
            "natural_image_ids": {c: list(v) for c, v in self.natural_image_ids.items()},
        }  # fmt: skip

    def timing(self) -> dict[str, Any]:
        """``timing.json``'s content."""
        return {"started": self.started, "finished": self.finished, "seconds": self.seconds}


def _listed(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else list(values)


def _strings(values: Any) -> tuple[str, ...] | None:
    return None if values is None else tuple(str(v) for v in values)


def upgrade_run_info(raw: Mapping[str, Any], timing: Mapping[str, Any] | None = None,
                     where: str = RUN_JSON) -> RunInfo | None:  # fmt: skip
    """The record of a ``run.json`` of any schema this robustseg knows (``timing``:
    ``timing.json``'s, else the timing keys ``run.json`` held before that file); what a run of
    an earlier schema lacks is ``None`` or empty. ``None`` for what is not a run record.

    Raises:
        RobustSegError: A run of a newer schema (upgrade robustseg to read it), or an invalid
            schema version.
    """
    version = raw.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RobustSegError(f"{where} has schema_version {version!r}, not one robustseg writes")
    if version > SCHEMA_VERSION:
        raise RobustSegError(
            f"{where} was written by a newer robustseg (run schema {version}; this robustseg "
            f"reads up to {SCHEMA_VERSION}): upgrade robustseg to read it"
        )
    config, config_hash = raw.get("config"), raw.get("config_hash")
    if not isinstance(config, dict) or not isinstance(config_hash, str):
        return None
    timing = {**{k: raw.get(k) for k in TIMING_KEYS}, **(timing or {})}
    try:
        return RunInfo(
            config=config, config_hash=config_hash, settings=dict(raw.get("settings") or {}),
            versions=dict(raw.get("versions") or {}), device=raw.get("device"),
            image_ids=_strings(raw.get("image_ids")),
            image_sha256=_strings(raw.get("image_sha256")),
            class_names=_strings(raw.get("class_names")),
            natural_image_ids={str(c): _strings(v) or ()
                               for c, v in (raw.get("natural_image_ids") or {}).items()},
            started=timing.get("started"), finished=timing.get("finished"),
            seconds=timing.get("seconds"), schema_version=SCHEMA_VERSION,
        )  # fmt: skip
    except (TypeError, ValueError, AttributeError):  # keys of the wrong type: not a record
        return None


def _read_json_dict(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def read_run_info(run_dir: str | os.PathLike) -> RunInfo | None:
    """A run's record: ``run.json`` with ``timing.json``, upgraded from an earlier schema
    (:func:`upgrade_run_info`); the one place that reads them. ``None`` when ``run.json`` is
    missing, unreadable or not a run record.

    Raises:
        RobustSegError: A run of a newer robustseg, refused in one line.
    """
    raw = _read_json_dict(Path(run_dir) / RUN_JSON)
    if raw is None:
        return None
    timing = _read_json_dict(Path(run_dir) / TIMING_JSON) or {}
    timing = {k: timing[k] for k in TIMING_KEYS if k in timing}
    return upgrade_run_info(raw, timing, str(Path(run_dir) / RUN_JSON))


def write_run_info(run_dir: str | os.PathLike, info: RunInfo) -> None:
    """Writes ``run.json`` and ``timing.json`` (the timing keys) atomically."""
    write_json_atomic(Path(run_dir) / RUN_JSON, info.to_json())
    write_json_atomic(Path(run_dir) / TIMING_JSON, info.timing())


def claim_run_dir(run_dir: str | os.PathLike) -> DirLock:
    """Claims and locks a run directory (``io.claim_dir``): missing, empty, or an evaluate run
    (marked, or with a ``run.json`` of ours from before markers); anything else is refused, a
    run of a newer robustseg included (before the folder is locked)."""
    read_run_info(run_dir)
    return claim_dir(run_dir, "evaluate", recognise=lambda p: read_run_info(p) is not None)


def prepare_run_dir(run_dir: str | os.PathLike, config_hash: str, *, overwrite: bool,
                    info: RunInfo | None = None) -> None:  # fmt: skip
    """Makes ``run_dir`` ready for a run of configuration ``config_hash``.

    A run of the same configuration is kept (its finished cells resume). A run of another
    configuration is refused, saying what changed (:func:`describe_change` against ``info``,
    the new run's ``run.json``), or with ``overwrite`` its cells and tables are removed.

    Raises:
        RobustSegError: ``run_dir`` holds a run of another configuration and not ``overwrite``.
    """
    run_dir = Path(run_dir)
    if (run_dir / RUN_JSON).exists():
        previous = read_run_info(run_dir)
        if previous is None or previous.config_hash != config_hash:
            if not overwrite:
                change = describe_change(previous, info) if previous and info else ""
                raise RobustSegError(
                    f"{run_dir} holds a run with another configuration"
                    + (f": {change} since this run was started" if change else "")
                    + "; use another --out or --overwrite"
                )
            for sub in (CELLS, PREDICTIONS):
                for f in (run_dir / sub).glob("*.npz"):
                    f.unlink()
            for f in (RESULTS, SUMMARY):
                (run_dir / f).unlink(missing_ok=True)
    (run_dir / CELLS).mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------- identity


def content_sha256(image_ids: Sequence[str], sha256s: Sequence[str]) -> str:
    """One digest of the images' content: the sha256 over ``image id<TAB>sha256`` lines,
    sorted (what a run's configuration hash includes: other pixels under the same names are
    another run)."""
    lines = sorted(f"{i}\t{s}" for i, s in zip(image_ids, sha256s, strict=True))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def ids_sha256(image_ids: Sequence[str]) -> str:
    """The hash of an image id list, in order (what a cell file records of its images)."""
    return hashlib.sha256("\n".join(image_ids).encode()).hexdigest()


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        items = [_shown(v) for v in value]
        return "(" + ", ".join(items[:6] + (["..."] if len(items) > 6 else [])) + ")"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a sha256
    return str(value)


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples as lists, as run.json holds them


def describe_change(old: RunInfo, new: RunInfo) -> str:
    """What differs between two runs' ``run.json`` (configuration, image lists), in words: the
    model contract's fields, the pixels (how many images differ), the weights, the natural-shift
    sets, or the other options; '' when nothing that is recorded differs."""
    a, b = _normalised(old.config), _normalised(new.config)
    if old.contract is None:
        return (
            "the run was started by an earlier robustseg (its run.json records neither the "
            "model contract nor the images' content)"
        )
    parts = []
    for key in sorted(set(a) | set(b), key=lambda k: (k != "contract", k)):
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        if key == "contract":
            x, y = x or {}, y or {}
            fields = [_field_change(f, x.get(f), y.get(f))
                      for f in sorted(set(x) | set(y)) if x.get(f) != y.get(f)]  # fmt: skip
            parts.append(f"the model contract changed ({', '.join(fields)})")
        elif key == "images_content_sha256":
            parts.append(f"the images' pixels changed ({_pixels_changed(old, new)})")
        elif key == "weights_sha256":
            parts.append(f"the model's weights changed (sha256 {_shown(x)} -> {_shown(y)})")
        elif key == "natural":
            parts.append("the natural-shift sets or their images changed")
        else:
            parts.append(f"{key} {_shown(x)} -> {_shown(y)}")
    return "; ".join(parts[:3]) + ("; ..." if len(parts) > 3 else "")


def _field_change(name: str, x: Any, y: Any) -> str:
    """``input_size None -> (48, 96)``; of a mapping (a class map) its entries that differ."""
    if isinstance(x, dict) and isinstance(y, dict):
        keys = [k for k in [*x, *(k for k in y if k not in x)] if x.get(k) != y.get(k)]
        shown = [f"{k} {_shown(x.get(k))} -> {_shown(y.get(k))}" for k in keys[:3]]
        return f"{name}: " + ", ".join(shown + (["..."] if len(keys) > 3 else []))
    return f"{name} {_shown(x)} -> {_shown(y)}"


def _pixels_changed(old: RunInfo, new: RunInfo) -> str:
    """``2 of 3 images differ, e.g. x`` from two runs' image ids and sha256s."""
    before = dict(zip(old.image_ids or (), old.image_sha256 or (), strict=False))
    after = dict(zip(new.image_ids or (), new.image_sha256 or (), strict=False))
    differ = [i for i in after if i in before and before[i] != after[i]]
    if not differ:
        return "same names, other content"
    return f"{len(differ)} of {len(after)} images differ, e.g. {differ[0]}"


# ----------------------------------------------------------------------------- cells


class CellRecord(NamedTuple):
    """A finished cell: confusion matrix ``(K, K)``, image count, per-image TP/FP/FN
    ``(N, K, 3)`` and calibration sums (both ``None`` in runs from before they were kept), and
    the arrays of every measure (``results.measures``) the cell file holds."""

    confusion: np.ndarray
    images: int
    per_image: np.ndarray | None = None
    calibration: metrics.Calibration | None = None
    arrays: Mapping[str, np.ndarray] | None = None  # every array of the cell file, by name


def save_cell(
    run_dir: str | os.PathLike,
    cell: str,
    conf: np.ndarray,
    images: int,
    config_hash: str,
    *,
    per_image: np.ndarray | None = None,
    calibration: metrics.Calibration | None = None,
    image_ids: Sequence[str] | None = None,
) -> None:
    """Writes a finished cell atomically: its confusion matrix and image count, and, when
    given, its per-image TP/FP/FN ``(N, K, 3)``, calibration sums and the hash of its image ids
    (:func:`ids_sha256`, what reading the run checks against ``run.json``; compressed npz)."""
    arrays: dict[str, np.ndarray] = {"confusion": np.asarray(conf)}
    if per_image is not None:
        arrays["per_image"] = np.asarray(per_image)
    if calibration is not None:
        arrays.update(calibration.arrays())
    write_cell(run_dir, cell, arrays, images, config_hash, image_ids=image_ids)


def write_cell(
    run_dir: str | os.PathLike,
    cell: str,
    arrays: Mapping[str, np.ndarray],
    images: int,
    config_hash: str,
    *,
    image_ids: Sequence[str] | None = None,
) -> None:
    """Writes a finished cell atomically: the measures' arrays (``results.measures``, each with
    its declared dtype, ``confusion`` first), its image count, the configuration hash and the
    hash of its image ids (compressed npz, members in the order of the files written before
    measures were objects: ``confusion``, ``images``, ``config``, ``ids``, then the others)."""
    path = Path(run_dir) / CELLS / f"{cell}.npz"
    dtypes = {s.name: s.numpy_dtype for m in measures.MEASURES.values() for s in m.states}
    arrays = {n: np.asarray(a, dtype=dtypes.get(n)) for n, a in arrays.items()}
    header: dict[str, Any] = {"images": np.int64(images), "config": config_hash}
    if image_ids is not None:
        header["ids"] = ids_sha256(image_ids)
    rest = {n: a for n, a in arrays.items() if n != "confusion"}
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, confusion=arrays["confusion"], **header, **rest)


# What reading a damaged npz raises: a cut zip, a cut or bad member, a missing key.
_NPZ_ERRORS = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def load_cell(run_dir: str | os.PathLike, cell: str, config_hash: str) -> CellRecord | None:
    """A finished cell of this configuration, else ``None`` (missing, of another
    configuration, or unreadable: ``evaluate`` computes it again)."""
    try:
        return _read_cell(Path(run_dir) / CELLS / f"{cell}.npz", config_hash)[0]
    except _NPZ_ERRORS:
        return None


def _read_cell(path: Path, config_hash: str) -> tuple[CellRecord | None, str | None]:
    """The cell at ``path`` and its ids hash (``None`` in cells from before it was kept);
    ``(None, None)`` for a cell of another configuration. Raises what numpy raises."""
    with np.load(path) as z:
        if str(z["config"]) != config_hash:
            return None, None
        ids = str(z["ids"]) if "ids" in z else None
        arrays = {n: z[n] for n in z.files if n not in ("images", "config", "ids")}
        return record(arrays, int(z["images"])), ids


def record(arrays: Mapping[str, np.ndarray], images: int) -> CellRecord:
    """A cell's record from its measures' arrays (a cell file's, or a run's in memory)."""
    per_image = arrays["per_image"].astype(np.int64) if "per_image" in arrays else None
    return CellRecord(arrays["confusion"].astype(np.int64), images, per_image,
                      metrics.Calibration.from_arrays(arrays), dict(arrays))  # fmt: skip


def _damaged(path: Path, exc: BaseException) -> SystemFailure:
    text = str(exc).strip().splitlines()
    why = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return SystemFailure(
        f"{path} cannot be read ({why}): the file is damaged; run robustseg evaluate again "
        "with the same options to compute its cell again"
    )


def save_predictions(
    run_dir: str | os.PathLike,
    cell: str,
    image_ids: Sequence[str],
    predictions: Sequence[np.ndarray],
    config_hash: str,
) -> None:
    """Writes the predicted trainIds of a cell's first images (compressed, atomically).

    Args:
        run_dir: The run directory.
        cell: The cell name (``clean``, ``fog-3``).
        image_ids: The images' ids, in the split's order.
        predictions: One ``(H, W)`` trainId map per image (values 0..254).
        config_hash: The run's configuration hash.
    """
    path = Path(run_dir) / PREDICTIONS / f"{cell}.npz"
    arrays = {f"p{i}": np.asarray(p, dtype=np.uint8) for i, p in enumerate(predictions)}
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(
            tmp, image_ids=np.asarray(list(image_ids), dtype=str), config=config_hash, **arrays
        )


def load_predictions(
    run_dir: str | os.PathLike, cell: str, config_hash: str | None = None
) -> tuple[list[str], list[np.ndarray]] | None:
    """The saved predictions of a cell: ``(image_ids, maps)``, or ``None`` if none were saved.

    Only predictions of the run's current configuration are returned: ``config_hash``, by
    default the one in ``run.json`` (pass it when reading many cells of one run).

    Raises:
        SystemFailure: The file exists but cannot be read (damaged), named.
    """
    if config_hash is None:
        info = read_run_info(run_dir)
        config_hash = info.config_hash if info is not None else None
    path = Path(run_dir) / PREDICTIONS / f"{cell}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if str(z["config"]) != config_hash:
                return None
            ids = [str(i) for i in z["image_ids"]]
            return ids, [z[f"p{i}"] for i in range(len(ids))]
    except _NPZ_ERRORS as exc:
        raise _damaged(path, exc) from None


# ----------------------------------------------------------------------------- tables


def results_frame(
    model: str,
    cells: Mapping[str, CellRecord | tuple[np.ndarray, int]],
    class_names=CLASS_NAMES,
    intervals: Mapping[str, tuple[float, float]] | None = None,
):
    """Tidy results: one row per cell and class (IoU, mIoU, pixel accuracy as fractions), with
    the cell's mIoU interval (``miou_lo``, ``miou_hi``; NaN without per-image data) and its
    calibration (``ece``, ``nll``, ``brier``; NaN without)."""
    import pandas as pd

    rows = []
    for cell, record in cells.items():
        record = CellRecord(*record)
        conf, images, cal = record.confusion, record.images, record.calibration
        parsed = Cell.parse(cell)
        corruption, category, severity = parsed.figure, parsed.category, parsed.severity
        iou = metrics.iou_per_class(conf)
        miou, acc = metrics.mean_iou(conf), metrics.pixel_accuracy(conf)
        lo, hi = (intervals or {}).get(cell, (np.nan, np.nan))
        ece, nll, brier = (cal.ece, cal.nll, cal.brier) if cal is not None else (np.nan,) * 3
        extra = measures.columns(record.arrays) if record.arrays is not None else {}
        for c, name in enumerate(class_names[: conf.shape[0]]):
            rows.append({
                "model": model, "cell": cell, "corruption": corruption, "category": category,
                "severity": severity, "class": name, "iou": iou[c], "miou": miou,
                "miou_lo": lo, "miou_hi": hi, "pixel_accuracy": acc, "images": images,
                "ece": ece, "nll": nll, "brier": brier, **extra,
            })  # fmt: skip
    return pd.DataFrame(rows)


def summary_frame(results, figures: Mapping[str, tuple[float, float, float]] | None = None) -> Any:
    """The Table 5 row(s) from tidy results: clean mIoU, each corruption's mean over its
    severities, mPC and rPC, all in percent; with ``figures`` (name -> point, lo, hi, as
    ``RunStatistics.figures`` gives) each figure ``X`` also has ``X_lo`` and ``X_hi``."""
    import pandas as pd

    out = []
    for model, df in results.groupby("model", sort=False):
        per_cell = df.drop_duplicates("cell").set_index("cell")
        row: dict[str, Any] = {"model": model}
        row["clean"] = 100 * per_cell.loc[CLEAN, "miou"] if CLEAN in per_cell.index else np.nan
        parsed = [Cell.parse(c) for c in per_cell.index]
        natural = np.array([c.kind == NATURAL for c in parsed], bool)
        corr = per_cell[np.array([c.in_mpc for c in parsed], bool)]
        means = {}
        for corruption, g in corr.groupby("corruption", sort=False):
            means[corruption] = 100 * float(g["miou"].mean())
        row.update(means)
        if means:
            row["mPC"] = metrics.mpc(means)
            row["rPC"] = (
                100 * metrics.rpc(row["mPC"], row["clean"])
                if row["clean"] == row["clean"]
                else np.nan
            )
        for condition, g in per_cell[natural].groupby("corruption", sort=False):
            row[condition] = 100 * float(g["miou"].mean())  # natural shift, after mPC and rPC
        if figures is not None:
            for name in [k for k in row if k != "model"]:
                lo, hi = figures.get(name, (np.nan, np.nan, np.nan))[1:]
                row[f"{name}_lo"], row[f"{name}_hi"] = lo, hi
            order = ["model"] + [x for k in row if k != "model" and not k.endswith(("_lo", "_hi"))
                                 for x in (k, f"{k}_lo", f"{k}_hi")]  # fmt: skip
            row = {k: row[k] for k in order}
        out.append(row)
    return pd.DataFrame(out)


def format_summary(summary) -> str:
    """The summary as an aligned text table (transposed: one line per column)."""
    lines = []
    for _, row in summary.iterrows():
        lines.append(f"{row['model']}")
        for key, value in row.items():
            if key != "model":
                lines.append(f"  {key:<18} {value:6.2f}")
    return "\n".join(lines)


def write_tables(run_dir: str | os.PathLike, results, stats: RunStatistics | None = None) -> None:
    """Writes ``results.csv``, ``summary.csv`` and, with per-image statistics, the summary's
    intervals and ``per_image.csv``, atomically."""
    run_dir = Path(run_dir)
    with atomic_path(run_dir / RESULTS, suffix=".csv") as tmp:
        results.to_csv(tmp, index=False)
    figures = stats.figures() if stats is not None else None
    with atomic_path(run_dir / SUMMARY, suffix=".csv") as tmp:
        summary_frame(results, figures).to_csv(tmp, index=False, float_format="%.4f")
    if stats is not None:
        with atomic_path(run_dir / PER_IMAGE, suffix=".csv") as tmp:
            stats.per_image_frame().to_csv(tmp, index=False, float_format="%.6f")


# ----------------------------------------------------------------------------- statistics


class RunStatistics:
    """A run's per-image counts and calibration, and the bootstrap figures computed from them.

    Args:
        cells: The dataset's cell names (clean and synthetic), in the run's order.
        counts: ``(N, C, K, 3)`` per-image TP/FP/FN of each of those cells.
        calibration: Per cell (natural ones too), its calibration sums (or ``None``).
        image_ids: The N image ids, in the split's order.
        key: The image list's hash (seeds the resamples: runs over the same images share them).
        natural: Natural-shift cells (``acdc:fog``), each over its own images: cell ->
            ``(counts (N_c, K, 3), image ids)``. Their resamples are keyed by their image ids,
            so the cells of one set (Foggy Cityscapes' three densities) share them.
    """

    def __init__(self, cells: Sequence[str], counts: np.ndarray,
                 calibration: Mapping[str, metrics.Calibration | None], image_ids: Sequence[str],
                 key: str, natural: Mapping[str, tuple[np.ndarray, Sequence[str]]] | None = None,
                 ) -> None:  # fmt: skip
        self.cells = list(cells)
        self.counts = counts
        self.calibration = dict(calibration)
        self.image_ids = list(image_ids)
        self.key = key
        self.natural = {c: (v[0], list(v[1])) for c, v in (natural or {}).items()}
        self._miou: dict[tuple[int, int], np.ndarray] = {}
        self._natural_miou: dict[tuple[str, int, int], np.ndarray] = {}

    @classmethod
    def from_records(cls, records: Mapping[str, CellRecord], image_ids: Sequence[str],
                     key: str, natural: Mapping[str, Sequence[str]] | None = None,
                     ) -> RunStatistics | None:  # fmt: skip
        """None when a cell lacks per-image data (a run from before it was kept).

        Args:
            records: Every cell of the run.
            image_ids, key: The dataset's images and their list's hash.
            natural: The natural-shift cells' image ids (cell -> ids).
        """
        natural = dict(natural or {})
        if not records or any(r.per_image is None for r in records.values()):
            return None
        main = [c for c in records if c not in natural]
        counts = (np.stack([records[c].per_image for c in main], axis=1) if main
                  else np.zeros((len(image_ids), 0, 1, 3), np.int64))  # fmt: skip
        nat = {c: (records[c].per_image, ids) for c, ids in natural.items() if c in records}
        return cls(main, counts, {c: r.calibration for c, r in records.items()}, image_ids, key,
                   nat)  # fmt: skip

    def natural_miou(self, cell: str, resamples: int = stats_mod.DEFAULT_RESAMPLES,
                     seed: int = 0) -> np.ndarray:  # fmt: skip
        """``(1 + resamples,)`` mIoU of a natural cell over its own images' resamples."""
        key = (cell, resamples, seed)
        if key not in self._natural_miou:
            counts, ids = self.natural[cell]
            w = stats_mod.resample_weights(len(ids), "\n".join(ids), resamples=resamples,
                                           seed=seed)  # fmt: skip
            self._natural_miou[key] = stats_mod.cell_miou(counts[:, None], w)[:, 0]
        return self._natural_miou[key]

    def miou(self, resamples: int = stats_mod.DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
        """``(1 + resamples, C)`` mIoU: row 0 the run's, then one row per resample."""
        key = (resamples, seed)
        if key not in self._miou:
            if self.counts.shape[1] == 0:  # only natural cells
                self._miou[key] = np.zeros((1 + resamples, 0))
                return self._miou[key]
            w = stats_mod.resample_weights(self.counts.shape[0], self.key, resamples=resamples,
                                           seed=seed)  # fmt: skip
            self._miou[key] = stats_mod.cell_miou(self.counts, w)
        return self._miou[key]

    def figure_samples(self, baseline: RunStatistics | None = None,
                       resamples: int = stats_mod.DEFAULT_RESAMPLES,
                       seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
        """Table 5 figures per weighting (row 0: the point estimate), paired with
        ``baseline`` (which must be over the same images)."""
        base = None
        if baseline is not None:
            base = (baseline.cells, baseline.miou(resamples, seed))
        out = stats_mod.table5_figures(self.cells, self.miou(resamples, seed), base)
        groups: dict[str, list[np.ndarray]] = {}
        for cell in self.natural:  # natural conditions: a condition's mean over its densities
            groups.setdefault(Cell.parse(cell).figure, []).append(
                100 * self.natural_miou(cell, resamples, seed)
            )
        out.update({name: np.mean(np.stack(v), 0) for name, v in groups.items()})
        return out

    def figures(self, baseline: RunStatistics | None = None,
                resamples: int = stats_mod.DEFAULT_RESAMPLES,
                seed: int = 0) -> dict[str, tuple[float, float, float]]:  # fmt: skip
        """Figure -> (point, lo, hi), in percent."""
        return {name: (float(v[0]), *stats_mod.interval(v[1:]))
                for name, v in self.figure_samples(baseline, resamples, seed).items()}  # fmt: skip

    def cell_intervals(self, resamples: int = stats_mod.DEFAULT_RESAMPLES,
                       seed: int = 0) -> dict[str, tuple[float, float, float]]:  # fmt: skip
        """Cell -> (mIoU, lo, hi), as fractions."""
        m = self.miou(resamples, seed)
        out = {c: (float(m[0, j]), *stats_mod.interval(m[1:, j])) for j, c in enumerate(self.cells)}
        for cell in self.natural:
            v = self.natural_miou(cell, resamples, seed)
            out[cell] = (float(v[0]), *stats_mod.interval(v[1:]))
        return out

    def row_ids(self) -> list[str]:
        """The image id of each row of ``counts`` (its row number when the ids do not fit)."""
        n = self.counts.shape[0]
        return self.image_ids if len(self.image_ids) == n else [str(i) for i in range(n)]

    def per_image_frame(self):
        """One row per image and cell: ``image_id``, ``cell``, ``miou`` (fraction)."""
        import pandas as pd

        miou = metrics.miou_from_counts(self.counts)  # (N, C)
        n, c = miou.shape
        ids = self.row_ids()
        frames = [pd.DataFrame({
            "image_id": np.repeat(np.asarray(ids, dtype=object), c),
            "cell": np.tile(np.asarray(self.cells, dtype=object), n),
            "miou": miou.reshape(-1),
        })]  # fmt: skip
        for cell, (counts, nat_ids) in self.natural.items():
            frames.append(pd.DataFrame({"image_id": nat_ids, "cell": cell,
                                        "miou": metrics.miou_from_counts(counts)}))  # fmt: skip
        return pd.concat(frames, ignore_index=True)


def load_statistics(run_dir: str | os.PathLike) -> RunStatistics | None:
    """A run directory's per-image data (``None`` for a run from before it was kept, or
    unfinished), its cells cross-checked against ``run.json`` (:func:`check_run_files`).

    Raises:
        RobustSegError: No readable ``run.json``.
        SystemFailure: A damaged cell file, or cells that disagree with ``run.json``.
    """
    info = read_run_info(run_dir)
    if info is None:
        raise RobustSegError(f"{run_dir} has no readable run.json (robustseg evaluate writes one)")
    records, ids = {}, {}
    for cell in info.cells:
        path = Path(run_dir) / CELLS / f"{cell}.npz"
        if not path.is_file():
            return None
        try:
            record, ids[cell] = _read_cell(path, info.config_hash)
        except _NPZ_ERRORS as exc:
            raise _damaged(path, exc) from None
        if record is None:
            return None
        records[cell] = record
    check_run_files(run_dir, info, records, ids)
    return RunStatistics.from_records(records, info.image_ids or (),
                                      info.images.names_sha256 or "",
                                      info.natural_image_ids)  # fmt: skip


def check_run_files(run_dir: str | os.PathLike, info: RunInfo,
                    records: Mapping[str, CellRecord],
                    ids: Mapping[str, str | None] | None = None) -> None:  # fmt: skip
    """Cross-checks a run's ``run.json`` and its cells: the image ids against the image count,
    the images' sha256 against the content digest, and each cell's image count, per-image rows
    and ids hash against the images ``run.json`` lists for it (a natural cell: its own).
    What a run from before a record was kept lacks is not checked.

    Raises:
        SystemFailure: One line naming the run, the file and what disagrees.
    """
    main = list(info.image_ids or ())
    natural = info.natural_image_ids
    counts = {cell: images.count for cell, images in info.natural.items()}

    def refuse(what: str) -> SystemFailure:
        return SystemFailure(
            f"{run_dir}: {what}; the run's files disagree (were files copied between runs?): "
            "run robustseg evaluate again with --overwrite"
        )

    num, content = info.images.count, info.images.content_sha256
    if num is not None and info.image_ids is not None and len(main) != num:
        raise refuse(f"run.json lists {len(main)} image ids for {num} images")
    shas = info.image_sha256
    if shas is not None and content is not None:
        if len(shas) != len(main) or content_sha256(main, shas) != content:
            raise refuse("run.json's image sha256s do not give its images' content digest")
    for cell, record in records.items():
        is_natural = cell in counts or cell in natural
        listed = natural.get(cell) if is_natural else main
        expected = counts.get(cell) if is_natural else num
        file = f"{CELLS}/{cell}.npz"
        if expected is not None and record.images != expected:
            raise refuse(f"{file} holds {record.images} images, run.json {expected}")
        rows = None if record.per_image is None else record.per_image.shape[0]
        if rows is not None and rows != record.images:
            raise refuse(f"{file} holds per-image counts of {rows} images for {record.images}")
        cell_ids = (ids or {}).get(cell)
        if cell_ids is not None and listed is not None and cell_ids != ids_sha256(listed):
            raise refuse(f"{file} was computed on other image ids than run.json lists")


def read_results(run_dir: str | os.PathLike) -> tuple[str, Any, RunInfo | None]:
    """Reads a run directory back: ``(model, results, info)``.

    ``info`` is its record (:func:`read_run_info`; ``None`` when ``run.json`` is missing or
    unreadable).

    Raises:
        RobustSegError: Not a directory, no or unreadable ``results.csv``, missing columns,
            no rows, or several models in one file; a run of a newer robustseg.
    """
    import pandas as pd

    path = Path(run_dir)
    csv = path / RESULTS
    if not path.is_dir():
        raise RobustSegError(f"{path} is not a run directory (not a directory)")
    if not csv.is_file():
        raise RobustSegError(
            f"{path} is not a run directory (no results.csv; robustseg evaluate --out writes one)"
        )
    try:
        df = pd.read_csv(csv)
    except (OSError, ValueError) as exc:
        raise RobustSegError(f"cannot read {csv}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in RESULTS_COLUMNS if c not in df.columns]
    if missing:
        raise RobustSegError(
            f"{csv} is not a robustseg results file (no column {', '.join(missing)})"
        )
    if df.empty:
        raise RobustSegError(f"{csv} holds no results")
    models = df["model"].astype(str).unique()
    if len(models) != 1:
        raise RobustSegError(f"{csv} holds several models ({', '.join(models)}); expected one")
    df["model"] = df["model"].astype(str)
    df["corruption"] = df["corruption"].astype(str)
    df["severity"] = df["severity"].astype(int)
    return str(models[0]), df, read_run_info(path)
