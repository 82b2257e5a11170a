"""``robustseg report``: a paper-style report of runs (SegFormer, Xie et al. 2021, Table 5)."""

from __future__ import annotations

import html
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import check_dir, claim_dir
from robustbench_seg.progress import Progress
from robustbench_seg.report import figures, tables

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
) -> ReportResult:
    """Render a paper-style report of one or more run directories.

    Writes ``table5.{md,tex,csv,html}`` (published rows + one row per run), per-run severity
    tables, ``cd.{md,csv}`` (with a baseline), Figure 7 style severity curves (PNG, PDF), per-run
    class-IoU heatmaps, optionally a qualitative grid, and ``index.md`` / ``index.html``.

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

    Returns:
        The files written and the warnings.

    Raises:
        RobustSegError: A path that is not a run directory, an unknown reference, a baseline
            that covers other cells, or bad qualitative settings.
    """
    out = Path(out)
    if not owned:
        check_dir(out, "report", recognise=_is_report)
    if qualitative < 0:
        raise RobustSegError(f"--qualitative must be >= 0, got {qualitative}")
    conditions = figures.parse_conditions(qualitative_corruptions) if qualitative else []
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

    lock = None if owned else claim_dir(out, "report", recognise=_is_report)
    try:
        return _write_report(out, run_list, loaded, base, in_runs, t5, ref, qualitative,
                             conditions, cityscapes_root, erf_dir, title, progress)  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _is_report(out: Path) -> bool:
    """An earlier report from before output folders were marked."""
    return (out / "index.md").is_file() and (out / "tables" / "table5.csv").is_file()


def _write_report(out, run_list, loaded, base, in_runs, t5, ref, qualitative, conditions,
                  cityscapes_root, erf_dir, title, progress) -> ReportResult:  # fmt: skip
    for sub, patterns in _OWN_FILES.items():
        (out / sub).mkdir(exist_ok=True)
        for pattern in patterns:  # files of an earlier report that this one may not rewrite
            for old in (out / sub).glob(pattern):
                old.unlink()
    result = ReportResult(out, out / "index.md", out / "index.html", table5=t5, title=title)

    def write(rel: str, text: str) -> Path:
        path = out / rel
        path.write_text(text, encoding="utf-8")
        result.tables.append(path)
        return path

    write("tables/table5.md", tables.table5_markdown(t5))
    write("tables/table5.tex", tables.table5_latex(t5))
    write("tables/table5.html", tables.table5_html(t5))
    t5.frame.to_csv(out / "tables/table5.csv", index=False)
    result.tables.append(out / "tables/table5.csv")
    cd = None
    if base is not None:
        cd = tables.cd_frame(run_list, base)
        write("tables/cd.md", tables.frame_markdown(cd, "model", _cd_labels(cd)) + "\n")
        cd.to_csv(out / "tables/cd.csv", index=False)
        result.tables.append(out / "tables/cd.csv")

    shown = loaded if base is not None and not in_runs else run_list
    slugs: set[str] = set()
    per_run = []
    for run in shown:
        slug = _slug(run.name, slugs)
        sev = tables.severity_frame(run)
        write(
            f"tables/severity_{slug}.md",
            tables.frame_markdown(sev, "corruption", _SEV_LABELS) + "\n",
        )
        sev.to_csv(out / f"tables/severity_{slug}.csv", index=False)
        result.tables.append(out / f"tables/severity_{slug}.csv")
        tables.class_iou_frame(run).to_csv(
            out / f"tables/class_iou_{slug}.csv", index_label="class"
        )
        result.tables.append(out / f"tables/class_iou_{slug}.csv")
        per_run.append((run, slug, sev))

    colors = figures.model_colors([r.name for r in shown])
    steps = 1 + len(shown) + (1 if qualitative else 0)
    with Progress(steps, "report", unit="fig", enabled=progress) as bar:
        result.figures += figures.plot_severity_curves(
            shown, out / "figures/severity_curves", colors
        )
        bar.update()
        for run, slug, _ in per_run:
            result.figures.append(
                figures.plot_class_iou(run, out / f"figures/class_iou_{slug}.png")
            )
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
            dest = out / sub / name
            shutil.copyfile(erf_dir / name, dest)
            (result.tables if sub == "tables" else result.figures).append(dest)
        erf_frame = erf_table(erf_dir / "erf.csv")
    result.erf = erf_frame
    result.index_md.write_text(_index_md(result, shown, per_run, cd, qual), encoding="utf-8")
    result.index_html.write_text(_index_html(result, shown, per_run, cd, qual), encoding="utf-8")
    return result


