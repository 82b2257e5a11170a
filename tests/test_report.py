"""The report (SegFormer Table 5 / Figure 7): every printed number against results.csv, mCD,
figures, index pages, qualitative grid, errors."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from corruptions.registry import BENCHMARK
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.errors import USER_ERRORS, RobustSegError
from robustbench_seg.metrics import confusion_matrix
from robustbench_seg.report import ReportWarning, build_report, figures, tables
from tests.fake_cityscapes import make_fake_cityscapes

REFERENCE_CSV = Path(tables.__file__).parent / "reference" / "segformer_table5.csv"


class Tiny(nn.Module):
    """A one-layer "model": quick, and not rebuildable from run.json (no registry name)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 19, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Two real runs (SegFormer-B0 with a weights file on two images, a tiny module on one), a
    copy of the first (same model name), and one report of the three, the tiny run as baseline."""
    from robustbench_seg.models import create_model
    from robustbench_seg.models.weights import save_weights

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("report")
    root = tmp / "cs"
    make_fake_cityscapes(root, (2, 1))
    torch.manual_seed(0)
    weights = tmp / "b0.safetensors"
    save_weights(create_model("segformer-b0"), weights, model_name="segformer-b0", source="test")
    common = dict(
        cityscapes_root=root,
        corruptions="benchmark",
        severities="protocol",
        inference="whole",
        workers=0,
        progress=False,
    )
    runs = tmp / "runs"
    evaluate("b0", weights=str(weights), limit=2, out=runs / "b0", **common)
    torch.manual_seed(1)
    evaluate(Tiny(), limit=2, out=runs / "tiny", save_predictions=0, **common)
    shutil.copytree(runs / "b0", runs / "b0_copy")
    paths = [runs / "b0", runs / "tiny", runs / "b0_copy"]
    with pytest.warns(ReportWarning, match="Tiny left out"):
        result = build_report(
            paths,
            tmp / "report",
            baseline=runs / "tiny",
            qualitative=1,
            qualitative_corruptions=("fog-2",),
            progress=False,
        )
    yield {"root": root, "runs": paths, "result": result, "out": tmp / "report", "tmp": tmp}
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- expected numbers


def expected_row(run: Path, baseline: Path | None = None) -> dict[str, float]:
    """Table 5 numbers recomputed from results.csv with pandas alone (percent)."""
    df = pd.read_csv(run / "results.csv")
    cells = df.drop_duplicates("cell")
    corr = cells[cells["corruption"] != "clean"]
    row = {"clean": 100 * cells.loc[cells["corruption"] == "clean", "miou"].iloc[0]}
    means = 100 * corr.groupby("corruption")["miou"].mean()
    row.update(means.to_dict())
    row["mPC"] = means[list(BENCHMARK)].mean()
    row["rPC"] = 100 * row["mPC"] / row["clean"]
    if baseline is not None:
        b = pd.read_csv(baseline / "results.csv").drop_duplicates("cell")
        m = corr.merge(
            b[b["corruption"] != "clean"], on=["corruption", "severity"], suffixes=("", "_b")
        )
        err = (1 - m["miou"]).groupby(m["corruption"]).sum()
        ref = (1 - m["miou_b"]).groupby(m["corruption"]).sum()
        row["mCD"] = float((100 * err / ref).mean())
    return row


def expected_cd(run: Path, baseline: Path) -> pd.Series:
    """CD (%) per corruption, from the two results.csv files with pandas alone."""
    r = pd.read_csv(run / "results.csv").drop_duplicates("cell")
    b = pd.read_csv(baseline / "results.csv").drop_duplicates("cell")
    m = r[r["corruption"] != "clean"].merge(b, on=["corruption", "severity"], suffixes=("", "_b"))
    return (
        100
        * (1 - m["miou"]).groupby(m["corruption"]).sum()
        / (1 - m["miou_b"]).groupby(m["corruption"]).sum()
    )


def published_rows() -> dict[str, dict[str, float]]:
    df = pd.read_csv(REFERENCE_CSV, comment="#")
    out = {}
    for rec in df.to_dict("records"):
        row = {k: float(v) for k, v in rec.items() if k != "model"}
        row["mPC"] = float(np.mean([rec[c] for c in BENCHMARK]))
        row["rPC"] = 100 * row["mPC"] / rec["clean"]
        out[rec["model"]] = row
    return out


def all_expected(env) -> dict[str, dict[str, float]]:
    b0, tiny, copy = env["runs"]
    exp = published_rows()
    exp["segformer-b0 (b0)"] = expected_row(b0, tiny)
    exp["segformer-b0 (b0_copy)"] = expected_row(copy, tiny)
    exp["Tiny"] = expected_row(tiny, tiny)
    return exp


def value_columns(env) -> list[str]:
    header = pd.read_csv(env["out"] / "tables" / "table5.csv", nrows=0).columns
    return [c for c in header if c not in ("model", "source")]


def check(parsed: dict[str, list[str]], env, *, missing: str, tol: float = 0.05 + 1e-9) -> None:
    exp, cols = all_expected(env), value_columns(env)
    assert set(parsed) == set(exp)
    for name, cells in parsed.items():
        assert len(cells) == len(cols), name
        for col, cell in zip(cols, cells, strict=True):
            if col not in exp[name]:
                assert cell == missing, (name, col, cell)
            else:
                assert abs(float(cell) - exp[name][col]) <= tol, (name, col, cell, exp[name][col])
                assert re.fullmatch(r"-?\d+\.\d", cell), cell  # one decimal, like the paper


def _strip_md(cell: str) -> str:
    return cell.strip().removeprefix("**").removesuffix("**")


def parse_markdown(text: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Rows of the first Markdown table: name -> cells (bold removed), and the raw cells."""
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")][2:]
    plain, raw = {}, {}
    for ln in lines:
        cells = [c.strip() for c in ln.strip().strip("|").split(" | ")]
        name = re.sub(r"\\(.)", r"\1", cells[0]).removesuffix("†")  # names are escaped
        raw[name] = cells[1:]
        plain[name] = [_strip_md(c) for c in cells[1:]]
    return plain, raw


