"""Paper-style figures of run directories (SegFormer, Xie et al. 2021, Figure 7, Figures 4/5)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from corruptions.registry import BENCHMARK, CORRUPTIONS, get_corruption
from robustbench_seg.data.cityscapes import IGNORE_INDEX, PALETTE
from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import save_figure
from robustbench_seg.metrics import Calibration
from robustbench_seg.report.tables import CATEGORY_ORDER, Run, class_iou_frame
from robustbench_seg.results.cells import CLEAN, Cell, cell_name, corruption_condition
from robustbench_seg.results.cells import corruption_title as _title
from robustbench_seg.runs import load_predictions

__all__ = [
    "DEFAULT_QUALITATIVE",
    "colorize",
    "model_colors",
    "parse_conditions",
    "plot_class_iou",
    "plot_natural",
    "plot_qualitative",
    "plot_reliability",
    "plot_severity_curves",
    "qualitative_rows",
]

# tab10 minus its grey, so that lines never look like gridlines.
_COLORS = tuple(c for i, c in enumerate(matplotlib.colormaps["tab10"].colors) if i != 7)
# Corruption-severity pairs shown by default in the qualitative grid (one per category).
DEFAULT_QUALITATIVE = ("gaussian_noise-3", "motion_blur-3", "contrast-3", "snow-3")
DEFAULT_SEVERITY = 3


def model_colors(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A colour per model name, the same in every figure.

    The colour comes from a stable hash of the name (the same model gets the same colour in
    every report); two names that hash alike in one report are moved to the next free colour,
    in sorted-name order.

    Args:
        names: The model (display) names.

    Returns:
        Name to RGB colour.
    """
    out: dict[str, tuple[float, float, float]] = {}
    used: set[int] = set()
    for name in sorted(set(names)):
        k = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % len(_COLORS)
        for step in range(len(_COLORS)):
            if (k + step) % len(_COLORS) not in used:
                k = (k + step) % len(_COLORS)
                break
        used.add(k)
        if len(used) == len(_COLORS):
            used.clear()
        out[name] = tuple(_COLORS[k])
    return out


def _plain(name: object) -> str:
    """A name (run, class, image) as matplotlib shows it literally: its ``$`` escaped, so that
    two of them never start mathtext (which fails on most names)."""
    return str(name).replace("$", r"\$")


def plot_severity_curves(
    runs: Sequence[Run],
    stem: Path,
    colors: dict[str, tuple[float, float, float]],
    bands: Mapping[str, Mapping[str, tuple[float, float, float]]] | None = None,
) -> list[Path]:
    """Figure 7: a 4x4 grid, one panel per benchmark corruption (rows: blur, noise, digital,
    weather), mIoU (%) against severity with the clean mIoU as severity 0, one line per run.

    Args:
        runs: The runs.
        stem: Output path without suffix; ``.png`` and ``.pdf`` are written.
        colors: Colour per run name (:func:`model_colors`).
        bands: Per run name, cell -> (mIoU, lo, hi) as fractions
            (``RunStatistics.cell_intervals``): each line gets its 95% band, shaded.

    Returns:
        The written files.
    """
    # A bare Figure renders with Agg (PNG) / the PDF backend and never touches pyplot's global
    # state or a display.
    fig = Figure(figsize=(13, 11))
    axes = fig.subplots(4, 4, sharex=True, sharey=True)
    handles = {}
    top = 0.0
    for r, cat in enumerate(CATEGORY_ORDER):
        names = [c for c in BENCHMARK if CORRUPTIONS[c].category == cat]
        for k, corruption in enumerate(names):
            ax = axes[r, k]
            for run in runs:
                cells = run.cells
                g = cells[cells["corruption"] == corruption].sort_values("severity")
                clean = cells[cells["corruption"] == CLEAN]
                x = ([0] if len(clean) else []) + [int(s) for s in g["severity"]]
                y = ([100 * float(clean["miou"].iloc[0])] if len(clean) else []) + [
                    100 * float(m) for m in g["miou"]
                ]
                if len(g) == 0:
                    continue
                (line,) = ax.plot(
                    x, y, marker="o", ms=4, lw=1.6, color=colors[run.name], label=_plain(run.name)
                )
                handles[run.name] = line
                top = max(top, max(y))
                if bands is not None and run.name in bands:
                    band = [bands[run.name][c] for c in [*clean["cell"], *g["cell"]]]
                    lo = [100 * b[1] for b in band]
                    hi = [100 * b[2] for b in band]
                    ax.fill_between(x, lo, hi, color=colors[run.name], alpha=0.18, lw=0)
                    top = max(top, np.nanmax(hi))
            ax.set_title(_title(corruption), fontsize=10)
            ax.grid(True, lw=0.4, alpha=0.5)
            if not ax.lines:
                ax.text(
                    0.5,
                    0.5,
                    "no data",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    color="0.5",
                )
            if k == 0:
                ax.set_ylabel(f"{cat.title()}\nmIoU (%)")
            if r == 3:
                ax.set_xlabel("severity (0 = clean)")
    axes[0, 0].set_xticks(range(6))
    axes[0, 0].set_ylim(0, max(top * 1.08, 1.0))
    fig.legend(
        list(handles.values()),
        [_plain(n) for n in handles],
        loc="lower center",
        ncol=min(len(handles), 4) or 1,
        frameon=False,
    )
    fig.suptitle(
        "mIoU under each corruption against severity (Cityscapes-C)"
        + ("; shaded: 95% bootstrap intervals" if bands is not None else ""),
        fontsize=12,
    )
    rows = (len(handles) + 3) // 4
    # Fixed margins (inches), not tight_layout: the layout is known and this is much faster.
    legend_h = 0.35 + 0.25 * rows
    fig.subplots_adjust(
        left=0.9 / 13,
        right=1 - 0.2 / 13,
        top=1 - 0.75 / 11,
        bottom=(0.55 + legend_h) / 11,
        wspace=0.08,
        hspace=0.28,
    )
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:
        save_figure(fig, p, dpi=120)
    return paths


