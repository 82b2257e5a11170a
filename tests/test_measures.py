"""Per-cell measures: a toy measure registered here reaches the cell files and results.csv,
survives a resume and agrees between 1 and 2 gloo processes, with no other file changed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robustbench_seg.data.cityscapes import list_pairs, load_label
from robustbench_seg.data.images import read_rgb
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.engine.scoring import Segmenter
from robustbench_seg.models.loader import load
from robustbench_seg.results import measures
from robustbench_seg.results.measures import Measure, State
from tests.fake_cityscapes import make_fake_cityscapes

REPO = Path(__file__).resolve().parents[1]
MODEL = "segformer-b0.synthetic"
FAST = dict(inference="slide", crop=64, stride=48, batch_size=2, workers=0, progress=False)
CELLS = ("clean", "fog-2", "shot_noise-2")


class MaxProb(Measure):
    """The mean maximum softmax probability of a cell's non-ignored pixels."""

    name = "max_prob"
    states = (State("max_prob_sum", (), torch.float64), State("max_prob_pixels", (), torch.int64))

    def update(self, state: dict[str, torch.Tensor], batch) -> None:
        valid = batch.valid
        top = torch.softmax(batch.logits, 1).amax(1)
        state["max_prob_sum"] += (top.double() * valid).sum()
        state["max_prob_pixels"] += valid.sum()

    def columns(self, arrays) -> dict[str, float]:
        return {"max_prob": float(arrays["max_prob_sum"] / arrays["max_prob_pixels"])}


@pytest.fixture
def toy():
    measure = measures.register(MaxProb())  # the one registration line
    yield measure
    measures.unregister(measure.name)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def city(tmp_path):
    root = tmp_path / "cs"
    make_fake_cityscapes(root, (2, 1, 2), seed=1)  # 5 images: uneven shards under torchrun
    return root


def _run(city, out, **kw):
    return evaluate(
        MODEL,
        cityscapes_root=city,
        corruptions="fog,shot_noise",
        severities="2",
        out=out,
        **{**FAST, **kw},
    )


def _files(run: Path) -> dict[str, bytes]:
    names = [f"cells/{c}.npz" for c in CELLS] + ["results.csv", "summary.csv", "per_image.csv"]
    return {n: (run / n).read_bytes() for n in names}


def test_a_registered_measure_reaches_the_cell_files_and_results(city, tmp_path, toy):
    results = _run(city, tmp_path / "run")
    with np.load(tmp_path / "run" / "cells" / "clean.npz") as z:
        assert z.files == [
            "confusion",
            "images",
            "config",
            "ids",
            "per_image",
            "cal_count",
            "cal_confidence",
            "cal_correct",
            "cal_sums",
            "max_prob_sum",
            "max_prob_pixels",
        ]
        assert z["max_prob_sum"].dtype == np.float64 and z["max_prob_sum"].shape == ()
        assert z["max_prob_pixels"].dtype == np.int64
        assert int(z["max_prob_pixels"]) == int(z["confusion"].sum())  # the non-ignored pixels
        counted = int(z["max_prob_pixels"])
        value = float(z["max_prob_sum"]) / counted
    # the same mean from the model's logits, image by image, outside the engine
    loaded = load(MODEL, "default", dataset_classes=19)
    seg = Segmenter(
        loaded.module,
        loaded.preprocessing,
        torch.device("cpu"),
        num_outputs=loaded.num_outputs,
        mode="slide",
        crop=64,
        stride=48,
    )
    total, pixels = 0.0, 0
    for pair in list_pairs(city, "val"):
        image = read_rgb(pair.image.path)
        label = torch.from_numpy(load_label(pair, image.shape[:2]))
        with torch.inference_mode():
            p = torch.softmax(seg.logits(image[None], label.shape), 1).amax(1)[0]
        valid = label < 19
        total += float(p[valid].double().sum())
        pixels += int(valid.sum())
    assert counted == pixels
    assert value == pytest.approx(total / pixels, rel=1e-9)
    assert 1 / 19 < value < 1
    # one results.csv column, after the existing ones, the cell's value on each of its rows
    assert list(results.columns[-2:]) == ["brier", "max_prob"]
    clean = results[results["cell"] == "clean"]["max_prob"]
    assert len(clean) == 19 and (clean == value).all()
    written = pd.read_csv(tmp_path / "run" / "results.csv")
    assert written.loc[written["cell"] == "clean", "max_prob"].iloc[0] == pytest.approx(value)


def test_without_the_measure_the_files_are_as_before(city, tmp_path):
    _run(city, tmp_path / "run")
    with np.load(tmp_path / "run" / "cells" / "clean.npz") as z:
        assert z.files == [
            "confusion",
            "images",
            "config",
            "ids",
            "per_image",
            "cal_count",
            "cal_confidence",
            "cal_correct",
            "cal_sums",
        ]
    assert "max_prob" not in pd.read_csv(tmp_path / "run" / "results.csv").columns


def test_resume_follows_from_the_registration(city, tmp_path, toy):
    ref = tmp_path / "ref"
    _run(city, ref)
    expected = _files(ref)
    # a resumed run: two cell files and the tables gone
    out = tmp_path / "resumed"
    _run(city, out)
    for name in ("cells/clean.npz", "cells/shot_noise-2.npz", "results.csv", "summary.csv"):
        (out / name).unlink()
    kept = (out / "cells" / "fog-2.npz").stat().st_mtime_ns
    _run(city, out)
    assert (out / "cells" / "fog-2.npz").stat().st_mtime_ns == kept  # not computed again
    assert _files(out) == expected
    # a run made before the measure was registered: its cells lack its arrays, computed again
    old = tmp_path / "old"
    measures.unregister(toy.name)
    try:
        _run(city, old)
    finally:
        measures.register(toy)
    with np.load(old / "cells" / "clean.npz") as z:
        assert "max_prob_sum" not in z.files
    _run(city, old)
    assert _files(old) == expected


TORCHRUN = """
import sys
sys.path.insert(0, {repo!r})
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.results import measures
from tests.test_measures import MODEL, MaxProb
measures.register(MaxProb())
evaluate(MODEL, cityscapes_root={city!r}, corruptions="fog,shot_noise", severities="2",
         out={out!r}, device="cpu", inference="slide", crop=64, stride=48, batch_size=2,
         workers=0, progress=False)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_equal_one(city, tmp_path, toy):
    one = tmp_path / "one"
    _run(city, one)
    two = tmp_path / "two"
    script = tmp_path / "two.py"
    script.write_text(TORCHRUN.format(repo=str(REPO), city=str(city), out=str(two)))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        str(script),
    ]
    env = {**os.environ, "ROBUSTSEG_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for cell in CELLS:
        with (
            np.load(one / "cells" / f"{cell}.npz") as a,
            np.load(two / "cells" / f"{cell}.npz") as b,
        ):
            assert a.files == b.files
            assert int(a["max_prob_pixels"]) == int(b["max_prob_pixels"]) > 0
            np.testing.assert_allclose(b["max_prob_sum"], a["max_prob_sum"], rtol=1e-12)
            assert np.array_equal(a["confusion"], b["confusion"])
            assert np.array_equal(a["per_image"], b["per_image"])
    x, y = pd.read_csv(one / "results.csv"), pd.read_csv(two / "results.csv")
    pd.testing.assert_series_equal(x["max_prob"], y["max_prob"], rtol=1e-12)