# ----------------------------------------------------------------------------- Table 5


def test_table5_markdown_numbers(env):
    plain, _ = parse_markdown((env["out"] / "tables" / "table5.md").read_text())
    check(plain, env, missing="–")


def test_table5_csv_full_precision(env):
    df = pd.read_csv(env["out"] / "tables" / "table5.csv")
    exp = all_expected(env)
    assert list(df["source"]).count("published") == 13 and list(df["source"]).count("run") == 3
    for rec in df.to_dict("records"):
        e = exp[rec["model"]]
        for col in value_columns(env):
            if col in e:
                assert rec[col] == pytest.approx(e[col], rel=1e-12, abs=1e-12), (rec["model"], col)
            else:
                assert np.isnan(rec[col])


def test_table5_latex_numbers_and_header(env):
    tex = (env["out"] / "tables" / "table5.tex").read_text()
    for token in (
        r"\toprule",
        r"\bottomrule",
        r"\multicolumn{4}{c}{Blur}",
        r"\multicolumn{4}{c}{Noise}",
        r"\multicolumn{4}{c}{Digital}",
        r"\multicolumn{4}{c}{Weather}",
        r"\cmidrule(lr){3-6} \cmidrule(lr){7-10} \cmidrule(lr){11-14} \cmidrule(lr){15-18}",
    ):
        assert token in tex
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    parsed = {}
    for ln in body.splitlines():
        if not ln.endswith(r"\\"):
            continue
        cells = [c.strip() for c in ln.removesuffix(r"\\").split(" & ")]
        name = cells[0].replace(r"$^\dagger$", "").replace(r"\_", "_")
        parsed[name] = [re.sub(r"\\textbf\{(.*)\}", r"\1", c) for c in cells[1:]]
    check(parsed, env, missing="--")


def test_table5_html_numbers(env):
    text = (env["out"] / "tables" / "table5.html").read_text()
    parsed = {}
    for tr in re.findall(r"<tr><th>(.*?)</th>(.*?)</tr>", text):
        cells = [re.sub(r"</?strong>", "", c) for c in re.findall(r"<td>(.*?)</td>", tr[1])]
        parsed[html.unescape(tr[0]).removesuffix("†")] = cells
    check(parsed, env, missing="–")
    assert '<th colspan="4">Blur</th>' in text


