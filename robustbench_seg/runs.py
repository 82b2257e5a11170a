"""The evaluation run directory: the one module that knows its files (written by ``evaluate``,
read by ``report``).

A run directory holds:

- ``run.json``: the configuration (the model contract and the images' content digest
  included), its hash, settings, versions and device, the image ids and each image's sha256;
- ``timing.json``: when the run started and finished, and its seconds: the one file that differs
  when the same configuration is run again on the same machine (``run.json``'s timing keys,
  kept apart so that a committed run, such as the demo's, stays byte-identical);
- ``cells/<cell>.npz``: per cell the confusion matrix (int64, rows ground truth), the image
  count, the configuration hash, the per-image TP, FP and FN of every class (``per_image``,
  ``(N, K, 3)``, in the split's image order) and the calibration sums (``cal_*``,
  ``metrics.Calibration``) and the hash of its image ids (``ids``), each written atomically
  when the cell is complete;
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
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from robustbench_seg import metrics
from robustbench_seg import stats as stats_mod
from robustbench_seg.data.cityscapes import CLASS_NAMES
from robustbench_seg.errors import RobustSegError, SystemFailure
from robustbench_seg.io import DirLock, atomic_path, claim_dir, write_json_atomic
from robustbench_seg.results.cells import CLEAN, NATURAL, Cell

__all__ = [
    "RESULTS_COLUMNS",
    "RUN_JSON",
    "TIMING_JSON",
    "CellRecord",
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


def _read_json_dict(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def read_run_info(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``run.json`` as a dict, with the timing keys of ``timing.json``; ``None`` when
    ``run.json`` is missing or unreadable."""
    info = _read_json_dict(Path(run_dir) / RUN_JSON)
    if info is not None:
        timing = _read_json_dict(Path(run_dir) / TIMING_JSON) or {}
        info.update((k, timing[k]) for k in TIMING_KEYS if k in timing)
    return info


def write_run_info(run_dir: str | os.PathLike, info: Mapping[str, Any]) -> None:
    """Writes ``run.json`` atomically; its timing keys (``started``, ``finished``,
    ``seconds``) go to ``timing.json``."""
    info = dict(info)
    timing = {k: info.pop(k) for k in TIMING_KEYS if k in info}
    write_json_atomic(Path(run_dir) / RUN_JSON, info)
    if timing:
        write_json_atomic(Path(run_dir) / TIMING_JSON, timing)


def claim_run_dir(run_dir: str | os.PathLike) -> DirLock:
    """Claims and locks a run directory (``io.claim_dir``): missing, empty, or an evaluate run
    (marked, or with a ``run.json`` of ours from before markers); anything else is refused."""
    return claim_dir(
        run_dir, "evaluate", recognise=lambda p: "config_hash" in (read_run_info(p) or {})
    )


def prepare_run_dir(run_dir: str | os.PathLike, config_hash: str, *, overwrite: bool,
                    info: Mapping[str, Any] | None = None) -> None:  # fmt: skip
    """Makes ``run_dir`` ready for a run of configuration ``config_hash``.

    A run of the same configuration is kept (its finished cells resume). A run of another
    configuration is refused, saying what changed (:func:`describe_change` against ``info``,
    the new run's ``run.json``), or with ``overwrite`` its cells and tables are removed.

    Raises:
        RobustSegError: ``run_dir`` holds a run of another configuration and not ``overwrite``.
    """
    run_dir = Path(run_dir)
    if (run_dir / RUN_JSON).exists():
        previous = read_run_info(run_dir) or {}
        if previous.get("config_hash") != config_hash:
            if not overwrite:
                change = describe_change(previous, info) if info is not None else ""
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


def describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two runs' ``run.json`` (configuration, image lists), in words: the
    model contract's fields, the pixels (how many images differ), the weights, the natural-shift
    sets, or the other options; '' when nothing that is recorded differs."""
    a, b = _normalised(old.get("config") or {}), _normalised(new.get("config") or {})
    if not a:
        return ""  # nothing readable to compare with
    if "contract" not in a:
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


def _pixels_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """``2 of 3 images differ, e.g. x`` from two runs' image ids and sha256s."""
    before = dict(zip(old.get("image_ids") or [], old.get("image_sha256") or [], strict=False))
    after = dict(zip(new.get("image_ids") or [], new.get("image_sha256") or [], strict=False))
    differ = [i for i in after if i in before and before[i] != after[i]]
    if not differ:
        return "same names, other content"
    return f"{len(differ)} of {len(after)} images differ, e.g. {differ[0]}"


