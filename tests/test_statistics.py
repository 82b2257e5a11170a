"""Statistics: calibration against torchmetrics / scikit-learn / a direct Brier score, the
vectorised bootstrap against a loop, interval coverage on a simulated population, Holm, and the
paired comparison of runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import log_loss
from torch import nn
from torchmetrics.classification import MulticlassCalibrationError

from robustbench_seg.compare import compare
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.engine.inference import predict_logits, preprocess
from robustbench_seg.engine.scoring import Segmenter
from robustbench_seg.errors import RobustSegError
from robustbench_seg.metrics import Calibration, miou_from_counts, per_image_counts
from robustbench_seg.models.registry import Preprocessing
from robustbench_seg.runs import load_cell, load_statistics, read_run_info
from robustbench_seg.stats import (
    cell_miou,
    holm,
    interval,
    p_value,
    resample_weights,
    table5_figures,
)
from tests.fake_cityscapes import make_fake_cityscapes

K = 19
PRE = Preprocessing(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))


class _Tiny(nn.Module):
    """Logits from a 3x3 convolution at half resolution (so that upsampling is exercised)."""

    num_classes = K

    def __init__(self, scale: float = 4.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, K, 3, stride=2, padding=1)
        self.scale = scale

    def forward(self, x):
        return self.conv(x) * self.scale


def _independent(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    """ECE (torchmetrics), NLL (scikit-learn) and Brier (direct) over the non-ignored pixels."""
    valid = labels != 255
    flat = logits.permute(0, 2, 3, 1)[valid]
    y = labels[valid]
    ece = float(MulticlassCalibrationError(num_classes=K, n_bins=15, norm="l1")(flat, y))
    p = torch.softmax(flat.double(), 1).numpy()
    nll = log_loss(y.numpy(), p, labels=list(range(K)))
    brier = float(((p - np.eye(K)[y.numpy()]) ** 2).sum(1).mean())
    return ece, nll, brier


def _calibration(m) -> Calibration:
    count, conf, correct, nll, brier = (t.cpu().numpy() for t in m.calibration)
    return Calibration(count, conf, correct, float(nll), float(brier))


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_calibration_equals_torchmetrics_sklearn_and_direct_brier(mode):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 48, 80, 3), dtype=np.uint8)
    labels = torch.from_numpy(rng.integers(0, K, (2, 48, 80)).astype(np.int64))
    labels[0, :10] = 255  # ignored pixels
    labels[1, :, :7] = 255
    seg = Segmenter(_Tiny(), PRE, torch.device("cpu"), mode=mode, crop=(32, 32), stride=(20, 24))
    m = seg.measure(images, labels)
    cal = _calibration(m)
    # independently: the logits the same way (sliding windows averaged before the softmax)
    x = preprocess(images, PRE)
    logits = predict_logits(_Tiny(), x, mode=mode, crop=(32, 32), stride=(20, 24),
                            out_size=(48, 80))  # fmt: skip
    ece, nll, brier = _independent(logits, labels)
    assert cal.pixels == int((labels != 255).sum())
    assert abs(cal.ece - ece) < 1e-6 and abs(cal.nll - nll) < 1e-6 and abs(cal.brier - brier) < 1e-6
    # the predictions and per-image confusion matrices agree with the logits' argmax
    assert torch.equal(m.pred, logits.argmax(1))
    assert int(m.confusion.sum()) == cal.pixels
    acc = float((m.pred == labels)[labels != 255].double().mean())
    assert abs(cal.correct.sum() / cal.pixels - acc) < 1e-12


class _Fixed(nn.Module):
    """Returns fixed logits whatever the input."""

    num_classes = K

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("out", logits)

    def forward(self, x):
        return self.out.expand(x.shape[0], -1, -1, -1)


def test_confident_pixels_take_torchmetrics_slot_for_confidence_one():
    logits = torch.zeros(1, K, 4, 4)
    logits[0, 3] = 30.0  # softmax exactly 1.0 in float32 (no clipping in log_loss)
    logits[0, 5, :2] = 1.0
    labels = torch.full((1, 4, 4), 3)
    labels[0, 0, 0] = 5
    seg = Segmenter(_Fixed(logits), PRE, torch.device("cpu"))
    cal = _calibration(seg.measure(np.zeros((1, 4, 4, 3), np.uint8), labels))
    assert cal.count[15] == 16  # torchmetrics' extra slot
    ece, nll, brier = _independent(logits, labels)
    assert abs(cal.ece - ece) < 1e-6 and abs(cal.nll - nll) < 1e-6 and abs(cal.brier - brier) < 1e-6


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("scale", [0.05, 4.0, 40.0])
def test_cpu_kernel_equals_the_torch_sums(threads, scale):
    """The numba pass (CPU) against the torch operations (any device) on the same logits: equal
    slot counts, and sums to float rounding, with ignored (255, -1, K) pixels, an odd size,
    confidences of 1.0 and logit gaps past the kernel's clamp of the exponential (scale 40);
    the same bits whatever the number of threads."""
    from robustbench_seg.engine.calibration_cpu import calibration_sums_cpu
    from robustbench_seg.engine.scoring import _EDGES, calibration_sums_torch

    gen = torch.Generator().manual_seed(int(scale * 100) + threads)
    logits = torch.randn(3, K, 45, 37, generator=gen) * scale  # 135 rows: 5 blocks
    logits[1, 4, :3] = 200.0  # softmax exactly 1.0: torchmetrics' extra slot
    labels = torch.randint(0, K, (3, 45, 37), generator=gen)
    labels[0, :2] = 255
    labels[1, :, :5] = -1
    labels[2, 7] = K
    top, pred = logits.max(1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fast = calibration_sums_cpu(logits, top, pred, labels, _EDGES)
    finally:
        torch.set_num_threads(before)
    ref = calibration_sums_torch(logits.clone(), top, pred, labels, K)
    valid = int(((labels >= 0) & (labels < K)).sum())
    assert int(fast[0].sum()) == valid == int(ref[0].sum())
    assert int(fast[2].sum()) == int(ref[2].sum()) == int(((pred == labels) & (labels >= 0)).sum())
    assert fast[0][15] >= 3 * (37 - 5)  # the saturated pixels (less the ignored ones)
    # a confidence within an ulp of an edge may land in the next slot (the two sum the 19
    # exponentials in another order): at most one pixel in each test case does
    moved = int((fast[0] - ref[0]).abs().sum()) // 2
    assert moved <= 1 and int((fast[2] - ref[2]).abs().sum()) <= 2 * moved
    assert float((fast[1] - ref[1]).abs().sum()) <= 2.0 * moved + 1e-6 * float(ref[1].sum())
    for a, b in zip(fast[3:], ref[3:], strict=True):  # nll, brier sums
        assert abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
    # and the figures the report prints
    ca, cb = (
        Calibration(*(t.numpy() for t in x[:3]), float(x[3]), float(x[4])) for x in (fast, ref)
    )
    assert abs(ca.ece - cb.ece) <= 1e-6 + 2 * moved / valid
    assert abs(ca.nll - cb.nll) <= 1e-7 and abs(ca.brier - cb.brier) <= 1e-7
    # the same sums, to the last bit, with another number of threads
    torch.set_num_threads(2 if threads != 2 else 1)
    try:
        other = calibration_sums_cpu(logits, top, pred, labels, _EDGES)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(fast, other, strict=True))
    as_uint8 = torch.where(labels < 0, 255, labels).to(torch.uint8)
    again = calibration_sums_cpu(logits, top, pred, as_uint8, _EDGES)
    assert torch.equal(again[0], fast[0]) and torch.equal(again[2], fast[2])
    # uint8 labels (what evaluate passes) give the same sums
    assert all(torch.equal(a, b) for a, b in zip(again, fast, strict=True))
    assert int(calibration_sums_torch(logits.clone(), top, pred, as_uint8, K)[0].sum()) == valid


def test_cpu_kernel_exp_and_log_within_two_ulps():
    """The kernel's vectorisable float32 exp (on [-87, 0]) and log (on [1, 1e6], what it takes:
    sums of at least one exponential) against float64 numpy."""
    from robustbench_seg.engine.calibration_cpu import _exp, _log

    x = np.concatenate([-np.geomspace(1e-7, 87, 3000), np.linspace(-87, 0, 3001)]).astype(
        np.float32
    )
    got = np.array([_exp(v) for v in x], np.float64)
    want = np.exp(x.astype(np.float64))
    ulp = np.spacing(want.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - want) / ulp) <= 2.0
    v = np.concatenate([np.geomspace(1.0, 1e6, 3000), 1 + np.arange(200) * 1.2e-7]).astype(
        np.float32
    )
    got = np.array([_log(u) for u in v], np.float64)
    want = np.log(v.astype(np.float64))
    nonzero = want > 0  # log(1) = 0 is checked exactly below
    ulp = np.spacing(want[nonzero].astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got[nonzero] - want[nonzero]) / ulp) <= 2.0
    assert float(_log(np.float32(1.0))) == 0.0 and float(_exp(np.float32(0.0))) == 1.0


def test_evaluate_keeps_per_image_counts_and_calibration(tmp_path):
    city = tmp_path / "cs"
    make_fake_cityscapes(city, (2, 1), size=(48, 96))
    out = tmp_path / "run"
    evaluate(_Tiny(), preprocessing=PRE, cityscapes_root=city, corruptions="fog", severities="1",
             inference="slide", crop=32, stride=24, workers=0, progress=False, out=out)  # fmt: skip
    info = read_run_info(out)
    record = load_cell(out, "fog-1", info.config_hash)
    assert record.per_image.shape == (3, K, 3)
    # the per-image counts add up to the cell's confusion matrix
    tp, fp, fn = record.per_image.sum(0).T
    assert np.array_equal(tp, np.diag(record.confusion))
    assert np.array_equal(fp, record.confusion.sum(0) - tp)
    assert np.array_equal(fn, record.confusion.sum(1) - tp)
    stats = load_statistics(out)
    assert stats.image_ids == list(info.image_ids) and stats.counts.shape == (3, 2, K, 3)
    per_image = pd.read_csv(out / "per_image.csv")
    direct = miou_from_counts(record.per_image)
    np.testing.assert_allclose(per_image[per_image.cell == "fog-1"]["miou"], direct, atol=1e-6)
    results = pd.read_csv(out / "results.csv").drop_duplicates("cell").set_index("cell")
    assert abs(results.loc["fog-1", "ece"] - record.calibration.ece) < 1e-12
    assert (
        results.loc["clean", "miou_lo"]
        <= results.loc["clean", "miou"]
        <= results.loc["clean", "miou_hi"]
    )


def test_per_image_counts():
    conf = np.array([[[5, 1], [2, 7]], [[0, 0], [3, 4]]])
    assert per_image_counts(conf).tolist() == [[[5, 2, 1], [7, 1, 2]], [[0, 3, 0], [4, 0, 3]]]


def test_bootstrap_product_equals_a_loop_over_resamples():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 50, (30, 4, 5, 3))
    counts[:, :, 4] = 0  # a class never present
    w = resample_weights(30, "images", resamples=20)
    got = cell_miou(counts, w)
    assert got.shape == (21, 4) and np.all(w[0] == 1) and np.all(w[1:].sum(1) == 30)
    for r in range(21):
        idx = np.repeat(np.arange(30), w[r].astype(int))  # the resample as a list of images
        np.testing.assert_allclose(got[r], miou_from_counts(counts[idx].sum(0)), rtol=1e-12)
    # the same images (key) give the same resamples: runs are paired; other images, others
    assert np.array_equal(resample_weights(30, "images", resamples=20), w)
    assert not np.array_equal(resample_weights(30, "other", resamples=20), w)


def test_table5_figures_and_paired_cd():
    miou = np.array([[0.8, 0.6, 0.4, 0.7, 0.5], [0.7, 0.5, 0.3, 0.6, 0.4]])
    cells = ["clean", "fog-1", "fog-2", "snow-1", "snow-2"]
    f = table5_figures(cells, miou, baseline=(cells, miou))
    np.testing.assert_allclose(f["fog"], [50.0, 40.0])
    np.testing.assert_allclose(f["mPC"], [55.0, 45.0])
    np.testing.assert_allclose(f["rPC"], [100 * 55 / 80, 100 * 45 / 70])
    np.testing.assert_allclose(f["mCD"], [100.0, 100.0])  # a run against itself


def test_holm_and_p_values():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])
    assert p_value(np.zeros(999)) == 1.0
    assert p_value(np.full(999, 2.0)) == pytest.approx(2 / 1000)
    assert interval(np.arange(1001.0)) == pytest.approx((25.0, 975.0))


@pytest.mark.slow
def test_interval_covers_the_population_miou_95_percent():
    """1000 samples of 500 images from a population of 20000 with heavy-tailed class areas and
    varying image difficulty: the 95% interval (B = 1000) covers the population's mIoU in 93-97%
    of them."""
    rng = np.random.default_rng(1)
    m_pop, k = 20000, 6
    present = rng.random((m_pop, k)) < np.array([0.95, 0.8, 0.6, 0.4, 0.2, 0.1])
    area = rng.lognormal(8, 1.0, (m_pop, k)) * present
    quality = rng.beta(8, 2, (m_pop, 1))
    tp = np.floor(area * quality * rng.beta(20, 3, (m_pop, k)))
    fn = area - tp
    fp = np.floor(fn * rng.uniform(0.5, 1.5, (m_pop, k)))
    population = np.stack([tp, fp, fn], -1).astype(np.int64)
    truth = float(miou_from_counts(population.sum(0)))
    hits, repeats = 0, 1000
    for r in range(repeats):
        sample = population[rng.choice(m_pop, 500, replace=False)][:, None]
        m = cell_miou(sample, resample_weights(500, f"sample {r}"))[:, 0]
        lo, hi = interval(m[1:])
        hits += lo <= truth <= hi
    assert 0.93 <= hits / repeats <= 0.97, hits / repeats


DEGRADED = """
import torch
from robustbench_seg.models import load