def test_best_value_per_column_in_bold(env):
    plain, raw = parse_markdown((env["out"] / "tables" / "table5.md").read_text())
    for j, col in enumerate(value_columns(env)):
        values = {n: float(c[j]) for n, c in plain.items() if c[j] != "–"}
        best = min(values.values()) if col == "mCD" else max(values.values())
        bold = {n for n, c in raw.items() if c[j].startswith("**")}
        assert bold == {n for n, v in values.items() if v == best}, col
    tex = (env["out"] / "tables" / "table5.tex").read_text()
    assert r"\textbf{82.4}" in tex  # SegFormer-B5's clean mIoU is the best shown


def test_runs_of_one_model_named_by_directory_and_published_marked(env):
    df = pd.read_csv(env["out"] / "tables" / "table5.csv")
    runs = df[df["source"] == "run"]["model"].tolist()
    assert runs == ["segformer-b0 (b0)", "Tiny", "segformer-b0 (b0_copy)"]
    md = (env["out"] / "tables" / "table5.md").read_text()
    assert "| SegFormer-B5† |" in md and "computed here from the 16 corruption columns" in md


def test_mcd_against_baseline(env):
    df = pd.read_csv(env["out"] / "tables" / "table5.csv").set_index("model")
    assert df.loc["Tiny", "mCD"] == pytest.approx(100.0)
    assert df.loc["segformer-b0 (b0)", "mCD"] == pytest.approx(
        expected_row(env["runs"][0], env["runs"][1])["mCD"]
    )
    assert df[df["source"] == "published"]["mCD"].isna().all()
    b0, tiny = env["runs"][:2]
    exp = expected_cd(b0, tiny)
    cd_csv = pd.read_csv(env["out"] / "tables" / "cd.csv").set_index("model")
    cols = list(cd_csv.columns)
    assert cols == [*BENCHMARK, "mCD"]
    assert np.allclose(
        cd_csv.loc["segformer-b0 (b0)", list(BENCHMARK)], exp[list(BENCHMARK)], rtol=1e-12
    )
    plain, _ = parse_markdown((env["out"] / "tables" / "cd.md").read_text())
    for j, c in enumerate(BENCHMARK):
        assert abs(float(plain["segformer-b0 (b0)"][j]) - exp[c]) <= 0.05 + 1e-9
        assert plain["Tiny"][j] == "100.0"
    assert abs(float(plain["segformer-b0 (b0)"][-1]) - exp.mean()) <= 0.05 + 1e-9
    cd = pd.read_csv(env["out"] / "tables" / "cd.csv").set_index("model")
    assert np.allclose(cd.loc["Tiny", list(BENCHMARK)], 100.0)
    assert cd.loc["segformer-b0 (b0)", "mCD"] == pytest.approx(
        cd.loc["segformer-b0 (b0)", list(BENCHMARK)].mean()
    )


def test_baseline_with_other_cells_is_one_clear_error(env, tmp_path):
    bad = tmp_path / "partial"
    shutil.copytree(env["runs"][1], bad)
    df = pd.read_csv(bad / "results.csv")
    df[df["cell"] != "fog-5"].to_csv(bad / "results.csv", index=False)
    with pytest.raises(RobustSegError, match="does not cover the same cells") as err:
        build_report(env["runs"][:1], tmp_path / "r", baseline=bad, progress=False)
    assert "fog-5" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()  # nothing written before the check


