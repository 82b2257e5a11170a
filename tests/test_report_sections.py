"""The report's sections are a list (issue 21): ``report.sections.SECTIONS`` drives the files, the
index pages and the clean-up of a re-run; adding a section is one object and one list entry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.report import build, build_report, sections
from tests.fake_cityscapes import make_fake_cityscapes

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "reports" / "demo"
BUILDER = """
import torch
from torch import nn


def build_tiny():
    torch.manual_seed(0)
    meta = {"num_classes": 19, "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0],
            "name": "tiny"}
    return nn.Conv2d(3, 19, 3, padding=1), meta
"""

TOY_MD = "## Toy section\n\nThe toy's text ([its file](tables/toy.md)).\n"
TOY_HTML = '<h2>Toy section</h2>\n<p>The toy\'s text (<a href="tables/toy.md">its file</a>).</p>'
PART_MD = "Toy part of {name}.\n"
PART_HTML = "<p>Toy part of {name}.</p>"


class Toy(sections.Section):
    """A section registered by a test: one file, one fragment per page."""

    name = "toy"
    owns = ("tables/toy.*",)

    def __init__(self, on: bool = True) -> None:
        self.on = on

    def applies(self, ctx):
        return self.on

    def files(self, ctx):
        return [ctx.write("tables/toy.md", f"toy of {len(ctx.shown)} run(s)\n")]

    def markdown(self, ctx):
        return TOY_MD

    def html(self, ctx):
        return TOY_HTML


class ToyPart(sections.RunPart):
    """A per-run part registered by a test."""

    name = "toy_part"
    owns = ("figures/toy_part_*.txt",)

    def __init__(self, on: bool = True) -> None:
        self.on = on

    def applies(self, ctx):
        return self.on

    def files(self, ctx):
        return [ctx.write(f"figures/toy_part_{slug}.txt", run.name) for run, slug, _ in ctx.per_run]

    def markdown(self, ctx, run, slug, sev):
        return PART_MD.format(name=run.name)

    def html(self, ctx, run, slug, sev):
        return PART_HTML.format(name=run.name)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One run of a builder model on two images, two corruption cells."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("sections")
    make_fake_cityscapes(tmp / "cs", (2,), size=(32, 64))
    (tmp / "builder.py").write_text(BUILDER)
    evaluate(f"{tmp / 'builder.py'}:build_tiny", out=tmp / "run", cityscapes_root=tmp / "cs",
             corruptions=["gaussian_noise"], severities=[1, 2], inference="whole", workers=0,
             progress=False, save_predictions=0)  # fmt: skip
    yield tmp / "run"
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def plain(run_dir, tmp_path_factory):
    """The report of that run with the shipped list: its index pages and its files."""
    out = tmp_path_factory.mktemp("plain") / "report"
    build_report([run_dir], out, progress=False)
    return {
        "md": (out / "index.md").read_text(),
        "html": (out / "index.html").read_text(),
        "files": _files(out),
    }


def _files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def _with(monkeypatch, after: str, section: sections.Section) -> None:
    """Register ``section`` right after the section named ``after``."""
    names = [s.name for s in sections.SECTIONS]
    listed = list(sections.SECTIONS)
    listed.insert(names.index(after) + 1, section)
    monkeypatch.setattr(sections, "SECTIONS", listed)


def test_a_registered_section_is_written_and_shown_at_its_place(
    run_dir, plain, tmp_path, monkeypatch
):
    out = tmp_path / "report"
    _with(monkeypatch, "table5", Toy())

    result = build_report([run_dir], out, progress=False)

    assert (out / "tables" / "toy.md").read_text() == "toy of 1 run(s)\n"
    assert out / "tables" / "toy.md" in result.tables
    assert _files(out) == plain["files"] | {"tables/toy.md"}
    # Right after Table 5 (the next section shown here is the severity curves): the pages are
    # the plain report's with the toy's fragments in between, and nothing else changed.
    md, page = (out / "index.md").read_text(), (out / "index.html").read_text()
    nxt_md, nxt_html = "## mIoU against severity", "<h2>mIoU against severity"
    assert plain["md"].count(nxt_md) == 1 and plain["html"].count(nxt_html) == 1
    assert md == plain["md"].replace(nxt_md, TOY_MD + "\n" + nxt_md)
    assert page == plain["html"].replace(nxt_html, TOY_HTML + "\n" + nxt_html)
    assert md.index("## Table 5") < md.index("## Toy section") < md.index(nxt_md)


def test_a_re_run_removes_the_file_of_a_section_that_no_longer_applies(
    run_dir, plain, tmp_path, monkeypatch
):
    out = tmp_path / "report"
    toy = Toy()
    _with(monkeypatch, "table5", toy)
    build_report([run_dir], out, progress=False)
    assert (out / "tables" / "toy.md").is_file()

    toy.on = False
    result = build_report([run_dir], out, progress=False)

    assert not (out / "tables" / "toy.md").exists()
    assert _files(out) == plain["files"]
    assert (out / "index.md").read_text() == plain["md"]
    assert (out / "index.html").read_text() == plain["html"]
    assert all(p.name != "toy.md" for p in result.tables)

    # A file no listed section owns is not the report's: left alone (as a user's file would be).
    monkeypatch.setattr(sections, "SECTIONS", [s for s in sections.SECTIONS if s is not toy])
    (out / "tables" / "toy.md").write_text("mine\n")
    build_report([run_dir], out, progress=False)
    assert (out / "tables" / "toy.md").read_text() == "mine\n"


def test_a_registered_run_part_is_in_each_runs_block(run_dir, plain, tmp_path, monkeypatch):
    out = tmp_path / "report"
    parts = list(sections.RUN_PARTS)
    toy = ToyPart()
    parts.insert([p.name for p in parts].index("severity") + 1, toy)
    monkeypatch.setattr(sections, "RUN_PARTS", parts)

    result = build_report([run_dir], out, progress=False)

    assert (out / "figures" / "toy_part_tiny.txt").read_text() == "tiny"
    assert out / "figures" / "toy_part_tiny.txt" in result.figures
    # After the severity table, before the class-IoU heatmap.
    md, page = (out / "index.md").read_text(), (out / "index.html").read_text()
    img_md = "![Per-class IoU of tiny]"
    img_html = '<p><img src="figures/class_iou_tiny.png"'
    assert md == plain["md"].replace(img_md, PART_MD.format(name="tiny") + "\n" + img_md)
    assert page == plain["html"].replace(img_html, PART_HTML.format(name="tiny") + "\n" + img_html)

    parts[parts.index(toy)] = ToyPart(on=False)
    build_report([run_dir], out, progress=False)
    assert _files(out) == plain["files"]
    assert (out / "index.md").read_text() == plain["md"]


# ------------------------------------------------------------------------------- the clean-up


def _owners(section: sections.Section) -> list[tuple[str, tuple[str, ...]]]:
    """(name, globs) of a section, or of each part of a per-run block."""
    if isinstance(section, sections.PerRun):
        return [(p.name, p.owns) for p in section.parts]
    return [(section.name, section.owns)]


def test_the_clean_up_is_the_union_of_the_sections_files():
    union = [g for s in sections.SECTIONS for _, globs in _owners(s) for g in globs]
    assert sorted(sections.owned_files(sections.SECTIONS)) == sorted(set(union))
    assert len(union) == len(set(union))  # no glob owned twice
    names = [name for s in sections.SECTIONS for name, _ in _owners(s)]
    assert len(names) == len(set(names))
    # No hand-kept list left in the builder: no module-level name for the files a report owns,
    # and no file name or glob of tables/ or figures/ among its string constants.
    assert not hasattr(build, "_OWN_FILES")
    tree = ast.parse(Path(build.__file__).read_text(encoding="utf-8"))
    globs = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"[\w*.-]+\.(\*|md|csv|tex|html|png|pdf)", node.value)
        and node.value not in ("index.md", "index.html")
    ]
    assert globs == ["table5.csv"]  # only _is_report's: how a report from before output
    # folders were marked is recognised


def test_every_file_of_the_demo_report_is_owned_by_exactly_one_section():
    owners = [(name, g) for s in sections.SECTIONS for name, globs in _owners(s) for g in globs]
    files = sorted(
        p.relative_to(DEMO).as_posix()
        for sub in ("tables", "figures")
        for p in (DEMO / sub).iterdir()
    )
    assert len(files) > 30  # every section of the demo: ci, baseline, natural, qualitative, ERF
    claimed = {f: [name for name, g in owners if Path(f).match(g)] for f in files}
    assert {f: len(c) for f, c in claimed.items()} == dict.fromkeys(files, 1)
    assert {c[0] for c in claimed.values()} == {
        name for s in sections.SECTIONS for name, globs in _owners(s) if globs
    }


def test_the_clean_up_follows_the_list(tmp_path, monkeypatch):
    out = tmp_path / "report"
    for rel in ("tables/table5.csv", "tables/toy.md", "tables/toy.csv", "figures/erf.png"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("old\n")

    build._own_folders(out, [Toy()])
    assert _files(out) == {"tables/table5.csv", "figures/erf.png"}

    build._own_folders(out, sections.SECTIONS)
    assert _files(out) == set()
