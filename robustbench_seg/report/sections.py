"""The sections of a report, in page order: each writes its files and its part of the index pages.

A section is one object with a common protocol (:class:`Section`): its ``name``, the files it
may write (``owns``: globs relative to the report folder), whether it ``applies`` to this report,
``files`` (write them, return the paths), and its ``markdown`` / ``html`` fragment of
``index.md`` / ``index.html``. :data:`SECTIONS` drives :func:`~robustbench_seg.report.build_report`:
the files are written section by section in list order, the index pages are the fragments in list
order, and the files an earlier report may have left (removed before a re-run writes anew) are
the union of the sections' ``owns``. Adding a section is one class here (or in its own module)
and one entry in :data:`SECTIONS`.

The parts of the per-run block (a heading per run, then its severity table, worst decile and
class-IoU heatmap) follow the same protocol, per run (:class:`RunPart`, :data:`RUN_PARTS`).
"""

from __future__ import annotations

import html
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import copy_atomic, write_csv_atomic, write_text_atomic
from robustbench_seg.report import figures, tables
from robustbench_seg.report import natural as rnatural

__all__ = [
    "RUN_PARTS",
    "SECTIONS",
    "Context",
    "ReportWarning",
    "RunPart",
    "Section",
    "erf_table",
    "owned_files",
]


class ReportWarning(UserWarning):
    """Something left out of a report (e.g. the qualitative grid when a run saved no predictions)."""


@dataclass
class Context:
    """What the sections of one report read, and where they write.

    Attributes:
        out: The report folder.
        result: The :class:`~robustbench_seg.report.build.ReportResult` being filled (the
            sections set its ``natural``, ``comparison``, ``calibration``, ``worst_decile``,
            ``erf`` and add to ``warnings``).
        shown: The runs shown (the runs, and the baseline when it is not one of them).
        t5: The Table 5 data (``tables.Table5``).
        cd: The CD frame (with a baseline), else None.
        st: What ``--ci`` adds (``build._Statistics``), else None.
        nat: The natural-shift section data (``natural.NaturalSection``), else None.
        qualitative: Images in the qualitative grid (0: no grid).
        conditions: The qualitative grid's rows after clean.
        cityscapes_root: Dataset root for the qualitative grid.
        erf_dir: A ``robustseg erf`` output folder, else None.
        per_run: Per shown run: (run, its file-name slug, its severity table as shown).
        colors: Run name -> its colour in the figures.
        written: Section name -> the files its ``files`` wrote (filled as they are written).
    """

    out: Path
    result: Any
    shown: list[Any]
    t5: Any
    cd: Any = None
    st: Any = None
    nat: Any = None
    qualitative: int = 0
    conditions: list[Any] = field(default_factory=list)
    cityscapes_root: str | Path | None = None
    erf_dir: Path | None = None
    per_run: list[tuple[Any, str, Any]] = field(default_factory=list)
    colors: dict[str, Any] = field(default_factory=dict)
    written: dict[str, list[Path]] = field(default_factory=dict)

    def write(self, rel: str, text: str) -> Path:
        """Write ``text`` to ``out/rel`` (atomically)."""
        return write_text_atomic(self.out / rel, text)

    def csv(self, rel: str, frame, **kwargs) -> Path:
        """Write ``frame`` as CSV to ``out/rel`` (atomically)."""
        return write_csv_atomic(self.out / rel, frame, **kwargs)

    def warn(self, message: str) -> None:
        """Record what was left out (the report's "Left out" list) and issue it."""
        warnings.warn(message, ReportWarning, stacklevel=5)
        self.result.warnings.append(message)


class _Part(ABC):
    """What a report section and a per-run part share: a name, the files they own, whether they
    apply, and the writing of their files (see :class:`Section`)."""

    name: ClassVar[str]
    owns: ClassVar[tuple[str, ...]] = ()

    def applies(self, ctx: Context) -> bool:
        """Whether it is part of this report (default: always)."""
        return True

    def files(self, ctx: Context) -> list[Path]:
        """Write its files; return their paths (default: none)."""
        return []


class Section(_Part):
    """One section of a report (subclass it, and list an instance in :data:`SECTIONS`).

    Attributes:
        name: A short unique name.
        owns: Globs, relative to the report folder (``tables/...`` or ``figures/...``), of every
            file the section may write: what an earlier report's section left is removed before
            a report is written anew.
    """

    @abstractmethod
    def markdown(self, ctx: Context) -> str:
        """The section's part of ``index.md`` (after every section's ``files``; "": none)."""

    @abstractmethod
    def html(self, ctx: Context) -> str:
        """The section's part of ``index.html`` (after every section's ``files``; "": none)."""


