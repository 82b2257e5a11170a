"""The embedded demo: bundled models (registry, catalog, fp16 assets), `robustseg demo`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from corruptions.registry import BENCHMARK
from robustbench_seg.cli import cli
from robustbench_seg.demo import DEMO_MODELS, run_demo
from robustbench_seg.errors import RobustSegError
from robustbench_seg.metrics import confusion_matrix
from robustbench_seg.models import create_model, get_model_entry
from robustbench_seg.models import weights as W
from robustbench_seg.models.convert import NATIVE_METADATA_KEY

BUNDLED = [m for m, _ in DEMO_MODELS]


# ----------------------------------------------------------------------------- bundled models


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_asset_is_registered_fp16_and_checked(name):
    entry = get_model_entry(name)
    info = W.CATALOG[name]
    assert name == f"{entry.name}.synthetic" and entry.default_weights in (
        "synthetic",
        "cityscapes",
    )
    path = Path(info.source)
    assert info.model == entry.name and info.dataset == "synthetic-city"
    assert path.parent == W.ASSETS and path.is_file()
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # The catalog's mIoU is the one measured with the shipped fp16 file on the whole val split
    # (robustseg evaluate, summary committed next to the training logs).
    summary = pd.read_csv(W.ASSETS / "training" / name / "val_summary.csv")
    assert info.miou == pytest.approx(round(float(summary["clean"].iloc[0]), 1), abs=1e-9)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()[NATIVE_METADATA_KEY])
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118
    assert meta["model"] == entry.name and meta["dtype"] == "float16"
    assert torch.float32 not in dtypes and torch.float16 in dtypes
    model = create_model(name, weights="default")
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bundled_assets_fit_in_25_mb():
    total = sum(Path(W.CATALOG[n].source).stat().st_size for n in BUNDLED)
    assert total <= 25 * 10**6


def test_bundled_architectures():
    # SegFormer-B0 as published; DeepLabV3+ MobileNetV2 with the paper's 256-wide head at OS 16.
    b0 = create_model("segformer-b0")
    assert sum(p.numel() for p in b0.parameters()) == 3_719_027
    dl = create_model("deeplabv3plus-mobilenetv2-w256-os16")
    assert dl.output_stride == 16 and dl.decode_head.conv_seg.in_channels == 256
    x = torch.zeros(1, 3, 64, 128)
    with torch.no_grad():
        assert dl.eval()(x).shape == (1, 19, 16, 32)


def test_damaged_asset_is_one_clear_error(tmp_path, monkeypatch):
    good = tmp_path / "w.safetensors"
    W.save_weights(create_model("segformer-b0"), good, model_name="segformer-b0")
    info = W.WeightsInfo("x-synthetic", "segformer-b0", str(good), 19, "synthetic-city",
                         sha256=hashlib.sha256(good.read_bytes()).hexdigest())  # fmt: skip
    monkeypatch.setitem(W.CATALOG, "x-synthetic", info)
    assert W.resolve_weights("x-synthetic") == good
    good.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")  # e.g. an LFS pointer
    with pytest.raises(RobustSegError, match="damaged or not the shipped file"):
        W.resolve_weights("x-synthetic")


def test_export_weights_half_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = create_model("deeplabv3plus-mobilenetv2-w256-os16")
    model.eval()
    src = W.save_weights(
        model, tmp_path / "fp32.safetensors", model_name="deeplabv3plus-mobilenetv2-w256-os16"
    )
    dest = W.export_weights(src, tmp_path / "fp16.safetensors")
    assert dest.stat().st_size < 0.55 * src.stat().st_size
    with safe_open(str(src), framework="pt") as a, safe_open(str(dest), framework="pt") as b:
        assert set(a.keys()) == set(b.keys())
        for k in a.keys():  # noqa: SIM118
            ta, tb = a.get_tensor(k), b.get_tensor(k)
            if ta.is_floating_point():
                assert tb.dtype == torch.float16 and torch.equal(tb, ta.half())
            else:
                assert tb.dtype == ta.dtype and torch.equal(ta, tb)
    loaded = create_model("deeplabv3plus-mobilenetv2-w256-os16", weights=str(dest))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        diff = (loaded(x) - model(x)).abs().max().item()
    assert 0 < diff < 0.05  # fp16 rounding of the weights only
    (tmp_path / "plain.safetensors").write_bytes(dest.read_bytes()[:100])
    with pytest.raises(RobustSegError, match="cannot read"):
        W.export_weights(tmp_path / "plain.safetensors", tmp_path / "y.safetensors")
    assert not (tmp_path / "y.safetensors").exists()


# ----------------------------------------------------------------------------- demo CLI errors


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--images", "0"], "Invalid value for '--images': 0 is not in the range x>=1"),
        (["--size", "8x8"], "--size must be at least 32x32"),
        (["--size", "big"], "use WIDTHxHEIGHT"),
        (["--qualitative", "-1"], "Invalid value for '--qualitative': -1 is not in the range x>=0"),
    ],
)
def test_demo_bad_arguments_are_one_line(tmp_path, args, match):
    r = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "d"), *args])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.output.splitlines() if "rror" in ln]
    assert len(errors) == 1 and match in errors[0] and "Traceback" not in r.output
    assert not (tmp_path / "d").exists()


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    r = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    assert r.exit_code == 2 and "was not made by robustseg demo" in r.output
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


# ----------------------------------------------------------------------------- the demo itself


@pytest.mark.slow
def test_demo_end_to_end_reduced(tmp_path):
    """Two images at the bundled models' size: every report file, and its numbers."""
    out, work = tmp_path / "demo", tmp_path / "work"
    r = CliRunner().invoke(
        cli,
        ["demo", "--out", str(out), "--images", "2", "--work", str(work), "--workers", "2",
         "--qualitative", "1"],
        catch_exceptions=False,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "| Model | Clean |" in r.output and f"report: {out / 'index.md'}" in r.output

    # Files: the synthetic images and their full Cityscapes-C, both runs, ERFs, the report.
    assert len(list((work / "synthetic-city" / "leftImg8bit" / "val").rglob("*.png"))) == 2
    assert len(list((work / "synthetic-city" / "leftImg8bit_foggy" / "val").rglob("*.png"))) == 6
    assert len(list((work / "synthetic-city-c").rglob("*.png"))) == 2 * 72
    for _, run in DEMO_MODELS:
        cells = sorted(p.stem for p in (out / "runs" / run / "cells").glob("*.npz"))
        # clean, the 72 variants, and the natural-shift-style fog at three densities
        assert len(cells) == 76 and "clean" in cells
        assert {f"foggy-cityscapes:fog-{k}" for k in (1, 2, 3)} <= set(cells)
    for rel in ("index.md", "index.html", "demo.json", "tables/table5.md", "tables/table5.tex",
                "tables/table5.csv", "tables/table5.html", "tables/cd.csv", "tables/erf.csv",
                "figures/severity_curves.png", "figures/severity_curves.pdf", "figures/erf.png",
                "figures/erf.pdf", "figures/qualitative.png", "erf/erf_maps.npz"):  # fmt: skip
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0, rel
    index = (out / "index.md").read_text()
    assert index.startswith(
        "# robustseg demo: 2 synthetic city images under the Cityscapes-C protocol and in depth-based fog"
    )
    for needle in ("Table 5", "figures/severity_curves.png", "figures/erf.png",
                   "figures/qualitative.png", "Synthetic vs natural"):  # fmt: skip
        assert needle in index

    # Numbers: Table 5 equals the runs' results; the clean cell equals an independent
    # recomputation from the images, the bundled weights and the label maps.
    t5 = pd.read_csv(out / "tables" / "table5.csv").set_index("model")
    assert list(t5.index) == BUNDLED
    for model, run in DEMO_MODELS:
        df = pd.read_csv(out / "runs" / run / "results.csv").drop_duplicates("cell")
        clean = df.loc[df["corruption"] == "clean", "miou"].iloc[0]
        means = df[df["corruption"] != "clean"].groupby("corruption")["miou"].mean()
        assert t5.loc[model, "clean"] == pytest.approx(100 * clean, abs=1e-9)
        for c in BENCHMARK:
            assert t5.loc[model, c] == pytest.approx(100 * means[c], abs=1e-9)
        # Trained weights (2 images; val split: 55.4 / 50.4); random weights score < 0.05.
        assert clean >= 0.35, (model, clean)
        assert means.mean() < clean  # corruption hurts on average
        _check_clean_cell(model, work / "synthetic-city", out / "runs" / run)
    erf = pd.read_csv(out / "tables" / "erf.csv")
    assert len(erf) == 2 * 5 and set(erf["model"]) == set(BUNDLED)
    meta = json.loads((out / "demo.json").read_text())
    assert meta["images"] == 2 and meta["size"] == [256, 512] and "timings_s" not in meta
    timing = json.loads((out / "timing.json").read_text())
    assert set(timing["timings_s"]) == {
        "synthetic",
        "cityscapes_c",
        "evaluate",
        "erf",
        "report",
        "total",
    }


def _check_clean_cell(model: str, city: Path, run: Path) -> None:
    import cv2

    from robustbench_seg.data.cityscapes import list_pairs, load_label
    from robustbench_seg.engine.inference import predict_logits, preprocess

    net = create_model(model, weights="default")
    pre = get_model_entry(model).preprocessing
    conf = np.zeros((19, 19), np.int64)
    for pair in list_pairs(city, "val"):
        img = cv2.cvtColor(cv2.imread(str(pair.image.path)), cv2.COLOR_BGR2RGB)
        with torch.no_grad():
            logits = predict_logits(net, preprocess(img, pre, torch.device("cpu")), mode="whole")
        pred = logits.argmax(1)[0].numpy()
        conf += confusion_matrix(load_label(pair), pred, 19)
    saved = np.load(run / "cells" / "clean.npz")["confusion"]
    assert np.array_equal(saved, conf)


# ----------------------------------------------------------------------------- reproducible output

# The only files of a demo that may differ between two runs: when and how long (one per folder
# that has timings, ignored by git under reports/demo).
VOLATILE = {"timing.json"}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_writers_are_byte_identical_at_another_time(tmp_path, monkeypatch):
    """Each writer of the demo's binary files, twice, the second time a day later (clock and
    SOURCE_DATE_EPOCH): the same bytes."""
    from matplotlib.figure import Figure

    from robustbench_seg import runs
    from robustbench_seg.analysis.erf import ErfResult, _write_npz
    from robustbench_seg.io import save_figure

    conf = np.arange(19 * 19, dtype=np.int64).reshape(19, 19)
    pred = np.arange(64 * 128, dtype=np.uint8).reshape(64, 128)
    erf = ErfResult(("a", "b"), ("s1", "head"), np.ones((2, 2, 8, 8), np.float32), ("x",), (8, 8))
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0], label="line")
    info = runs.RunInfo({"model": "m"}, "0" * 16, started="then")

    def write(folder: Path) -> dict[str, bytes]:
        runs.save_cell(folder, "clean", conf, 3, "h")
        runs.save_predictions(folder, "fog-3", ["a/b"], [pred], "h")
        runs.write_run_info(folder, dataclasses.replace(info, finished=time.time()))
        _write_npz(folder / "erf_maps.npz", erf)
        for ext in ("png", "pdf", "svg"):
            save_figure(fig, folder / f"figure.{ext}", dpi=50)
        return _tree(folder)

    first = write(tmp_path / "first")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 86400.0)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(now) + 86400))
    second = write(tmp_path / "second")
    assert sorted(first) == sorted(second) and len(first) == 8
    assert [f for f in first if first[f] != second[f]] == ["timing.json"]
    assert runs.read_run_info(tmp_path / "second").finished == now + 86400.0