# ----------------------------------------------------------------------------- cells


class CellRecord(NamedTuple):
    """A finished cell: confusion matrix ``(K, K)``, image count, per-image TP/FP/FN
    ``(N, K, 3)`` and calibration sums (both ``None`` in runs from before they were kept)."""

    confusion: np.ndarray
    images: int
    per_image: np.ndarray | None = None
    calibration: metrics.Calibration | None = None


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
    path = Path(run_dir) / CELLS / f"{cell}.npz"
    extra: dict[str, Any] = {}
    if image_ids is not None:
        extra["ids"] = ids_sha256(image_ids)
    if per_image is not None:
        extra["per_image"] = np.asarray(per_image, dtype=np.int64)
    if calibration is not None:
        extra.update(calibration.arrays())
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, confusion=conf.astype(np.int64), images=np.int64(images),
                            config=config_hash, **extra)  # fmt: skip


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
        per_image = z["per_image"].astype(np.int64) if "per_image" in z else None
        ids = str(z["ids"]) if "ids" in z else None
        return CellRecord(z["confusion"].astype(np.int64), int(z["images"]), per_image,
                          metrics.Calibration.from_arrays(z)), ids  # fmt: skip


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
        config_hash = (read_run_info(run_dir) or {}).get("config_hash")
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
        for c, name in enumerate(class_names[: conf.shape[0]]):
            rows.append({
                "model": model, "cell": cell, "corruption": corruption, "category": category,
                "severity": severity, "class": name, "iou": iou[c], "miou": miou,
                "miou_lo": lo, "miou_hi": hi, "pixel_accuracy": acc, "images": images,
                "ece": ece, "nll": nll, "brier": brier,
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
    if info is None or "config_hash" not in info:
        raise RobustSegError(f"{run_dir} has no readable run.json (robustseg evaluate writes one)")
    config = info.get("config", {})
    records, ids = {}, {}
    for cell in config.get("cells", []):
        path = Path(run_dir) / CELLS / f"{cell}.npz"
        if not path.is_file():
            return None
        try:
            record, ids[cell] = _read_cell(path, info["config_hash"])
        except _NPZ_ERRORS as exc:
            raise _damaged(path, exc) from None
        if record is None:
            return None
        records[cell] = record
    check_run_files(run_dir, info, records, ids)
    return RunStatistics.from_records(records, info.get("image_ids", []),
                                      str(config.get("images_sha256", "")),
                                      info.get("natural_image_ids") or {})  # fmt: skip


def check_run_files(run_dir: str | os.PathLike, info: Mapping[str, Any],
                    records: Mapping[str, CellRecord],
                    ids: Mapping[str, str | None] | None = None) -> None:  # fmt: skip
    """Cross-checks a run's ``run.json`` and its cells: the image ids against the image count,
    the images' sha256 against the content digest, and each cell's image count, per-image rows
    and ids hash against the images ``run.json`` lists for it (a natural cell: its own).
    What a run from before a record was kept lacks is not checked.

    Raises:
        SystemFailure: One line naming the run, the file and what disagrees.
    """
    config = info.get("config") or {}
    main = list(info.get("image_ids") or [])
    natural = dict(info.get("natural_image_ids") or {})
    counts = {str(n.get("cell")): n.get("num_images") for n in config.get("natural") or []
              if isinstance(n, dict)}  # fmt: skip

    def refuse(what: str) -> SystemFailure:
        return SystemFailure(
            f"{run_dir}: {what}; the run's files disagree (were files copied between runs?): "
            "run robustseg evaluate again with --overwrite"
        )

    num = config.get("num_images")
    if num is not None and "image_ids" in info and len(main) != num:
        raise refuse(f"run.json lists {len(main)} image ids for {num} images")
    shas = info.get("image_sha256")
    if shas is not None and "images_content_sha256" in config:
        if len(shas) != len(main) or content_sha256(main, shas) != config["images_content_sha256"]:
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


def read_results(run_dir: str | os.PathLike) -> tuple[str, Any, dict[str, Any]]:
    """Reads a run directory back: ``(model, results, config)``.

    ``config`` is ``run.json``'s ``config`` (empty when ``run.json`` is missing or unreadable).

    Raises:
        RobustSegError: Not a directory, no or unreadable ``results.csv``, missing columns,
            no rows, or several models in one file.
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
    config = (read_run_info(path) or {}).get("config", {})
    return str(models[0]), df, config if isinstance(config, dict) else {}
