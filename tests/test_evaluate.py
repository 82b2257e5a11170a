"""The benchmark runner: views, run directory, numbers, resume, SIGKILL, torchrun, custom models, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from robustbench_seg.cli import cli
from robustbench_seg.data.cityscapes import list_pairs, load_label
from robustbench_seg.data.cityscapes_c import CellView, generate_cityscapes_c
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.errors import RobustSegError
from robustbench_seg.metrics import confusion_matrix, mean_iou
from tests.fake_cityscapes import make_fake_cityscapes

FAST = dict(inference="slide", crop=64, stride=48, batch_size=2, workers=0, progress=False)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def city(tmp_path):
    root = tmp_path / "cs"
    make_fake_cityscapes(root, (2, 1))
    return root


@pytest.fixture(scope="module")
def b0_weights(tmp_path_factory):
    from robustbench_seg.models import create_model
    from robustbench_seg.models.weights import save_weights

    torch.manual_seed(0)
    model = create_model("segformer-b0")
    path = tmp_path_factory.mktemp("w") / "b0.safetensors"
    save_weights(model, path, model_name="segformer-b0", source="test")
    return path


def test_on_the_fly_equals_generated_tree(city, tmp_path):
    generate_cityscapes_c(city, tmp_path / "cc", corruptions="gaussian_noise,glass_blur,frost",
                          severities="2", workers=1, progress=False)  # fmt: skip
    pairs = list_pairs(city, "val")
    for corruption in ("gaussian_noise", "glass_blur", "frost"):
        fly = CellView(pairs, corruption, 2, seed=0)
        tree = CellView(pairs, corruption, 2, cityscapes_c=tmp_path / "cc")
        for i in range(len(pairs)):
            a, b = fly[i], tree[i]
            assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    assert not np.array_equal(
        CellView(pairs, "fog", 1, seed=1).image(0), CellView(pairs, "fog", 1, seed=0).image(0)
    )


def test_run_directory_and_numbers(city, tmp_path, b0_weights):
    out = tmp_path / "run"
    df = evaluate("b0", weights=str(b0_weights), cityscapes_root=city, corruptions="gaussian_noise,fog",
                  severities="1,2", out=out, **FAST)  # fmt: skip
    cells = sorted(p.stem for p in (out / "cells").glob("*.npz"))
    assert cells == ["clean", "fog-1", "fog-2", "gaussian_noise-1", "gaussian_noise-2"]
    assert len(df) == 5 * 19 and set(df["images"]) == {3}
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["model"] == "segformer-b0" and len(run["config_hash"]) == 16
    # When and how long: in timing.json, so that run.json is the same on every run.
    timing = json.loads((out / "timing.json").read_text())
    assert timing["started"] <= timing["finished"] and timing["seconds"] > 0
    assert not {"started", "finished", "seconds"} & set(run)
    assert run["config"]["weights_sha256"] and run["config"]["num_images"] == 3
    # independent recomputation of the clean cell: whole-image windows, argmax, confusion
    from robustbench_seg.engine.inference import predict_logits, preprocess
    from robustbench_seg.models import create_model, get_model_entry

    model = create_model("b0", weights=str(b0_weights)).eval()
    conf = np.zeros((19, 19), np.int64)
    for pair in list_pairs(city, "val"):
        img = cv2.imread(str(pair.image.path))[:, :, ::-1].copy()
        with torch.no_grad():
            logits = predict_logits(model, preprocess(img, get_model_entry("b0").preprocessing),
                                    mode="slide", crop=64, stride=48, batch_size=2)  # fmt: skip
        conf += confusion_matrix(load_label(pair), logits.argmax(1)[0].numpy())
    with np.load(out / "cells" / "clean.npz") as z:
        assert np.array_equal(z["confusion"], conf)
    res = pd.read_csv(out / "results.csv")
    assert abs(res[res.cell == "clean"]["miou"].iloc[0] - mean_iou(conf)) < 1e-12
    summ = pd.read_csv(out / "summary.csv")
    figures = ["clean", "gaussian_noise", "fog", "mPC", "rPC"]
    assert list(summ.columns) == ["model"] + [
        f"{f}{e}" for f in figures for e in ("", "_lo", "_hi")
    ]
    for f in figures:  # each figure inside its 95% interval
        assert summ[f"{f}_lo"].iloc[0] <= summ[f].iloc[0] <= summ[f"{f}_hi"].iloc[0]
    per_image = pd.read_csv(out / "per_image.csv")
    assert len(per_image) == 3 * 5 * len(res.cell.unique()) // 5  # 3 images x every cell
    fog = res[res.corruption == "fog"].drop_duplicates("cell")["miou"].mean() * 100
    assert abs(summ["fog"].iloc[0] - fog) < 1e-3
    assert (
        abs(summ["mPC"].iloc[0] - (summ["fog"].iloc[0] + summ["gaussian_noise"].iloc[0]) / 2) < 1e-3
    )


def test_resume_and_config_mismatch(city, tmp_path, b0_weights):
    out = tmp_path / "run"
    kw = dict(
        weights=str(b0_weights),
        cityscapes_root=city,
        corruptions="contrast",
        severities="1",
        out=out,
    )
    first = evaluate("b0", **kw, **FAST)
    stamp = (out / "cells" / "contrast-1.npz").stat().st_mtime_ns
    again = evaluate("b0", **kw, **FAST)
    assert (out / "cells" / "contrast-1.npz").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(RobustSegError, match="another configuration"):
        evaluate("b0", **kw, **{**FAST, "stride": 32})
    evaluate("b0", **kw, **{**FAST, "stride": 32}, overwrite=True)
    assert json.loads((out / "run.json").read_text())["config"]["stride"] == 32


def _cli(args, env=None, **popen):
    cmd = [sys.executable, "-m", "robustbench_seg", *args]
    return subprocess.Popen(
        cmd, env={**os.environ, "ROBUSTSEG_NO_PROGRESS": "1", **(env or {})}, **popen
    )


def _eval_args(city, weights, out, corr="benchmark", sev="1"):
    return ["evaluate", "--model", "b0", "--weights", str(weights), "--cityscapes-root", str(city),
            "--corruptions", corr, "--severities", sev, "--crop", "64", "--stride", "48",
            "--workers", "0", "--device", "cpu", "--out", str(out)]  # fmt: skip


def test_sigkill_mid_run_resumes_identically(city, tmp_path, b0_weights):
    ref = tmp_path / "ref"
    evaluate("b0", weights=str(b0_weights), cityscapes_root=city, corruptions="noise,digital", severities="1",
             out=ref, **FAST)  # fmt: skip
    out = tmp_path / "killed"
    proc = _cli(_eval_args(city, b0_weights, out, "noise,digital"), env={"OMP_NUM_THREADS": "1"}, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline and len(list((out / "cells").glob("*.npz"))) < 3:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list((out / "cells").glob("*.npz")))
    assert 3 <= n_done < 9, "the kill must land midway"
    assert not (out / "results.csv").exists()
    r = _cli(
        _eval_args(city, b0_weights, out, "noise,digital"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = r.communicate(timeout=300)
    assert r.returncode == 0, stderr
    a, b = pd.read_csv(ref / "results.csv"), pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(a, b)
    assert "mPC" in stdout


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one(city, tmp_path, b0_weights):
    make_fake_cityscapes(city, (2, 1, 2), seed=1)  # 5 images: uneven shards
    one = tmp_path / "one"
    evaluate("b0", weights=str(b0_weights), cityscapes_root=city, corruptions="fog,shot_noise", severities="2",
             out=one, **FAST)  # fmt: skip
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "robustbench_seg", *_eval_args(city, b0_weights, two, "fog,shot_noise", "2")[0:]]  # fmt: skip
    env = {**os.environ, "ROBUSTSEG_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for cell in ("clean", "fog-2", "shot_noise-2"):
        with (
            np.load(one / "cells" / f"{cell}.npz") as a,
            np.load(two / "cells" / f"{cell}.npz") as b,
        ):
            assert np.array_equal(a["confusion"], b["confusion"]) and int(b["images"]) == 5
            # per-image rows gathered into the split's order; calibration sums over ranks
            assert np.array_equal(a["per_image"], b["per_image"]) and b["per_image"].shape == (
                5,
                19,
                3,
            )
            assert np.array_equal(a["cal_count"], b["cal_count"])
            np.testing.assert_allclose(a["cal_sums"], b["cal_sums"], rtol=1e-9)
    assert json.loads((two / "run.json").read_text())["settings"]["world_size"] == 2
    pd.testing.assert_frame_equal(
        pd.read_csv(one / "per_image.csv"), pd.read_csv(two / "per_image.csv")
    )


CUSTOM = """
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.conv = nn.Conv2d(3, k, 3, stride={stride}, padding=1)
    def forward(self, x):
        return self.conv(x)