def test_git_ignores_exactly_the_volatile_demo_files():
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    paths = ["reports/demo/timing.json", "reports/demo/runs/segformer-b0/timing.json",
             "reports/demo/demo.json", "reports/demo/runs/segformer-b0/run.json",
             "reports/demo/index.md", "reports/demo/runs/segformer-b0/cells/clean.npz"]  # fmt: skip
    r = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=root,
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    assert sorted(r.stdout.split()) == sorted(p for p in paths if Path(p).name in VOLATILE)


@pytest.mark.slow
def test_demo_output_is_byte_identical_run_to_run(tmp_path, monkeypatch):
    """`make demo` twice, from two clones: every file the same but the timing files.

    A tiny demo (1 image at 128x64) from two working directories with the same relative --out
    (as `make demo` in two clones) and the same data folder (what the default work folder
    gives: evaluate records its path)."""
    from robustbench_seg import runs

    def demo(clone: str) -> dict[str, bytes]:
        (tmp_path / clone).mkdir(exist_ok=True)
        monkeypatch.chdir(tmp_path / clone)
        shutil.rmtree(tmp_path / "work", ignore_errors=True)
        run_demo("reports/demo", images=1, size=(64, 128), qualitative=1,
                 work=tmp_path / "work", workers=2, device="cpu", progress=False)  # fmt: skip
        return _tree(tmp_path / clone / "reports" / "demo")

    def same(one: dict[str, bytes], two: dict[str, bytes]) -> None:
        assert sorted(one) == sorted(two) and len(one) > 300
        differ = sorted(f for f in one if one[f] != two[f])
        assert {Path(f).name for f in differ} <= VOLATILE, differ

    one, two = demo("one"), demo("two")
    same(one, two)
    timing = [f for f in one if Path(f).name in VOLATILE]
    assert sorted(timing) == ["runs/deeplabv3plus-mobilenetv2-w256-os16/timing.json",
                              "runs/segformer-b0/timing.json", "timing.json"]  # fmt: skip
    # Again over the first demo, as `make demo` over a clone's committed output: the cells are
    # computed afresh, not resumed (they have the same configuration hash).
    run = tmp_path / "one" / "reports" / "demo" / "runs" / "segformer-b0"
    config_hash = runs.read_run_info(run).config_hash
    runs.save_cell(run, "fog-3", np.zeros((19, 19), np.int64), 1, config_hash)
    same(demo("one"), two)