class RunPart(_Part):
    """One part of each run's block of the report (list an instance in :data:`RUN_PARTS`).

    ``applies``, ``files`` and ``owns`` as for :class:`Section` (``files`` writes the part's
    files of every run); the fragments are per run.
    """

    @abstractmethod
    def markdown(self, ctx: Context, run: Any, slug: str, sev: Any) -> str:
        """The part's Markdown for ``run`` (after every section's ``files``)."""

    @abstractmethod
    def html(self, ctx: Context, run: Any, slug: str, sev: Any) -> str:
        """The part's HTML for ``run`` (after every section's ``files``)."""


def owned_files(sections: Iterable[Section | RunPart]) -> tuple[str, ...]:
    """Every glob the ``sections`` own (each once, in list order): what a re-run cleans up."""
    seen: dict[str, None] = {}
    for section in sections:
        seen.update(dict.fromkeys(section.owns))
    return tuple(seen)


def _lines(*parts: str) -> str:
    return "\n".join(parts)


def _caveat(st: Any) -> str:
    """`` <caveat>`` after the text of a table with intervals from few images, else empty."""
    return f" {st.caveat}" if st is not None and st.caveat else ""


def _md_code(text: object) -> str:
    """``text`` as a Markdown code span on one line, fenced by more backticks than it holds."""
    text = " ".join(str(text).splitlines())
    fence = "`" * (1 + max((len(m) for m in re.findall("`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# ------------------------------------------------------------------------------------ runs


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


class Runs(Section):
    """The list of runs: directory, model, images, inference, weights."""

    name = "runs"

    def markdown(self, ctx: Context) -> str:
        e = tables.md_escape

        def line(run: tables.Run) -> str:
            bits = [_md_code(run.path), *(e(b) for b in _run_bits(run))]
            return f"- **{e(run.name)}** ({_md_code(run.model)}): " + ", ".join(bits)

        return _lines("## Runs", "", *(line(r) for r in ctx.shown), "")

    def html(self, ctx: Context) -> str:
        e = html.escape

        def item(run: tables.Run) -> str:
            bits = ", ".join([str(run.path), *_run_bits(run)])
            return f"<li><b>{e(run.name)}</b> ({e(run.model)}): {e(bits)}</li>"

        return _lines("<h2>Runs</h2>", "<ul>", *(item(r) for r in ctx.shown), "</ul>")


# --------------------------------------------------------------------------------- Table 5


class Table5(Section):
    """Table 5: mIoU under corruption (published rows, one row per run)."""

    name = "table5"
    owns = ("tables/table5.*",)

    def files(self, ctx: Context) -> list[Path]:
        return [
            ctx.write("tables/table5.md", tables.table5_markdown(ctx.t5)),
            ctx.write("tables/table5.tex", tables.table5_latex(ctx.t5)),
            ctx.write("tables/table5.html", tables.table5_html(ctx.t5)),
            ctx.csv("tables/table5.csv", ctx.t5.frame, index=False),
        ]

    def markdown(self, ctx: Context) -> str:
        return _lines("## Table 5: mIoU under corruption", "", tables.table5_markdown(ctx.t5))

    def html(self, ctx: Context) -> str:
        return _lines("<h2>Table 5: mIoU under corruption</h2>", tables.table5_html(ctx.t5))


# -------------------------------------------------------------------------------------- CD


def _cd_labels(cd) -> dict[str, str]:
    return {
        "model": "Model",
        **{c: tables.SHORT.get(c, c) for c in cd.columns if c in tables.SHORT},
    }


_CD_NOTE = (
    "CD per corruption = sum over severities of (1 - mIoU) / the same for the baseline "
    "(100 = as robust as the baseline; lower is better)."
)


class CorruptionDegradation(Section):
    """Corruption degradation against the baseline (with ``baseline``)."""

    name = "cd"
    owns = ("tables/cd.*",)

    def applies(self, ctx: Context) -> bool:
        return ctx.cd is not None

    def files(self, ctx: Context) -> list[Path]:
        table = tables.frame_markdown(ctx.cd, "model", _cd_labels(ctx.cd))
        return [
            ctx.write("tables/cd.md", table + "\n"),
            ctx.csv("tables/cd.csv", ctx.cd, index=False),
        ]

    def markdown(self, ctx: Context) -> str:
        return _lines(
            "## Corruption degradation (CD, %)",
            "",
            tables.frame_markdown(ctx.cd, "model", _cd_labels(ctx.cd)),
            "",
            _CD_NOTE + _caveat(ctx.st) + " [CSV](tables/cd.csv)",
            "",
        )

    def html(self, ctx: Context) -> str:
        return _lines(
            "<h2>Corruption degradation (CD, %)</h2>",
            tables.frame_html(ctx.cd, "model", _cd_labels(ctx.cd)),
            f'<p class="note">{html.escape(_CD_NOTE + _caveat(ctx.st))}</p>',
        )


# --------------------------------------------------------------------------- natural shift


class NaturalShift(Section):
    """Synthetic against natural shift (runs with natural-shift cells)."""

    name = "natural"
    owns = ("tables/natural.*", "tables/natural_correlation.*", "figures/natural.*")

    def applies(self, ctx: Context) -> bool:
        return ctx.nat is not None

    def files(self, ctx: Context) -> list[Path]:
        nat = ctx.nat
        ctx.result.natural = nat
        paths = [
            ctx.write(
                "tables/natural.md", rnatural.natural_markdown(nat, figure="../figures/natural.png")
            ),
            ctx.csv("tables/natural.csv", nat.frame, index=False),
        ]
        if nat.correlation is not None:
            paths.append(ctx.csv("tables/natural_correlation.csv", nat.correlation, index=False))
        paths += figures.plot_natural(
            nat.frame, ctx.out / "figures/natural", ctx.colors, rnatural.figure_title(nat)
        )
        return paths

    def markdown(self, ctx: Context) -> str:
        nat = ctx.nat
        correlation = nat.correlation is not None
        return _lines(
            rnatural.natural_markdown(nat, figure="figures/natural.png"),
            "[CSV](tables/natural.csv)"
            + (", [correlations (CSV)](tables/natural_correlation.csv)" if correlation else "")
            + ", [PDF](figures/natural.pdf)",
            "",
        )

    def html(self, ctx: Context) -> str:
        return rnatural.natural_html(ctx.nat, figure="figures/natural.png")


# ------------------------------------------------------------------------------ comparison

_COMPARISON_NOTE = (
    "Difference = run - {reference}, per figure of Table 5 and natural-shift condition (mIoU "
    "%; rPC in %), with its 95% "
    "paired-bootstrap interval; p: two-sided paired-bootstrap p-value of no difference; "
    "p (Holm): adjusted with Holm's step-down method over the figures of the pair; * "
    "significant at 5% after the adjustment."
)


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


class Comparison(Section):
    """Each run against the reference run, paired bootstrap (``ci``, two runs or more)."""

    name = "comparison"
    owns = ("tables/comparison.*",)

    def applies(self, ctx: Context) -> bool:
        return ctx.st is not None and ctx.st.comparison is not None

    def files(self, ctx: Context) -> list[Path]:
        st = ctx.st
        ctx.result.comparison = st.comparison
        note = _COMPARISON_NOTE.format(reference=tables.md_escape(st.reference)) + _caveat(st)
        return [
            ctx.write("tables/comparison.md", _comparison_md(st.comparison) + "\n" + note + "\n"),
            ctx.csv("tables/comparison.csv", st.comparison, index=False),
        ]

    def markdown(self, ctx: Context) -> str:
        st = ctx.st
        return _lines(
            "## Paired comparison",
            "",
            _COMPARISON_NOTE.format(reference=tables.md_escape(st.reference))
            + _caveat(st)
            + " [CSV](tables/comparison.csv)",
            "",
            _comparison_md(st.comparison),
        )

    def html(self, ctx: Context) -> str:
        e, st = html.escape, ctx.st
        return _lines(
            "<h2>Paired comparison</h2>",
            f'<p class="note">{e(_COMPARISON_NOTE.format(reference=st.reference))}'
            f"{e(_caveat(st))}</p>",
            _comparison_html(st.comparison),
        )


# ------------------------------------------------------------------------ severity curves


class SeverityCurves(Section):
    """mIoU against severity, Figure 7 style (bands of the 95% intervals with ``ci``)."""

    name = "severity_curves"
    owns = ("figures/severity_curves.*",)

    def files(self, ctx: Context) -> list[Path]:
        bands = None if ctx.st is None else ctx.st.bands
        return figures.plot_severity_curves(
            ctx.shown, ctx.out / "figures/severity_curves", ctx.colors, bands
        )

    def markdown(self, ctx: Context) -> str:
        return _lines(
            "## mIoU against severity (Figure 7 style)",
            "",
            "![mIoU against severity](figures/severity_curves.png)",
            "",
            "[PDF](figures/severity_curves.pdf)"
            + ("; shaded: 95% bootstrap intervals of each cell." if ctx.st is not None else ""),
            "",
        )

    def html(self, ctx: Context) -> str:
        parts = [
            "<h2>mIoU against severity (Figure 7 style)</h2>",
            '<p><img src="figures/severity_curves.png" alt="mIoU against severity"></p>',
        ]
        if ctx.st is not None:
            parts.append('<p class="note">Shaded: 95% bootstrap intervals of each cell.</p>')
        return _lines(*parts)


# ----------------------------------------------------------------------------- calibration

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


class Calibration(Section):
    """ECE, NLL and Brier per run and corruption, and reliability diagrams per run (``ci``)."""

    name = "calibration"
    owns = ("tables/calibration.*", "figures/reliability_*.*")

    def applies(self, ctx: Context) -> bool:
        return ctx.st is not None

    def files(self, ctx: Context) -> list[Path]:
        st = ctx.st
        for w in st.left_out:
            ctx.warn(w)
        ctx.result.calibration = st.calibration
        paths = [
            ctx.write("tables/calibration.md", f"{st.calibration_md}\n\n{_CALIBRATION_NOTE}\n"),
            ctx.csv("tables/calibration.csv", st.calibration, index=False),
        ]
        for run, slug, _ in ctx.per_run:
            paths += figures.plot_reliability(
                run.name, st.reliability[run.name], ctx.out / f"figures/reliability_{slug}",
                ctx.colors[run.name],
            )  # fmt: skip
        return paths

    def markdown(self, ctx: Context) -> str:
        e = tables.md_escape
        md = [
            "## Calibration under corruption",
            "",
            ctx.st.calibration_md,
            "",
            _CALIBRATION_NOTE + " [CSV](tables/calibration.csv)",
            "",
            _RELIABILITY_NOTE,
            "",
        ]
        for run, slug, _ in ctx.per_run:
            md += [
                f"![Reliability diagrams of {e(run.name)}](figures/reliability_{slug}.png)",
                "",
                f"[PDF](figures/reliability_{slug}.pdf)",
                "",
            ]
        return _lines(*md)

    def html(self, ctx: Context) -> str:
        e = html.escape
        cal, labels, digits = ctx.st.calibration_shown
        return _lines(
            "<h2>Calibration under corruption</h2>",
            tables.frame_html(cal, "corruption", labels, digits),
            f'<p class="note">{e(_CALIBRATION_NOTE)}</p>',
            f'<p class="note">{e(_RELIABILITY_NOTE)}</p>',
            *(
                f'<p><img src="figures/reliability_{slug}.png" '
                f'alt="Reliability diagrams of {e(run.name)}"></p>'
                for run, slug, _ in ctx.per_run
            ),
        )


# -------------------------------------------------------------------------- per-run parts

SEV_LABELS = {"corruption": "Corruption", "category": "Category", "mean": "Mean"}


class SeverityTable(RunPart):
    """mIoU per corruption and severity (± the half-width of the 95% interval with ``ci``)."""

    name = "severity"
    owns = ("tables/severity_*.*",)

    def files(self, ctx: Context) -> list[Path]:
        paths = []
        for _, slug, sev in ctx.per_run:
            paths += [
                ctx.write(
                    f"tables/severity_{slug}.md",
                    tables.frame_markdown(sev, "corruption", SEV_LABELS) + "\n",
                ),
                ctx.csv(f"tables/severity_{slug}.csv", sev, index=False),
            ]
        return paths

    @staticmethod
    def _intervals(ctx: Context) -> str:
        return (
            " (± the half-width of the 95% interval, as in Table 5)" if ctx.st is not None else ""
        )

    def markdown(self, ctx: Context, run: Any, slug: str, sev: Any) -> str:
        return _lines(
            "mIoU (%) per corruption and severity"
            + self._intervals(ctx)
            + f" ([CSV](tables/severity_{slug}.csv)):"
            + _caveat(ctx.st),
            "",
            tables.frame_markdown(sev, "corruption", SEV_LABELS),
            "",
        )

    def html(self, ctx: Context, run: Any, slug: str, sev: Any) -> str:
        return _lines(
            "<p>mIoU (%) per corruption and severity"
            + self._intervals(ctx)
            + "."
            + html.escape(_caveat(ctx.st))
            + "</p>",
            tables.frame_html(sev, "corruption", SEV_LABELS),
        )


_WORST_NOTE = (
    "Per-image mIoU (over the classes present in the image or predicted), in %: the mean of "
    "the worst 10% of images (ceil(N/10) images), the 10th percentile, and the worst image "
    "(over the corruption's severities, with its cell). Each corruption: the mean over its "
    "severities. Every cell in the CSV."
)
WORST_LABELS = {
    "corruption": "Corruption",
    "worst_image": "Worst image",
    "worst_cell": "its cell",
    "worst_image_miou": "its mIoU",
    "worst_decile": "Worst 10% (mean)",
    "p10": "10th percentile",
}


class WorstDecile(RunPart):
    """The worst decile of images per corruption (``ci``); every cell of every run in the CSV."""

    name = "worst_decile"
    owns = ("tables/worst_decile.*",)

    def applies(self, ctx: Context) -> bool:
        return ctx.st is not None

    def files(self, ctx: Context) -> list[Path]:
        import pandas as pd

        worst = pd.concat(list(ctx.st.worst.values()), ignore_index=True)
        ctx.result.worst_decile = worst
        return [ctx.csv("tables/worst_decile.csv", worst, index=False)]

    def markdown(self, ctx: Context, run: Any, slug: str, sev: Any) -> str:
        return _lines(
            "Worst decile of images ([CSV](tables/worst_decile.csv)):",
            "",
            tables.frame_markdown(ctx.st.worst_shown[run.name], "corruption", WORST_LABELS),
            "",
            _WORST_NOTE,
            "",
        )

    def html(self, ctx: Context, run: Any, slug: str, sev: Any) -> str:
        return _lines(
            "<p>Worst decile of images.</p>",
            tables.frame_html(ctx.st.worst_shown[run.name], "corruption", WORST_LABELS),
            f'<p class="note">{html.escape(_WORST_NOTE)}</p>',
        )


class ClassIoU(RunPart):
    """The per-class IoU heatmap of a run (and its CSV)."""

    name = "class_iou"
    owns = ("tables/class_iou_*.csv", "figures/class_iou_*.png")

    def files(self, ctx: Context) -> list[Path]:
        paths = []
        for run, slug, _ in ctx.per_run:
            paths += [
                ctx.csv(
                    f"tables/class_iou_{slug}.csv", tables.class_iou_frame(run), index_label="class"
                ),
                figures.plot_class_iou(run, ctx.out / f"figures/class_iou_{slug}.png"),
            ]
        return paths

    def markdown(self, ctx: Context, run: Any, slug: str, sev: Any) -> str:
        return _lines(
            f"![Per-class IoU of {tables.md_escape(run.name)}](figures/class_iou_{slug}.png)", ""
        )

    def html(self, ctx: Context, run: Any, slug: str, sev: Any) -> str:
        e = html.escape
        return (
            f'<p><img src="figures/class_iou_{slug}.png" alt="Per-class IoU of {e(run.name)}"></p>'
        )


RUN_PARTS: list[RunPart] = [SeverityTable(), WorstDecile(), ClassIoU()]
"""The parts of each run's block, in page order."""


class PerRun(Section):
    """A block per run: a heading, then each applicable part of ``parts`` (in order)."""

    name = "per_run"

    @property
    def parts(self) -> Sequence[RunPart]:
        """The parts: :data:`RUN_PARTS`, read when asked."""
        return RUN_PARTS

    @property
    def owns(self) -> tuple[str, ...]:  # type: ignore[override]
        return owned_files(self.parts)

    def files(self, ctx: Context) -> list[Path]:
        return [p for part in self.parts if part.applies(ctx) for p in part.files(ctx)]

    def markdown(self, ctx: Context) -> str:
        parts = [part for part in self.parts if part.applies(ctx)]
        md = []
        for run, slug, sev in ctx.per_run:
            md += [f"## {tables.md_escape(run.name)}", ""]
            md += [part.markdown(ctx, run, slug, sev) for part in parts]
        return _lines(*md)

    def html(self, ctx: Context) -> str:
        parts = [part for part in self.parts if part.applies(ctx)]
        out = []
        for run, slug, sev in ctx.per_run:
            out.append(f"<h2>{html.escape(run.name)}</h2>")
            out += [part.html(ctx, run, slug, sev) for part in parts]
        return _lines(*out)


# ----------------------------------------------------------------------------- qualitative


class Qualitative(Section):
    """A grid of images, labels and each run's predictions (with ``qualitative``)."""

    name = "qualitative"
    owns = ("figures/qualitative.png",)

    def applies(self, ctx: Context) -> bool:
        return ctx.qualitative > 0

    def files(self, ctx: Context) -> list[Path]:
        path, warns = figures.plot_qualitative(
            ctx.shown,
            ctx.out / "figures/qualitative.png",
            num_images=ctx.qualitative,
            conditions=ctx.conditions,
            cityscapes_root=ctx.cityscapes_root,
        )
        for w in warns:
            ctx.warn(w)
        return [] if path is None else [path]

    def _drawn(self, ctx: Context) -> bool:
        return bool(ctx.written.get(self.name))

    def markdown(self, ctx: Context) -> str:
        if not self._drawn(ctx):
            return ""
        return _lines(
            "## Qualitative results", "", "![Qualitative results](figures/qualitative.png)", ""
        )

    def html(self, ctx: Context) -> str:
        if not self._drawn(ctx):
            return ""
        return _lines(
            "<h2>Qualitative results</h2>",
            '<p><img src="figures/qualitative.png" alt="Qualitative results"></p>',
        )


# ------------------------------------------------------------------------------------- ERF

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
_ERF_NOTE = (
    "Gradient of the central output unit of each stage w.r.t. the input, |.| summed over RGB, "
    "averaged over images (Luo et al. 2016), log scale. Table: share of the ERF mass in the "
    "central square covering 1/5/25% of the image, and the side of the smallest central "
    "square holding 50%/90% of it, as a percentage of the image's shorter side."
)


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


class EffectiveReceptiveFields(Section):
    """The grid and statistics of a ``robustseg erf`` folder (with ``erf``)."""

    name = "erf"
    owns = ("tables/erf.csv", "figures/erf.*")

    def applies(self, ctx: Context) -> bool:
        return ctx.erf_dir is not None

    def files(self, ctx: Context) -> list[Path]:
        paths = []
        for name in ERF_FILES:
            sub = "tables" if name.endswith(".csv") else "figures"
            paths.append(copy_atomic(ctx.erf_dir / name, ctx.out / sub / name))
        ctx.result.erf = erf_table(ctx.erf_dir / "erf.csv")
        return paths

    def markdown(self, ctx: Context) -> str:
        return _lines(
            "## Effective receptive fields (Figure 3 style)",
            "",
            "![Effective receptive fields](figures/erf.png)",
            "",
            _ERF_NOTE + " [CSV](tables/erf.csv), [PDF](figures/erf.pdf)",
            "",
            tables.frame_markdown(ctx.result.erf, "model", _ERF_LABELS),
            "",
        )

    def html(self, ctx: Context) -> str:
        return _lines(
            "<h2>Effective receptive fields (Figure 3 style)</h2>",
            '<p><img src="figures/erf.png" alt="Effective receptive fields"></p>',
            f'<p class="note">{html.escape(_ERF_NOTE)}</p>',
            tables.frame_html(ctx.result.erf, "model", _ERF_LABELS),
        )


# -------------------------------------------------------------------------------- left out


class LeftOut(Section):
    """What was left out of the report, and why (the warnings of the sections above)."""

    name = "left_out"

    def markdown(self, ctx: Context) -> str:
        warns = ctx.result.warnings
        if not warns:
            return ""
        return _lines("## Left out", "", *(f"- {tables.md_escape(w)}" for w in warns), "")

    def html(self, ctx: Context) -> str:
        warns = ctx.result.warnings
        if not warns:
            return ""
        e = html.escape
        return _lines(
            "<h2>Left out</h2>",
            "<ul>",
            *(f'<li class="warning">{e(w)}</li>' for w in warns),
            "</ul>",
        )


SECTIONS: list[Section] = [
    Runs(),
    Table5(),
    CorruptionDegradation(),
    NaturalShift(),
    Comparison(),
    SeverityCurves(),
    Calibration(),
    PerRun(),
    Qualitative(),
    EffectiveReceptiveFields(),
    LeftOut(),
]
"""The report's sections, in page order: the index pages, the files and the clean-up follow."""
