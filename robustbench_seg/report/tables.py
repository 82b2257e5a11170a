"""Paper-style tables from run directories (SegFormer, Xie et al. 2021, Table 5)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from corruptions.protocol import protocol_severities
from corruptions.registry import BENCHMARK, CORRUPTIONS
from robustbench_seg import metrics
from robustbench_seg.compare import check_images
from robustbench_seg.data.cityscapes import CLASS_NAMES
from robustbench_seg.errors import RobustSegError
from robustbench_seg.results.cells import CLEAN, NATURAL, Cell
from robustbench_seg.runs import ImageSet, RunInfo, read_results, summary_frame

__all__ = [
    "CATEGORY_ORDER",
    "REFERENCES",
    "Run",
    "Table5",
    "cd_frame",
    "class_iou_frame",
    "corruption_degradation_table",
    "fmt",
    "frame_html",
    "frame_markdown",
    "half_width",
    "html_table",
    "load_reference",
    "load_runs",
    "markdown_table",
    "md_escape",
    "ordered_corruptions",
    "run_summary",
    "severity_frame",
    "table5",
    "table5_html",
    "table5_latex",
    "table5_markdown",
]

CATEGORY_ORDER = ("blur", "noise", "digital", "weather")  # Table 5 column groups
REFERENCES = {"segformer-table5": "segformer_table5.csv"}
# The paper's abbreviated column headers (Table 5), and the three extra corruptions.
SHORT = {
    "motion_blur": "Motion",
    "defocus_blur": "Defoc",
    "glass_blur": "Glass",
    "gaussian_blur": "Gauss",
    "gaussian_noise": "Gauss",
    "impulse_noise": "Impul",
    "shot_noise": "Shot",
    "speckle_noise": "Speck",
    "brightness": "Bright",
    "contrast": "Contr",
    "saturate": "Satur",
    "jpeg_compression": "JPEG",
    "snow": "Snow",
    "spatter": "Spatt",
    "fog": "Fog",
    "frost": "Frost",
    "zoom_blur": "Zoom",
    "elastic_transform": "Elastic",
    "pixelate": "Pixel",
}
DASH = "–"  # a missing value in Markdown / HTML
DAGGER = "†"  # marks published rows


# ----------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One run directory, read back.

    Attributes:
        path: The run directory.
        name: Display name, unique within a report (the model name, plus the directory name
            when two runs share a model).
        model: The model name recorded in ``results.csv``.
        results: ``results.csv`` (one row per cell and class; IoU/mIoU as fractions).
        info: Its record, ``run.json`` (``None`` when missing or unreadable).
    """

    path: Path
    name: str
    model: str
    results: pd.DataFrame
    info: RunInfo | None = None

    @property
    def config(self) -> dict[str, Any]:
        """``run.json``'s ``config`` (empty when ``run.json`` is missing or unreadable)."""
        return self.info.config if self.info is not None else {}

    @property
    def cells(self) -> pd.DataFrame:
        """One row per cell: ``corruption``, ``category``, ``severity``, ``miou`` (fraction)."""
        return self.results.drop_duplicates("cell").reset_index(drop=True)

    def corruption_cells(self) -> set[tuple[str, int]]:
        """The (corruption, severity) cells, clean and natural-shift cells left out."""
        cells = [Cell.parse(str(c)) for c in self.cells["cell"]]
        return {(str(c.corruption), c.severity) for c in cells if c.in_mpc}