def build():
    m = load("segformer-b0.synthetic")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.module.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=g) * {noise} * p.std())
    pre = m.preprocessing
    return m.module, {{"num_classes": 19, "mean": list(pre.mean), "std": list(pre.std),
                      "channel_order": pre.channel_order, "value_scale": pre.value_scale}}
"""


@pytest.mark.slow
def test_compare_same_model_and_a_degraded_copy(tmp_path):
    from robustbench_seg.data.synthetic import make_synthetic_city

    city = tmp_path / "city"
    make_synthetic_city(city, train=0, val=8, size=(256, 512), workers=0, progress=False)
    kw = dict(cityscapes_root=city, corruptions="noise", severities="2", inference="whole",
              workers=0, progress=False)  # fmt: skip
    evaluate("segformer-b0.synthetic", out=tmp_path / "a", **kw)
    evaluate("segformer-b0.synthetic", out=tmp_path / "a2", **kw)
    builder = tmp_path / "degraded.py"
    builder.write_text(DEGRADED.format(noise=0.05))
    evaluate(f"{builder}:build", out=tmp_path / "d", **kw)

    same = compare(tmp_path / "a", tmp_path / "a2")
    assert list(same.figure) == ["clean", "gaussian_noise", "impulse_noise", "shot_noise",
                                 "speckle_noise", "mPC", "rPC"]  # fmt: skip
    assert not same.significant.any() and (same.difference == 0).all()

    worse = compare(tmp_path / "a", tmp_path / "d").set_index("figure")
    noises = ["gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"]
    assert worse.loc[noises, "significant"].all(), worse
    assert (worse.loc[noises, "difference_lo"] > 0).all()
    # Holm: every corrected p-value at least the raw one
    assert (worse.p_holm >= worse.p_value).all()

    # other images or other cells are refused
    evaluate("segformer-b0.synthetic", out=tmp_path / "fewer", limit=6, **kw)
    with pytest.raises(RobustSegError, match="different images"):
        compare(tmp_path / "a", tmp_path / "fewer")
    evaluate("segformer-b0.synthetic", out=tmp_path / "blur", **{**kw, "corruptions": "blur"})
    with pytest.raises(RobustSegError, match="different cells"):
        compare(tmp_path / "a", tmp_path / "blur")
