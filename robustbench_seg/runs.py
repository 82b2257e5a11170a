"""The evaluation run directory: the one module that knows its files (written by ``evaluate``,
read by ``report``).

A run directory holds:

- ``run.json``: the configuration, its hash, settings, versions and device;
- ``timing.json``: when the run started and finished, and its seconds: the one file that differs
  when the same configuration is run again on the same machine (``run.json``'s timing keys,
  kept apart so that a committed run, such as the demo's, stays byte-identical);
- ``cells/<cell>.npz``: per cell the confusion matrix (int64, rows ground truth), the image
  count and the configuration hash, each written atomically when the cell is complete;
- ``predictions/<cell>.npz``: the predicted trainIds (uint8) of the first images of the cell
  (``evaluate --save-predictions``), with their image ids, for the report's qualitative grid;
- ``results.csv``: one tidy row per cell and class (IoU, mIoU, pixel accuracy as fractions);
- ``summary.csv``: the Table 5 row (clean, each corruption's mean over its severities, mPC, rPC).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corruptions.registry import get_corruption
from robustbench_seg import metrics
from robustbench_seg.data.cityscapes import CLASS_NAMES
from robustbench_seg.data.cityscapes_c import CLEAN
from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import DirLock, atomic_path, claim_dir, write_json_atomic

__all__ = [
    "RESULTS_COLUMNS",
    "RUN_JSON",
    "TIMING_JSON",
    "claim_run_dir",
    "format_summary",
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


def prepare_run_dir(run_dir: str | os.PathLike, config_hash: str, *, overwrite: bool) -> None:
    """Makes ``run_dir`` ready for a run of configuration ``config_hash``.

    A run of the same configuration is kept (its finished cells resume). A run of another
    configuration is refused, or with ``overwrite`` its cells and tables are removed.

    Raises:
        RobustSegError: ``run_dir`` holds a run of another configuration and not ``overwrite``.
    """
    run_dir = Path(run_dir)
    if (run_dir / RUN_JSON).exists():
        previous = read_run_info(run_dir) or {}
        if previous.get("config_hash") != config_hash:
            if not overwrite:
                raise RobustSegError(
                    f"{run_dir} holds a run with another configuration; use another --out "
                    "or --overwrite"
                )
            for sub in (CELLS, PREDICTIONS):
                for f in (run_dir / sub).glob("*.npz"):
                    f.unlink()
            for f in (RESULTS, SUMMARY):
                (run_dir / f).unlink(missing_ok=True)
    (run_dir / CELLS).mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------- cells


def save_cell(
    run_dir: str | os.PathLike, cell: str, conf: np.ndarray, images: int, config_hash: str
) -> None:
    """Writes a finished cell's confusion matrix and image count atomically."""
    path = Path(run_dir) / CELLS / f"{cell}.npz"
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, confusion=conf.astype(np.int64), images=np.int64(images), config=config_hash)


def load_cell(
    run_dir: str | os.PathLike, cell: str, config_hash: str
) -> tuple[np.ndarray, int] | None:
    """A finished cell of this configuration: ``(confusion, images)``, else ``None``."""
    try:
        with np.load(Path(run_dir) / CELLS / f"{cell}.npz") as z:
            if str(z["config"]) != config_hash:
                return None
            return z["confusion"].astype(np.int64), int(z["images"])
    except (OSError, KeyError, ValueError):
        return None


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
    """
    if config_hash is None:
        config_hash = (read_run_info(run_dir) or {}).get("config_hash")
    try:
        with np.load(Path(run_dir) / PREDICTIONS / f"{cell}.npz") as z:
            if str(z["config"]) != config_hash:
                return None
            ids = [str(i) for i in z["image_ids"]]
            return ids, [z[f"p{i}"] for i in range(len(ids))]
    except (OSError, KeyError, ValueError):
        return None


# ----------------------------------------------------------------------------- tables


def results_frame(model: str, cells: Mapping[str, tuple[np.ndarray, int]], class_names=CLASS_NAMES):
    """Tidy results: one row per cell and class (IoU, mIoU, pixel accuracy as fractions)."""
    import pandas as pd

    rows = []
    for cell, (conf, images) in cells.items():
        if cell == CLEAN:
            corruption, category, severity = CLEAN, CLEAN, 0
        else:
            corruption, _, sev = cell.rpartition("-")
            category, severity = get_corruption(corruption).category, int(sev)
        iou = metrics.iou_per_class(conf)
        miou, acc = metrics.mean_iou(conf), metrics.pixel_accuracy(conf)
        for c, name in enumerate(class_names[: conf.shape[0]]):
            rows.append({
                "model": model, "cell": cell, "corruption": corruption, "category": category,
                "severity": severity, "class": name, "iou": iou[c], "miou": miou,
                "pixel_accuracy": acc, "images": images,
            })  # fmt: skip
    return pd.DataFrame(rows)


def summary_frame(results) -> Any:
    """The Table 5 row(s) from tidy results: clean mIoU, each corruption's mean over its
    severities, mPC and rPC, all in percent."""
    import pandas as pd

    out = []
    for model, df in results.groupby("model", sort=False):
        per_cell = df.drop_duplicates("cell").set_index("cell")
        row: dict[str, Any] = {"model": model}
        row["clean"] = 100 * per_cell.loc[CLEAN, "miou"] if CLEAN in per_cell.index else np.nan
        corr = per_cell[per_cell["corruption"] != CLEAN]
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


def write_tables(run_dir: str | os.PathLike, results) -> None:
    """Writes ``results.csv`` and ``summary.csv`` atomically."""
    run_dir = Path(run_dir)
    with atomic_path(run_dir / RESULTS, suffix=".csv") as tmp:
        results.to_csv(tmp, index=False)
    with atomic_path(run_dir / SUMMARY, suffix=".csv") as tmp:
        summary_frame(results).to_csv(tmp, index=False, float_format="%.4f")


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