def plot_class_iou(run: Run, path: Path) -> Path:
    """Per-class IoU heatmap of one run: classes x (clean, corruptions averaged over severities).

    Args:
        run: The run.
        path: The PNG to write.

    Returns:
        ``path``.
    """
    frame = class_iou_frame(run)
    data = frame.to_numpy(dtype=float)
    h, w = data.shape
    fw, fh = 2.9 + 0.55 * w, 1.9 + 0.32 * h
    fig = Figure(figsize=(fw, fh))
    ax = fig.subplots()
    # Fixed margins (inches) for the class names, rotated corruption names and the colour bar.
    fig.subplots_adjust(left=1.2 / fw, right=1 - 1.3 / fw, top=1 - 0.4 / fh, bottom=1.45 / fh)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i in range(h):
        for j in range(w):
            v = data[i, j]
            text = "–" if np.isnan(v) else f"{v:.0f}"
            color = "black" if np.isnan(v) or v > 60 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    cats = [CLEAN if c == CLEAN else CORRUPTIONS[c].category for c in frame.columns]
    for j in range(1, w):
        if cats[j] != cats[j - 1]:  # separate the clean column and the category groups
            ax.axvline(j - 0.5, color="white", lw=2)
    ax.set_xticks(range(w), [_title(c) for c in frame.columns], rotation=50, ha="right", fontsize=8)
    ax.set_yticks(range(h), [_plain(c) for c in frame.index], fontsize=8)
    ax.set_title(f"{_plain(run.name)}: per-class IoU (%), mean over severities", fontsize=10)
    cax = fig.add_axes((1 - 1.1 / fw, 1.45 / fh, 0.18 / fw, 1 - 1.85 / fh))
    fig.colorbar(im, cax=cax, label="IoU (%)")
    save_figure(fig, path, dpi=120)
    return path


# ----------------------------------------------------------------------------- natural shift


