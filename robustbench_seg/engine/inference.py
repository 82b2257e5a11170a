"""Whole-image and sliding-window inference (mmsegmentation's ``slide_inference`` semantics)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_seg.errors import RobustSegError
from robustbench_seg.models.registry import Preprocessing
from robustbench_seg.runtime import autocast
from robustbench_seg.sizes import format_size, hw

__all__ = [
    "Precision", "pil_bilinear_resize", "predict_labels", "predict_logits", "preprocess",
    "sliding_windows",
]  # fmt: skip

Precision = Literal["fp32", "fp16", "bf16"]


def preprocess(
    image: np.ndarray, spec: Preprocessing, device: torch.device | str | None = None
) -> torch.Tensor:
    """Normalizes RGB uint8 image(s) for a model.

    Args:
        image: ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8, RGB.
        spec: The model's preprocessing (``image_resize``, mean/std, channel order, value
            scale).
        device: Where to put the result (normalization runs there).

    Returns:
        Float32 tensor ``(N, 3, H, W)``.

    Raises:
        RobustSegError: For arrays that are not uint8 RGB images.
    """
    if image.dtype != np.uint8 or image.ndim not in (3, 4) or image.shape[-1] != 3:
        raise RobustSegError(
            f"expected uint8 RGB image(s) (H, W, 3) or (N, H, W, 3), got {image.dtype} "
            f"{tuple(image.shape)}"
        )
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    if x.ndim == 3:
        x = x[None]
    x = x.permute(0, 3, 1, 2)
    if spec.image_resize is not None:
        x = pil_bilinear_resize(x, spec.image_resize)
    x = x.float()
    if spec.channel_order == "BGR":
        x = x.flip(1)
    if spec.value_scale != 255.0:
        x = x * (spec.value_scale / 255.0)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


# Pillow's fixed point (libImaging/Resample.c): PRECISION_BITS = 32 - 8 - 2
_PIL_BITS = 22


def _pil_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's bilinear taps of one axis (``precompute_coeffs`` then
    ``normalize_coeffs_8bpc``): source indices and integer weights, ``(out_size, ksize)``.

    The float arithmetic follows the C code operation by operation (float64, sums in order,
    truncation toward zero), so the integer weights are Pillow's.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    t = np.abs(((taps[None] + xmin[:, None]) - center[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where((taps[None] < xmax[:, None]) & (t < 1.0), 1.0 - t, 0.0)
    total = np.cumsum(w, axis=1)[:, -1:]  # in order, as the C loop adds them
    w = np.where(total != 0.0, w / np.where(total != 0.0, total, 1.0), w)
    scaled = w * (1 << _PIL_BITS)
    kk = np.where(scaled < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled)).astype(np.int64)
    index = np.minimum(xmin[:, None] + taps[None], in_size - 1)  # zero weights past xmax
    return index, kk


def _pil_pass(x: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    """One of Pillow's two passes along ``dim`` of a uint8 tensor: integer sums rounded with
    half an output step, shifted back and clipped to 0..255."""
    index, kk = _pil_taps(x.shape[dim], out_size)
    idx = torch.from_numpy(index).to(x.device)
    weights = torch.from_numpy(kk.astype(np.int32)).to(x.device)
    shape = [1] * x.ndim
    shape[dim] = out_size
    # int32 as Pillow: bilinear weights are >= 0 and sum to about 2**22, so 255 * 2**22 + 2**21
    # bounds every partial sum
    acc = torch.full((), 1 << (_PIL_BITS - 1), dtype=torch.int32, device=x.device)
    for k in range(index.shape[1]):
        acc = acc + x.index_select(dim, idx[:, k]).int() * weights[:, k].view(shape)
    return (acc >> _PIL_BITS).clamp_(0, 255).to(torch.uint8)


def pil_bilinear_resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Pillow's ``Image.resize((W, H), Image.BILINEAR)`` of uint8 ``(N, C, H, W)`` images, byte
    for byte, on any device.

    Pillow resamples in two passes, each rounded to uint8, with 22-bit integer weights; an axis
    whose size does not change is not resampled. The order of the passes is Pillow 13's: the
    vertical pass first when the height shrinks by more than twice as many pixels as the width
    (``h - H > 2 (w - W)``), else the horizontal one. Pillow 12.1 and older always resample
    horizontally first (12.2: also vertically first for images over 100 times taller than
    wide); where the order differs, some values differ by 1.

    ``torch.nn.functional.interpolate(x, mode="bilinear", antialias=True)`` on uint8 is not
    this: its integer weights are others, and a non-integer upscale differs by 1 on some
    values (torch 2.13: 364 of 38400 values for 64x128 -> 64x200).

    Args:
        x: ``(N, C, H, W)`` uint8.
        size: ``(H_out, W_out)``.

    Returns:
        ``(N, C, H_out, W_out)`` uint8.
    """
    height, width = hw(tuple(size))
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise RobustSegError(f"expected uint8 (N, C, H, W) images, got {x.dtype} {tuple(x.shape)}")
    h, w = x.shape[-2:]
    passes = [(width, 3), (height, 2)]
    if h - height > 0 and h - height > 2 * (w - width):  # Pillow 13's ImagingResampleInner
        passes.reverse()
    for out_size, dim in passes:
        if x.shape[dim] != out_size:
            x = _pil_pass(x, out_size, dim)
    return x