def test_baseline_over_other_images_is_one_clear_error(env, tmp_path):
    bad = tmp_path / "other-images"
    shutil.copytree(env["runs"][1], bad)
    info = json.loads((bad / "run.json").read_text())
    info["config"]["images_sha256"] = "0" * 64  # e.g. evaluated with another --limit
    (bad / "run.json").write_text(json.dumps(info))
    with pytest.raises(RobustSegError, match="evaluated on other images than run") as err:
        build_report(env["runs"][:1], tmp_path / "r", baseline=bad, progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", ["empty", "missing", "file"])
def test_not_a_run_directory_is_one_clear_error(env, tmp_path, kind):
    path = tmp_path / "x"
    if kind == "empty":
        path.mkdir()
    elif kind == "file":
        path.write_text("hi")
    with pytest.raises(RobustSegError, match="is not a run directory") as err:
        build_report([env["runs"][0], path], tmp_path / "r", progress=False)
    assert "\n" not in str(err.value)


def test_reference_none_and_unknown(env):
    runs = tables.load_runs(env["runs"][:1])
    t = tables.table5(runs, tables.load_reference("none"))
    assert list(t.frame["model"]) == ["segformer-b0"] and set(t.frame["source"]) == {"run"}
    md = tables.table5_markdown(t)
    assert "†" not in md and "**1.5**" in md  # alone, the run holds every best value
    with pytest.raises(RobustSegError, match="unknown reference"):
        tables.load_reference("segformer-table9")
    with pytest.raises(RobustSegError, match="given twice"):
        tables.load_runs([env["runs"][0], env["runs"][0]])


# ----------------------------------------------------------------------------- per-run tables


def test_severity_tables_match_results(env):
    for run, slug in zip(
        env["runs"], ["segformer-b0_b0", "Tiny", "segformer-b0_b0_copy"], strict=True
    ):
        cells = (
            pd.read_csv(run / "results.csv").drop_duplicates("cell").set_index("cell")["miou"] * 100
        )
        md = (env["out"] / "tables" / f"severity_{slug}.md").read_text().splitlines()
        header = [c.strip() for c in md[0].strip("|").split("|")]
        assert header[:2] == ["Corruption", "Category"] and header[-1] == "Mean"
        seen = 0
        for ln in md[2:]:
            ln = ln.replace("\\_", "_")  # names are escaped in Markdown
            row = dict(
                zip(header, (c.strip() for c in ln.strip().strip("|").split("|")), strict=True)
            )
            if row["Corruption"] == "clean":
                assert float(row["Mean"]) == pytest.approx(cells["clean"], abs=0.05 + 1e-9)
                continue
            for s in header[2:-1]:
                key = f"{row['Corruption']}-{s}"
                if key in cells.index:
                    assert float(row[s]) == pytest.approx(cells[key], abs=0.05 + 1e-9)
                    seen += 1
                else:
                    assert row[s] == "–"
        assert seen == 72
        csv = pd.read_csv(env["out"] / "tables" / f"severity_{slug}.csv").set_index("corruption")
        assert csv.loc["fog", "3"] == pytest.approx(cells["fog-3"], rel=1e-12)
        assert np.isnan(csv.loc["gaussian_noise", "4"])


# ----------------------------------------------------------------------------- figures, index


def test_figures_written(env):
    import matplotlib.image as mpimg

    figs = env["out"] / "figures"
    result = env["result"]
    names = sorted(p.name for p in result.figures)
    assert names == sorted(
        [
            "severity_curves.png",
            "severity_curves.pdf",
            "class_iou_segformer-b0_b0.png",
            "class_iou_Tiny.png",
            "class_iou_segformer-b0_b0_copy.png",
            "qualitative.png",
        ]
    )
    for p in result.figures:
        if p.suffix == ".png":
            img = mpimg.imread(p)
            assert img.ndim == 3 and min(img.shape[:2]) > 300 and img.std() > 0.05
    assert (figs / "severity_curves.pdf").read_bytes()[:4] == b"%PDF"
    # The qualitative grid shows the B0 runs only: the Tiny run saved no predictions.
    assert any("Tiny left out" in w for w in result.warnings)
    assert not any("b0" in w for w in result.warnings)


def test_model_colors_are_stable_and_distinct():
    names = ["segformer-b0", "segformer-b5", "deeplabv3plus-r50", "Tiny", "x", "y", "z"]
    a = figures.model_colors(names)
    assert a == figures.model_colors(list(reversed(names)))
    assert len(set(a.values())) == len(names)


def test_index_pages_link_existing_files_offline(env):
    out = env["out"]
    md = (out / "index.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert "figures/severity_curves.png" in links and "figures/qualitative.png" in links
    for link in links:
        assert (out / link).is_file(), link
    assert "| SegFormer-B5† |" in md and "Tiny left out" in md
    page = (out / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "figures/class_iou_Tiny.png" in refs
    for ref in refs:
        assert (out / ref).is_file(), ref
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert '<table class="table5">' in page


def test_qualitative_predictions_reproduce_the_run(env, monkeypatch):
    """The grid's saved predictions give the run's own confusion matrices (clean and fog-2),
    with no model loaded."""
    import robustbench_seg.models.loader as loader

    runs = tables.load_runs(env["runs"][:1])
    monkeypatch.setattr(loader, "load", None)  # the report never loads a model
    names, rows, warns = figures.qualitative_rows(runs, num_images=2, conditions=[("fog", 2)])
    assert names == ["segformer-b0"] and not warns and len(rows) == 4
    for cell, corruption in (("clean", None), ("fog-2", "fog")):
        conf = sum(
            confusion_matrix(r.label, r.predictions[0]) for r in rows if r.corruption == corruption
        )
        with np.load(env["runs"][0] / "cells" / f"{cell}.npz") as z:
            assert np.array_equal(conf, z["confusion"])


def test_qualitative_needs_saved_predictions_of_the_shown_images(env):
    runs = tables.load_runs(env["runs"][:1])
    names, rows, warns = figures.qualitative_rows(runs, num_images=3, conditions=[("fog", 2)])
    assert not names and not rows  # the run has 2 images; a third cannot be shown
    names, rows, warns = figures.qualitative_rows(
        runs, num_images=1, conditions=[("gaussian_noise", 4)]
    )
    assert not rows and "no saved predictions for gaussian_noise-4" in warns[0]


def test_qualitative_skipped_without_data(env, tmp_path):
    runs = tables.load_runs(env["runs"][:1])
    path, warns = figures.plot_qualitative(
        runs, tmp_path / "q.png", num_images=1, cityscapes_root=tmp_path / "nowhere"
    )
    assert path is None and not (tmp_path / "q.png").exists()
    assert len(warns) == 1 and "cannot read the dataset" in warns[0]


def test_parse_conditions():
    assert figures.parse_conditions(["fog-2", "motion_blur:5", "snow"]) == [
        ("fog", 2),
        ("motion_blur", 5),
        ("snow", 3),
    ]
    with pytest.raises(USER_ERRORS, match="unknown corruption"):
        figures.parse_conditions(["fgo-2"])
    with pytest.raises(RobustSegError, match="severity must be 1..5"):
        figures.parse_conditions(["fog-9"])


# ----------------------------------------------------------------------------- ERF section


def test_erf_section_copies_the_erf_output_and_its_numbers(env, tmp_path):
    from robustbench_seg.analysis.erf import compute_erf

    erf_dir = tmp_path / "erf"
    compute_erf(["b0"], cityscapes_root=env["root"], num_images=1, size=(64, 128), out=erf_dir,
                progress=False)  # fmt: skip
    out = tmp_path / "report"
    result = build_report(env["runs"][:1], out, reference="none", erf=erf_dir, progress=False)
    for rel in ("figures/erf.png", "figures/erf.pdf", "tables/erf.csv"):
        assert (out / rel).read_bytes() == (erf_dir / Path(rel).name).read_bytes()
    csv = pd.read_csv(erf_dir / "erf.csv")
    md = (out / "index.md").read_text()
    assert "![Effective receptive fields](figures/erf.png)" in md
    section = md.split("## Effective receptive fields", 1)[1]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ")][2:]
    assert len(rows) == len(csv) == 5
    for line, rec in zip(rows, csv.to_dict("records"), strict=True):
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert cells[:2] == [rec["model"], rec["stage"]]
        for cell, col in zip(cells[2:], ("share_1pct", "share_5pct", "share_25pct",
                                          "side50_frac", "side90_frac"), strict=True):  # fmt: skip
            if np.isnan(rec[col]):  # no ERF mass (an untrained LayerNorm output sums to 0)
                assert cell == tables.DASH
            else:
                assert abs(float(cell) - 100 * rec[col]) <= 0.05 + 1e-9, (col, cell)
    assert '<img src="figures/erf.png"' in (out / "index.html").read_text()
    assert result.erf is not None and len(result.erf) == 5
    # A later report without --erf removes the stale ERF files.
    build_report(env["runs"][:1], out, reference="none", progress=False)
    assert not (out / "figures" / "erf.png").exists() and not (out / "tables" / "erf.csv").exists()


def test_erf_folder_without_its_files_is_one_clear_error(env, tmp_path):
    (tmp_path / "erf").mkdir()
    (tmp_path / "erf" / "erf.png").write_bytes(b"x")
    with pytest.raises(RobustSegError, match=r"missing erf\.pdf, erf\.csv"):
        build_report(env["runs"][:1], tmp_path / "r", erf=tmp_path / "erf", progress=False)
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- --ci statistics

CI_RESAMPLES = 200  # enough to test the plumbing; the default is 1000


@pytest.fixture(scope="module")
def ci_env(env):
    """A --ci report of the three runs (the tiny one as baseline) and their statistics."""
    from robustbench_seg.runs import load_statistics

    out = env["tmp"] / "report_ci"
    result = build_report(env["runs"], out, baseline=env["runs"][1], ci=True,
                          resamples=CI_RESAMPLES, reliability_corruptions=("fog", "snow"),
                          progress=False)  # fmt: skip
    names = ["segformer-b0 (b0)", "Tiny", "segformer-b0 (b0_copy)"]
    stats = {n: load_statistics(p) for n, p in zip(names, env["runs"], strict=True)}
    return {**env, "out": out, "result": result, "stats": stats}


def split_pm(cell: str) -> tuple[str, str | None]:
    """``"**45.3** ± 1.2"`` -> ``("45.3", "1.2")``; a cell without ``±`` -> (value, None)."""
    value, _, hw = cell.partition(" ± ")
    return _strip_md(value), hw or None


def test_ci_table5_bounds_and_half_widths_match_run_statistics(ci_env):
    df = pd.read_csv(ci_env["out"] / "tables" / "table5.csv").set_index("model")
    base = ci_env["stats"]["Tiny"]
    _, raw = parse_markdown((ci_env["out"] / "tables" / "table5.md").read_text())
    cols = [c for c in df.columns if c != "source" and not c.endswith(("_lo", "_hi"))]
    assert all(f"{c}_lo" in df.columns and f"{c}_hi" in df.columns for c in cols)
    for name, st in ci_env["stats"].items():
        figs = st.figures(base, resamples=CI_RESAMPLES)
        for j, col in enumerate(cols):
            point, lo, hi = figs[col]
            assert df.loc[name, col] == pytest.approx(point, abs=1e-9)
            assert (df.loc[name, f"{col}_lo"], df.loc[name, f"{col}_hi"]) == (lo, hi), col
            value, hw = split_pm(raw[name][j])
            assert value == f"{point:.1f}" and hw == f"{max(point - lo, hi - point):.1f}", col
    published = df[df["source"] == "published"]
    assert published[[f"{c}_lo" for c in cols]].isna().all().all()
    assert all(" ± " not in c for c in raw["SegFormer-B5"])
    assert (
        "max(point - lower, upper - point)" in (ci_env["out"] / "tables" / "table5.md").read_text()
    )
    tex = (ci_env["out"] / "tables" / "table5.tex").read_text()
    assert r"{\scriptsize$\pm$" in tex and "±" not in tex
    assert "<small> ± " in (ci_env["out"] / "tables" / "table5.html").read_text()


def test_ci_cd_intervals_are_paired(ci_env):
    """Against itself the baseline has CD = 100 in every resample: a zero-width interval."""
    cd = pd.read_csv(ci_env["out"] / "tables" / "cd.csv").set_index("model")
    for col in [*BENCHMARK, "mCD"]:
        for bound in ("", "_lo", "_hi"):
            assert cd.loc["Tiny", f"{col}{bound}"] == pytest.approx(100.0, abs=1e-9)
    t5 = pd.read_csv(ci_env["out"] / "tables" / "table5.csv").set_index("model")
    assert t5.loc["Tiny", "mCD_hi"] - t5.loc["Tiny", "mCD_lo"] < 1e-9
    # The copy of b0 has the same counts and the same resamples: the same intervals.
    figs = ci_env["stats"]["segformer-b0 (b0)"].figures(ci_env["stats"]["Tiny"], CI_RESAMPLES)
    for col in BENCHMARK:
        assert (cd.loc["segformer-b0 (b0)", f"{col}_lo"], cd.loc["segformer-b0 (b0)", f"{col}_hi"]) \
            == figs[f"CD:{col}"][1:]  # fmt: skip
    assert cd.loc["segformer-b0 (b0)"].equals(cd.loc["segformer-b0 (b0_copy)"])
    md = (ci_env["out"] / "tables" / "cd.md").read_text()
    assert "| Tiny | 100.0 ± 0.0 |" in md


def test_ci_severity_tables_carry_cell_intervals(ci_env):
    st = ci_env["stats"]["segformer-b0 (b0)"]
    cells = st.cell_intervals(CI_RESAMPLES)
    sev = pd.read_csv(ci_env["out"] / "tables" / "severity_segformer-b0_b0.csv")
    sev = sev.set_index("corruption")
    for cell in ("fog-3", "gaussian_noise-1", "snow-5"):
        corruption, _, s = cell.rpartition("-")
        got = [sev.loc[corruption, f"{s}{b}"] for b in ("", "_lo", "_hi")]
        assert got == pytest.approx([100 * v for v in cells[cell]], abs=1e-9)
    md = (ci_env["out"] / "tables" / "severity_segformer-b0_b0.md").read_text()
    assert " ± " in md


def test_ci_calibration_table_equals_the_cells_calibration(ci_env):
    from robustbench_seg.runs import load_cell, read_run_info

    cal = pd.read_csv(ci_env["out"] / "tables" / "calibration.csv")
    run = ci_env["runs"][0]
    info = read_run_info(run)
    mine = cal[cal["model"] == "segformer-b0 (b0)"].set_index("corruption")
    for condition in ("clean", "fog", "gaussian_noise"):
        cells = [c for c in info.cells if c.rpartition("-")[0] == condition
                 or c == condition]  # fmt: skip
        records = [load_cell(run, c, info.config_hash).calibration for c in cells]
        for metric in ("ece", "nll", "brier"):
            expected = np.mean([getattr(r, metric) for r in records])
            assert mine.loc[condition, metric] == pytest.approx(expected, rel=1e-12), metric
    assert mine.loc["mean", "ece"] == pytest.approx(mine.loc[list(BENCHMARK), "ece"].mean())
    assert len(cal) == 3 * 18  # clean, 16 corruptions, mean; three runs
    md = (ci_env["out"] / "index.md").read_text().split("## Calibration under corruption")[1]
    row = next(ln for ln in md.splitlines() if ln.startswith("| clean |"))
    assert f"| {100 * mine.loc['clean', 'ece']:.1f} | {mine.loc['clean', 'nll']:.3f} |" in row


def test_ci_comparison_equals_compare(ci_env):
    from robustbench_seg.compare import compare

    comp = pd.read_csv(ci_env["out"] / "tables" / "comparison.csv")
    assert set(comp["against"]) == {"Tiny"}  # the baseline is the reference
    assert list(dict.fromkeys(comp["run"])) == ["segformer-b0 (b0)", "segformer-b0 (b0_copy)"]
    b0, tiny = ci_env["runs"][:2]
    expected = compare(b0, tiny, resamples=CI_RESAMPLES)
    got = comp[comp["run"] == "segformer-b0 (b0)"].drop(columns=["run", "against"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_exact=False,
                                  rtol=1e-12)  # fmt: skip
    md = (ci_env["out"] / "index.md").read_text()
    assert "### segformer-b0 (b0) against Tiny" in md and "Holm" in md
    assert "<h3>segformer-b0 (b0) against Tiny</h3>" in (ci_env["out"] / "index.html").read_text()


def test_ci_worst_decile_from_per_image_csv(ci_env):
    worst = pd.read_csv(ci_env["out"] / "tables" / "worst_decile.csv", keep_default_na=False)
    for name, run in zip(ci_env["stats"], ci_env["runs"], strict=True):
        per_image = pd.read_csv(run / "per_image.csv")
        mine = worst[worst["model"] == name].set_index("cell")
        assert len(mine) == per_image["cell"].nunique() == 73
        for cell, g in per_image.groupby("cell"):
            v = 100 * g["miou"].to_numpy()
            k = int(np.ceil(len(v) / 10))
            row = mine.loc[cell]
            assert row["worst_decile"] == pytest.approx(np.sort(v)[:k].mean(), abs=1e-3)
            assert row["p10"] == pytest.approx(np.percentile(v, 10), abs=1e-3)
            assert row["worst_image"] == g["image_id"].iloc[int(np.argmin(v))]
            assert row["images"] == len(v)
    md = (ci_env["out"] / "index.md").read_text()
    assert "Worst decile of images" in md and "| Corruption | Worst image |" in md


def test_ci_reliability_figures_written(ci_env):
    import matplotlib.image as mpimg

    from robustbench_seg.report import statistics as rstats

    figs = ci_env["out"] / "figures"
    for slug in ("segformer-b0_b0", "Tiny", "segformer-b0_b0_copy"):
        for suffix in (".png", ".pdf"):
            assert figs / f"reliability_{slug}{suffix}" in ci_env["result"].figures
        img = mpimg.imread(figs / f"reliability_{slug}.png")
        assert img.ndim == 3 and min(img.shape[:2]) > 300 and img.std() > 0.05
        assert f"figures/reliability_{slug}.png" in (ci_env["out"] / "index.md").read_text()
    runs = tables.load_runs(ci_env["runs"][:1])
    st = {runs[0].name: ci_env["stats"]["segformer-b0 (b0)"]}
    shown, left_out = rstats.reliability_corruptions(
        runs, st, ["fog", "gaussian_noise", "zoom_blur"]
    )
    assert shown == ["fog", "gaussian_noise"] and "zoom_blur left out" in left_out[0]
    grid = rstats.reliability_grid(st[runs[0].name], shown)
    # gaussian_noise has severities 1-3 in the protocol: its severity 5 was not evaluated.
    assert [[c for c, _ in cells] for _, cells in grid] == [
        ["clean", "fog-1", "fog-3", "fog-5"],
        ["clean", "gaussian_noise-1", "gaussian_noise-3", "gaussian_noise-5"],
    ]
    assert grid[1][1][3][1] is None and grid[0][1][2][1] is st[runs[0].name].calibration["fog-3"]
    with pytest.raises(USER_ERRORS, match="unknown corruption"):
        build_report(ci_env["runs"][:1], ci_env["tmp"] / "r", ci=True,
                     reliability_corruptions=["fgo"], progress=False)  # fmt: skip


def test_ci_refuses_runs_over_other_images(env, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(env["runs"][0], other)
    info = json.loads((other / "run.json").read_text())
    info["config"]["images_sha256"] = "0" * 64
    (other / "run.json").write_text(json.dumps(info))
    with pytest.raises(RobustSegError, match="evaluated on different images") as err:
        build_report([env["runs"][1], other], tmp_path / "r", ci=True, progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "r").exists()


def test_ci_refuses_runs_without_per_image_statistics(env, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(env["runs"][1], old)
    cell = old / "cells" / "fog-2.npz"
    with np.load(cell) as z:
        kept = {k: z[k] for k in ("confusion", "images", "config")}
    np.savez_compressed(cell, **kept)  # as written before per-image data was kept
    build_report([old], tmp_path / "plain", progress=False)  # without --ci: as before
    with pytest.raises(RobustSegError, match="no per-image statistics") as err:
        build_report([old], tmp_path / "r", ci=True, progress=False)
    assert "evaluate again" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()


def test_ci_options_need_ci_and_cli(env, tmp_path):
    from click.testing import CliRunner

    from robustbench_seg.cli import cli

    with pytest.raises(RobustSegError, match="--resamples only applies with --ci"):
        build_report(env["runs"][:1], tmp_path / "r", resamples=10, progress=False)
    res = CliRunner().invoke(cli, ["report", str(env["runs"][1]), "--out", str(tmp_path / "r"),
                                   "--reliability-corruptions", "fog"])  # fmt: skip
    assert res.exit_code == 2 and "only applies with --ci" in res.output
    res = CliRunner().invoke(cli, ["report", str(env["runs"][1]), "--out", str(tmp_path / "r"),
                                   "--ci", "--resamples", "20", "--reference", "none",
                                   "--reliability-corruptions", "none"])  # fmt: skip
    assert res.exit_code == 0, res.output
    t5 = pd.read_csv(tmp_path / "r" / "tables" / "table5.csv")
    assert "mPC_lo" in t5.columns and not (tmp_path / "r" / "tables" / "comparison.csv").exists()


def test_ci_report_is_deterministic(env, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for out in (one, two):
        build_report(env["runs"][1:2], out, ci=True, resamples=20, reference="none",
                     reliability_corruptions=["fog"], progress=False)  # fmt: skip
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


def test_plain_report_has_no_statistics(env):
    """Without --ci the report is what it was: no intervals, no statistics files."""
    out = env["out"]
    for rel in ("tables/calibration.csv", "tables/comparison.csv", "tables/worst_decile.csv"):
        assert not (out / rel).exists()
    assert not list((out / "figures").glob("reliability_*"))
    assert " ± " not in (out / "index.md").read_text()
    assert "clean_lo" not in pd.read_csv(out / "tables" / "table5.csv").columns
    assert "clean_lo" not in pd.read_csv(out / "tables" / "cd.csv").columns