def plot_natural(
    frame: Any,
    stem: Path,
    colors: dict[str, tuple[float, float, float]],
    title: str = "Synthetic vs natural shift",
) -> list[Path]:
    """Natural robustness against synthetic robustness: one point per model, the natural mean
    (y) against mPC (x), with their 95% intervals as error bars when the frame has them.

    Args:
        frame: ``report.natural.NaturalSection.frame`` (``model``, ``mPC``, ``natural_mean``,
            optionally ``X_lo`` / ``X_hi``); rows without both figures are not drawn.
        stem: Output path without suffix; ``.png`` and ``.pdf`` are written.
        colors: Colour per model name (:func:`model_colors`).
        title: The figure's title.

    Returns:
        The written files.
    """
    fig = Figure(figsize=(6.4, 5.0))
    ax = fig.subplots()
    ci = "mPC_lo" in frame.columns and "natural_mean_lo" in frame.columns
    for rec in frame.to_dict("records"):
        x, y = float(rec["mPC"]), float(rec["natural_mean"])
        if np.isnan(x) or np.isnan(y):
            continue
        err = {}
        if ci:
            err = {
                # a percentile interval need not contain the point (a small, lumpy sample)
                "xerr": [[max(0.0, x - rec["mPC_lo"])], [max(0.0, rec["mPC_hi"] - x)]],
                "yerr": [
                    [max(0.0, y - rec["natural_mean_lo"])],
                    [max(0.0, rec["natural_mean_hi"] - y)],
                ],
            }
        ax.errorbar([x], [y], fmt="o", ms=6, capsize=3, lw=1.2, color=colors[rec["model"]],
                    label=_plain(rec["model"]), **err)  # fmt: skip
    ax.set_xlabel("mPC on Cityscapes-C (mIoU %)")
    ax.set_ylabel("natural mean (mIoU %)")
    ax.grid(True, lw=0.4, alpha=0.5)
    if ax.lines or ax.collections:
        ax.legend(fontsize=8, frameon=False, loc="best")
    else:
        ax.text(0.5, 0.5, "no model has both mPC and a natural mean", ha="center",
                va="center", transform=ax.transAxes, color="0.5")  # fmt: skip
    ax.set_title(title + ("\nbars: 95% bootstrap intervals over images" if ci else ""), fontsize=9)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.89, bottom=0.11)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:
        save_figure(fig, p, dpi=120)
    return paths


# ----------------------------------------------------------------------------- reliability


def plot_reliability(
    name: str,
    grid: Sequence[tuple[str, Sequence[tuple[str, Calibration | None]]]],
    stem: Path,
    color: tuple[float, float, float],
) -> list[Path]:
    """Reliability diagrams of one run (Guo et al. 2017): one row per corruption, clean then
    its severities in the columns (clean repeated as severity 0, as in Figure 7). Per
    confidence bin (15 equal bins of the top softmax probability): the pixel accuracy at the
    bin's mean confidence, the diagonal of perfect calibration, and the bin's share of the
    cell's pixels as grey bars (same 0..1 axis); the cell's ECE in the panel.

    Args:
        name: The run's name (the title).
        grid: Rows of (label, [(cell name, its ``metrics.Calibration`` or None where the run
            lacks the cell)]); every row has as many cells.
        stem: Output path without suffix; ``.png`` and ``.pdf`` are written.
        color: The run's colour (:func:`model_colors`).

    Returns:
        The written files.
    """
    pw = ph = 1.9
    nr, nc = len(grid), len(grid[0][1])
    fw, fh = 1.2 + pw * nc, 1.35 + ph * nr
    fig = Figure(figsize=(fw, fh))
    axes = fig.subplots(nr, nc, squeeze=False, sharex=True, sharey=True)
    for r, (label, cells) in enumerate(grid):
        for c, (cell, cal) in enumerate(cells):
            ax = axes[r, c]
            ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.4")
            if cal is None or not cal.pixels:
                ax.text(0.5, 0.5, "not evaluated", ha="center", va="center",
                        transform=ax.transAxes, color="0.5", fontsize=8)  # fmt: skip
            else:
                rel = cal.reliability()
                share = rel["count"] / rel["count"].sum()
                ax.bar(rel["lower"], share, width=rel["upper"] - rel["lower"], align="edge",
                       color="0.8", edgecolor="0.6", lw=0.3)  # fmt: skip
                ok = rel["count"] > 0
                ax.plot(rel["confidence"][ok], rel["accuracy"][ok], marker="o", ms=2.5, lw=1.2,
                        color=color)  # fmt: skip
                ax.text(0.04, 0.96, f"ECE {100 * cal.ece:.1f}%", transform=ax.transAxes,
                        ha="left", va="top", fontsize=8)  # fmt: skip
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {Cell.parse(cell).severity}",
                             fontsize=9)  # fmt: skip
            if r == nr - 1:
                ax.set_xlabel("confidence", fontsize=8)
        axes[r, 0].set_ylabel(f"{_title(label)}\naccuracy", fontsize=8)
    axes[0, 0].set_xlim(0, 1)
    axes[0, 0].set_ylim(0, 1)
    axes[0, 0].set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
    axes[0, 0].set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
    for ax in axes.flat:
        ax.tick_params(labelsize=7)
    fig.suptitle(
        f"{_plain(name)}: reliability diagrams (grey: share of the pixels per bin)", fontsize=10
    )
    # Fixed margins (inches), as in the other grids.
    fig.subplots_adjust(left=0.95 / fw, right=1 - 0.2 / fw, top=1 - 0.7 / fh, bottom=0.6 / fh,
                        wspace=0.1, hspace=0.12)  # fmt: skip
    # Not with_suffix: a run's name may hold dots (segformer-b0.synthetic).
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"]
    for p in paths:
        save_figure(fig, p, dpi=110)
    return paths


