"""Effective receptive fields (Luo et al. 2016): exact conv fields, global attention, figures."""

from __future__ import annotations

import csv
import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from robustbench_seg.analysis.erf import (
    STAGES,
    central_square_share,
    central_square_sides,
    compute_erf,
    erf_gradients,
    erf_statistics,
    load_erf,
    log_normalize,
    select_images,
    smallest_central_square,
)
from robustbench_seg.errors import RobustSegError
from robustbench_seg.models import create_model
from tests.conftest import natural_image
from tests.fake_cityscapes import make_fake_cityscapes

torch.set_num_threads(1)


class ConvStack(nn.Module):
    """k 3x3 convolutions, stride 1, padding 1: a (2k+1)x(2k+1) theoretical receptive field."""

    def __init__(self, k: int, relu: bool, width: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(k):
            layers.append(nn.Conv2d(3 if i == 0 else width, width, 3, 1, 1))
            if relu:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.body(x)}


def _mean_erf(model: nn.Module, stage: str, h: int, w: int, n: int = 3) -> np.ndarray:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, h, w, generator=gen)
    # the batch's images do not interact: the summed unit gives the sum of the n maps
    return erf_gradients(model.eval().requires_grad_(False), x, (stage,))[stage].sum(0).numpy()


def _outside_share(erf: np.ndarray, side: int) -> float:
    """Mass share outside the central ``side`` square, by plain slicing."""
    h, w = erf.shape
    y0, x0 = h // 2 - side // 2, w // 2 - side // 2
    inside = erf[max(y0, 0) : y0 + side, max(x0, 0) : x0 + side].sum(dtype=np.float64)
    return 1.0 - inside / erf.sum(dtype=np.float64)


def _randomize_layernorms(model: nn.Module, seed: int = 1) -> nn.Module:
    # With LayerNorm's initial weight 1 (and bias 0) the channel sum of a normalized token is
    # constant, so the gradient of the summed central unit would vanish; trained weights differ.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
    return model


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_conv_stack_erf_is_exactly_the_theoretical_field(k: int, relu: bool) -> None:
    torch.manual_seed(k)
    h, w = 21, 30
    erf = _mean_erf(ConvStack(k, relu), "out", h, w)
    cy, cx = h // 2, w // 2
    inside = np.zeros((h, w), bool)
    inside[cy - k : cy + k + 1, cx - k : cx + k + 1] = True
    assert np.all(erf[~inside] == 0.0)
    assert np.all(erf[inside] > 0.0)
    assert _outside_share(erf, 2 * k + 1) == 0.0
    assert smallest_central_square(erf, 1.0) == 2 * k + 1


@pytest.mark.parametrize(
    ("stage", "side", "min_outside"),
    [
        # MiT stage 1 without attention sees 23 px (7x7/4 embedding + two 3x3 depthwise convs
        # at stride 4): attention over the reduced sequence reaches past 33 px
        ("stage1", 33, 0.01),
        # far outside the 9x9 field of four 3x3 convs
        ("stage4", 9, 0.5),
        ("fused", 9, 0.5),
    ],
)
def test_segformer_attention_reaches_far_outside_a_conv_field(
    stage: str, side: int, min_outside: float
) -> None:
    torch.manual_seed(0)
    model = _randomize_layernorms(create_model("segformer-b0"))
    erf = _mean_erf(model, stage, 64, 128, n=1)
    conv = _mean_erf(ConvStack(4, relu=True), "out", 64, 128, n=1)
    assert _outside_share(conv, 9) == 0.0
    assert _outside_share(erf, side) > min_outside
    # and the mass really is far away: beyond the central half of the image
    assert 1.0 - central_square_share(erf, 0.25) > 0.0


def test_delta_map_figures_are_exact() -> None:
    erf = np.zeros((100, 200))
    erf[50, 100] = 3.0
    stats = erf_statistics(erf)
    assert stats["share_1pct"] == stats["share_5pct"] == stats["share_25pct"] == 1.0
    assert stats["side50_px"] == stats["side90_px"] == 1
    assert stats["side50_frac"] == pytest.approx(1 / 100)
    assert stats["mass"] == 3.0


