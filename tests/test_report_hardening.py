"""The report's writes and text (issue 20): link-safe atomic files with the umask's mode, names
escaped in Markdown, a builder model's weights digest, the few-images caveat, erf's minimum
size."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from robustbench_seg.cli import cli
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.io import copy_atomic, write_csv_atomic, write_text_atomic
from robustbench_seg.models.loader import load
from robustbench_seg.report import build_report, tables
from robustbench_seg.report.statistics import FEW_IMAGES, few_images_caveat
from tests.fake_cityscapes import make_fake_cityscapes
from tests.fake_datasets import make_acdc, make_foggy
from tests.test_bad_inputs import snapshot

# A model name with every Markdown-special character the report must escape.
# Two ``$`` would start matplotlib's mathtext in the figures (which fails on ``x^``).
ODD_NAME = "odd|name*with_[link](x)`code`<b>#~&$x^$\nline 2"
ONE_LINE = ODD_NAME.replace("\n", " ")
BUILDER = f"""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 19, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


META = {{"num_classes": 19, "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]}}


def build_odd():
    torch.manual_seed(0)
    return Tiny(), {{**META, "name": {ODD_NAME!r}}}


def build_plain():
    torch.manual_seed(1)
    return Tiny(), {{**META, "name": "plain"}}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of builder models (``file.py:build``) on two images, one with an odd name."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("hardening")
    make_fake_cityscapes(tmp / "cs", (2,), size=(32, 64))
    (tmp / "builder.py").write_text(BUILDER)
    common = dict(cityscapes_root=tmp / "cs", corruptions=["gaussian_noise", "fog"],
                  severities=[1, 2], inference="whole", workers=0, progress=False,
                  save_predictions=0)  # fmt: skip
    spec = str(tmp / "builder.py")
    evaluate(f"{spec}:build_odd", out=tmp / "runs" / "odd", **common)
    evaluate(f"{spec}:build_plain", out=tmp / "runs" / "plain", **common)
    yield {"tmp": tmp, "runs": [tmp / "runs" / "odd", tmp / "runs" / "plain"], "spec": spec}
    torch.set_num_threads(threads)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ----------------------------------------------------------------------------- link-safe writes


def test_links_planted_in_an_earlier_report_are_replaced_not_written_through(
    runs, tmp_path, umask_022
):
    out = tmp_path / "report"
    build_report(runs["runs"], out, progress=False)
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.md").write_text("the user's notes\n")
    (user / "data.csv").write_text("a,b\n1,2\n")
    (user / "page.html").write_text("<p>mine</p>\n")
    folder = user / "folder"
    folder.mkdir()
    (folder / "severity_curves.png").write_bytes(b"user png")  # a name the report rewrites
    before = snapshot(user)
    (out / "index.md").unlink()
    (out / "index.md").symlink_to(user / "notes.md")
    (out / "index.html").unlink()
    (out / "index.html").symlink_to(user / "page.html")
    (out / "tables" / "table5.csv").unlink()
    (out / "tables" / "table5.csv").symlink_to(user / "data.csv")
    (out / "tables" / "table5.md").unlink()
    (out / "tables" / "table5.md").symlink_to(user / "nowhere.md")  # dangling: not created
    for f in (out / "figures").iterdir():
        f.unlink()
    (out / "figures").rmdir()
    (out / "figures").symlink_to(folder, target_is_directory=True)

    result = build_report(runs["runs"], out, progress=False)

    assert snapshot(user) == before  # byte for byte, and nothing added there
    for path in (out / "index.md", out / "index.html", out / "tables" / "table5.csv",
                 out / "tables" / "table5.md"):  # fmt: skip
        assert not path.is_symlink() and path.is_file(), path
    assert not (out / "figures").is_symlink() and (out / "figures").is_dir()
    assert (out / "figures" / "severity_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "index.md").read_text().startswith("# Robustness report")
    written = [result.index_md, result.index_html, *result.tables, *result.figures]
    assert len(written) > 10
    assert {p.name: _mode(p) for p in written} == {p.name: 0o644 for p in written}
    assert not list(out.rglob(".*.tmp")) and not list(out.rglob(".*.csv"))  # no temporary left


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_write_helpers_follow_the_umask_and_replace_links(tmp_path, mask):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00\x01")
    os.chmod(src, 0o600)  # a copy takes the umask's mode, not the source's
    old = os.umask(mask)
    try:
        for name in ("a.md", "b.csv", "c.png"):
            (tmp_path / name).symlink_to(victim)
        write_text_atomic(tmp_path / "a.md", "é|x\n")
        write_csv_atomic(tmp_path / "b.csv", pd.DataFrame({"x": [1, 2]}), index=False)
        copy_atomic(src, tmp_path / "c.png")
    finally:
        os.umask(old)
    assert victim.read_text() == "keep"
    assert (tmp_path / "a.md").read_bytes() == "é|x\n".encode()
    assert (tmp_path / "b.csv").read_text() == "x\n1\n2\n"
    assert (tmp_path / "c.png").read_bytes() == b"\x00\x01"
    for name in ("a.md", "b.csv", "c.png"):
        assert not (tmp_path / name).is_symlink()
        assert _mode(tmp_path / name) == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.md", "b.csv", "c.png", "src.bin", "victim.txt"
    ]  # fmt: skip


# ----------------------------------------------------------------------------- escaped names


def _table_rows(text: str, header: str) -> list[str]:
    """The lines of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def _columns(line: str) -> int:
    """Cells of a GitHub table row: ``|`` not escaped by a backslash separate them."""
    cells, escaped = 1, False
    for ch in line.strip()[1:-1]:
        if ch == "|" and not escaped:
            cells += 1
        escaped = ch == "\\" and not escaped
    return cells


def test_md_escape():
    assert tables.md_escape(ODD_NAME) == (
        r"odd\|name\*with\_\[link\](x)\`code\`\<b\>\#\~\&\$x^\$ line 2"
    )
    assert tables.md_escape("a\\*b\nc\r\nd") == r"a\\\*b c d"
    assert (
        tables.md_escape("segformer-b0.synthetic (runs/b0)") == "segformer-b0.synthetic (runs/b0)"
    )


def test_odd_model_name_is_escaped_and_keeps_the_tables_columns(runs, tmp_path):
    out = tmp_path / "report"
    build_report(runs["runs"], out, ci=True, resamples=20, progress=False,
                 reliability_corruptions=("fog",))  # fmt: skip
    escaped = tables.md_escape(ODD_NAME)
    index = (out / "index.md").read_text()
    table5 = (out / "tables" / "table5.md").read_text()
    published = len(tables.load_reference("segformer-table5"))
    for text in (index, table5):
        rows = _table_rows(text, "| Model | Clean")
        assert len(rows) == 2 + published + 2  # header, rule, published rows, the 2 runs
        # Model, Clean, the 16 corruptions (of the published rows), mPC, rPC
        assert {_columns(r) for r in rows} == {1 + 1 + 16 + 2}
        assert rows[-2].startswith(f"| {escaped} | ")
    assert ODD_NAME not in table5
    assert index.count(ONE_LINE) == 1  # in the code span of the list of runs only
    sev = _table_rows(
        (out / "tables" / "severity_odd_name_with__link_x_code_b_x_line_2.md").read_text(), "|"
    )
    assert {_columns(r) for r in sev} == {5}  # corruption, category, 1, 2, mean
    assert f"## {escaped}\n" in index
    assert f"- **{escaped}** (``{ONE_LINE}``): `{runs['runs'][0]}`" in index
    assert f"![Per-class IoU of {escaped}](figures/class_iou_" in index
    assert f"### {escaped} against plain" in index or f"### plain against {escaped}" in index
    comparison = _table_rows(index, "| Figure |")
    assert {_columns(r) for r in comparison} == {7}
    assert f"| Figure | {escaped} | plain |" in index or f"| Figure | plain | {escaped} |" in index
    page = (out / "index.html").read_text()
    assert "<b>odd|name*with_[link](x)`code`&lt;b&gt;#~&amp;$x^$\nline 2</b>" in page


# ----------------------------------------------------------------------------- weights digest


def test_a_builder_models_weights_sha256_is_shown(runs, tmp_path):
    cfg = json.loads((runs["runs"][0] / "run.json").read_text())["config"]
    assert cfg["weights"] is None
    expected = load(f"{runs['spec']}:build_odd").weights_sha256
    assert cfg["weights_sha256"] == expected and len(expected) == 64
    build_report(runs["runs"], tmp_path / "r", progress=False)
    line = f"weights as built (no weights file given), state sha256 {expected}"
    for page in ("index.md", "index.html"):
        text = (tmp_path / "r" / page).read_text()
        assert line in text and "none recorded" not in text


# ----------------------------------------------------------------------------- few images


def test_few_images_caveat_threshold():
    assert FEW_IMAGES == 30
    assert few_images_caveat(30) is None and few_images_caveat(1000) is None
    assert few_images_caveat(29) == (
        "Caution: intervals from only 29 images (fewer than 30) are approximate: with so few "
        "images the bootstrap interval tends to be too narrow."
    )
    assert tables.md_escape(few_images_caveat(29)) == few_images_caveat(29)  # shown as is


def test_intervals_from_few_images_carry_the_caveat(runs, tmp_path):
    caveat = few_images_caveat(2)
    assert caveat is not None and "only 2 images (fewer than 30)" in caveat
    build_report(runs["runs"], tmp_path / "ci", ci=True, resamples=20, progress=False,
                 reliability_corruptions=("fog",))  # fmt: skip
    md = (tmp_path / "ci" / "index.md").read_text()
    page = (tmp_path / "ci" / "index.html").read_text()
    # after Table 5's ± note, with the comparison and with each run's severity table
    assert md.count(caveat) == 1 + 1 + 2
    assert page.count(caveat) == 1 + 1 + 2
    for name in ("table5.md", "table5.html", "comparison.md"):
        assert caveat in (tmp_path / "ci" / "tables" / name).read_text(), name
    tex = (tmp_path / "ci" / "tables" / "table5.tex").read_text()
    assert caveat in tex
    build_report(runs["runs"], tmp_path / "plain", progress=False)  # no intervals, no caveat
    for name in ("index.md", "index.html", "tables/table5.md"):
        assert "approximate" not in (tmp_path / "plain" / name).read_text(), name


def test_natural_intervals_from_few_images_carry_the_caveat(runs, tmp_path):
    """The fewest images of any interval of the section: ACDC fog's one image here."""
    city = tmp_path / "cs"
    shutil.copytree(runs["tmp"] / "cs", city)
    make_foggy(city)
    make_acdc(tmp_path / "acdc", per_condition=1, size=(32, 64))
    natural = ["foggy-cityscapes", f"acdc:fog={tmp_path / 'acdc'}"]
    evaluate(f"{runs['spec']}:build_plain", cityscapes_root=city, corruptions="fog",
             severities="1", natural=natural, inference="whole", workers=0, progress=False,
             save_predictions=0, out=tmp_path / "run")  # fmt: skip
    result = build_report([tmp_path / "run"], tmp_path / "ci", ci=True, resamples=20,
                          reliability_corruptions=("fog",), progress=False)  # fmt: skip
    assert result.natural.images == 1
    caveat = few_images_caveat(1)
    for name in ("tables/natural.md", "index.md", "index.html"):
        text = (tmp_path / "ci" / name).read_text()
        section = text[text.index("Synthetic vs natural shift") :]
        assert caveat in section.split("Rank correlation")[0], name  # with the section's tables
    result = build_report([tmp_path / "run"], tmp_path / "plain", progress=False)
    assert result.natural.images == 0
    assert "approximate" not in (tmp_path / "plain" / "tables" / "natural.md").read_text()


# ----------------------------------------------------------------------------- erf --size


@pytest.mark.parametrize("size", ["8x8", "31x64", "64x31"])
def test_erf_size_below_the_minimum_is_one_line(runs, tmp_path, size):
    out = tmp_path / "erf"
    r = CliRunner().invoke(cli, ["erf", "-m", "b0", "--weights", "none", "--num-images", "1",
                                 "--size", size, "--cityscapes-root", str(runs["tmp"] / "cs"),
                                 "--out", str(out)])  # fmt: skip
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert lines == [
        f"robustseg: error: --size must be at least 32x32, got {size}: SegFormer's deepest "
        "stage has stride 32, so a smaller image leaves it no whole output unit (and its first "
        "stage cannot run below 29 pixels)"
    ]
    assert not out.exists()