def _unique_names(models: list[str], paths: list[Path]) -> list[str]:
    names = list(models)
    for model in set(models):
        idx = [i for i, m in enumerate(models) if m == model]
        if len(idx) < 2:
            continue
        # Tag with as many trailing path parts as it takes to tell the runs apart.
        for depth in range(1, 1 + max(len(paths[i].resolve().parts) for i in idx)):
            tags = ["/".join(paths[i].resolve().parts[-depth:]) for i in idx]
            if len(set(tags)) == len(tags):
                break
        for i, tag in zip(idx, tags, strict=True):
            names[i] = f"{model} ({tag})"
    return names


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Read run directories; runs of the same model are told apart by their directory names.

    Args:
        paths: Run directories (each with ``results.csv``, as written by ``evaluate``).

    Returns:
        The runs, in the given order.

    Raises:
        RobustSegError: A path that is not a run directory, or the same directory twice.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise RobustSegError("no run directories given")
    seen: dict[Path, Path] = {}
    for p in paths:
        if p.resolve() in seen:
            raise RobustSegError(f"run directory {p} is given twice")
        seen[p.resolve()] = p
    read = [read_results(p) for p in paths]
    names = _unique_names([r[0] for r in read], paths)
    return [Run(p, n, m, df, info) for p, n, (m, df, info) in zip(paths, names, read, strict=True)]


# ----------------------------------------------------------------------------- reference


def load_reference(reference: str | Path) -> pd.DataFrame | None:
    """Published rows: ``model``, ``clean``, one column per corruption (mIoU %), ``mPC``, ``rPC``.

    mPC and rPC are not part of the published CSV: they are computed here from its columns
    (mean of the corruption columns; rPC = mPC / clean, in percent).

    Args:
        reference: ``"segformer-table5"`` (shipped with the package), ``"none"``, or a CSV file
            with the same columns.

    Returns:
        The rows, or None for ``"none"``.

    Raises:
        RobustSegError: An unknown name or an unreadable file.
    """
    if str(reference) == "none":
        return None
    if str(reference) in REFERENCES:
        src = resources.files("robustbench_seg.report").joinpath(
            "reference", REFERENCES[str(reference)]
        )
        with resources.as_file(src) as path:
            df = pd.read_csv(path, comment="#")
    else:
        path = Path(reference)
        if path.suffix != ".csv" or not path.is_file():
            raise RobustSegError(
                f"unknown reference {str(reference)!r}; "
                f"use {', '.join(REFERENCES)}, none or a CSV file"
            )
        try:
            df = pd.read_csv(path, comment="#")
        except (OSError, ValueError) as exc:
            raise RobustSegError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    corr = [c for c in df.columns if c in CORRUPTIONS]
    if "model" not in df.columns or "clean" not in df.columns or not corr:
        raise RobustSegError(
            f"reference {reference}: expected columns model, clean and corruption names"
        )
    df = df[["model", "clean", *corr]].copy()
    df["mPC"] = df[corr].mean(axis=1)
    df["rPC"] = 100 * df["mPC"] / df["clean"]
    return df


# ----------------------------------------------------------------------------- Table 5


@dataclass
class Table5:
    """The Table 5 data and what the renderers need.

    Attributes:
        frame: ``model``, ``source`` (``run``, ``baseline`` or ``published``), ``clean``, one
            column per corruption (mean over severities), ``mPC``, ``rPC`` (all mIoU %), and
            ``mCD`` (%, with a baseline); with intervals (``report --ci``) each value column
            ``X`` is followed by ``X_lo`` and ``X_hi`` (NaN for published rows).
        corruptions: The corruption columns, grouped by category in Table 5 order.
        notes: Footnotes.
    """

    frame: pd.DataFrame
    corruptions: list[str]
    notes: list[str]

    @property
    def metrics(self) -> list[str]:
        """The summary columns after the corruptions."""
        return [c for c in ("mPC", "rPC", "mCD") if c in self.frame.columns]

    @property
    def value_columns(self) -> list[str]:
        """``clean``, the corruptions and the summary columns, in column order."""
        return ["clean", *self.corruptions, *self.metrics]

    def groups(self) -> list[tuple[str, list[str]]]:
        """(category, its corruption columns) in column order."""
        return [
            (cat, [c for c in self.corruptions if CORRUPTIONS[c].category == cat])
            for cat in CATEGORY_ORDER
            if any(CORRUPTIONS[c].category == cat for c in self.corruptions)
        ]