_OWN_FILES = {
    "tables": ("table5.*", "cd.*", "severity_*.*", "class_iou_*.csv", "erf.csv"),
    "figures": ("severity_curves.*", "class_iou_*.png", "qualitative.png", "erf.*"),
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


def _run_bits(run: tables.Run) -> str:
    return _run_line(run).split("): ", 1)[1].replace("`", "")


def _run_line(run: tables.Run) -> str:
    cfg = run.config
    bits = [f"`{run.path}`"]
    if cfg:
        bits.append(f"{cfg.get('num_images', '?')} {cfg.get('split', '')} images")
        bits.append(
            f"inference {cfg.get('inference', '?')}"
            + (f" {cfg.get('crop')}/{cfg.get('stride')}" if cfg.get("inference") == "slide" else "")
        )
        bits.append(f"weights {cfg.get('weights') or 'none recorded (random init or a module)'}")
    return f"- **{run.name}** (`{run.model}`): " + ", ".join(bits)


def _index_md(result: ReportResult, shown, per_run, cd, qual) -> str:
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
            "(100 = as robust as the baseline; lower is better). [CSV](tables/cd.csv)",
            "",
        ]
    md += [
        "## mIoU against severity (Figure 7 style)",
        "",
        "![mIoU against severity](figures/severity_curves.png)",
        "",
        "[PDF](figures/severity_curves.pdf)",
        "",
    ]
    for run, slug, sev in per_run:
        md += [
            f"## {run.name}",
            "",
            f"mIoU (%) per corruption and severity ([CSV](tables/severity_{slug}.csv)):",
            "",
            tables.frame_markdown(sev, "corruption", _SEV_LABELS),
            "",
            f"![Per-class IoU of {run.name}](figures/class_iou_{slug}.png)",
            "",
        ]
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
        md += ["## Left out", "", *(f"- {w}" for w in result.warnings), ""]
    return "\n".join(md)


def _index_html(result: ReportResult, shown, per_run, cd, qual) -> str:
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
        *(f"<li><b>{e(r.name)}</b> ({e(r.model)}): {e(_run_bits(r))}</li>" for r in shown),
        "</ul>",
        "<h2>Table 5: mIoU under corruption</h2>",
        tables.table5_html(t5),
    ]
    if cd is not None:
        parts += [
            "<h2>Corruption degradation (CD, %)</h2>",
            tables.frame_html(cd, "model", _cd_labels(cd)),
            '<p class="note">CD per corruption = sum over severities of (1 - mIoU) / the same for '
            "the baseline (100 = as robust as the baseline; lower is better).</p>",
        ]
    parts += [
        "<h2>mIoU against severity (Figure 7 style)</h2>",
        '<p><img src="figures/severity_curves.png" alt="mIoU against severity"></p>',
    ]
    for run, slug, sev in per_run:
        parts += [
            f"<h2>{e(run.name)}</h2>",
            "<p>mIoU (%) per corruption and severity.</p>",
            tables.frame_html(sev, "corruption", _SEV_LABELS),
            f'<p><img src="figures/class_iou_{slug}.png" alt="Per-class IoU of {e(run.name)}"></p>',
        ]
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