def test_uniform_map_share_is_the_area_fraction() -> None:
    h, w = 100, 200
    erf = np.ones((h, w), np.float32)
    for f in (0.01, 0.05, 0.25):
        side = round(math.sqrt(f * h * w))
        assert central_square_share(erf, f) == pytest.approx(side * side / (h * w), abs=1e-9)
        assert abs(central_square_share(erf, f) - f) <= (2 * side + 1) / (h * w)
    # 50%: the 100x100 square; 90%: the square is clipped to the 100 rows, 180 columns
    assert central_square_sides(erf, [0.5, 0.9, 1.0]) == [100, 180, 200]
    stats = erf_statistics(erf)
    assert stats["side90_frac"] == pytest.approx(1.8)


def test_central_square_sides_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    erf = rng.random((17, 26)) ** 4
    total = erf.sum()
    for q in (0.1, 0.5, 0.9, 0.99):
        side = next(s for s in range(1, 27) if (1 - _outside_share(erf, s)) * total >= q * total)
        assert central_square_sides(erf, [q]) == [side]


def test_log_normalize() -> None:
    erf = np.array([[0.0, 1e-2, 1.0, 1e-9]]) * 7.0
    np.testing.assert_allclose(log_normalize(erf, decades=4), [[0.0, 0.5, 1.0, 0.0]], atol=1e-6)
    assert not log_normalize(np.zeros((3, 3))).any()


def test_compute_erf_writes_grid_csv_and_maps(tmp_path) -> None:
    root = tmp_path / "cs"
    ids = make_fake_cityscapes(root, n_per_city=(2, 1), size=(48, 96))
    torch.manual_seed(0)
    module = create_model("deeplabv3plus-mobilenetv2").train()
    out = tmp_path / "erf"
    result = compute_erf(
        ["segformer-b0", module],
        cityscapes_root=root,
        num_images=2,
        size=(64, 96),
        seed=3,
        out=out,
        progress=False,
    )
    chosen = np.sort(np.random.default_rng(3).choice(3, size=2, replace=False))
    assert result.image_ids == tuple(sorted(ids)[i] for i in chosen)
    assert result.models == ("segformer-b0", "DeepLabV3Plus")
    assert result.maps.shape == (2, len(STAGES), 64, 96)
    assert np.isfinite(result.maps).all() and (result.maps >= 0).all()
    assert result.maps[1].sum(axis=(1, 2)).min() > 0
    # the caller's module is handed back as it came
    assert module.training and all(p.requires_grad for p in module.parameters())
    for name in ("erf.png", "erf.pdf", "erf.csv", "erf_maps.npz"):
        assert (out / name).stat().st_size > 0
    with open(out / "erf.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["stage"]) for r in rows] == [
        (m, s) for m in result.models for s in STAGES
    ]
    assert {"share_1pct", "share_5pct", "share_25pct", "side50_px", "side90_frac"} <= set(rows[0])
    loaded = load_erf(out / "erf_maps.npz")
    np.testing.assert_array_equal(loaded.maps, result.maps)
    assert loaded.stats == result.stats
    assert loaded.image_ids == result.image_ids


def test_random_weights_are_seeded(tmp_path) -> None:
    img = natural_image(1, 32, 64)
    cv2.imwrite(str(tmp_path / "a.png"), img[:, :, ::-1])
    kw = dict(images_dir=tmp_path, size=(32, 64), seed=5, progress=False)
    a = compute_erf("deeplabv3plus-mobilenetv2", **kw)
    b = compute_erf("dlv3p-mbv2", **kw)
    np.testing.assert_array_equal(a.maps, b.maps)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda d: compute_erf("segformer-b0", images_dir=d / "empty"), "no images"),
        (lambda d: select_images(images_dir=d, num_images=0), "num-images"),
        (lambda d: compute_erf(nn.Conv2d(3, 3, 3), images_dir=d), "forward_features"),
        (lambda d: compute_erf(["b0", "b1"], weights=["x", "y", "z"], images_dir=d), "--weights"),
        (lambda d: compute_erf("segformer-b9", images_dir=d), "unknown model"),
        (lambda d: select_images(cityscapes_root=d, images_dir=d), "not both"),
    ],
)
def test_user_errors_are_one_line(tmp_path, call, match: str) -> None:
    (tmp_path / "empty").mkdir()
    cv2.imwrite(str(tmp_path / "a.png"), natural_image(0, 16, 16))
    with pytest.raises(RobustSegError, match=match) as info:
        call(tmp_path)
    assert "\n" not in str(info.value)
