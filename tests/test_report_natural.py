"""The report's synthetic-vs-natural section (issue 14, item 3): every number against
summary.csv, Spearman's rho against scipy.stats.spearmanr, its interval against a direct
recomputation from the runs' paired resamples, and Table 5 free of natural cells."""

from __future__ import annotations

import json
import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import spearmanr
from torch import nn

from robustbench_seg.cli import cli
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.errors import RobustSegError
from robustbench_seg.models.registry import Preprocessing
from robustbench_seg.report import build_report
from robustbench_seg.report.natural import NATURAL_MEAN, spearman_rows
from robustbench_seg.runs import load_statistics
from robustbench_seg.stats import DEFAULT_RESAMPLES
from tests.fake_cityscapes import make_fake_cityscapes
from tests.fake_datasets import make_acdc, make_dark_zurich, make_foggy

PRE = Preprocessing(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))
CONDITIONS = ["acdc:fog", "acdc:night", "dark-zurich:night", "foggy-cityscapes:fog"]
DENSITIES = [f"foggy-cityscapes:fog-{k}" for k in (1, 2, 3)]
B = DEFAULT_RESAMPLES  # resamples of the --ci reports: summary.csv's intervals
QUIET = dict(reference="none", progress=False)


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv2d(3, 19, 3, padding=1)