def sliding_windows(
    height: int, width: int, crop: int | Sequence[int], stride: int | Sequence[int]
) -> list[tuple[int, int, int, int]]:
    """Window boxes ``(y1, y2, x1, x2)`` covering the image, placed as mmsegmentation does.

    The grid has ``max(H - crop + stride - 1, 0) // stride + 1`` rows (same for columns); the
    last window of a row/column is shifted back to end at the border. Windows are smaller
    than the crop only where the image itself is.
    """
    (ch, cw), (sh, sw) = hw(crop), hw(stride)
    if min(ch, cw, sh, sw) <= 0:
        raise RobustSegError(
            f"crop and stride must be positive, got crop {format_size((ch, cw))} stride "
            f"{format_size((sh, sw))}"
        )
    if sh > ch or sw > cw:  # windows would leave pixels no window covers
        raise RobustSegError(
            f"stride {format_size((sh, sw))} is larger than crop {format_size((ch, cw))}: pixels "
            "between the windows would get no prediction; use a stride within the crop"
        )
    rows = max(height - ch + sh - 1, 0) // sh + 1
    cols = max(width - cw + sw - 1, 0) // sw + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * sh + ch, height), min(c * sw + cw, width)
            boxes.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return boxes


def _run(
    model: nn.Module, x: torch.Tensor, precision: Precision, channels_last: bool
) -> torch.Tensor:
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(x.device, precision):
        out = model(x)
    return out.float()


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    mode: Literal["whole", "slide"] = "whole",
    crop: int | Sequence[int] = 1024,
    stride: int | Sequence[int] = 768,
    batch_size: int = 4,
    out_size: Sequence[int] | None = None,
    precision: Precision = "fp32",
    channels_last: bool = False,
) -> torch.Tensor:
    """Class logits at label resolution.

    ``whole``: the images go through the model in chunks of ``batch_size`` and the
    logits are upsampled once to ``out_size``. ``slide`` (mmsegmentation's
    ``slide_inference``): windows of ``crop`` every ``stride`` pixels, batched
    ``batch_size`` at a time; windows smaller than the crop (image smaller than the crop)
    are zero-padded bottom/right to the crop, as mmseg's test-time ``Pad`` after
    ``Normalize``; each window's logits are resized to the window, summed at image
    resolution and divided by the per-pixel window count, then resized once to ``out_size``
    when that differs from the image size. Interpolation is bilinear with
    ``align_corners=False`` throughout.

    Args:
        model: Returns ``(N, K, h, w)`` logits for a normalized ``(N, 3, H, W)`` batch; in eval
            mode. For ``channels_last`` convert it with ``model.to(memory_format=...)`` too.
        images: Normalized float ``(N, 3, H, W)`` batch on the model's device.
        mode: ``"whole"`` or ``"slide"``.
        crop: Window size ``(h, w)`` or one int (slide only).
        stride: Window step ``(h, w)`` or one int (slide only).
        batch_size: Images (whole) or windows (slide) per forward pass.
        out_size: ``(H_out, W_out)`` of the labels; default the image size.
        precision: ``"fp32"``, or autocast ``"fp16"``/``"bf16"`` (fp16 on CUDA only).
        channels_last: Feed inputs in channels-last memory format.

    Returns:
        Float32 logits ``(N, K, H_out, W_out)``.

    Raises:
        RobustSegError: Bad mode, precision, sizes or input shape.
    """
    if images.ndim != 4:
        raise RobustSegError(f"expected an (N, C, H, W) batch, got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise RobustSegError(f"batch_size must be >= 1, got {batch_size}")
    n, _, h, w = images.shape
    size = (h, w) if out_size is None else hw(tuple(out_size))
    if mode == "whole":
        outs = []
        for i in range(0, n, batch_size):
            logits = _run(model, images[i : i + batch_size], precision, channels_last)
            outs.append(F.interpolate(logits, size=size, mode="bilinear", align_corners=False))
        return torch.cat(outs)
    if mode != "slide":
        raise RobustSegError(f"mode must be 'whole' or 'slide', not {mode!r}")

    ch, cw = hw(crop)
    boxes = sliding_windows(h, w, (ch, cw), stride)
    jobs = [(i, box) for i in range(n) for box in boxes]
    preds: torch.Tensor | None = None
    count = torch.zeros((1, 1, h, w), device=images.device)
    for y1, y2, x1, x2 in boxes:
        count[:, :, y1:y2, x1:x2] += 1
    for chunk in _chunks(jobs, batch_size):
        wins = []
        for i, (y1, y2, x1, x2) in chunk:
            win = images[i : i + 1, :, y1:y2, x1:x2]
            if win.shape[-2:] != (ch, cw):
                win = F.pad(win, (0, max(cw - win.shape[-1], 0), 0, max(ch - win.shape[-2], 0)))
            wins.append(win)
        logits = _run(model, torch.cat(wins), precision, channels_last)
        logits = F.interpolate(
            logits, size=wins[0].shape[-2:], mode="bilinear", align_corners=False
        )
        if preds is None:
            preds = images.new_zeros((n, logits.shape[1], h, w), dtype=torch.float32)
        for (i, (y1, y2, x1, x2)), win_logits in zip(chunk, logits, strict=True):
            preds[i, :, y1:y2, x1:x2] += win_logits[:, : y2 - y1, : x2 - x1]
    assert preds is not None
    preds /= count
    if size != (h, w):
        preds = F.interpolate(preds, size=size, mode="bilinear", align_corners=False)
    return preds


def predict_labels(model: nn.Module, images: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """``predict_logits(...).argmax(1)``: int64 class map ``(N, H_out, W_out)``."""
    return predict_logits(model, images, **kwargs).argmax(1)  # type: ignore[arg-type]
