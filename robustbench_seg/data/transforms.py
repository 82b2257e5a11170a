"""Training augmentation as mmsegmentation's Cityscapes pipeline (``_base_/datasets/cityscapes``).

Every function takes an explicit ``np.random.Generator``; the draws happen in mmseg's order
(resize ratio, crop offsets with up to ``cat_max_ratio`` retries, flip, photometric distortion)
so that the augmentation of one sample is a pure function of its generator. Images are uint8
RGB ``(H, W, 3)``, labels uint8 trainIds ``(H, W)`` with 255 = ignore.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from robustbench_seg.data.cityscapes import IGNORE_INDEX

__all__ = [
    "AugmentConfig",
    "augment",
    "pad_to",
    "photometric_distortion",
    "random_crop",
    "random_flip",
    "random_resize",
    "rescaled_size",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the training pipeline (mmseg names in brackets).

    Attributes:
        scale: ``(long, short)`` base scale the ratio multiplies [``img_scale=(2048, 1024)``].
        ratio_range: Random resize ratio range [``ratio_range=(0.5, 2.0)``].
        crop: ``(height, width)`` of the random crop [``crop_size``].
        cat_max_ratio: A crop is redrawn (up to 10 times) while one class covers more than this
            share of its labelled pixels [``cat_max_ratio=0.75``].
        flip_prob: Horizontal flip probability [``RandomFlip(prob=0.5)``].
        photometric: Apply ``PhotoMetricDistortion`` (brightness 32, contrast and saturation
            0.5-1.5, hue 18).
        ignore_index: Label value of ignored pixels (crop statistics and padding).
    """

    scale: tuple[int, int] = (2048, 1024)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop: tuple[int, int] = (1024, 1024)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    ignore_index: int = IGNORE_INDEX


def rescaled_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` after a keep-ratio resize into ``scale`` (mmcv ``rescale_size``).

    The image is scaled by ``min(long / max(h, w), short / min(h, w))`` and rounded half up.
    """
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def random_resize(
    image: np.ndarray, label: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``Resize(img_scale, ratio_range, keep_ratio=True)``: bilinear image, nearest label."""
    lo, hi = cfg.ratio_range
    ratio = rng.uniform(lo, hi)
    scale = (int(cfg.scale[0] * ratio), int(cfg.scale[1] * ratio))
    h, w = rescaled_size(image.shape[0], image.shape[1], scale)
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
    return image, label


def random_crop(
    image: np.ndarray, label: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``RandomCrop(crop_size, cat_max_ratio)``: up to 10 draws, keep the first crop where
    no class covers more than ``cat_max_ratio`` of the labelled pixels (else the 10th draw)."""
    ch, cw = cfg.crop
    h, w = label.shape

    def draw() -> tuple[int, int]:
        return int(rng.integers(0, max(h - ch, 0) + 1)), int(rng.integers(0, max(w - cw, 0) + 1))

    y, x = draw()
    if cfg.cat_max_ratio < 1.0:
        for _ in range(10):
            counts = np.bincount(label[y : y + ch, x : x + cw].ravel(), minlength=256)
            counts[cfg.ignore_index] = 0
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < cfg.cat_max_ratio:
                break
            y, x = draw()
    return image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]


def random_flip(
    image: np.ndarray, label: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``RandomFlip(prob)``, horizontal."""
    if rng.random() < cfg.flip_prob:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness_delta: int = 32,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion``: each step applied with probability 1/2, in its order.

    Brightness, then contrast either second (mode 1) or last (mode 0), saturation and hue in
    HSV (OpenCV 8-bit HSV, hue in 0..179). Values are truncated to uint8 after each step, as
    mmseg does.
    """
    img = image
    if rng.integers(2):
        img = _convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    mode = rng.integers(2)
    if mode == 1 and rng.integers(2):
        img = _convert(img, alpha=rng.uniform(*contrast_range))
    if rng.integers(2):
        hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=rng.uniform(*saturation_range))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV)
        shift = int(rng.integers(-hue_delta, hue_delta))
        hsv[..., 0] = (hsv[..., 0].astype(np.int32) + shift) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if mode == 0 and rng.integers(2):
        img = _convert(img, alpha=rng.uniform(*contrast_range))
    return img


def pad_to(array: np.ndarray, size: tuple[int, int], value: float | int) -> np.ndarray:
    """Pads bottom/right to ``size`` (mmseg ``Pad(size=crop_size)``); larger arrays unchanged."""
    h, w = array.shape[:2]
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph == 0 and pw == 0:
        return array
    widths = ((0, ph), (0, pw)) + ((0, 0),) * (array.ndim - 2)
    return np.pad(array, widths, constant_values=value)


def augment(
    image: np.ndarray, label: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The whole pipeline before normalisation: resize, crop, flip, photometric distortion.

    Args:
        image: uint8 RGB ``(H, W, 3)``.
        label: uint8 trainIds ``(H, W)``.
        cfg: Pipeline parameters.
        rng: The sample's generator (all randomness comes from it).

    Returns:
        ``(image, label)``, at most ``cfg.crop`` in size (padding happens after normalisation).
    """
    image, label = random_resize(image, label, cfg, rng)
    image, label = random_crop(image, label, cfg, rng)
    image, label = random_flip(image, label, cfg, rng)
    if cfg.photometric:
        image = photometric_distortion(image, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)