def ordered_corruptions(names: Sequence[str] | set[str]) -> list[str]:
    """Corruption names grouped Blur / Noise / Digital / Weather, Table 5 order in each group."""
    present = set(names)
    order = [*BENCHMARK, *(c for c in CORRUPTIONS if c not in BENCHMARK)]
    return [
        c
        for cat in CATEGORY_ORDER
        for c in order
        if c in present and CORRUPTIONS[c].category == cat
    ]


def run_summary(run: Run) -> dict[str, float]:
    """Clean mIoU, each corruption's mean over severities, mPC and rPC (all %) of one run."""
    row = summary_frame(run.results).iloc[0].to_dict()
    row.pop("model")
    return {k: float(v) for k, v in row.items()}


def _protocol_note(run: Run) -> str | None:
    if not run.corruption_cells():
        return f"{run.name}: no corruption cells, so no mPC or rPC."
    odd = []
    for corruption, g in run.cells[run.cells["corruption"] != CLEAN].groupby("corruption"):
        sev = tuple(sorted(int(s) for s in g["severity"]))
        if corruption in BENCHMARK and sev != protocol_severities(corruption):
            odd.append(f"{corruption} {','.join(map(str, sev))}")
    missing = [c for c in BENCHMARK if c not in set(run.cells["corruption"])]
    parts = []
    if odd:
        parts.append(f"severities differ from the Cityscapes-C protocol ({'; '.join(odd)})")
    if missing:
        parts.append(
            f"{len(missing)} of the 16 benchmark corruptions are missing, so its mPC is "
            "not comparable"
        )
    return f"{run.name}: {' and '.join(parts)}." if parts else None


def _check_same_images(run: Run, baseline: Run) -> None:
    """CD compares errors image set against image set: both runs must have seen the same images."""
    a, b = (r.info.images if r.info is not None else ImageSet() for r in (run, baseline))
    unknown = [r.path for r, i in ((run, a), (baseline, b)) if None in i[:3]]
    if unknown:
        raise RobustSegError(
            f"cannot tell which images {unknown[0]} was evaluated on (its run.json lacks "
            "split/num_images/images_sha256); mCD needs runs over the same images"
        )
    if a[:3] != b[:3]:  # split, count, names_sha256
        raise RobustSegError(
            f"baseline {baseline.path} was evaluated on other images than run {run.path} "
            f"({b.count} vs {a.count} images of {b.split}/{a.split}, image "
            "lists differ); mCD needs runs over the same images"
        )
    # the same file names with other pixels (content digests, where both runs record one)
    check_images((f"baseline {baseline.path}", baseline.info), (f"run {run.path}", run.info),
                 "mCD needs runs over the same images")  # fmt: skip


def corruption_degradation_table(runs: Sequence[Run], baseline: Run) -> dict[str, dict[str, float]]:
    """CD per corruption (%) of each run against ``baseline``, keyed by run name then corruption.

    Raises:
        RobustSegError: A run whose corruption cells or images differ from the baseline's.
    """
    base = baseline.cells
    out: dict[str, dict[str, float]] = {}
    for run in runs:
        _check_same_images(run, baseline)
        mine, theirs = run.corruption_cells(), baseline.corruption_cells()
        if mine != theirs:
            only_run = sorted(f"{c}-{s}" for c, s in mine - theirs)
            only_base = sorted(f"{c}-{s}" for c, s in theirs - mine)
            what = []
            if only_run:
                what.append(f"missing in the baseline: {_few(only_run)}")
            if only_base:
                what.append(f"missing in the run: {_few(only_base)}")
            raise RobustSegError(
                f"baseline {baseline.path} does not cover the same cells as run {run.path} "
                f"({'; '.join(what)}); mCD needs the same corruptions and severities"
            )
        cells = run.cells
        cds = {}
        for corruption in ordered_corruptions(c for c, _ in mine):
            r = cells[cells["corruption"] == corruption]
            b = base[base["corruption"] == corruption]
            cds[corruption] = 100 * metrics.corruption_degradation(
                dict(zip(r["severity"], r["miou"], strict=True)),
                dict(zip(b["severity"], b["miou"], strict=True)),
            )
        out[run.name] = cds
    return out