# ----------------------------------------------------------------------------- qualitative


def parse_conditions(specs: Sequence[str]) -> list[tuple[str, int]]:
    """``"fog-3"`` / ``"fog:3"`` / ``"fog"`` (severity 3) to (corruption, severity).

    Raises:
        RobustSegError: A malformed severity; CorruptionError for an unknown corruption.
    """
    out = []
    for spec in specs:
        name, sev = corruption_condition(spec, DEFAULT_SEVERITY)
        get_corruption(name)
        if not 1 <= int(sev) <= 5:
            raise RobustSegError(f"qualitative corruption {spec!r}: severity must be 1..5")
        out.append((name, int(sev)))
    return out


def colorize(label: np.ndarray, palette: Sequence[Sequence[int]] = PALETTE) -> np.ndarray:
    """trainIds (HxW) to palette colours (HxWx3 uint8; Cityscapes' by default); ignored
    pixels black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8)
    lut[IGNORE_INDEX] = 0
    return lut[label.astype(np.uint8)]


@dataclass
class QualitativeRow:
    """One row of the qualitative grid.

    Attributes:
        image_id: The Cityscapes image id.
        corruption: None for clean.
        severity: None for clean.
        image: The (corrupted) image, HxWx3 uint8 RGB.
        label: Ground-truth trainIds, HxW uint8.
        predictions: Predicted trainIds (HxW) per model, in the order of ``models``.
    """

    image_id: str
    corruption: str | None
    severity: int | None
    image: np.ndarray
    label: np.ndarray
    predictions: list[np.ndarray]


def _saved_predictions(
    run: Run, cells: Sequence[str], ids: Sequence[str]
) -> tuple[dict[str, list[np.ndarray]] | None, str | None]:
    """A run's saved maps of ``ids`` for every cell, or why it has none."""
    out = {}
    config_hash = run.info.config_hash if run.info is not None else None
    for cell in cells:
        saved = load_predictions(run.path, cell, config_hash)
        if saved is None:
            return None, (
                f"qualitative grid: {run.name} left out: no saved predictions for {cell} in "
                f"{run.path} (evaluate --save-predictions N covering that cell)"
            )
        saved_ids, maps = saved
        if list(saved_ids[: len(ids)]) != list(ids):
            return None, (
                f"qualitative grid: {run.name} left out: its saved predictions of {cell} cover "
                f"{len(saved_ids)} image(s) ({', '.join(saved_ids[:2]) or 'none'}), not the "
                f"first {len(ids)} of the split (evaluate --save-predictions {len(ids)})"
            )
        out[cell] = maps[: len(ids)]
    return out, None


def qualitative_rows(
    runs: Sequence[Run],
    *,
    num_images: int,
    conditions: Sequence[tuple[str, int]] = (),
    cityscapes_root: str | Path | None = None,
) -> tuple[list[str], list[QualitativeRow], list[str]]:
    """Each run's saved predictions on the first images, clean and corrupted.

    The predicted maps are the ones ``evaluate --save-predictions`` kept in each run directory
    (no model is loaded); the images and labels are read from the dataset, corrupted with the
    first run's seed and backend (the pixels the runs saw). Runs without the needed maps are
    left out with a warning; without data or maps there are no rows.

    Args:
        runs: The runs.
        num_images: How many images (the first of the split, sorted).
        conditions: (corruption, severity) pairs shown after the clean image.
        cityscapes_root: Dataset root (default: the one recorded in the first run).

    Returns:
        The names of the runs shown, the rows (image-major: every condition of the first
        image, then the next image), and the warnings.
    """
    names, rows, warns, _ = _qualitative(runs, num_images, conditions, cityscapes_root)
    return names, rows, warns


