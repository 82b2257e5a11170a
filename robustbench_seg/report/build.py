"""``robustseg report``: a paper-style report of runs (SegFormer, Xie et al. 2021, Table 5)."""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import (
    check_dir,
    claim_dir,
    copy_atomic,
    write_csv_atomic,
    write_text_atomic,
)
from robustbench_seg.progress import Progress
from robustbench_seg.report import figures, tables
from robustbench_seg.report import natural as rnatural
from robustbench_seg.report import statistics as rstats
from robustbench_seg.stats import DEFAULT_RESAMPLES

__all__ = ["ReportResult", "ReportWarning", "build_report"]


class ReportWarning(UserWarning):
    """Something left out of a report (e.g. the qualitative grid when a run saved no predictions)."""


@dataclass
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes:
        out: The report folder.
        index_md: ``index.md`` (tables inline, figures linked by relative path).
        index_html: ``index.html`` (the same, self-contained apart from the figure files).
        tables: Every table file written (Markdown, LaTeX, CSV, HTML).
        figures: Every figure file written (PNG, PDF).
        warnings: What was left out, and why (also issued as :class:`ReportWarning`).
        table5: The Table 5 data (``frame``: one row per model, mIoU %).
        erf: The ERF statistics shown (one row per model and stage), when ``erf`` was given.
        title: The pages' heading.
        calibration: With ``ci``: ECE, NLL, Brier per run and condition
            (``report.statistics.calibration_frame``).
        comparison: With ``ci`` and two or more runs: each run against the reference run
            (``report.statistics.comparison_frame``).
        worst_decile: With ``ci``: the worst decile of images of every cell of every run
            (``report.statistics.worst_decile_frame``).
        natural: When runs have natural-shift cells: the synthetic-vs-natural section
            (``report.natural.NaturalSection``: the table, and with three runs or more the
            Spearman correlations).
    """

    out: Path
    index_md: Path
    index_html: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    table5: tables.Table5 | None = None
    erf: Any = None
    title: str = "Robustness report (Cityscapes-C)"
    calibration: Any = None
    comparison: Any = None
    worst_decile: Any = None
    natural: Any = None


@dataclass
class _Statistics:
    """What ``--ci`` adds, computed before anything is written."""

    comparison: Any  # None with a single run
    reference: str  # the run the others are compared with
    calibration: Any
    calibration_shown: tuple[Any, dict[str, str], dict[str, int]]  # rstats.calibration_display
    calibration_md: str  # that table in Markdown
    reliability: dict[str, list[tuple[str, list[Any]]]]  # run name -> its diagrams' grid
    severity: dict[str, Any]  # run name -> severity table with intervals
    bands: dict[str, dict[str, tuple[float, float, float]]]  # run name -> cell -> interval
    worst: dict[str, Any]  # run name -> per-cell worst decile
    worst_shown: dict[str, Any]  # run name -> its worst decile per Table 5 column, as shown
    left_out: list[str]  # warnings (reliability corruptions no run has)
    caveat: str | None  # intervals from fewer than rstats.FEW_IMAGES images
    data: dict[str, Any]  # run name -> its RunStatistics


def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "run"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}_{k}", k + 1
    taken.add(slug)
    return slug


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border-top: 1px solid #ccc; border-bottom: 1px solid #ccc; padding: 0.25em 0.5em; }
td { text-align: right; font-variant-numeric: tabular-nums; }
thead th { border-bottom: 2px solid #444; }
tbody th { text-align: left; font-weight: normal; white-space: nowrap; }
img { max-width: 100%; border: 1px solid #eee; }
.note, .warning { font-size: 0.85em; color: #555; }
.warning { color: #a04000; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def build_report(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    baseline: str | Path | None = None,
    reference: str = "segformer-table5",
    qualitative: int = 0,
    qualitative_corruptions: Sequence[str] = figures.DEFAULT_QUALITATIVE,
    cityscapes_root: str | Path | None = None,
    erf: str | Path | None = None,
    title: str = "Robustness report (Cityscapes-C)",
    progress: bool = True,
    owned: bool = False,
    ci: bool = False,
    resamples: int | None = None,
    reliability_corruptions: Sequence[str] | None = None,
) -> ReportResult:
    """Render a paper-style report of one or more run directories.

    Writes ``table5.{md,tex,csv,html}`` (published rows + one row per run), per-run severity
    tables, ``cd.{md,csv}`` (with a baseline), Figure 7 style severity curves (PNG, PDF), per-run
    class-IoU heatmaps, optionally a qualitative grid, and ``index.md`` / ``index.html``.

    With ``ci`` every figure of the runs gets its 95% image-level bootstrap interval (Table 5,
    CD, the severity tables as ``value ± half-width``, ``X_lo`` / ``X_hi`` in the CSV files,
    bands on the severity curves), and the report adds the paired comparison of each run with
    the reference run (``comparison.{md,csv}``), the calibration table
    (``calibration.{md,csv}``), reliability diagrams (``figures/reliability_<run>.{png,pdf}``) and
    the worst decile of images per cell (``worst_decile.csv``, a table per run).

    Runs with natural-shift cells (``evaluate --natural``) add the synthetic-vs-natural section
    (``natural.{md,csv}``, ``figures/natural.{png,pdf}``): clean, mPC, rPC and the mIoU of each
    natural condition per run, and with three runs or more Spearman's rank correlation of mPC
    and rPC with the natural figures (``natural_correlation.csv``; its paired bootstrap
    interval with ``ci``). Natural cells are never Table 5 columns.

    Args:
        runs: Run directories written by ``evaluate`` (``results.csv``, ``run.json``).
        out: The report folder (created; files of an earlier report are replaced).
        baseline: A run directory for corruption degradation (adds mCD); it must cover the
            same corruption cells as every run. Shown as a row if it is not one of ``runs``.
        reference: ``"segformer-table5"`` (published rows), ``"none"``, or a CSV file.
        qualitative: Images in the qualitative grid (0: no grid). Needs the predictions the
            runs saved (``evaluate --save-predictions``, default 3) and the dataset.
        qualitative_corruptions: ``corruption-severity`` (or ``corruption``, severity 3) rows
            of the qualitative grid, after the clean row.
        cityscapes_root: Dataset root for the qualitative grid (default: the run's).
        erf: A folder written by ``robustseg erf`` (``erf.png``, ``erf.pdf``, ``erf.csv``): its
            grid and statistics become the report's ERF section.
        title: The pages' heading.
        progress: Show a progress bar.
        owned: The caller owns and locks ``out`` (``robustseg demo``); else ``out`` must be
            missing, empty or an earlier report (``io.claim_dir``), and is locked meanwhile.
        ci: Add the statistics (intervals, comparisons, calibration, worst decile); needs the
            runs' per-image data (runs of this robustseg's ``evaluate``).
        resamples: Bootstrap resamples of the images (default 1000, as ``summary.csv``); only
            with ``ci``.
        reliability_corruptions: Corruptions whose severities 1/3/5 get reliability diagrams,
            next to clean (default gaussian_noise, motion_blur, contrast, snow; those the runs
            lack are left out, with a warning); only with ``ci``.

    Returns:
        The files written and the warnings.

    Raises:
        RobustSegError: A path that is not a run directory, an unknown reference, a baseline
            that covers other cells, or bad qualitative settings; with ``ci``, a run without
            per-image data, or runs over other images or cells than the reference run;
            three runs or more with natural cells over other images or cells (the
            correlation).
    """
    out = Path(out)
    if not owned:
        check_dir(out, "report", recognise=_is_report)
    if qualitative < 0:
        raise RobustSegError(f"--qualitative must be >= 0, got {qualitative}")
    conditions = figures.parse_conditions(qualitative_corruptions) if qualitative else []
    if not ci and (resamples is not None or reliability_corruptions is not None):
        what = "--resamples" if resamples is not None else "--reliability-corruptions"
        raise RobustSegError(f"{what} only applies with --ci")
    if resamples is not None and resamples < 1:
        raise RobustSegError(f"--resamples must be >= 1, got {resamples}")
    reliability = rstats.parse_reliability(
        rstats.DEFAULT_RELIABILITY if reliability_corruptions is None else reliability_corruptions
    )
    ref = tables.load_reference(reference)
    erf_dir = None if erf is None else Path(erf)
    if erf_dir is not None:
        missing = [n for n in ERF_FILES if not (erf_dir / n).is_file()]
        if missing:
            raise RobustSegError(
                f"--erf {erf_dir} is not an `robustseg erf` output folder (missing "
                f"{', '.join(missing)})"
            )
    run_paths = [Path(p) for p in runs]
    if not run_paths:
        raise RobustSegError("no run directories given")
    in_runs = baseline is not None and any(
        Path(baseline).resolve() == p.resolve() for p in run_paths
    )
    loaded = tables.load_runs(
        run_paths + ([Path(baseline)] if baseline is not None and not in_runs else [])
    )
    run_list = loaded[: len(run_paths)]
    base = None
    if baseline is not None:
        base = next(r for r in loaded if r.path.resolve() == Path(baseline).resolve())
    t5 = tables.table5(run_list, ref, base)  # raises on a baseline with other cells
    shown = loaded if base is not None and not in_runs else run_list
    cd = tables.cd_frame(run_list, base) if base is not None else None
    st = None
    resamples = DEFAULT_RESAMPLES if resamples is None else resamples
    if ci:  # every refusal before anything is written
        t5, cd, st = _statistics(t5, cd, run_list, shown, base, reliability, resamples)
    nat = rnatural.natural_section(shown, st and st.data, resamples)

    lock = None if owned else claim_dir(out, "report", recognise=_is_report)
    try:
        return _write_report(out, run_list, shown, t5, cd, st, nat, qualitative, conditions,
                             cityscapes_root, erf_dir, title, progress)  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _is_report(out: Path) -> bool:
    """An earlier report from before output folders were marked."""
    return (out / "index.md").is_file() and (out / "tables" / "table5.csv").is_file()


def _statistics(t5, cd, run_list, shown, base, reliability, resamples):
    """Table 5 and CD with intervals, and the rest of what ``--ci`` adds."""
    data = rstats.load_run_statistics(shown)
    reference = base if base is not None else shown[0]
    if len(shown) > 1:
        rstats.check_same_images(shown, reference)
    # Once per run; paired with the baseline, which only adds the CD:* and mCD figures.
    base_st = data[base.name] if base is not None else None
    figs = {r.name: data[r.name].figures(base_st, resamples) for r in shown}
    cells = {r.name: data[r.name].cell_intervals(resamples) for r in shown}
    t5 = rstats.table5_intervals(t5, figs, len(data[shown[0].name].image_ids), resamples)
    if cd is not None:
        cd = rstats.cd_intervals(cd, figs)
    corruptions, left_out = rstats.reliability_corruptions(shown, data, reliability)
    calibration = rstats.calibration_frame(shown, data)
    cal, labels, digits = rstats.calibration_display(calibration)
    worst = {r.name: rstats.worst_decile_frame(r, data[r.name]) for r in shown}
    st = _Statistics(
        comparison=(
            rstats.comparison_frame(shown, reference, data, resamples) if len(shown) > 1 else None
        ),
        reference=reference.name,
        calibration=calibration,
        calibration_shown=(cal, labels, digits),
        calibration_md=tables.frame_markdown(cal, "corruption", labels, digits),
        reliability={r.name: rstats.reliability_grid(data[r.name], corruptions) for r in shown},
        severity={
            r.name: rstats.severity_intervals(tables.severity_frame(r), figs[r.name], cells[r.name])
            for r in shown
        },
        bands=cells,
        worst=worst,
        worst_shown={
            name: rstats.worst_decile_summary(w)[list(_WORST_LABELS)] for name, w in worst.items()
        },
        left_out=left_out,
        caveat=rstats.few_images_caveat(len(data[shown[0].name].image_ids)),
        data=data,
    )
    return t5, cd, st


def _write_report(out, run_list, shown, t5, cd, st, nat, qualitative, conditions,
                  cityscapes_root, erf_dir, title, progress) -> ReportResult:  # fmt: skip
    _own_folders(out)
    result = ReportResult(out, out / "index.md", out / "index.html", table5=t5, title=title)

    def write(rel: str, text: str) -> Path:
        path = write_text_atomic(out / rel, text)
        result.tables.append(path)
        return path

    def csv(rel: str, frame, **kwargs) -> Path:
        path = write_csv_atomic(out / rel, frame, **kwargs)
        result.tables.append(path)
        return path

    write("tables/table5.md", tables.table5_markdown(t5))
    write("tables/table5.tex", tables.table5_latex(t5))
    write("tables/table5.html", tables.table5_html(t5))
    csv("tables/table5.csv", t5.frame, index=False)
    if cd is not None:
        write("tables/cd.md", tables.frame_markdown(cd, "model", _cd_labels(cd)) + "\n")
        csv("tables/cd.csv", cd, index=False)
    if st is not None:
        _write_statistics(st, result, write, csv)
    if nat is not None:
        result.natural = nat
        write("tables/natural.md", rnatural.natural_markdown(nat, figure="../figures/natural.png"))
        csv("tables/natural.csv", nat.frame, index=False)
        if nat.correlation is not None:
            csv("tables/natural_correlation.csv", nat.correlation, index=False)

    slugs: set[str] = set()
    per_run = []
    for run in shown:
        slug = _slug(run.name, slugs)
        sev = tables.severity_frame(run) if st is None else st.severity[run.name]
        write(
            f"tables/severity_{slug}.md",
            tables.frame_markdown(sev, "corruption", _SEV_LABELS) + "\n",
        )
        csv(f"tables/severity_{slug}.csv", sev, index=False)
        csv(f"tables/class_iou_{slug}.csv", tables.class_iou_frame(run), index_label="class")
        per_run.append((run, slug, sev))

    colors = figures.model_colors([r.name for r in shown])
    steps = 1 + len(shown) + (1 if qualitative else 0) + (1 if nat is not None else 0)
    with Progress(steps, "report", unit="fig", enabled=progress) as bar:
        result.figures += figures.plot_severity_curves(
            shown, out / "figures/severity_curves", colors, None if st is None else st.bands
        )
        bar.update()
        if nat is not None:
            result.figures += figures.plot_natural(
                nat.frame, out / "figures/natural", colors, rnatural.figure_title(nat)
            )
            bar.update()
        for run, slug, _ in per_run:
            result.figures.append(
                figures.plot_class_iou(run, out / f"figures/class_iou_{slug}.png")
            )
            if st is not None:
                result.figures += figures.plot_reliability(
                    run.name, st.reliability[run.name], out / f"figures/reliability_{slug}",
                    colors[run.name],
                )  # fmt: skip
            bar.update()
        qual = None
        if qualitative:
            qual, warns = figures.plot_qualitative(
                shown,
                out / "figures/qualitative.png",
                num_images=qualitative,
                conditions=conditions,
                cityscapes_root=cityscapes_root,
            )
            for w in warns:
                warnings.warn(w, ReportWarning, stacklevel=2)
            result.warnings += warns
            if qual is not None:
                result.figures.append(qual)
            bar.update()

    erf_frame = None
    if erf_dir is not None:
        for name in ERF_FILES:
            sub = "tables" if name.endswith(".csv") else "figures"
            dest = copy_atomic(erf_dir / name, out / sub / name)
            (result.tables if sub == "tables" else result.figures).append(dest)
        erf_frame = erf_table(erf_dir / "erf.csv")
    result.erf = erf_frame
    write_text_atomic(result.index_md, _index_md(result, shown, per_run, cd, qual, st))
    write_text_atomic(result.index_html, _index_html(result, shown, per_run, cd, qual, st))
    return result


def _own_folders(out: Path) -> None:
    """``tables/`` and ``figures/`` as real folders of ``out``, without the files of an earlier
    report that this one may not rewrite. A link in their place (planted in an earlier report)
    is replaced by a folder: nothing is written or removed where it points."""
    for sub, patterns in _OWN_FILES.items():
        folder = out / sub
        if folder.is_symlink():
            folder.unlink()
        folder.mkdir(exist_ok=True)
        for pattern in patterns:
            for old in folder.glob(pattern):
                old.unlink()


def _write_statistics(st: _Statistics, result: ReportResult, write, csv) -> None:
    """The ``--ci`` tables: comparison, calibration, worst decile."""
    import pandas as pd

    for w in st.left_out:
        warnings.warn(w, ReportWarning, stacklevel=4)
    result.warnings += st.left_out
    if st.comparison is not None:
        note = _COMPARISON_NOTE.format(reference=tables.md_escape(st.reference)) + _caveat(st)
        write("tables/comparison.md", _comparison_md(st.comparison) + "\n" + note + "\n")
        csv("tables/comparison.csv", st.comparison, index=False)
        result.comparison = st.comparison
    write("tables/calibration.md", f"{st.calibration_md}\n\n{_CALIBRATION_NOTE}\n")
    csv("tables/calibration.csv", st.calibration, index=False)
    result.calibration = st.calibration
    worst = pd.concat(list(st.worst.values()), ignore_index=True)
    csv("tables/worst_decile.csv", worst, index=False)
    result.worst_decile = worst


_OWN_FILES = {
    "tables": (
        "table5.*",
        "cd.*",
        "severity_*.*",
        "class_iou_*.csv",
        "erf.csv",
        "comparison.*",
        "calibration.*",
        "worst_decile.*",
        "natural.*",
        "natural_correlation.*",
    ),
    "figures": (
        "severity_curves.*",
        "class_iou_*.png",
        "qualitative.png",
        "erf.*",
        "reliability_*.*",
        "natural.*",
    ),
}
ERF_FILES = ("erf.png", "erf.pdf", "erf.csv")
_ERF_LABELS = {
    "model": "Model",
    "stage": "Stage",
    "share_1pct": "in central 1% (%)",
    "share_5pct": "in central 5% (%)",
    "share_25pct": "in central 25% (%)",
    "side50_frac": "50% square (% of side)",
    "side90_frac": "90% square (% of side)",
}


def erf_table(csv_path: str | Path):
    """The ERF statistics of ``erf.csv`` as shown in the report (shares and sides in %)."""
    import pandas as pd

    frame = pd.read_csv(csv_path)
    missing = [c for c in _ERF_LABELS if c not in frame.columns]
    if missing:
        raise RobustSegError(f"{csv_path} lacks the ERF columns {', '.join(missing)}")
    frame = frame[list(_ERF_LABELS)].copy()
    for col in list(_ERF_LABELS)[2:]:
        frame[col] = 100.0 * frame[col]
    frame["stage"] = frame["stage"].astype(str)
    return frame


_ERF_NOTE = (
    "Gradient of the central output unit of each stage w.r.t. the input, |.| summed over RGB, "
    "averaged over images (Luo et al. 2016), log scale. Table: share of the ERF mass in the "
    "central square covering 1/5/25% of the image, and the side of the smallest central "
    "square holding 50%/90% of it, as a percentage of the image's shorter side."
)
_SEV_LABELS = {"corruption": "Corruption", "category": "Category", "mean": "Mean"}


def _cd_labels(cd) -> dict[str, str]:
    return {
        "model": "Model",
        **{c: tables.SHORT.get(c, c) for c in cd.columns if c in tables.SHORT},
    }


def _run_bits(run: tables.Run) -> list[str]:
    """What the list of runs says of a run after its directory (plain text)."""
    cfg = run.config
    if not cfg:
        return []
    return [
        f"{cfg.get('num_images', '?')} {cfg.get('split', '')} images",
        f"inference {cfg.get('inference', '?')}"
        + (f" {cfg.get('crop')}/{cfg.get('stride')}" if cfg.get("inference") == "slide" else ""),
        _weights_text(cfg),
    ]


def _weights_text(cfg: dict[str, Any]) -> str:
    """The weights a run used: the spec given, and the SHA-256 of the state dict it ran with
    (``run.json``'s ``weights_sha256``: recorded for every model, a builder's own weights and
    random init included)."""
    spec, sha = cfg.get("weights"), cfg.get("weights_sha256")
    if sha:
        return f"weights {spec or 'as built (no weights file given)'}, state sha256 {sha}"
    return f"weights {spec or 'none recorded (random init or a module)'}"


def _run_line(run: tables.Run) -> str:
    e = tables.md_escape
    bits = [_md_code(run.path), *(e(b) for b in _run_bits(run))]
    return f"- **{e(run.name)}** ({_md_code(run.model)}): " + ", ".join(bits)


def _run_html(run: tables.Run) -> str:
    e = html.escape
    bits = ", ".join([str(run.path), *_run_bits(run)])
    return f"<li><b>{e(run.name)}</b> ({e(run.model)}): {e(bits)}</li>"


def _md_code(text: object) -> str:
    """``text`` as a Markdown code span on one line, fenced by more backticks than it holds."""
    text = " ".join(str(text).splitlines())
    fence = "`" * (1 + max((len(m) for m in re.findall("`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_COMPARISON_NOTE = (
    "Difference = run - {reference}, per figure of Table 5 and natural-shift condition (mIoU "
    "%; rPC in %), with its 95% "
    "paired-bootstrap interval; p: two-sided paired-bootstrap p-value of no difference; "
    "p (Holm): adjusted with Holm's step-down method over the figures of the pair; * "
    "significant at 5% after the adjustment."
)
_CALIBRATION_NOTE = (
    "Pixel-level calibration over the non-ignored pixels (Guo et al. 2017): ECE, the expected "
    "calibration error over 15 equal-width bins of the top softmax probability (%); NLL, the "
    "mean negative log-likelihood of the true class (nats per pixel); Brier, the mean "
    "multi-class Brier score per pixel (0..2). Each corruption: the mean over its severities; "
    "mean: over the corruptions. Lower is better."
)
_RELIABILITY_NOTE = (
    "Reliability diagrams, one figure per run: a row per chosen corruption, clean and its "
    "severities 1/3/5; per confidence bin, the pixel accuracy at the bin's mean confidence "
    "(line), the diagonal of perfect calibration (dashed) and the bin's share of the pixels "
    "(grey bars)."
)
_WORST_NOTE = (
    "Per-image mIoU (over the classes present in the image or predicted), in %: the mean of "
    "the worst 10% of images (ceil(N/10) images), the 10th percentile, and the worst image "
    "(over the corruption's severities, with its cell). Each corruption: the mean over its "
    "severities. Every cell in the CSV."
)
_WORST_LABELS = {
    "corruption": "Corruption",
    "worst_image": "Worst image",
    "worst_cell": "its cell",
    "worst_image_miou": "its mIoU",
    "worst_decile": "Worst 10% (mean)",
    "p10": "10th percentile",
}


def _caveat(st: _Statistics | None) -> str:
    """`` <caveat>`` after the text of a table with intervals from few images, else empty."""
    return f" {st.caveat}" if st is not None and st.caveat else ""


def _comparison_tables(frame) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """Per compared pair: (run, reference, headers, rows as text)."""
    out = []
    for (run, ref), g in frame.groupby(["run", "against"], sort=False):
        headers = ["Figure", run, ref, "Difference", "95% interval", "p", "p (Holm)"]
        rows = [
            [
                r["figure"],
                tables.fmt(r["a"]),
                tables.fmt(r["b"]),
                f"{r['difference']:+.1f}",
                f"[{r['difference_lo']:+.1f}, {r['difference_hi']:+.1f}]",
                tables.fmt(r["p_value"], 3),
                tables.fmt(r["p_holm"], 3) + (" *" if r["significant"] else ""),
            ]
            for r in g.to_dict("records")
        ]
        out.append((run, ref, headers, rows))
    return out


def _comparison_md(frame) -> str:
    parts = []
    for run, ref, headers, rows in _comparison_tables(frame):
        title = f"### {tables.md_escape(run)} against {tables.md_escape(ref)}"
        parts += [title, "", tables.markdown_table(headers, rows), ""]
    return "\n".join(parts)


def _comparison_html(frame) -> str:
    e = html.escape
    parts = []
    for run, ref, headers, rows in _comparison_tables(frame):
        parts.append(f"<h3>{e(run)} against {e(ref)}</h3>\n{tables.html_table(headers, rows)}")
    return "\n".join(parts) + "\n"


def _index_md(result: ReportResult, shown, per_run, cd, qual, st) -> str:
    e = tables.md_escape
    t5 = result.table5
    # No date on the page: the same runs give the same report, byte for byte (when the runs
    # were made is in their timing.json).
    md = [
        f"# {result.title}",
        "",
        "Made by `robustseg report`. mIoU in percent; each corruption column is the mean "
        "over its severities (SegFormer, Xie et al. 2021, Table 5). Tables also as "
        "[LaTeX](tables/table5.tex), [CSV](tables/table5.csv) (full precision) and "
        "[HTML](index.html).",
        "",
        "## Runs",
        "",
        *(_run_line(r) for r in shown),
        "",
        "## Table 5: mIoU under corruption",
        "",
        tables.table5_markdown(t5),
    ]
    if cd is not None:
        md += [
            "## Corruption degradation (CD, %)",
            "",
            tables.frame_markdown(cd, "model", _cd_labels(cd)),
            "",
            "CD per corruption = sum over severities of (1 - mIoU) / the same for the baseline "
            "(100 = as robust as the baseline; lower is better)." + _caveat(st) + " "
            "[CSV](tables/cd.csv)",
            "",
        ]
    if result.natural is not None:
        md += [
            rnatural.natural_markdown(result.natural, figure="figures/natural.png"),
            "[CSV](tables/natural.csv)"
            + (
                ", [correlations (CSV)](tables/natural_correlation.csv)"
                if result.natural.correlation is not None
                else ""
            )
            + ", [PDF](figures/natural.pdf)",
            "",
        ]
    if st is not None and st.comparison is not None:
        md += [
            "## Paired comparison",
            "",
            _COMPARISON_NOTE.format(reference=e(st.reference))
            + _caveat(st)
            + " [CSV](tables/comparison.csv)",
            "",
            _comparison_md(st.comparison),
        ]
    md += [
        "## mIoU against severity (Figure 7 style)",
        "",
        "![mIoU against severity](figures/severity_curves.png)",
        "",
        "[PDF](figures/severity_curves.pdf)"
        + ("; shaded: 95% bootstrap intervals of each cell." if st is not None else ""),
        "",
    ]
    if st is not None:
        md += [
            "## Calibration under corruption",
            "",
            st.calibration_md,
            "",
            _CALIBRATION_NOTE + " [CSV](tables/calibration.csv)",
            "",
            _RELIABILITY_NOTE,
            "",
        ]
        for run, slug, _ in per_run:
            md += [
                f"![Reliability diagrams of {e(run.name)}](figures/reliability_{slug}.png)",
                "",
                f"[PDF](figures/reliability_{slug}.pdf)",
                "",
            ]
    for run, slug, sev in per_run:
        md += [
            f"## {e(run.name)}",
            "",
            "mIoU (%) per corruption and severity"
            + (" (± the half-width of the 95% interval, as in Table 5)" if st is not None else "")
            + f" ([CSV](tables/severity_{slug}.csv)):"
            + _caveat(st),
            "",
            tables.frame_markdown(sev, "corruption", _SEV_LABELS),
            "",
        ]
        if st is not None:
            md += [
                "Worst decile of images ([CSV](tables/worst_decile.csv)):",
                "",
                tables.frame_markdown(st.worst_shown[run.name], "corruption", _WORST_LABELS),
                "",
                _WORST_NOTE,
                "",
            ]
        md += [f"![Per-class IoU of {e(run.name)}](figures/class_iou_{slug}.png)", ""]
    if qual is not None:
        md += ["## Qualitative results", "", "![Qualitative results](figures/qualitative.png)", ""]
    if result.erf is not None:
        md += [
            "## Effective receptive fields (Figure 3 style)",
            "",
            "![Effective receptive fields](figures/erf.png)",
            "",
            _ERF_NOTE + " [CSV](tables/erf.csv), [PDF](figures/erf.pdf)",
            "",
            tables.frame_markdown(result.erf, "model", _ERF_LABELS),
            "",
        ]
    if result.warnings:
        md += ["## Left out", "", *(f"- {e(w)}" for w in result.warnings), ""]
    return "\n".join(md)


def _index_html(result: ReportResult, shown, per_run, cd, qual, st) -> str:
    e = html.escape
    t5 = result.table5
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{e(result.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(result.title)}</h1>",
        "<p>mIoU in percent; each corruption column is the mean over its severities (SegFormer, "
        'Xie et al. 2021, Table 5). Also as <a href="tables/table5.tex">LaTeX</a>, '
        '<a href="tables/table5.csv">CSV</a> and <a href="index.md">Markdown</a>.</p>',
        "<h2>Runs</h2>",
        "<ul>",
        *(_run_html(r) for r in shown),
        "</ul>",
        "<h2>Table 5: mIoU under corruption</h2>",
        tables.table5_html(t5),
    ]
    if cd is not None:
        parts += [
            "<h2>Corruption degradation (CD, %)</h2>",
            tables.frame_html(cd, "model", _cd_labels(cd)),
            '<p class="note">CD per corruption = sum over severities of (1 - mIoU) / the same for '
            f"the baseline (100 = as robust as the baseline; lower is better).{e(_caveat(st))}</p>",
        ]
    if result.natural is not None:
        parts.append(rnatural.natural_html(result.natural, figure="figures/natural.png"))
    if st is not None and st.comparison is not None:
        parts += [
            "<h2>Paired comparison</h2>",
            f'<p class="note">{e(_COMPARISON_NOTE.format(reference=st.reference))}'
            f"{e(_caveat(st))}</p>",
            _comparison_html(st.comparison),
        ]
    parts += [
        "<h2>mIoU against severity (Figure 7 style)</h2>",
        '<p><img src="figures/severity_curves.png" alt="mIoU against severity"></p>',
    ]
    if st is not None:
        cal, labels, digits = st.calibration_shown
        parts += [
            '<p class="note">Shaded: 95% bootstrap intervals of each cell.</p>',
            "<h2>Calibration under corruption</h2>",
            tables.frame_html(cal, "corruption", labels, digits),
            f'<p class="note">{e(_CALIBRATION_NOTE)}</p>',
            f'<p class="note">{e(_RELIABILITY_NOTE)}</p>',
            *(
                f'<p><img src="figures/reliability_{slug}.png" '
                f'alt="Reliability diagrams of {e(run.name)}"></p>'
                for run, slug, _ in per_run
            ),
        ]
    for run, slug, sev in per_run:
        parts += [
            f"<h2>{e(run.name)}</h2>",
            "<p>mIoU (%) per corruption and severity"
            + (" (± the half-width of the 95% interval, as in Table 5)" if st is not None else "")
            + "."
            + e(_caveat(st))
            + "</p>",
            tables.frame_html(sev, "corruption", _SEV_LABELS),
        ]
        if st is not None:
            parts += [
                "<p>Worst decile of images.</p>",
                tables.frame_html(st.worst_shown[run.name], "corruption", _WORST_LABELS),
                f'<p class="note">{e(_WORST_NOTE)}</p>',
            ]
        parts.append(
            f'<p><img src="figures/class_iou_{slug}.png" alt="Per-class IoU of {e(run.name)}"></p>'
        )
    if qual is not None:
        parts += [
            "<h2>Qualitative results</h2>",
            '<p><img src="figures/qualitative.png" alt="Qualitative results"></p>',
        ]
    if result.erf is not None:
        parts += [
            "<h2>Effective receptive fields (Figure 3 style)</h2>",
            '<p><img src="figures/erf.png" alt="Effective receptive fields"></p>',
            f'<p class="note">{e(_ERF_NOTE)}</p>',
            tables.frame_html(result.erf, "model", _ERF_LABELS),
        ]
    if result.warnings:
        parts += [
            "<h2>Left out</h2>",
            "<ul>",
            *(f'<li class="warning">{e(w)}</li>' for w in result.warnings),
            "</ul>",
        ]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
