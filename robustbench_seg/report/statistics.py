"""The report's statistics (``report --ci``): 95% image-level bootstrap intervals of every
figure (Efron & Tibshirani 1993), paired comparisons with Holm's correction (Holm 1979),
calibration under corruption (Guo et al. 2017) and the worst decile of images per cell.

Everything is computed from the runs' per-image counts and calibration sums
(``runs.RunStatistics``, ``robustbench_seg.stats``); nothing here resamples on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from corruptions.registry import CORRUPTIONS, get_corruption
from robustbench_seg import metrics
from robustbench_seg.compare import COMPARE_COLUMNS, check_comparable, compare_statistics
from robustbench_seg.errors import RobustSegError
from robustbench_seg.metrics import Calibration
from robustbench_seg.report.tables import Run, Table5, ordered_corruptions
from robustbench_seg.results.cells import CLEAN, Cell, severity_groups
from robustbench_seg.runs import RunStatistics, load_statistics

__all__ = [
    "DEFAULT_RELIABILITY",
    "FEW_IMAGES",
    "few_images_caveat",
    "calibration_display",
    "RELIABILITY_SEVERITIES",
    "WORST_SHARE",
    "calibration_frame",
    "cd_intervals",
    "check_same_images",
    "comparison_frame",
    "load_run_statistics",
    "parse_reliability",
    "reliability_corruptions",
    "reliability_grid",
    "severity_intervals",
    "table5_intervals",
    "with_intervals",
    "worst_decile_frame",
    "worst_decile_summary",
]

# Corruptions whose severities 1/3/5 get reliability diagrams by default (one per category).
DEFAULT_RELIABILITY = ("gaussian_noise", "motion_blur", "contrast", "snow")
RELIABILITY_SEVERITIES = (1, 3, 5)
WORST_SHARE = 0.1  # the worst decile of images
# Below this many images a percentile bootstrap interval covers less than its 95% (it is too
# narrow by about sqrt((n - 1) / n) and misses skew): the report says so next to the intervals.
FEW_IMAGES = 30
# How far a point estimate from the cells' per-image counts may be from results.csv's (both
# percent; they differ only by the order of float additions).
_AGREE = 1e-6


def load_run_statistics(runs: Sequence[Run]) -> dict[str, RunStatistics]:
    """Every run's per-image statistics, keyed by run name.

    Raises:
        RobustSegError: A run without readable ``run.json``, or without per-image counts or
            calibration sums in some cell (a run from an earlier robustseg, or unfinished).
    """
    out = {}
    for run in runs:
        st = load_statistics(run.path)
        if st is not None and any(c is None for c in st.calibration.values()):
            st = None
        if st is None:
            raise RobustSegError(
                f"{run.path} has no per-image statistics (a run from an earlier robustseg, or "
                "unfinished), which --ci needs; run robustseg evaluate again with the same "
                "options: it resumes and completes the run"
            )
        out[run.name] = st
    return out


def check_same_images(runs: Sequence[Run], reference: Run) -> None:
    """Refuses runs over other images or cells than ``reference`` (paired comparisons), natural
    cells included (``compare.check_comparable``)."""
    for run in runs:
        if run is not reference:
            check_comparable((str(run.path), run.info), (str(reference.path), reference.info),
                             "a paired comparison needs the same images and cells")  # fmt: skip


def with_intervals(
    frame: pd.DataFrame,
    first: str,
    intervals: Mapping[str, Mapping[str, tuple[float, float, float]]],
    columns: Sequence[str],
) -> pd.DataFrame:
    """``frame`` with ``X_lo`` and ``X_hi`` after each of ``columns``.

    Args:
        frame: One row per ``frame[first]`` key.
        first: The key column.
        intervals: Key -> column -> (point, lo, hi); rows or columns without one get NaN.
        columns: The value columns that get bounds.

    Returns:
        A new frame; the order of the other columns is kept.

    Raises:
        RobustSegError: A point estimate that disagrees with the frame's value (a
            ``results.csv`` that does not belong to the run's cells).
    """
    out = frame.copy()
    for col in columns:
        lo, hi = [], []
        for key, value in zip(out[first], out[col], strict=True):
            point, a, b = intervals.get(key, {}).get(col, (math.nan,) * 3)
            if not math.isnan(point) and not np.isclose(point, value, rtol=0, atol=_AGREE):
                raise RobustSegError(
                    f"{key}: {col} is {value:.6f} in results.csv but {point:.6f} from its cells' "
                    "per-image counts; run robustseg evaluate again with the same options"
                )
            lo.append(a)
            hi.append(b)
        out[f"{col}_lo"], out[f"{col}_hi"] = lo, hi
    order = [
        x for c in frame.columns for x in ((c, f"{c}_lo", f"{c}_hi") if c in columns else (c,))
    ]
    return out[order]


def few_images_caveat(images: int) -> str | None:
    """The caveat shown next to intervals from fewer than :data:`FEW_IMAGES` images, else None."""
    if images >= FEW_IMAGES:
        return None
    return (
        f"Caution: intervals from only {images} images (fewer than {FEW_IMAGES}) are approximate: "
        "with so few images the bootstrap interval tends to be too narrow."
    )


def table5_intervals(
    t5: Table5,
    figures: Mapping[str, Mapping[str, tuple[float, float, float]]],
    images: int,
    resamples: int,
) -> Table5:
    """Table 5 with the 95% interval of every run's figure (``X_lo``, ``X_hi``); published rows
    get NaN, and a note says what the half-width is.

    Args:
        t5: The table.
        figures: Per run name, ``RunStatistics.figures`` (with a baseline: paired with it, so
            mCD's interval is paired).
        images: The images resampled.
        resamples: Their resamples.
    """
    frame = with_intervals(t5.frame, "model", figures, t5.value_columns)
    note = (
        f"± : half-width of the 95% image-level percentile bootstrap interval ({resamples} "
        f"resamples of the {images} images, shared by all cells and by runs over the same images, "
        "so mCD and differences are paired), max(point - lower, upper - point): the interval "
        "lies within value ± half-width. Bounds in table5.csv (X_lo, X_hi)."
    )
    caveat = few_images_caveat(images)
    return Table5(frame, t5.corruptions, [*t5.notes, note, *([caveat] if caveat else [])])


def cd_intervals(
    cd: pd.DataFrame, figures: Mapping[str, Mapping[str, tuple[float, float, float]]]
) -> pd.DataFrame:
    """The CD table with the paired 95% interval of every CD and mCD (``figures``: per run name,
    ``RunStatistics.figures`` paired with the baseline)."""
    figs = {}
    for name in cd["model"]:
        f = figures[name]
        figs[name] = {k.removeprefix("CD:"): v for k, v in f.items() if k.startswith("CD:")}
        figs[name]["mCD"] = f["mCD"]
    return with_intervals(cd, "model", figs, [c for c in cd.columns if c != "model"])


def severity_intervals(
    sev: pd.DataFrame,
    figures: Mapping[str, tuple[float, float, float]],
    cells: Mapping[str, tuple[float, float, float]],
) -> pd.DataFrame:
    """A run's severity table (``tables.severity_frame``) with the interval of every cell and
    of each corruption's mean over its severities (percent).

    Args:
        sev: The table.
        figures: The run's ``RunStatistics.figures`` (percent).
        cells: The run's ``RunStatistics.cell_intervals`` (fractions).
    """
    pct = {c: tuple(100 * v for v in t) for c, t in cells.items()}
    sev_cols = [c for c in sev.columns if c.isdigit()]
    per_row: dict[str, dict[str, tuple[float, float, float]]] = {}
    for corruption in sev["corruption"]:
        row = {"mean": figures[corruption]}
        row.update({s: pct[f"{corruption}-{s}"] for s in sev_cols if f"{corruption}-{s}" in pct})
        per_row[corruption] = row
    return with_intervals(sev, "corruption", per_row, [*sev_cols, "mean"])


def comparison_frame(
    runs: Sequence[Run],
    reference: Run,
    statistics: Mapping[str, RunStatistics],
    resamples: int,
) -> pd.DataFrame:
    """Every run but ``reference`` against it (``compare.compare_statistics``): ``run``,
    ``against``, then ``compare.COMPARE_COLUMNS`` (difference = run - reference)."""
    frames = []
    for run in runs:
        if run is reference:
            continue
        f = compare_statistics(
            statistics[run.name], statistics[reference.name], resamples=resamples
        )
        f.insert(0, "against", reference.name)
        f.insert(0, "run", run.name)
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=["run", "against", *COMPARE_COLUMNS])
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- calibration


def _conditions(cells: Sequence[str]) -> dict[str, list[str]]:
    """clean and each corruption (Table 5 order) -> its cells."""
    groups = severity_groups(cells)
    out = {CLEAN: [CLEAN]} if CLEAN in cells else {}
    out.update({c: groups[c] for c in ordered_corruptions(groups)})
    return out


def calibration_frame(runs: Sequence[Run], statistics: Mapping[str, RunStatistics]) -> pd.DataFrame:
    """ECE, NLL and Brier score per run for clean, each corruption (mean over its severities)
    and the mean over the corruptions.

    Returns:
        ``model``, ``corruption`` (``clean``, a corruption, ``mean``), ``category``
        (``clean``, the corruption's, ``mean``), ``severities`` (cells averaged), ``ece``
        (fraction), ``nll`` (nats per pixel), ``brier`` (0..2).
    """
    rows = []
    for run in runs:
        st = statistics[run.name]
        groups = _conditions(st.cells)
        per_corruption = []
        for condition, cells in groups.items():
            cals = [st.calibration[c] for c in cells]
            row = {
                "model": run.name,
                "corruption": condition,
                "category": CLEAN if condition == CLEAN else CORRUPTIONS[condition].category,
                "severities": len(cells) if condition != CLEAN else 0,
                "ece": float(np.mean([c.ece for c in cals])),
                "nll": float(np.mean([c.nll for c in cals])),
                "brier": float(np.mean([c.brier for c in cals])),
            }
            rows.append(row)
            if condition != CLEAN:
                per_corruption.append(row)
        if per_corruption:
            rows.append({
                "model": run.name, "corruption": "mean", "category": "mean",
                "severities": sum(r["severities"] for r in per_corruption),
                **{k: float(np.mean([r[k] for r in per_corruption])) for k in ("ece", "nll", "brier")},
            })  # fmt: skip
    return pd.DataFrame(
        rows, columns=["model", "corruption", "category", "severities", "ece", "nll", "brier"]
    )


def calibration_display(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str], dict[str, int]]:
    """The calibration table as shown: one row per condition, ECE (%), NLL and Brier of each
    model side by side; with its column labels and decimals."""
    models = list(dict.fromkeys(frame["model"]))
    conditions = list(dict.fromkeys(frame["corruption"]))
    shown = pd.DataFrame({"corruption": conditions})
    labels, digits = {"corruption": "Corruption"}, {}
    for k, model in enumerate(models):
        f = frame[frame["model"] == model].set_index("corruption").reindex(conditions)
        for metric, label, scale, d in (("ece", "ECE (%)", 100.0, 1), ("nll", "NLL", 1.0, 3),
                                        ("brier", "Brier", 1.0, 3)):  # fmt: skip
            col = f"{k}:{metric}"
            shown[col] = scale * f[metric].to_numpy(dtype=float)
            labels[col] = f"{model}: {label}"
            digits[col] = d
    return shown, labels, digits


# ----------------------------------------------------------------------------- reliability


def parse_reliability(names: Sequence[str]) -> list[str]:
    """Corruption names (``none`` or nothing: clean only).

    Raises:
        CorruptionError: An unknown corruption (with the closest names).
    """
    out = []
    for name in names:
        name = str(name).strip()
        if name and name != "none":
            get_corruption(name)
            if name not in out:
                out.append(name)
    return out


def reliability_corruptions(
    runs: Sequence[Run], statistics: Mapping[str, RunStatistics], corruptions: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The chosen corruptions of which some run has a severity 1, 3 or 5, and why the others
    are left out."""
    have = set().union(*(statistics[r.name].cells for r in runs))
    shown, left_out = [], []
    for corruption in corruptions:
        if any(f"{corruption}-{s}" in have for s in RELIABILITY_SEVERITIES):
            shown.append(corruption)
        else:
            left_out.append(
                f"reliability diagrams: {corruption} left out (no run has its severities "
                f"{'/'.join(map(str, RELIABILITY_SEVERITIES))})"
            )
    return shown, left_out


def reliability_grid(
    st: RunStatistics, corruptions: Sequence[str]
) -> list[tuple[str, list[tuple[str, Calibration | None]]]]:
    """A run's reliability diagrams: one row per corruption (clean alone without any), each
    ``clean`` then the corruption's severities 1/3/5: (cell, calibration, None where the run
    lacks the cell)."""
    rows = []
    for corruption in corruptions or [CLEAN]:
        cells = [CLEAN]
        if corruption != CLEAN:
            cells += [Cell.of_corruption(corruption, s).name for s in RELIABILITY_SEVERITIES]
        rows.append((corruption, [(c, st.calibration.get(c)) for c in cells]))
    return rows


# ----------------------------------------------------------------------------- worst decile


def worst_decile_frame(run: Run, st: RunStatistics) -> pd.DataFrame:
    """Per cell, the worst decile of images by their own mIoU (percent).

    ``worst_decile``: the mean mIoU of the ``ceil(N / 10)`` worst images; ``p10``: the 10th
    percentile (numpy's linear interpolation); ``worst_image`` and ``worst_image_miou``: the
    worst image (the first in the split's order on a tie). ``images``: the images with an
    mIoU (an image whose pixels are all ignored and that gets no prediction has none and is
    not ranked).

    Returns:
        ``model``, ``cell``, ``corruption``, ``severity``, ``images``, ``worst_decile``,
        ``p10``, ``worst_image``, ``worst_image_miou``.
    """
    miou = 100 * metrics.miou_from_counts(st.counts)  # (N, C)
    image_ids = np.asarray(st.row_ids(), dtype=object)
    cells = run.cells.set_index("cell")
    rows = []
    for j, cell in enumerate(st.cells):
        ok = ~np.isnan(miou[:, j])
        v, ids = miou[ok, j], image_ids[ok]
        row = {"model": run.name, "cell": cell, "corruption": str(cells.at[cell, "corruption"]),
               "severity": int(cells.at[cell, "severity"]), "images": int(v.size)}  # fmt: skip
        if v.size:
            order = np.argsort(v, kind="stable")
            k = math.ceil(WORST_SHARE * v.size)
            row.update(worst_decile=float(v[order[:k]].mean()), p10=float(np.quantile(v, 0.1)),
                       worst_image=str(ids[order[0]]), worst_image_miou=float(v[order[0]]))  # fmt: skip
        else:
            row.update(worst_decile=math.nan, p10=math.nan, worst_image="",
                       worst_image_miou=math.nan)  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def worst_decile_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """One run's worst-decile cells (:func:`worst_decile_frame`) per Table 5 column: clean and
    each corruption, ``worst_decile`` and ``p10`` averaged over its severities, and the worst
    image over its severities (``worst_image``, ``worst_image_miou``, ``worst_cell``)."""
    rows = []
    for condition, names in _conditions(list(cells["cell"])).items():
        g = cells[cells["cell"].isin(names)]
        ranked = g.dropna(subset=["worst_image_miou"])
        worst = ranked.loc[ranked["worst_image_miou"].idxmin()] if len(ranked) else None
        rows.append({
            "corruption": condition,
            "worst_decile": float(g["worst_decile"].mean()),
            "p10": float(g["p10"].mean()),
            "worst_image": "" if worst is None else str(worst["worst_image"]),
            "worst_image_miou": math.nan if worst is None else float(worst["worst_image_miou"]),
            "worst_cell": "" if worst is None else str(worst["cell"]),
        })  # fmt: skip
    return pd.DataFrame(rows)
