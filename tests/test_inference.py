"""Inference: preprocessing, mmseg window placement, slide vs whole, exact count-map averaging."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_seg.engine.inference import (
    predict_labels,
    predict_logits,
    preprocess,
    sliding_windows,
)
from robustbench_seg.errors import RobustSegError
from robustbench_seg.models.mit import MiTConfig
from robustbench_seg.models.registry import MMSEG_PREPROCESSING, Preprocessing
from robustbench_seg.models.segformer import SegFormer, SegFormerConfig

TINY = SegFormerConfig(
    encoder=MiTConfig(embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1)), decoder_dim=32
)


class Identity4(nn.Module):
    """Toy model: returns its first two channels unchanged (stride 1, position dependent)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2].clone()


class WindowMean(nn.Module):
    """Toy model: every output pixel holds the window's mean of channel 0 (at 1/4 resolution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        mean = x[:, :1].mean(dim=(2, 3), keepdim=True)
        return mean.expand(n, 1, -(-h // 4), -(-w // 4)).clone()


def test_preprocess_matches_formula(small_image: np.ndarray) -> None:
    x = preprocess(small_image, MMSEG_PREPROCESSING)
    assert x.shape == (1, 3, 96, 160) and x.dtype == torch.float32
    mean = np.array([123.675, 116.28, 103.53], dtype=np.float32)
    std = np.array([58.395, 57.12, 57.375], dtype=np.float32)
    ref = (small_image.astype(np.float32) - mean) / std
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), ref, rtol=0, atol=1e-6)
    # Same statistics on 0-1 (the HF image processor's convention) give the same tensor.
    unit = Preprocessing(
        mean=tuple(m / 255 for m in mean), std=tuple(s / 255 for s in std), value_scale=1.0
    )
    torch.testing.assert_close(preprocess(small_image, unit), x, rtol=0, atol=1e-5)
    bgr = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), channel_order="BGR")
    out = preprocess(np.stack([small_image] * 2), bgr)
    assert out.shape == (2, 3, 96, 160)
    assert torch.equal(out[1, 0], torch.from_numpy(small_image[:, :, 2]).float())
    with pytest.raises(RobustSegError, match="uint8 RGB"):
        preprocess(small_image.astype(np.float32), MMSEG_PREPROCESSING)


def test_sliding_windows_follow_mmseg_placement() -> None:
    # Cityscapes, crop 1024 stride 768: one row, three columns, the last one flush right.
    assert sliding_windows(1024, 2048, 1024, 768) == [
        (0, 1024, 0, 1024),
        (0, 1024, 768, 1792),
        (0, 1024, 1024, 2048),
    ]
    # Image smaller than the crop: one window, the image itself.
    assert sliding_windows(40, 50, 64, 48) == [(0, 40, 0, 50)]
    boxes = sliding_windows(100, 130, (64, 48), (32, 40))
    assert len(boxes) == 3 * 4  # (100-64+31)//32+1 rows, (130-48+39)//40+1 columns
    assert all(y2 - y1 == 64 and x2 - x1 == 48 for y1, y2, x1, x2 in boxes)
    cover = np.zeros((100, 130), int)
    for y1, y2, x1, x2 in boxes:
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1


def test_slide_equals_whole_when_crop_is_the_image() -> None:
    torch.manual_seed(0)
    model = SegFormer(TINY).eval()
    x = torch.randn(2, 3, 64, 96)
    whole = predict_logits(model, x, mode="whole", out_size=(64, 96))
    slide = predict_logits(model, x, mode="slide", crop=(64, 96), stride=(32, 48), batch_size=2)
    assert torch.equal(whole, slide)
    assert whole.shape == (2, 19, 64, 96) and whole.dtype == torch.float32


def test_whole_upsamples_once_to_label_size() -> None:
    torch.manual_seed(0)
    model = SegFormer(TINY).eval()
    x = torch.randn(3, 3, 64, 64)
    out = predict_logits(model, x, out_size=(50, 70), batch_size=2)
    with torch.no_grad():
        ref = F.interpolate(model(x), size=(50, 70), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    assert torch.equal(predict_labels(model, x, out_size=(50, 70)), ref.argmax(1))


def test_count_map_averaging_is_exact_position_dependent() -> None:
    # Integer-valued inputs: sums of k equal values divided by k are exact in float32.
    x = torch.randint(-50, 50, (2, 3, 100, 130)).float()
    for batch_size in (1, 4, 100):
        out = predict_logits(
            Identity4(), x, mode="slide", crop=(64, 48), stride=(32, 40), batch_size=batch_size
        )
        assert torch.equal(out, x[:, :2])


def test_count_map_averaging_matches_explicit_loop() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 100, 130, generator=g)
    boxes = sliding_windows(100, 130, (64, 48), (32, 40))
    total = torch.zeros(100, 130, dtype=torch.float64)
    count = torch.zeros(100, 130, dtype=torch.float64)
    for y1, y2, x1, x2 in boxes:
        total[y1:y2, x1:x2] += x[0, 0, y1:y2, x1:x2].double().mean()
        count[y1:y2, x1:x2] += 1
    out = predict_logits(WindowMean(), x, mode="slide", crop=(64, 48), stride=(32, 40))
    torch.testing.assert_close(out[0, 0].double(), total / count, rtol=0, atol=1e-6)


def test_small_image_is_padded_to_the_crop() -> None:
    x = torch.randint(-9, 9, (1, 3, 40, 50)).float()
    seen = []

    class Spy(Identity4):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(t.shape))
            return super().forward(t)

    out = predict_logits(Spy(), x, mode="slide", crop=64, stride=48)
    assert seen == [(1, 3, 64, 64)]
    assert torch.equal(out, x[:, :2])


def test_slide_resizes_once_to_out_size() -> None:
    x = torch.randint(-9, 9, (1, 3, 64, 64)).float()
    out = predict_logits(Identity4(), x, mode="slide", crop=32, stride=16, out_size=(32, 32))
    ref = F.interpolate(x[:, :2], size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ref)


def test_precision_and_argument_errors() -> None:
    model = SegFormer(TINY).eval()
    x = torch.randn(1, 3, 64, 64)
    out = predict_logits(model, x, precision="bf16", channels_last=True)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, predict_logits(model, x), rtol=0, atol=0.1)
    with pytest.raises(RobustSegError, match="fp16 autocast needs a GPU"):
        predict_logits(model, x, precision="fp16")
    with pytest.raises(RobustSegError, match="mode must be"):
        predict_logits(model, x, mode="tiles")  # type: ignore[arg-type]
    with pytest.raises(RobustSegError, match="crop and stride must be positive"):
        predict_logits(model, x, mode="slide", stride=0)
    # a stride beyond the crop would leave columns no window covers (NaN logits, argmax 0)
    with pytest.raises(RobustSegError, match=r"stride 40x16 is larger than crop 32x16"):
        sliding_windows(64, 128, (16, 32), (16, 40))
    with pytest.raises(RobustSegError, match=r"\(N, C, H, W\)"):
        predict_logits(model, x[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_close_to_fp32() -> None:
    model = SegFormer(TINY).eval().cuda()
    x = torch.randn(2, 3, 64, 96, device="cuda")
    ref = predict_logits(model, x, mode="slide", crop=64, stride=32)
    for precision in ("fp16", "bf16"):
        out = predict_logits(model, x, mode="slide", crop=64, stride=32, precision=precision)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=0, atol=0.05)