@pytest.fixture(scope="module")
def nat(tmp_path_factory):
    """Three runs of tiny models with natural cells (same images), a run without natural cells,
    a natural-only run, and a run over other ACDC images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("natural")
    city = tmp / "cs"
    make_fake_cityscapes(city, (2, 1), size=(32, 64))
    make_foggy(city)
    make_acdc(tmp / "acdc", size=(32, 64))
    make_acdc(tmp / "acdc2", per_condition=3, size=(32, 64), seed=5)
    make_dark_zurich(tmp / "dz", size=(32, 64))
    natural = [f"acdc:fog,night={tmp / 'acdc'}", "foggy-cityscapes", f"dark-zurich={tmp / 'dz'}"]
    common = dict(preprocessing=PRE, cityscapes_root=city, inference="whole", workers=0,
                  progress=False, save_predictions=0)  # fmt: skip
    synthetic = dict(corruptions="fog", severities="1")
    runs = [tmp / f"m{s}" for s in range(4)]
    for s, out in enumerate(runs):
        evaluate(_model(s), natural=natural, out=out, **synthetic, **common)
    evaluate(_model(9), out=tmp / "plain", **synthetic, **common)
    evaluate(_model(0), corruptions=None, natural=natural, out=tmp / "natonly", **common)
    other = [f"acdc:fog,night={tmp / 'acdc2'}", *natural[1:]]
    evaluate(_model(0), natural=other, out=tmp / "other", **synthetic, **common)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reliability corruptions the runs lack
        plain = build_report(runs[:3], tmp / "report", **QUIET)
        ci = build_report(runs[:3], tmp / "report_ci", ci=True, resamples=B,
                          reliability_corruptions=["none"], **QUIET)  # fmt: skip
    yield {"tmp": tmp, "runs": runs, "plain": plain, "ci": ci}
    torch.set_num_threads(threads)


def summary(run) -> pd.Series:
    return pd.read_csv(run / "summary.csv").iloc[0]


def test_table_numbers_equal_summary_csv(nat):
    for result in (nat["plain"], nat["ci"]):
        frame = pd.read_csv(result.out / "tables" / "natural.csv")
        assert list(frame["model"]) == result.natural.models
        value_cols = ["clean", "mPC", "rPC", *CONDITIONS, NATURAL_MEAN, *DENSITIES]
        assert [c for c in frame.columns if not c.endswith(("_lo", "_hi"))] == [
            "model",
            *value_cols,
        ]
        for run, row in zip(nat["runs"], frame.to_dict("records"), strict=False):
            s = summary(run)
            for col in ["clean", "mPC", "rPC", *CONDITIONS]:  # summary.csv: 4 decimals
                assert row[col] == pytest.approx(s[col], abs=5.1e-5), col
            assert row[NATURAL_MEAN] == pytest.approx(np.mean([row[c] for c in CONDITIONS]))
            cells = pd.read_csv(run / "results.csv").drop_duplicates("cell").set_index("cell")
            for cell in DENSITIES:
                assert row[cell] == pytest.approx(100 * cells.loc[cell, "miou"])
            if result is nat["ci"]:
                for col in ["clean", "mPC", "rPC", *CONDITIONS]:
                    for b in ("_lo", "_hi"):
                        assert row[col + b] == pytest.approx(s[col + b], abs=5.1e-5), col + b
                assert row[f"{NATURAL_MEAN}_lo"] <= row[NATURAL_MEAN] <= row[f"{NATURAL_MEAN}_hi"]
    # the Markdown table shows the CSV at one decimal, with ± half-widths under --ci
    md = (nat["ci"].out / "tables" / "natural.md").read_text()
    head = next(line for line in md.splitlines() if line.startswith("| Model | Clean"))
    assert head.split(" | ")[4:] == ["ACDC fog", "ACDC night", "Dark Zurich night",
                                     "Foggy Cityscapes fog", "Natural mean |"]  # fmt: skip
    frame = pd.read_csv(nat["ci"].out / "tables" / "natural.csv").set_index("model")
    for name in frame.index:
        line = next(x for x in md.splitlines() if x.startswith(f"| {name} | "))
        values = [float(v.split(" ± ")[0]) for v in line.strip("| ").split(" | ")[1:]]
        expected = frame.loc[name, ["clean", "mPC", "rPC", *CONDITIONS, NATURAL_MEAN]]
        assert values == pytest.approx(list(expected), abs=0.05 + 1e-9)
    assert "β=0.005 | β=0.01 | β=0.02 | Mean" in md


def test_spearman_point_equals_scipy_on_summary_csv(nat):
    corr = pd.read_csv(nat["plain"].out / "tables" / "natural_correlation.csv")
    sums = [summary(r) for r in nat["runs"][:3]]
    assert len(corr) == 2 * (1 + len(CONDITIONS)) and set(corr["models"]) == {3}
    for rec in corr.to_dict("records"):
        x = [s[rec["synthetic"]] for s in sums]
        y = [
            np.mean([s[c] for c in CONDITIONS])
            if rec["natural"] == NATURAL_MEAN
            else s[rec["natural"]]
            for s in sums
        ]
        assert rec["spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert np.isnan(corr["spearman_lo"]).all() and (corr["resamples"] == 0).all()
    assert "`report --ci` adds its 95% bootstrap interval" in nat["plain"].index_md.read_text()


def test_spearman_interval_recomputed_from_paired_resamples(nat):
    """Per resample b: every model's figures on the same resampled images, then spearmanr."""
    corr = pd.read_csv(nat["ci"].out / "tables" / "natural_correlation.csv")
    stats = [load_statistics(r) for r in nat["runs"][:3]]
    assert len({s.key for s in stats}) == 1  # same images: the resamples are shared (paired)
    samples = []
    for st in stats:
        f = st.figure_samples(resamples=B)
        f[NATURAL_MEAN] = np.mean([f[c] for c in CONDITIONS], 0)
        samples.append(f)
    for rec in corr.to_dict("records"):
        rho = np.array([
            spearmanr([f[rec["synthetic"]][b] for f in samples],
                      [f[rec["natural"]][b] for f in samples]).statistic
            for b in range(1, B + 1)
        ])  # fmt: skip
        ok = ~np.isnan(rho)
        lo, hi = np.quantile(rho[ok], [0.025, 0.975])
        assert (rec["resamples"], rec["undefined"]) == (B, int((~ok).sum()))
        assert (rec["spearman_lo"], rec["spearman_hi"]) == pytest.approx((lo, hi), abs=1e-12)
        assert rec["spearman_lo"] <= rec["spearman"] <= rec["spearman_hi"]
    md = nat["ci"].index_md.read_text()
    assert "percentile bootstrap over images" in md and "it is wide" in md
    assert re.search(r"\| Natural mean \| [+−]\d\.\d\d \[[+−]\d\.\d\d, [+−]\d\.\d\d\] \|", md)


