"""Synthetic vs natural shift: Cityscapes-C mPC and rPC (Michaelis et al. 2019) beside the mIoU
under natural shift (ACDC, Sakaridis et al. 2021; Dark Zurich, Sakaridis et al. 2019; Foggy
Cityscapes, Sakaridis et al. 2018), and Spearman's rank correlation across models (Spearman
1904) with a paired image-level percentile bootstrap interval (Efron & Tibshirani 1993).

The numbers come from the runs' tables (``results.csv``: the same as ``summary.csv``) and, with
intervals, from their resamples (``runs.RunStatistics.figure_samples``): two runs over the same
images share their resamples, so per resample every model's figures are recomputed on the same
images and the correlation is computed from them; nothing here draws resamples of its own.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from robustbench_seg import stats as stats_mod
from robustbench_seg.compare import check_images, check_natural
from robustbench_seg.data.datasets import DATASETS, FOGGY_BETAS
from robustbench_seg.errors import RobustSegError
from robustbench_seg.report import statistics as rstats
from robustbench_seg.report.tables import (
    Run,
    frame_html,
    frame_markdown,
    html_table,
    markdown_table,
    md_escape,
    run_summary,
)
from robustbench_seg.results.cells import NATURAL, Cell
from robustbench_seg.runs import RunStatistics

__all__ = [
    "MIN_MODELS",
    "NATURAL_MEAN",
    "SYNTHETIC",
    "NaturalSection",
    "check_correlatable",
    "correlation_rows",
    "figure_title",
    "density_label",
    "label",
    "natural_html",
    "natural_markdown",
    "natural_section",
    "spearman_rows",
]

NATURAL_MEAN = "natural_mean"  # the mean over the natural conditions (a density set once)
SYNTHETIC = ("mPC", "rPC")  # the synthetic robustness figures correlated with the natural ones
MIN_MODELS = 3  # Spearman's rho of two models is always +-1: nothing to learn from it
# Real-world conditions first, then Foggy Cityscapes (synthetic fog on real images); datasets
# not listed here follow in the registry's order.
DATASET_ORDER = ("acdc", "dark-zurich", "foggy-cityscapes")
_BASE_LABELS = {"model": "Model", "clean": "Clean", "mPC": "mPC", "rPC": "rPC",
                NATURAL_MEAN: "Natural mean"}  # fmt: skip


@dataclass
class NaturalSection:
    """The report's synthetic-vs-natural section.

    Attributes:
        frame: One row per run with natural cells: ``model``, ``clean``, ``mPC``, ``rPC``, each
            natural condition (``acdc:fog``, ..., ``foggy-cityscapes:fog`` = the mean over its
            densities), ``natural_mean``, then each density cell (``foggy-cityscapes:fog-1``
            ..); mIoU in %, rPC in %; with intervals each column ``X`` is followed by ``X_lo``,
            ``X_hi``.
        conditions: The natural condition columns, in display order.
        densities: Condition -> its density cells (Foggy Cityscapes' three betas).
        correlation: With three runs or more, Spearman's rho of each synthetic figure with each
            natural one: ``synthetic``, ``natural``, ``models``, ``spearman``, ``spearman_lo``,
            ``spearman_hi``, ``resamples``, ``undefined`` (resamples whose rho is undefined,
            left out of the interval); None with fewer runs.
        notes: What the reader needs to know (runs left out, why no correlation, ...).
        resamples: B of the intervals (0: no intervals).
        images: With intervals: the fewest images any of them was resampled over (a natural
            set's or the Cityscapes images'); 0 without intervals.
    """

    frame: pd.DataFrame
    conditions: list[str]
    densities: dict[str, list[str]]
    correlation: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)
    resamples: int = 0
    images: int = 0

    @property
    def models(self) -> list[str]:
        """The runs in the section, in report order."""
        return list(self.frame["model"])

    def labels(self) -> dict[str, str]:
        """Column labels of the main table and the density tables."""
        out = dict(_BASE_LABELS)
        out.update({c: label(c) for c in self.conditions})
        for cells in self.densities.values():
            out.update({c: density_label(c) for c in cells})
        return out

    def main_frame(self) -> pd.DataFrame:
        """The main table: the frame without the density cells."""
        dens = {c for cells in self.densities.values() for c in cells}
        return self.frame[[c for c in self.frame.columns if _base(c) not in dens]]

    def density_frame(self, condition: str) -> pd.DataFrame:
        """``model``, the condition's density cells, then the condition (their mean)."""
        have = set(self.frame.columns)
        cols = [x for c in [*self.densities[condition], condition]
                for x in (c, f"{c}_lo", f"{c}_hi") if x in have]  # fmt: skip
        return self.frame[["model", *cols]]


def _base(column: str) -> str:
    return column.removesuffix("_lo").removesuffix("_hi")


def label(condition: str) -> str:
    """``acdc:fog`` -> ``ACDC fog``; ``foggy-cityscapes:fog`` -> ``Foggy Cityscapes fog``."""
    return Cell.parse(condition).label({d.name: d.title for d in DATASETS.values()})


def density_label(cell: str) -> str:
    """``foggy-cityscapes:fog-2`` -> ``β=0.01``; other densities by their condition name."""
    parsed = Cell.parse(cell)
    if parsed.dataset == "foggy-cityscapes":
        return f"β={FOGGY_BETAS[str(parsed.condition)]}"
    return str(parsed.condition)


def _order(figures: Sequence[str]) -> list[str]:
    """Natural conditions by :data:`DATASET_ORDER`, then each dataset's own condition order."""
    datasets = [*DATASET_ORDER, *(d for d in DATASETS if d not in DATASET_ORDER)]

    def key(fig: str) -> tuple[int, int, int]:
        dataset = str(Cell.parse(fig).dataset)
        if dataset not in DATASETS:
            return (len(datasets), 0, figures.index(fig))
        conds = [Cell.of_natural(dataset, c).figure for c in DATASETS[dataset].conditions]
        pos = conds.index(fig) if fig in conds else len(conds)
        return (datasets.index(dataset), pos, figures.index(fig))

    return sorted(figures, key=key)


def _natural_cells(run: Run) -> pd.DataFrame:
    cells = run.cells
    return cells[cells["category"] == NATURAL]


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``x`` with the same row of ``y``: Pearson's r of their
    average ranks, as ``scipy.stats.spearmanr`` (vectorised over the rows).

    Args:
        x, y: ``(R, n)``: R weightings (the point estimate and the resamples) of n models.

    Returns:
        ``(R,)``; NaN where a row holds NaN or all its values tie (rho undefined).
    """
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    bad = np.isnan(x).any(1) | np.isnan(y).any(1)
    rx = rankdata(np.nan_to_num(x), axis=1)
    ry = rankdata(np.nan_to_num(y), axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.clip((rx * ry).sum(1) / den, -1.0, 1.0)
    rho[bad | (den == 0)] = np.nan
    return rho


_WHY = "the synthetic-vs-natural correlation ranks the models on the same images and cells"


def check_correlatable(runs: Sequence[Run]) -> None:
    """Refuses runs that cannot be ranked against each other: other images of the evaluated
    dataset, other corruption cells (runs without any have no mPC: the section says so), other
    natural cells, or natural cells over other images (``compare.check_images``,
    ``compare.check_natural``).

    Raises:
        RobustSegError: One line naming the two runs and what differs.
    """
    ref = runs[0]
    for run in runs[1:]:
        a, b = (str(run.path), run.info), (str(ref.path), ref.info)
        check_images(a, b, _WHY)
        mine, theirs = run.corruption_cells(), ref.corruption_cells()
        if mine and theirs and mine != theirs:
            only = sorted(f"{c}-{s}" for c, s in mine ^ theirs)
            raise RobustSegError(
                f"{run.path} and {ref.path} were evaluated on different corruption cells "
                f"({', '.join(only[:5])}); {_WHY}: evaluate them with the same --corruptions "
                "and --severities"
            )
        check_natural(a, b, _WHY)


def _correlation(
    frame: pd.DataFrame,
    conditions: Sequence[str],
    samples: Mapping[str, Mapping[str, np.ndarray]] | None,
    notes: list[str],
) -> pd.DataFrame:
    """Spearman's rho of mPC / rPC with the natural mean and each condition, per weighting."""
    models = list(frame["model"])
    by_model = frame.set_index("model").loc[models]
    rows = []
    for syn in SYNTHETIC:
        point = by_model[syn].to_numpy(dtype=np.float64)
        lacking = [m for m, v in zip(models, point, strict=True) if v != v]
        if lacking:
            notes.append(
                f"Spearman's ρ with {syn} is not shown: {', '.join(lacking)} "
                f"{'has' if len(lacking) == 1 else 'have'} no {syn} "
                + (
                    "(no corruption cells)."
                    if syn == "mPC"
                    else "(no corruption or no clean cell)."
                )
            )
            continue
        if samples is None:  # the point estimate alone
            x = point[None]
        else:
            x = np.stack([samples[m][syn] for m in models], 1)  # (1 + B, n)
        for nat in [NATURAL_MEAN, *conditions]:
            if samples is None:
                y = by_model[nat].to_numpy(dtype=np.float64)[None]
            else:
                y = np.stack([samples[m][nat] for m in models], 1)
            rho = spearman_rows(x, y)
            boot = rho[1:]
            lo, hi = stats_mod.interval(boot) if boot.size else (math.nan, math.nan)
            rows.append({
                "synthetic": syn, "natural": nat, "models": len(models),
                "spearman": float(rho[0]), "spearman_lo": lo, "spearman_hi": hi,
                "resamples": int(boot.size),
                "undefined": int(np.isnan(boot).sum()) if boot.size else 0,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=["synthetic", "natural", "models", "spearman", "spearman_lo",
                                       "spearman_hi", "resamples", "undefined"])  # fmt: skip


def natural_section(
    runs: Sequence[Run],
    statistics: Mapping[str, RunStatistics] | None = None,
    resamples: int = stats_mod.DEFAULT_RESAMPLES,
) -> NaturalSection | None:
    """The synthetic-vs-natural section of the runs that have natural-shift cells.

    Args:
        runs: The report's runs (those without natural cells are named in a note).
        statistics: With ``report --ci``: every run's per-image statistics (keyed by run
            name); adds the 95% intervals of every figure and of the correlations.
        resamples: Bootstrap resamples (with ``statistics``).

    Returns:
        The section, or None when no run has natural cells.

    Raises:
        RobustSegError: Three runs or more (the correlation) that are not over the same images
            and cells (:func:`check_correlatable`); a point estimate from the cells that
            disagrees with ``results.csv``.
    """
    natural = {r.name: _natural_cells(r) for r in runs}
    nat_runs = [r for r in runs if len(natural[r.name])]
    if not nat_runs:
        return None
    seen: list[str] = []
    for run in nat_runs:
        for fig in natural[run.name]["corruption"]:
            if fig not in seen:
                seen.append(str(fig))
    conditions = _order(seen)
    densities: dict[str, list[str]] = {}
    for run in nat_runs:
        for cell in natural[run.name]["cell"]:
            fig = Cell.parse(cell).figure
            if fig != cell and cell not in densities.setdefault(fig, []):
                densities[fig].append(str(cell))
    for fig in densities:
        densities[fig].sort(key=lambda c: Cell.parse(c).severity)
    densities = {f: densities[f] for f in conditions if f in densities}
    notes: list[str] = []
    rows = []
    for run in nat_runs:
        summary = run_summary(run)
        row: dict[str, float | str] = {"model": run.name}
        row.update({k: summary.get(k, math.nan) for k in ("clean", "mPC", "rPC")})
        row.update({c: summary.get(c, math.nan) for c in conditions})
        have = [float(row[c]) for c in conditions]
        row[NATURAL_MEAN] = float(np.mean(have)) if not np.isnan(have).any() else math.nan
        mious = natural[run.name].set_index("cell")["miou"]
        for cell in (c for cs in densities.values() for c in cs):
            row[cell] = 100 * float(mious[cell]) if cell in mious.index else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    partial = [str(r["model"]) for r in rows if r[NATURAL_MEAN] != r[NATURAL_MEAN]]
    if partial:
        notes.append(
            f"{', '.join(partial)}: not evaluated on every condition of the table, so no "
            "natural mean (it would average other conditions)."
        )
    left_out = [r.name for r in runs if r not in nat_runs]
    if left_out:
        notes.append(f"Not in this section (no natural-shift cells): {', '.join(left_out)}.")

    if len(nat_runs) >= MIN_MODELS:  # every refusal before any resampling
        check_correlatable(nat_runs)
    samples = None
    fewest = 0
    if statistics is not None:
        fewest = min(  # the natural sets' images, and those of clean and mPC where shown
            n
            for run in nat_runs
            for n in (
                *([len(statistics[run.name].image_ids)] if statistics[run.name].cells else []),
                *(len(ids) for _, ids in statistics[run.name].natural.values()),
            )
        )
        samples, figs = {}, {}
        for run in nat_runs:
            st = statistics[run.name]
            s = dict(st.figure_samples(resamples=resamples))
            s[NATURAL_MEAN] = (
                np.mean(np.stack([s[c] for c in conditions]), 0)
                if all(c in s for c in conditions)
                else np.full(resamples + 1, math.nan)
            )
            samples[run.name] = s
            f = {k: (float(v[0]), *stats_mod.interval(v[1:])) for k, v in s.items()}
            cell_iv = st.cell_intervals(resamples)
            f.update({c: tuple(100 * v for v in cell_iv[c])
                      for cs in densities.values() for c in cs if c in cell_iv})  # fmt: skip
            figs[run.name] = f
        values = [c for c in frame.columns if c != "model"]
        frame = rstats.with_intervals(frame, "model", figs, values)

    correlation = None
    if len(nat_runs) >= MIN_MODELS:
        correlation = _correlation(frame, conditions, samples, notes)
    else:
        notes.append(
            f"Spearman's rank correlation between synthetic and natural robustness needs at "
            f"least {MIN_MODELS} models with natural-shift cells; this report has "
            f"{len(nat_runs)}, so it is not shown."
        )
    return NaturalSection(frame, conditions, densities, correlation, notes,
                          resamples if statistics is not None else 0, fewest)  # fmt: skip


# ----------------------------------------------------------------------------- rendering


def _rho(value: float) -> str:
    return "–" if value != value else f"{value:+.2f}".replace("-", "−")


def correlation_rows(section: NaturalSection) -> tuple[list[str], list[list[str]]]:
    """The correlation table as text: one row per natural figure, a column per synthetic one
    (``ρ [lo, hi]`` with intervals)."""
    corr = section.correlation
    syn = list(dict.fromkeys(corr["synthetic"]))
    headers = ["Natural robustness", *(f"ρ with {s}" for s in syn)]
    rows = []
    for nat in dict.fromkeys(corr["natural"]):
        row = ["Natural mean" if nat == NATURAL_MEAN else label(nat)]
        for s in syn:
            r = corr[(corr["synthetic"] == s) & (corr["natural"] == nat)].iloc[0]
            text = _rho(r["spearman"])
            if section.resamples:
                text += f" [{_rho(r['spearman_lo'])}, {_rho(r['spearman_hi'])}]"
            row.append(text)
        rows.append(row)
    return headers, rows


def figure_title(section: NaturalSection) -> str:
    """The scatter plot's title: with the correlation, ρ of mPC with the natural mean."""
    corr = section.correlation
    title = "Synthetic vs natural shift"
    if corr is None:
        return title
    hit = corr[(corr["synthetic"] == "mPC") & (corr["natural"] == NATURAL_MEAN)]
    if not len(hit):
        return title
    r = hit.iloc[0]
    title += f": Spearman ρ = {_rho(r['spearman'])}"
    if section.resamples:
        title += f" [{_rho(r['spearman_lo'])}, {_rho(r['spearman_hi'])}]"
    return title + f" ({int(r['models'])} models)"


def _texts(section: NaturalSection) -> dict[str, str]:
    """The section's sentences."""
    cond = ", ".join(label(c) for c in section.conditions)
    dens = [label(c) for c in section.densities]
    out = {
        "intro": (
            "mIoU (%) under natural shift next to the Cityscapes-C figures of Table 5 (clean, "
            "mPC = the mean over the corruptions, rPC = mPC / clean in %), one row per model: "
            f"{cond}; natural mean: the mean over these conditions"
            + (f" ({' and '.join(dens)}: the mean over its densities, below)" if dens else "")
            + ". Each natural condition is "
            "scored on its own images with the evaluated dataset's classes; natural cells are "
            "not part of mPC."
        ),
    }
    if section.resamples:
        out["intro"] += (
            f" ± : half-width of the 95% image-level percentile bootstrap interval "
            f"({section.resamples} resamples of each image set), as in Table 5; bounds in "
            "natural.csv (X_lo, X_hi)."
        )
        caveat = rstats.few_images_caveat(section.images)
        if caveat:
            out["intro"] += " " + caveat
    if section.densities:
        out["densities"] = (
            "mIoU (%) per density; Foggy Cityscapes' β is the attenuation coefficient of its "
            "simulated fog (Sakaridis et al. 2018): 0.005, 0.01, 0.02, denser to the right."
        )
    corr = section.correlation
    if corr is not None and len(corr):
        n = int(corr["models"].iloc[0])
        step = 12 / (n * (n * n - 1))
        text = (
            f"Spearman's rank correlation ρ across the {n} models between synthetic robustness "
            "(mPC, rPC) and natural robustness (the natural mean and each condition's mIoU): "
            "+1 when the models rank the same under both, −1 when the order is reversed, near "
            f"0 when the ranks are unrelated. With {n} models ρ moves in steps of {step:.2g} "
            "(without ties)."
        )
        if section.resamples:
            text += (
                f" 95% interval: percentile bootstrap over images ({section.resamples} "
                "resamples): in each resample every model's figures are recomputed on the same "
                "resampled images (paired: the Cityscapes images for mPC and rPC, each natural "
                "set's own images for its mIoU), then ρ. It reflects the choice of images "
                f"only, not the choice of models; with {n} models it is wide: read its sign "
                "at most."
            )
            undefined = corr[corr["undefined"] > 0]
            if len(undefined):
                text += " ρ is undefined (every model tied) in some resamples, left out of the " + (
                    "interval: "
                    + "; ".join(
                        f"{_corr_name(r)}: {int(r['undefined'])} of {int(r['resamples'])}"
                        for r in undefined.to_dict("records")
                    )
                    + "."
                )
        else:
            text += " `report --ci` adds its 95% bootstrap interval over images."
        if corr["spearman"].isna().any():
            text += " –: ρ undefined (every model has the same value)."
        out["correlation"] = text
    return out


def _corr_name(rec: Mapping[str, object]) -> str:
    nat = str(rec["natural"])
    return f"{rec['synthetic']} with {'natural mean' if nat == NATURAL_MEAN else label(nat)}"


def natural_markdown(section: NaturalSection, level: int = 2, figure: str | None = None) -> str:
    """The section in Markdown (``level``: its heading level; ``figure``: the scatter plot's
    PNG, relative to the page)."""
    h = "#" * level
    texts = _texts(section)
    labels = section.labels()
    md = [
        f"{h} Synthetic vs natural shift",
        "",
        texts["intro"],
        "",
        frame_markdown(section.main_frame(), "model", labels),
        "",
    ]
    for condition in section.densities:
        md += [
            f"{h}# {md_escape(label(condition))} by density",
            "",
            frame_markdown(
                section.density_frame(condition), "model", {**labels, condition: "Mean"}
            ),
            "",
            texts["densities"],
            "",
        ]
    md += [f"{h}# Rank correlation (Spearman)", ""]
    if section.correlation is not None and len(section.correlation):
        headers, rows = correlation_rows(section)
        md += [markdown_table(headers, rows), "", texts["correlation"], ""]
    if figure is not None:
        md += [f"![Natural mean against mPC]({figure})", ""]
    md += [*(f"- {md_escape(n)}" for n in section.notes), ""] if section.notes else []
    return "\n".join(md)


def natural_html(section: NaturalSection, level: int = 2, figure: str | None = None) -> str:
    """The section as HTML (as :func:`natural_markdown`)."""
    e = html.escape
    texts = _texts(section)
    labels = section.labels()
    parts = [
        f"<h{level}>Synthetic vs natural shift</h{level}>",
        f"<p>{e(texts['intro'])}</p>",
        frame_html(section.main_frame(), "model", labels),
    ]
    for condition in section.densities:
        parts += [
            f"<h{level + 1}>{e(label(condition))} by density</h{level + 1}>",
            frame_html(section.density_frame(condition), "model", {**labels, condition: "Mean"}),
            f'<p class="note">{e(texts["densities"])}</p>',
        ]
    parts.append(f"<h{level + 1}>Rank correlation (Spearman)</h{level + 1}>")
    if section.correlation is not None and len(section.correlation):
        parts += [
            html_table(*correlation_rows(section)),
            f'<p class="note">{e(texts["correlation"])}</p>',
        ]
    if figure is not None:
        parts.append(f'<p><img src="{e(figure)}" alt="Natural mean against mPC"></p>')
    parts += [f'<p class="note">{e(n)}</p>' for n in section.notes]
    return "\n".join(parts) + "\n"