def _qualitative(
    runs: Sequence[Run],
    num_images: int,
    conditions: Sequence[tuple[str, int]],
    cityscapes_root: str | Path | None,
) -> tuple[list[str], list[QualitativeRow], list[str], tuple[Any, Path] | None]:
    """:func:`qualitative_rows`, and with rows the dataset they come from and its root."""
    from robustbench_seg.data.cityscapes_c import CellView
    from robustbench_seg.data.datasets import get_dataset

    info = next((r.info for r in runs if r.info is not None), None)
    root = cityscapes_root or (info.data_root if info is not None else None)
    if not root:
        return (
            [],
            [],
            ["qualitative grid skipped: no dataset root recorded in run.json; pass --data-root"],
            None,
        )
    try:
        data = get_dataset(info.dataset if info is not None else "cityscapes")
        pairs = data.pairs(root, (info and info.images.split) or "val")[:num_images]
    except RobustSegError as exc:
        return [], [], [f"qualitative grid skipped: cannot read the dataset: {exc}"], None
    conds = [(None, None), *conditions]
    cells = [cell_name(c, s) for c, s in conds]
    ids = [p.image_id for p in pairs]
    shown, warns = [], []
    for run in runs:
        maps, why = _saved_predictions(run, cells, ids)
        if maps is None:
            warns.append(str(why))
        else:
            shown.append((run, maps))
    if not shown:
        return [], [], [*warns, "qualitative grid skipped: no run has saved predictions"], None

    seed, backend = (info.seed, info.backend) if info is not None else (0, "fast")
    rows: list[QualitativeRow] = []
    try:
        for i, pair in enumerate(pairs):
            for (corruption, severity), cell in zip(conds, cells, strict=True):
                view = CellView(pairs, corruption, severity, seed=seed, backend=backend)
                _, image, label = view[i]
                preds = [maps[cell][i] for _, maps in shown]
                rows.append(
                    QualitativeRow(pair.image_id, corruption, severity, image, label, preds)
                )
    except (RobustSegError, OSError, ValueError) as exc:  # unreadable images only skip the grid
        return [], [], [*warns, f"qualitative grid skipped: {exc}"], None
    return [run.name for run, _ in shown], rows, warns, (data, Path(root))


def plot_qualitative(
    runs: Sequence[Run],
    path: Path,
    *,
    num_images: int,
    conditions: Sequence[tuple[str, int]] = (),
    cityscapes_root: str | Path | None = None,
) -> tuple[Path | None, list[str]]:
    """Figures 4/5: image, ground truth and each model's prediction, clean and corrupted,
    in the Cityscapes palette, from the runs' saved predictions (see :func:`qualitative_rows`).

    Args:
        runs: The runs.
        path: The PNG to write.
        num_images: How many images (the first of the split, sorted).
        conditions: (corruption, severity) rows shown after each clean row.
        cityscapes_root: Dataset root (default: the one recorded in the first run).

    Returns:
        The written path (None when skipped) and the warnings.
    """
    names, rows, warns, source = _qualitative(runs, num_images, conditions, cityscapes_root)
    if not rows or source is None:
        return None, warns
    data, root = source  # the first run's dataset
    class_names, palette = data.class_source(root)
    h, w = rows[0].image.shape[:2]
    cols = 2 + len(names)
    pw = 3.0
    ph = pw * h / w
    height = ph * len(rows) + 1.2
    fig = Figure(figsize=(pw * cols + 1.2, height))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    titles = ["Image", "Ground truth", *map(_plain, names)]
    for r, row in enumerate(rows):
        what = "clean" if row.corruption is None else f"{_title(row.corruption)} {row.severity}"
        maps = [colorize(m, palette) for m in (row.label, *row.predictions)]
        for c, img in enumerate([row.image, *maps]):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest" if c else "antialiased")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        axes[r, 0].set_ylabel(f"{_plain(row.image_id.split('/')[-1])}\n{what}", fontsize=8)
    present = sorted({int(v) for row in rows for m in (row.label, *row.predictions)
                      for v in np.unique(m) if v < len(class_names)})  # fmt: skip
    legend = [
        Patch(color=np.asarray(palette[k]) / 255, label=_plain(class_names[k])) for k in present
    ]
    fig.legend(handles=legend, loc="lower center", ncol=7, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.9 / height, 1, 1))
    save_figure(fig, path, dpi=120)
    return path, warns