def test_spearman_rows_equals_scipy_with_ties_and_constants():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (200, 4)).astype(float)  # many ties, some constant rows
    y = rng.integers(0, 3, (200, 4)).astype(float)
    x[0], y[1, 2] = 1.0, np.nan
    got = spearman_rows(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input
        want = np.array([spearmanr(a, b).statistic for a, b in zip(x, y, strict=True)])
    assert np.isnan(got[0]) and np.isnan(got[1])
    np.testing.assert_allclose(got, want, atol=1e-12, equal_nan=True)


def test_fewer_than_three_models_say_why(nat, tmp_path):
    result = build_report(nat["runs"][:2], tmp_path / "r", **QUIET)
    md = result.index_md.read_text()
    assert "needs at least 3 models with natural-shift cells; this report has 2" in md
    assert result.natural.correlation is None
    assert not (tmp_path / "r" / "tables" / "natural_correlation.csv").exists()
    assert (tmp_path / "r" / "figures" / "natural.png").is_file()


def test_table5_and_severity_tables_have_only_synthetic_columns(nat, tmp_path):
    for result in (nat["plain"], nat["ci"]):
        t5 = pd.read_csv(result.out / "tables" / "table5.csv")
        values = [c for c in t5.columns if not c.endswith(("_lo", "_hi"))]
        assert values == ["model", "source", "clean", "fog", "mPC", "rPC"]
        sev = pd.read_csv(next((result.out / "tables").glob("severity_*.csv")))
        assert list(sev["corruption"]) == ["clean", "fog"]
        assert [c for c in sev.columns if c.isdigit()] == ["1"]
        ciou = pd.read_csv(next((result.out / "tables").glob("class_iou_*.csv")))
        assert list(ciou.columns) == ["class", "clean", "fog"]
    # a baseline without natural cells: CD compares the corruption cells only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = build_report(nat["runs"][:3], tmp_path / "cd", baseline=nat["tmp"] / "plain",
                              **QUIET)  # fmt: skip
    cd = pd.read_csv(tmp_path / "cd" / "tables" / "cd.csv")
    assert list(cd.columns) == ["model", "fog", "mCD"] and len(cd) == 4
    assert len(result.natural.models) == 3 and not any("plain" in m for m in result.natural.models)
    assert "Not in this section (no natural-shift cells)" in result.index_md.read_text()


def test_natural_only_run(nat, tmp_path):
    natonly = nat["tmp"] / "natonly"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = build_report([natonly], tmp_path / "alone", ci=True, resamples=B,
                             reliability_corruptions=["none"], **QUIET)  # fmt: skip
    t5 = pd.read_csv(tmp_path / "alone" / "tables" / "table5.csv")
    assert np.isnan(t5["mPC"].iloc[0]) and "fog" not in t5.columns
    assert "no corruption cells, so no mPC or rPC" in alone.index_md.read_text()
    row = alone.natural.frame.iloc[0]
    assert row["acdc:fog"] == pytest.approx(summary(natonly)["acdc:fog"], abs=5.1e-5)
    # next to two runs with corruptions: ranked on the natural cells, no rho with mPC / rPC
    result = build_report([*nat["runs"][:2], natonly], tmp_path / "mixed", **QUIET)
    assert result.natural.correlation is not None and len(result.natural.correlation) == 0
    assert "Spearman's ρ with mPC is not shown" in result.index_md.read_text()


def test_natural_cells_over_other_images_are_refused(nat, tmp_path):
    runs = [*nat["runs"][:2], nat["tmp"] / "other"]
    with pytest.raises(RobustSegError, match="different images of acdc:fog") as err:
        build_report(runs, tmp_path / "r", **QUIET)
    assert "\n" not in str(err.value) and not (tmp_path / "r").exists()
    # two runs: no correlation, the table is right for each run's own images
    build_report(runs[1:], tmp_path / "two", **QUIET)
    with pytest.raises(RobustSegError, match="paired comparison needs the same images"):
        build_report(runs[1:], tmp_path / "two_ci", ci=True, resamples=B, **QUIET)
    # the same for an edited record of the images
    forged = tmp_path / "forged"
    shutil.copytree(nat["runs"][3], forged)
    info = json.loads((forged / "run.json").read_text())
    info["config"]["natural"][0]["images_sha256"] = "0" * 64
    (forged / "run.json").write_text(json.dumps(info))
    res = CliRunner().invoke(cli, ["report", *map(str, nat["runs"][:2]), str(forged),
                                   "--out", str(tmp_path / "cli"), "--reference", "none"])  # fmt: skip
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "different images of acdc:fog" in res.output


def test_report_without_natural_cells_has_no_section(nat, tmp_path):
    result = build_report([nat["tmp"] / "plain"], tmp_path / "r", **QUIET)
    assert result.natural is None and "Synthetic vs natural" not in result.index_md.read_text()
    assert not list((tmp_path / "r").rglob("natural*"))