def _few(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def table5(
    runs: Sequence[Run], reference: pd.DataFrame | None = None, baseline: Run | None = None
) -> Table5:
    """Table 5: published rows (if any), then one row per run (and the baseline, if not a run).

    Args:
        runs: The runs.
        reference: Published rows from :func:`load_reference`, or None.
        baseline: The reference run for corruption degradation (adds an ``mCD`` column).

    Returns:
        The table.

    Raises:
        RobustSegError: A run whose cells differ from the baseline's.
    """
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    if reference is not None:
        for rec in reference.to_dict("records"):
            rows.append(
                {
                    "model": rec["model"],
                    "source": "published",
                    **{k: v for k, v in rec.items() if k != "model"},
                }
            )
        notes.append(
            f"{DAGGER} Published (SegFormer, Xie et al. 2021, Table 5); mPC and rPC are not "
            "published and are computed here from the 16 corruption columns (rPC = mPC / clean)."
        )
    shown = list(runs)
    if baseline is not None and all(r.path.resolve() != baseline.path.resolve() for r in runs):
        shown.append(baseline)
    for i, run in enumerate(shown):
        src = "run" if i < len(runs) else "baseline"
        rows.append({"model": run.name, "source": src, **run_summary(run)})
        note = _protocol_note(run)
        if note:
            notes.append(note)
    frame = pd.DataFrame(rows)
    if baseline is not None:
        cds = corruption_degradation_table(shown, baseline)
        frame["mCD"] = [
            metrics.mean_corruption_degradation(cds[r["model"]])
            if r["source"] != "published"
            else np.nan
            for r in rows
        ]
        notes.append(
            f"mCD: mean corruption degradation against {baseline.name} (= 100), "
            "CD = sum over severities of (1 - mIoU) / the same for the baseline"
            + ("; published rows have no per-severity numbers" if reference is not None else "")
            + "."
        )
    corr = ordered_corruptions(
        [c for c in frame.columns if c in CORRUPTIONS and frame[c].notna().any()]
    )
    cols = ["model", "source", "clean", *corr, "mPC", "rPC"] + (
        ["mCD"] if baseline is not None else []
    )
    for c in cols:
        if c not in frame.columns:
            frame[c] = np.nan
    return Table5(frame[cols].reset_index(drop=True), corr, notes)


def cd_frame(runs: Sequence[Run], baseline: Run) -> pd.DataFrame:
    """Corruption degradation (%) per run and corruption, with mCD; the baseline is 100."""
    shown = list(runs)
    if all(r.path.resolve() != baseline.path.resolve() for r in runs):
        shown.append(baseline)
    cds = corruption_degradation_table(shown, baseline)
    frame = pd.DataFrame([{"model": name, **v} for name, v in cds.items()])
    frame["mCD"] = [metrics.mean_corruption_degradation(v) for v in cds.values()]
    return frame


# ----------------------------------------------------------------------------- per run


def severity_frame(run: Run) -> pd.DataFrame:
    """mIoU (%) of every corruption x severity of one run.

    Returns:
        One row per corruption (clean first, then Table 5 order): ``corruption``, ``category``,
        one column per severity (``"1"``..``"5"``), ``mean``. The clean row has only ``mean``.
    """
    cells = run.cells
    cells = cells[cells["category"] != NATURAL]  # natural shift: its own section
    sevs = sorted({int(s) for s in cells["severity"] if int(s) > 0})
    rows = []
    clean = cells[cells["corruption"] == CLEAN]
    if len(clean):
        rows.append(
            {"corruption": CLEAN, "category": CLEAN, "mean": 100 * float(clean["miou"].iloc[0])}
        )
    for corruption in ordered_corruptions(set(cells["corruption"]) - {CLEAN}):
        g = cells[cells["corruption"] == corruption]
        row: dict[str, Any] = {
            "corruption": corruption,
            "category": CORRUPTIONS[corruption].category,
        }
        for s, m in zip(g["severity"], g["miou"], strict=True):
            row[str(int(s))] = 100 * float(m)
        row["mean"] = 100 * float(g["miou"].mean())
        rows.append(row)
    return pd.DataFrame(rows, columns=["corruption", "category", *map(str, sevs), "mean"])


def class_iou_frame(run: Run) -> pd.DataFrame:
    """Per-class IoU (%) of one run: classes x (clean, corruptions), averaged over severities.

    Classes with no pixels in a cell (IoU undefined) are left out of that cell's average.
    """
    df = run.results
    cols = {}
    clean = df[df["corruption"] == CLEAN]
    if len(clean):
        cols["clean"] = clean.groupby("class", sort=False)["iou"].mean()
    for corruption in ordered_corruptions(set(df["corruption"]) - {CLEAN}):
        g = df[df["corruption"] == corruption]
        cols[corruption] = g.groupby("class", sort=False)["iou"].mean()  # skips NaN
    frame = 100 * pd.DataFrame(cols)
    order = [c for c in CLASS_NAMES if c in frame.index] + [
        c for c in frame.index if c not in CLASS_NAMES
    ]
    return frame.loc[order]


# ----------------------------------------------------------------------------- rendering


def fmt(value: Any, digits: int = 1, missing: str = DASH) -> str:
    """A number at ``digits`` decimals (``missing`` for NaN / None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{float(value):.{digits}f}"


def half_width(point: float, lo: float, hi: float) -> float:
    """The half-width shown after ``±``: ``max(point - lo, hi - point)``, so that
    ``point ± half-width`` holds the whole (possibly asymmetric) interval ``[lo, hi]``; NaN when
    a bound is missing."""
    if any(v is None or math.isnan(float(v)) for v in (point, lo, hi)):
        return float("nan")
    return max(float(point) - float(lo), float(hi) - float(point))


def _interval_columns(frame: pd.DataFrame) -> set[str]:
    """The columns ``X`` of ``frame`` that come with ``X_lo`` and ``X_hi``."""
    cols = set(frame.columns)
    return {c for c in cols if f"{c}_lo" in cols and f"{c}_hi" in cols}


def _shown_columns(frame: pd.DataFrame, first: str) -> list[str]:
    """The displayed columns: ``X_lo`` / ``X_hi`` are shown as ``X``'s half-width."""
    hidden = {f"{c}{s}" for c in _interval_columns(frame) for s in ("_lo", "_hi")}
    return [c for c in frame.columns if c != first and c not in hidden]


def _half_width_text(rec: dict[str, Any], col: str, digits: int) -> str | None:
    """The half-width of ``col`` at ``digits`` decimals, None when ``rec`` has no bounds of it
    (or a missing one)."""
    if f"{col}_lo" not in rec:
        return None
    hw = half_width(rec[col], rec[f"{col}_lo"], rec[f"{col}_hi"])
    return None if math.isnan(hw) else fmt(hw, digits)


def _best(t: Table5, digits: int = 1) -> dict[str, float]:
    best = {}
    for col in t.value_columns:
        vals = t.frame[col].dropna()
        if len(vals):
            rounded = vals.astype(float).round(digits)
            best[col] = float(rounded.min() if col == "mCD" else rounded.max())
    return best


def _cells(t: Table5, bold: tuple[str, str], missing: str, pm: str) -> list[list[str]]:
    """Table 5's value cells at one decimal, the best per column in bold, and with intervals
    the half-width after ``pm`` (a format with ``{}``)."""
    best = _best(t)
    out = []
    for rec in t.frame.to_dict("records"):
        row = []
        for col in t.value_columns:
            v = rec[col]
            s = fmt(v, missing=missing)
            if s != missing and col in best and round(float(v), 1) == best[col]:
                s = f"{bold[0]}{s}{bold[1]}"
            hw = _half_width_text(rec, col, 1) if s != missing else None
            row.append(s if hw is None else s + pm.format(hw))
        out.append(row)
    return out


# Characters Markdown (GitHub's included: tables, strikethrough, math) may read as markup.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~&$])")


def md_escape(text: object) -> str:
    """``text`` as literal Markdown on one line: names (models, runs, cells, classes, images)
    shown as written, never as markup, a link or a table column; line breaks become spaces."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))


def _md_markup(cell: object) -> str:
    """A Markdown cell as is, on one line, its ``|`` escaped (it would end the cell)."""
    return " ".join(str(cell).splitlines()).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub-flavoured Markdown table; the first ``left`` columns left-aligned.

    The headers and the first ``left`` columns are text (names: escaped with
    :func:`md_escape`); the other cells are Markdown (numbers, ``**bold**``), with ``|``
    escaped so that every row keeps its columns.
    """
    esc = [[md_escape(c) if i < left else _md_markup(c) for i, c in enumerate(r)] for r in rows]
    rule = [":---" if i < left else "---:" for i in range(len(headers))]
    head = [md_escape(h) for h in headers]
    lines = ["| " + " | ".join(r) + " |" for r in [head, rule, *esc]]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table of text cells (escaped here), the first column as row headers."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "\n".join(
        f"<tr><th>{e(r[0])}</th>" + "".join(f"<td>{e(c)}</td>" for c in r[1:]) + "</tr>"
        for r in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _header_labels(t: Table5) -> list[str]:
    labels = ["Clean"]
    for cat, cols in t.groups():
        labels += [f"{cat.title()}: {SHORT[c]}" if i == 0 else SHORT[c] for i, c in enumerate(cols)]
    return labels + t.metrics


def _display_names(t: Table5, dagger: str) -> list[str]:
    return [
        f"{r['model']}{dagger}"
        if r["source"] == "published"
        else (f"{r['model']} (baseline)" if r["source"] == "baseline" else r["model"])
        for r in t.frame.to_dict("records")
    ]


def table5_markdown(t: Table5) -> str:
    """Table 5 in Markdown: one decimal, the best value per column in bold, notes below."""
    rows = [
        [n, *c]
        for n, c in zip(
            _display_names(t, DAGGER), _cells(t, ("**", "**"), DASH, " ± {}"), strict=True
        )
    ]
    text = markdown_table(["Model", *_header_labels(t)], rows)
    return text + "".join(f"\n\n{md_escape(n)}" for n in t.notes) + "\n"


def _tex(s: str) -> str:
    repl = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return (
        "".join(repl.get(ch, ch) for ch in s).replace(DAGGER, r"$^\dagger$").replace("±", r"$\pm$")
    )


def table5_latex(t: Table5) -> str:
    """Table 5 in LaTeX (booktabs) with the paper's grouped Blur/Noise/Digital/Weather header."""
    groups = t.groups()
    ncols = 2 + len(t.corruptions) + len(t.metrics)
    lines = [
        "% SegFormer (Xie et al. 2021) Table 5 style; needs \\usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\setlength{\tabcolsep}{3pt}",
        r"\begin{tabular}{l" + "c" * (ncols - 1) + "}",
        r"\toprule",
    ]
    top, rules, col = ["", ""], [], 3
    for cat, cols in groups:
        top.append(rf"\multicolumn{{{len(cols)}}}{{c}}{{{cat.title()}}}")
        rules.append(rf"\cmidrule(lr){{{col}-{col + len(cols) - 1}}}")
        col += len(cols)
    top += [""] * len(t.metrics)
    if groups:  # no corruption columns (a clean or natural-shift run): no group header
        lines.append(" & ".join(top) + r" \\")
        lines.append(" ".join(rules))
    heads = ["Method", "Clean", *(SHORT[c] for c in t.corruptions), *t.metrics]
    lines.append(" & ".join(heads) + r" \\")
    lines.append(r"\midrule")
    cells = _cells(t, (r"\textbf{", "}"), "--", r"{{\scriptsize$\pm${}}}")
    names = _display_names(t, DAGGER)
    sources = list(t.frame["source"])
    for i, (name, row) in enumerate(zip(names, cells, strict=True)):
        if i and sources[i - 1] == "published" and sources[i] != "published":
            lines.append(r"\midrule")
        lines.append(" & ".join([_tex(name), *row]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines.append(
        r"\caption{mIoU (\%) on Cityscapes-C: each corruption is the mean over its "
        r"severities. " + " ".join(_tex(n) for n in t.notes) + "}"
    )
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def table5_html(t: Table5) -> str:
    """Table 5 as an HTML ``<table>`` with the grouped header (no external CSS), notes below."""
    e = html.escape
    head1 = ['<th rowspan="2">Model</th>', '<th rowspan="2">Clean</th>']
    head1 += [f'<th colspan="{len(cols)}">{e(cat.title())}</th>' for cat, cols in t.groups()]
    head1 += [f'<th rowspan="2">{m}</th>' for m in t.metrics]
    head2 = [f'<th title="{e(c)}">{e(SHORT[c])}</th>' for c in t.corruptions]
    body = []
    for name, row in zip(
        _display_names(t, DAGGER),
        _cells(t, ("<strong>", "</strong>"), DASH, "<small> ± {}</small>"),
        strict=True,
    ):
        body.append(
            "<tr><th>" + e(name) + "</th>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
        )
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in t.notes)
    return (
        '<table class="table5">\n<thead>\n<tr>'
        + "".join(head1)
        + "</tr>\n<tr>"
        + "".join(head2)
        + "</tr>\n</thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>\n"
        + notes
        + "\n"
    )


def _frame_cells(
    frame: pd.DataFrame, first: str, digits: int | dict[str, int]
) -> tuple[list[str], list[tuple[str, list[tuple[str, str | None, bool]]]]]:
    """The shown columns and each row's label and cells ``(value, half-width or None, is
    text)``: text as is, numbers at ``digits`` decimals (one number, or per column; default 1),
    with the half-width where ``X_lo`` and ``X_hi`` exist (those two columns are not shown)."""
    cols = _shown_columns(frame, first)
    rows = []
    for r in frame.to_dict("records"):
        cells: list[tuple[str, str | None, bool]] = []
        for c in cols:
            if isinstance(r[c], str):
                cells.append((r[c], None, True))
                continue
            d = digits if isinstance(digits, int) else digits.get(c, 1)
            cells.append((fmt(r[c], d), _half_width_text(r, c, d), False))
        rows.append((str(r[first]), cells))
    return cols, rows


def frame_markdown(
    frame: pd.DataFrame,
    first: str,
    labels: dict[str, str] | None = None,
    digits: int | dict[str, int] = 1,
) -> str:
    """A frame as Markdown (``first``: the label column; numbers at ``digits`` decimals, NaN
    shown as a dash; a column ``X`` with ``X_lo`` and ``X_hi`` shown as ``value ± half-width``)."""
    labels = labels or {}
    cols, rows = _frame_cells(frame, first, digits)
    # Text columns (object, or pandas' string dtype) come first and are left-aligned (names:
    # markdown_table escapes them); a text cell further right is escaped here.
    left = 1 + sum(1 for c in cols if pd.api.types.is_string_dtype(frame[c]))
    body = [
        [
            name,
            *(
                (md_escape(v) if text and i + 1 >= left else v) if hw is None else f"{v} ± {hw}"
                for i, (v, hw, text) in enumerate(cells)
            ),
        ]
        for name, cells in rows
    ]
    return markdown_table([labels.get(first, first), *(labels.get(c, c) for c in cols)], body, left)


def frame_html(
    frame: pd.DataFrame,
    first: str,
    labels: dict[str, str] | None = None,
    digits: int | dict[str, int] = 1,
) -> str:
    """A frame as an HTML table (as :func:`frame_markdown`; the half-width in ``<small>``)."""
    labels = labels or {}
    e = html.escape
    cols, rows = _frame_cells(frame, first, digits)
    head = "<tr>" + "".join(f"<th>{e(labels.get(c, c))}</th>" for c in [first, *cols]) + "</tr>"
    body = []
    for name, cells in rows:
        tds = "".join(
            f"<td>{e(v)}</td>" if hw is None else f"<td>{e(v)}<small> ± {e(hw)}</small></td>"
            for v, hw, _ in cells
        )
        body.append(f"<tr><th>{e(name)}</th>{tds}</tr>")
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"