def build():
    torch.manual_seed(0)
    return Tiny({k}), {{"num_classes": 19, "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]}}
"""


def test_custom_model_file_and_python_api(city, tmp_path):
    f = tmp_path / "mymodel.py"
    f.write_text(CUSTOM.format(k=19, stride=2))
    r = CliRunner().invoke(cli, ["evaluate", "--model", f"{f}:build", "--cityscapes-root", str(city),
                                 "--corruptions", "none", "--inference", "whole", "--workers", "0",
                                 "--out", str(tmp_path / "run")], catch_exceptions=False)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "clean" in r.output and (tmp_path / "run" / "cells" / "clean.npz").exists()
    sys.path.insert(0, str(tmp_path))
    try:
        df = evaluate("mymodel:build", cityscapes_root=city, corruptions=None, **FAST)
    finally:
        sys.path.remove(str(tmp_path))
    assert len(df) == 19 and df["images"].iloc[0] == 3
    import importlib.util

    spec = importlib.util.spec_from_file_location("m2", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    module, meta = mod.build()
    from robustbench_seg.models.registry import Preprocessing

    df2 = evaluate(module, preprocessing=Preprocessing((0.0,) * 3, (255.0,) * 3), cityscapes_root=city,
                   corruptions=None, **FAST)  # fmt: skip
    assert np.allclose(df2["iou"].fillna(-1).values, df["iou"].fillna(-1).values)


def test_custom_model_wrong_classes(city, tmp_path):
    f = tmp_path / "bad.py"
    f.write_text(CUSTOM.format(k=7, stride=1))
    r = CliRunner().invoke(cli, ["evaluate", "--model", f"{f}:build", "--cityscapes-root", str(city),
                                 "--corruptions", "none", "--workers", "0", "--out", str(tmp_path / "r")])  # fmt: skip
    assert r.exit_code == 2 and "returned 7 classes, expected 19" in r.output
    assert len(r.output.strip().splitlines()) == 1


def _cli_error(*args):
    r = CliRunner().invoke(
        cli, ["evaluate", "--model", "b0", "--weights", "none", "--workers", "0", *args]
    )
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    return r.output


def test_bad_input(city, tmp_path, monkeypatch):
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    assert "CITYSCAPES_DATASET" in _cli_error("--out", str(tmp_path / "o"))
    assert "no folder" in _cli_error(
        "--cityscapes-root", str(city), "--split", "train", "--out", str(tmp_path / "o")
    )
    (city / "leftImg8bit/test/berlin").mkdir(parents=True)
    assert "no images" in _cli_error(
        "--cityscapes-root", str(city), "--split", "test", "--out", str(tmp_path / "o")
    )
    lab = next((city / "gtFine/val/aachen").glob("*000000*labelIds.png"))
    lab.rename(lab.with_suffix(".bak"))
    assert "has no label" in _cli_error(
        "--cityscapes-root", str(city), "--out", str(tmp_path / "o")
    )
    lab.with_suffix(".bak").rename(lab)
    cv2.imwrite(str(lab), np.zeros((32, 64), np.uint8))
    assert "64x32 but its image is 128x64" in _cli_error("--cityscapes-root", str(city), "--corruptions", "none",
                                                         "--out", str(tmp_path / "o1"))  # fmt: skip
    cv2.imwrite(str(lab), np.full((64, 128), 40, np.uint8))
    assert "outside the Cityscapes label table" in _cli_error("--cityscapes-root", str(city), "--corruptions",
                                                               "none", "--out", str(tmp_path / "o2"))  # fmt: skip
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in _cli_error(
            "--cityscapes-root", str(city), "--device", "cuda", "--out", str(tmp_path / "o3")
        )
    assert (
        "unknown model"
        in CliRunner().invoke(cli, ["evaluate", "--model", "b9", "--out", "x"]).output
    )


def test_loader_workers_after_opencv_threads(city, tmp_path, b0_weights):
    # The parent uses OpenCV's thread pool first: forked workers used to deadlock in
    # cv2.setNumThreads; workers now start clean (forkserver/spawn). Same numbers as in-process.
    cv2.setNumThreads(2)
    cv2.GaussianBlur(np.zeros((2048, 2048, 3), np.float32), (0, 0), 5)
    kw = dict(
        weights=str(b0_weights), cityscapes_root=city, corruptions="glass_blur,snow", severities="2"
    )
    a = evaluate("b0", **kw, **FAST)
    b = evaluate("b0", **kw, **{**FAST, "workers": 2})
    pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------------- the model contract

CONTRACT = """
import math, torch
from pathlib import Path
from torch import nn

class ResolutionDependent(nn.Module):
    '''20 outputs (19 classes + background); the prediction depends on the input width.'''

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 20, 5, stride=4, padding=2)
        self.conv.load_state_dict(torch.load(Path(__file__).with_name("w.pt")))

    def forward(self, x):
        k = torch.arange(20.0, device=x.device).view(1, 20, 1, 1)
        return 3 * self.conv(x) + torch.cos(k * x.shape[-1] / 10)

META = {"num_classes": 20, "mean": [120.0, 110.0, 100.0], "std": [60.0, 60.0, 60.0]}

def build():
    return ResolutionDependent(), {**META, "input_size": [48, 96], "output_classes": list(range(19))}

def build_no_resize():
    return ResolutionDependent(), {**META, "output_classes": list(range(19))}

def build_20():
    return ResolutionDependent(), META

def build_typo():
    return ResolutionDependent(), {**META, "input_sizes": [48, 96]}
"""


@pytest.fixture
def contract_model(tmp_path):
    torch.manual_seed(0)
    torch.save(torch.nn.Conv2d(3, 20, 5).state_dict(), tmp_path / "w.pt")
    f = tmp_path / "contract.py"
    f.write_text(CONTRACT)
    return f


def _cells(run):
    return {p.stem: np.load(p)["confusion"] for p in sorted((run / "cells").glob("*.npz"))}


def test_contract_input_size_and_output_classes_match_a_hand_written_wrapper(
    city, tmp_path, contract_model
):
    import importlib.util

    import torch.nn.functional as F

    from robustbench_seg import Preprocessing

    kw = dict(cityscapes_root=city, corruptions="fog", severities="2", inference="whole",
              workers=0, progress=False)  # fmt: skip
    evaluate(f"{contract_model}:build", out=tmp_path / "meta", **kw)

    spec = importlib.util.spec_from_file_location("contract_ref", contract_model)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    inner, _ = mod.build()

    class Wrapper(torch.nn.Module):  # what a user had to write before the contract
        def forward(self, x):
            x = F.interpolate(
                x, size=(48, 96), mode="bilinear", align_corners=False, antialias=True
            )
            return inner(x)[:, :19]

    pre = Preprocessing((120.0, 110.0, 100.0), (60.0, 60.0, 60.0))
    evaluate(Wrapper(), preprocessing=pre, num_classes=19, out=tmp_path / "wrapper", **kw)
    meta, wrapper = _cells(tmp_path / "meta"), _cells(tmp_path / "wrapper")
    assert sorted(meta) == ["clean", "fog-2"]
    labelled = sum(int((load_label(p) != 255).sum()) for p in list_pairs(city, "val"))
    for cell in meta:
        assert meta[cell].shape == (19, 19) and meta[cell].sum() == labelled
        assert np.array_equal(meta[cell], wrapper[cell]), cell
    # input_size matters here: at the images' own size the numbers differ
    evaluate(f"{contract_model}:build_no_resize", out=tmp_path / "noresize", **kw)
    assert not np.array_equal(_cells(tmp_path / "noresize")["clean"], meta["clean"])


def test_contract_refuses_undeclared_outputs_and_unknown_keys(city, tmp_path, contract_model):
    base = ["evaluate", "--cityscapes-root", str(city), "--corruptions", "none", "--workers", "0"]
    r = CliRunner().invoke(
        cli, [*base, "--model", f"{contract_model}:build_20", "--out", str(tmp_path / "a")]
    )
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "returns 20 outputs but the dataset has 19 classes; declare output_classes" in r.output
    assert not (tmp_path / "a").exists()  # refused before any work
    r = CliRunner().invoke(
        cli, [*base, "--model", f"{contract_model}:build_typo", "--out", str(tmp_path / "b")]
    )
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "unknown metadata key(s) 'input_sizes'; valid keys: num_classes, mean, std" in r.output
    assert "input_size, output_classes" in r.output


def test_custom_model_resume_is_refused_with_other_weights(city, tmp_path, contract_model):
    kw = dict(cityscapes_root=city, corruptions=None, inference="whole", workers=0, progress=False,
              out=tmp_path / "run")  # fmt: skip
    evaluate(f"{contract_model}:build", **kw)
    first = json.loads((tmp_path / "run" / "run.json").read_text())["config"]["weights_sha256"]
    evaluate(f"{contract_model}:build", **kw)  # same weights: resumes (nothing to do)
    torch.manual_seed(1)
    torch.save(torch.nn.Conv2d(3, 20, 5).state_dict(), tmp_path / "w.pt")  # builder file unchanged
    with pytest.raises(RobustSegError, match="holds a run with another configuration"):
        evaluate(f"{contract_model}:build", **kw)
    from robustbench_seg.models import load

    assert load(f"{contract_model}:build").weights_sha256 != first


class _NaNAfterFirst(torch.nn.Module):
    """Finite logits for the first call, NaN from the second on."""

    num_classes = 19

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 19, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        y = self.conv(x)
        return y if self.calls == 1 else y * float("nan")


def test_no_silent_wrong_number(city, tmp_path):
    # stride > crop: refused before any work
    r = CliRunner().invoke(cli, ["evaluate", "--model", "b0", "--weights", "none", "--cityscapes-root", str(city),
                                 "--crop", "32", "--stride", "48", "--workers", "0", "--out", str(tmp_path / "s")])  # fmt: skip
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert (
        "--stride 48x48 is larger than --crop 32x32" in r.output and not (tmp_path / "s").exists()
    )
    # NaN logits stop the run, naming the cell and the image; no cell is written from them
    with pytest.raises(
        RobustSegError, match=r"non-finite logits \(NaN or inf\) for clean, aachen/"
    ):
        evaluate(_NaNAfterFirst(), cityscapes_root=city, corruptions=None, inference="whole",
                 batch_size=1, workers=0, progress=False, out=tmp_path / "n")  # fmt: skip
    assert not list((tmp_path / "n" / "cells").glob("*.npz"))


def test_written_files_follow_the_umask(city, tmp_path):
    old = os.umask(0o022)
    try:
        evaluate("b0", weights=None, cityscapes_root=city, corruptions=None, limit=1,
                 out=tmp_path / "run", **{**FAST, "inference": "whole"})  # fmt: skip
        files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
        # run.json, timing.json, results.csv, summary.csv, per_image.csv, cells/ and
        # predictions/clean.npz, the folder's marker; the lock is gone once the run ends
        assert sorted(p.name for p in files) == [
            ".robustseg.json", "clean.npz", "clean.npz", "per_image.csv", "results.csv",
            "run.json", "summary.csv", "timing.json",
        ]  # fmt: skip
        assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}
        os.umask(0o077)
        from robustbench_seg.io import write_atomic

        write_atomic(tmp_path / "private.txt", b"x")
        assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_options_a_tree_ignores_are_refused(city, tmp_path):
    generate_cityscapes_c(city, tmp_path / "cc", corruptions="fog", severities="2", seed=5,
                          workers=1, progress=False)  # fmt: skip
    kw = dict(cityscapes_root=city, cityscapes_c=tmp_path / "cc", corruptions="fog", severities="2")
    with pytest.raises(RobustSegError, match="--seed 0 does not apply: .* made with --seed 5"):
        evaluate("b0", weights=None, seed=0, out=tmp_path / "a", **kw, **FAST)
    with pytest.raises(RobustSegError, match="--backend reference does not apply"):
        evaluate("b0", weights=None, backend="reference", out=tmp_path / "b", **kw, **FAST)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    df = evaluate("b0", weights=None, seed=5, limit=1, out=tmp_path / "c", **kw, **FAST)
    assert json.loads((tmp_path / "c" / "run.json").read_text())["config"]["seed"] == 5
    assert sorted(df["cell"].unique()) == ["clean", "fog-2"]


def test_auto_inference_is_whole_when_the_image_fits_the_crop(city, tmp_path, b0_weights):
    kw = dict(weights=str(b0_weights), cityscapes_root=city, corruptions=None, batch_size=2,
              workers=0, progress=False)  # fmt: skip
    auto_big = evaluate("b0", inference="auto", crop=1024, stride=768, **kw)
    whole = evaluate("b0", inference="whole", **kw)
    slide_big = evaluate("b0", inference="slide", crop=1024, stride=768, **kw)
    pd.testing.assert_frame_equal(auto_big, whole)
    assert not np.allclose(auto_big["iou"].fillna(-1), slide_big["iou"].fillna(-1))  # padded
    auto_small = evaluate("b0", inference="auto", crop=48, stride=32, **kw)  # 128x64 > 48
    slide_small = evaluate("b0", inference="slide", crop=48, stride=32, **kw)
    pd.testing.assert_frame_equal(auto_small, slide_small)


def _session_pids(sid: int) -> set[int]:
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6 of stat: the session id
            pids.add(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_the_main_process_leaves_no_worker(city, tmp_path, b0_weights):
    args = _eval_args(city, b0_weights, tmp_path / "run", "benchmark", "1,2,3")
    args[args.index("--workers") + 1] = "2"
    proc = _cli(args, env={"OMP_NUM_THREADS": "1"}, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list((tmp_path / "run" / "cells").glob("*.npz")):
            time.sleep(0.05)
        children = _session_pids(proc.pid) - {proc.pid}
        assert len(children) >= 3, children  # forkserver, resource tracker, 2 loader workers
        os.kill(proc.pid, signal.SIGKILL)  # the main process only, as a scheduler's kill would
        proc.wait()
        deadline = time.time() + 5
        while time.time() < deadline and _session_pids(proc.pid):
            time.sleep(0.1)
        assert _session_pids(proc.pid) == set()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_output_folders_are_owned_and_locked(city, tmp_path, b0_weights):
    kw = dict(weights=str(b0_weights), cityscapes_root=city, corruptions=None, limit=1, **FAST)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "results.csv").write_text("my own numbers\n")
    with pytest.raises(
        RobustSegError,
        match=r"mine is not empty \(results.csv\) and was not made by robustseg evaluate",
    ):
        evaluate("b0", out=user, **kw)
    assert [p.name for p in user.iterdir()] == ["results.csv"]
    assert (user / "results.csv").read_text() == "my own numbers\n"
    # a folder of another kind of job
    generate_cityscapes_c(city, tmp_path / "cc", corruptions="fog", severities="1", workers=0,
                          progress=False)  # fmt: skip
    with pytest.raises(
        RobustSegError, match="holds the output of robustseg cityscapes-c, not of evaluate"
    ):
        evaluate("b0", out=tmp_path / "cc", **kw)
    # a live process holding the lock: refused with its PID; a dead one's lock is taken over
    run = tmp_path / "run"
    evaluate("b0", out=run, **kw)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".robustseg.lock").write_text(str(sleeper.pid))
        with pytest.raises(RobustSegError, match=f"being written by process {sleeper.pid}"):
            evaluate("b0", out=run, **kw)
    finally:
        sleeper.kill()
        sleeper.wait()
    evaluate("b0", out=run, **kw)  # the holder is gone: stale lock taken over
    assert not (run / ".robustseg.lock").exists()
    # make-cityscapes-c over a user's manifest.csv
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.csv").write_text("path\n")
    with pytest.raises(RobustSegError, match="was not made by robustseg cityscapes-c"):
        generate_cityscapes_c(
            city, other, corruptions="fog", severities="1", workers=0, progress=False
        )
    assert (other / "manifest.csv").read_text() == "path\n" and len(list(other.iterdir())) == 1


def test_two_evaluate_processes_into_one_folder(city, tmp_path, b0_weights):
    out = tmp_path / "run"
    first = _cli(_eval_args(city, b0_weights, out, "benchmark", "1,2,3"), start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / ".robustseg.lock").exists():
            time.sleep(0.05)
        second = _cli(_eval_args(city, b0_weights, out, "benchmark", "1,2,3"),
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2 and len(err.strip().splitlines()) == 1, err
        assert f"being written by process {first.pid}" in err
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
