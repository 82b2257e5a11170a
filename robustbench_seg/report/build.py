"""``robustseg report``: a paper-style report of runs (SegFormer, Xie et al. 2021, Table 5)."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import (
    check_dir,
    claim_dir,
    write_text_atomic,
)
from robustbench_seg.progress import Progress
from robustbench_seg.report import figures, tables
from robustbench_seg.report import natural as rnatural
from robustbench_seg.report import sections as rsections
from robustbench_seg.report import statistics as rstats
from robustbench_seg.report.sections import ERF_FILES, WORST_LABELS, ReportWarning, erf_table
from robustbench_seg.stats import DEFAULT_RESAMPLES

__all__ = ["ReportResult", "ReportWarning", "build_report", "erf_table"]


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
            name: rstats.worst_decile_summary(w)[list(WORST_LABELS)] for name, w in worst.items()
        },
        left_out=left_out,
        caveat=rstats.few_images_caveat(len(data[shown[0].name].image_ids)),
        data=data,
    )
    return t5, cd, st


def _write_report(out, run_list, shown, t5, cd, st, nat, qualitative, conditions,
                  cityscapes_root, erf_dir, title, progress) -> ReportResult:  # fmt: skip
    sections = list(rsections.SECTIONS)
    _own_folders(out, sections)
    result = ReportResult(out, out / "index.md", out / "index.html", table5=t5, title=title)
    slugs: set[str] = set()
    per_run = []
    for run in shown:
        sev = tables.severity_frame(run) if st is None else st.severity[run.name]
        per_run.append((run, _slug(run.name, slugs), sev))
    ctx = rsections.Context(
        out, result, list(shown), t5, cd=cd, st=st, nat=nat, qualitative=qualitative,
        conditions=conditions, cityscapes_root=cityscapes_root, erf_dir=erf_dir,
        per_run=per_run, colors=figures.model_colors([r.name for r in shown]),
    )  # fmt: skip
    applied = [s for s in sections if s.applies(ctx)]
    with Progress(len(applied), "report", unit="section", enabled=progress) as bar:
        for section in applied:
            written = ctx.written[section.name] = list(section.files(ctx))
            for path in written:
                (result.tables if path.parent.name == "tables" else result.figures).append(path)
            bar.update()
    write_text_atomic(result.index_md, _index_md(ctx, applied))
    write_text_atomic(result.index_html, _index_html(ctx, applied))
    return result


def _own_folders(out: Path, sections: Sequence[rsections.Section]) -> None:
    """The report's folders (``tables/``, ``figures/``) as real folders of ``out``, without the
    files of an earlier report that this one may not rewrite: those the ``sections`` own. A link
    in a folder's place (planted in an earlier report) is replaced by a folder: nothing is
    written or removed where it points."""
    owned = rsections.owned_files(sections)
    for sub in dict.fromkeys(["tables", "figures", *(PurePosixPath(g).parts[0] for g in owned)]):
        folder = out / sub
        if folder.is_symlink():
            folder.unlink()
        folder.mkdir(exist_ok=True)
    for pattern in owned:
        for old in out.glob(pattern):
            old.unlink()


def _index_md(ctx: rsections.Context, sections: Sequence[rsections.Section]) -> str:
    """``index.md``: the heading, then the sections' fragments in list order."""
    # No date on the page: the same runs give the same report, byte for byte (when the runs
    # were made is in their timing.json).
    head = [
        f"# {ctx.result.title}",
        "",
        "Made by `robustseg report`. mIoU in percent; each corruption column is the mean "
        "over its severities (SegFormer, Xie et al. 2021, Table 5). Tables also as "
        "[LaTeX](tables/table5.tex), [CSV](tables/table5.csv) (full precision) and "
        "[HTML](index.html).",
        "",
    ]
    return "\n".join(head + [f for f in (s.markdown(ctx) for s in sections) if f])


def _index_html(ctx: rsections.Context, sections: Sequence[rsections.Section]) -> str:
    """``index.html``: the page's head and heading, then the sections' fragments in list order."""
    e = html.escape
    title = ctx.result.title
    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
        "<p>mIoU in percent; each corruption column is the mean over its severities (SegFormer, "
        'Xie et al. 2021, Table 5). Also as <a href="tables/table5.tex">LaTeX</a>, '
        '<a href="tables/table5.csv">CSV</a> and <a href="index.md">Markdown</a>.</p>',
    ]
    body = [f for f in (s.html(ctx) for s in sections) if f]
    return "\n".join([*head, *body, "</body>", "</html>", ""])
