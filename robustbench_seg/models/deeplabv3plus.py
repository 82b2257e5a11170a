"""DeepLabV3+ (Chen et al. 2018), laid out as mmsegmentation's ``DepthwiseSeparableASPPHead``.

Module and parameter names follow mmsegmentation (``mmseg/models/decode_heads/sep_aspp_head.py``,
``aspp_head.py``, ``decode_head.py``; mmcv's ``ConvModule`` and ``DepthwiseSeparableConvModule``)
so that its published Cityscapes checkpoints load one to one, ``auxiliary_head.*`` dropped:
``backbone.*`` and ``decode_head.{image_pool, aspp_modules, bottleneck, c1_bottleneck,
sep_bottleneck, conv_seg}``. The logits come out at the stride of the low-level (c1) features,
4; upsampling to the label size happens in the inference engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_seg.errors import RobustSegError
from robustbench_seg.models.backbones import mobilenet_v2, resnet_v1c
from robustbench_seg.models.layers import ConvBNReLU

__all__ = [
    "ASPP_DILATIONS",
    "DEEPLABV3PLUS_CONFIGS",
    "DeepLabV3Plus",
    "DeepLabV3PlusConfig",
    "DepthwiseSeparableASPPHead",
    "deeplabv3plus_mobilenetv2",
    "deeplabv3plus_r101",
    "deeplabv3plus_r50",
]


class DepthwiseSeparableConv(nn.Module):
    """Depthwise 3x3 then pointwise 1x1 ConvBNReLU, as mmcv's ``DepthwiseSeparableConvModule``.

    Parameter names: ``depthwise_conv.{conv,bn}``, ``pointwise_conv.{conv,bn}``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        dilation: Dilation (and padding) of the depthwise 3x3 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise_conv = ConvBNReLU(
            in_channels, in_channels, 3, padding=dilation, dilation=dilation, groups=in_channels
        )
        self.pointwise_conv = ConvBNReLU(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


def _resize(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    # mmseg `resize(..., mode="bilinear", align_corners=False)`, as in the Cityscapes configs.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class DepthwiseSeparableASPPHead(nn.Module):
    """DeepLabV3+ decoder: separable ASPP on the last stage, fused with projected c1 features.

    Args:
        in_channels: Channels of the last backbone stage (the ASPP input).
        c1_in_channels: Channels of the first backbone stage (the low-level features).
        num_classes: Number of output classes.
        channels: Width of the ASPP branches and of the decoder.
        c1_channels: Width of the low-level projection.
        dilations: ASPP dilations; 1 is a 1x1 branch, others depthwise-separable 3x3.
        dropout: Channel dropout (``Dropout2d``) before the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        c1_in_channels: int,
        num_classes: int,
        channels: int = 512,
        c1_channels: int = 48,
        dilations: tuple[int, ...] = (1, 12, 24, 36),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1)
        )
        self.aspp_modules = nn.ModuleList(
            ConvBNReLU(in_channels, channels, 1)
            if d == 1
            else DepthwiseSeparableConv(in_channels, channels, dilation=d)
            for d in dilations
        )
        self.bottleneck = ConvBNReLU((len(dilations) + 1) * channels, channels, 3)
        self.c1_bottleneck = ConvBNReLU(c1_in_channels, c1_channels, 1)
        self.sep_bottleneck = nn.Sequential(
            DepthwiseSeparableConv(channels + c1_channels, channels),
            DepthwiseSeparableConv(channels, channels),
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def fuse(self, c1: torch.Tensor, c4: torch.Tensor) -> torch.Tensor:
        """Decoder features before the classifier.

        Args:
            c1: Low-level features (first stage), (N, c1_in_channels, H/4, W/4).
            c4: High-level features (last stage), (N, in_channels, h, w).

        Returns:
            ``sep_bottleneck`` output, (N, channels, H/4, W/4).
        """
        aspp = [_resize(self.image_pool(c4), c4.shape[2:])]
        aspp += [branch(c4) for branch in self.aspp_modules]
        out = self.bottleneck(torch.cat(aspp, dim=1))
        low = self.c1_bottleneck(c1)
        out = torch.cat([_resize(out, low.shape[2:]), low], dim=1)
        return self.sep_bottleneck(out)

    def classify(self, fused: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits from the fused features (dropout, then the 1x1 ``conv_seg``)."""
        return self.conv_seg(self.dropout(fused))


@dataclass(frozen=True)
class DeepLabV3PlusConfig:
    """A DeepLabV3+ variant: its backbone and the head widths of its mmseg Cityscapes config.

    The head's input widths (last and first stage) come from the backbone's ``out_channels``:
    2048 and 256 for ResNet, 320 and 24 for MobileNetV2.

    Attributes:
        backbone: Builds the backbone for an output stride (8 or 16); it returns four stage
            outputs and has ``out_channels`` / ``out_strides``.
        channels: ASPP and decoder width (512 in every mmseg DeepLabV3+ config).
        c1_channels: Width of the low-level projection (48).
        dropout: Dropout ratio before the classifier (0.1).
    """

    backbone: Callable[[int], nn.Module]
    channels: int = 512
    c1_channels: int = 48
    dropout: float = 0.1


# ASPP dilations per output stride: mmseg's `-d8` configs (the published Cityscapes models) and
# its `-d16` ones; the paper's rates (6, 12, 18) at output stride 16, doubled at 8.
ASPP_DILATIONS: dict[int, tuple[int, ...]] = {8: (1, 12, 24, 36), 16: (1, 6, 12, 18)}


DEEPLABV3PLUS_CONFIGS: dict[str, DeepLabV3PlusConfig] = {
    "r50": DeepLabV3PlusConfig(backbone=partial(resnet_v1c, "r50")),
    "r101": DeepLabV3PlusConfig(backbone=partial(resnet_v1c, "r101")),
    "mobilenetv2": DeepLabV3PlusConfig(backbone=mobilenet_v2),
    # The bundled synthetic-city model: the DeepLabV3+ paper's 256-wide head (mmseg uses 512),
    # which keeps it at 5.4M parameters (10.8 MB in fp16) and fast on a laptop CPU.
    "mobilenetv2-256": DeepLabV3PlusConfig(backbone=mobilenet_v2, channels=256),
}

STAGE_NAMES = ("stage1", "stage2", "stage3", "stage4")


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ segmentation model: dilated backbone + ``DepthwiseSeparableASPPHead``.

    Takes a normalized float batch (N, 3, H, W) and returns logits (N, num_classes, H/4, W/4)
    (rounded up for sizes that are not multiples of the strides).

    Args:
        config: The variant.
        num_classes: Number of output classes.
        output_stride: Stride of the last backbone stage: 8 (the published models) or 16.

    Raises:
        RobustSegError: For an unsupported output stride.
    """

    def __init__(
        self, config: DeepLabV3PlusConfig, num_classes: int = 19, output_stride: int = 8
    ) -> None:
        super().__init__()
        if output_stride not in ASPP_DILATIONS:
            raise RobustSegError(
                f"output_stride must be one of {sorted(ASPP_DILATIONS)}, got {output_stride!r}"
            )
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.backbone = config.backbone(output_stride)
        c1_in, *_, c4_in = self.backbone.out_channels
        self.decode_head = DepthwiseSeparableASPPHead(
            in_channels=c4_in,
            c1_in_channels=c1_in,
            num_classes=num_classes,
            channels=config.channels,
            c1_channels=config.c1_channels,
            dilations=ASPP_DILATIONS[output_stride],
            dropout=config.dropout,
        )

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone stage outputs and decoder features.

        Args:
            x: Normalized images, (N, 3, H, W).

        Returns:
            ``stage1``..``stage4``: the backbone outputs (strides 4, 8, 8, 8 at output stride 8;
            4, 8, 16, 16 at 16); ``fused``: the decoder output before the classifier,
            (N, channels, H/4, W/4).
        """
        stages = self.backbone(x)
        feats = dict(zip(STAGE_NAMES, stages, strict=True))
        feats["fused"] = self.decode_head.fuse(stages[0], stages[-1])
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits.

        Args:
            x: Normalized images, (N, 3, H, W).

        Returns:
            Logits (N, num_classes, H/4, W/4).
        """
        return self.decode_head.classify(self.forward_features(x)["fused"])


def _build(variant: str, num_classes: int, output_stride: int) -> DeepLabV3Plus:
    return DeepLabV3Plus(DEEPLABV3PLUS_CONFIGS[variant], num_classes, output_stride)


def deeplabv3plus_r50(num_classes: int = 19, output_stride: int = 8) -> DeepLabV3Plus:
    """DeepLabV3+ with a dilated ResNetV1c-50 (mmseg ``deeplabv3plus_r50-d8`` layout).

    Args:
        num_classes: Number of output classes.
        output_stride: 8 (as published) or 16.

    Returns:
        The model, randomly initialized.
    """
    return _build("r50", num_classes, output_stride)


def deeplabv3plus_r101(num_classes: int = 19, output_stride: int = 8) -> DeepLabV3Plus:
    """DeepLabV3+ with a dilated ResNetV1c-101 (mmseg ``deeplabv3plus_r101-d8`` layout).

    Args:
        num_classes: Number of output classes.
        output_stride: 8 (as published) or 16.

    Returns:
        The model, randomly initialized.
    """
    return _build("r101", num_classes, output_stride)


def deeplabv3plus_mobilenetv2(num_classes: int = 19, output_stride: int = 8) -> DeepLabV3Plus:
    """DeepLabV3+ with a dilated MobileNetV2 (mmseg ``deeplabv3plus_m-v2-d8`` layout).

    Args:
        num_classes: Number of output classes.
        output_stride: 8 (as published) or 16.

    Returns:
        The model, randomly initialized.
    """
    return _build("mobilenetv2", num_classes, output_stride)


def deeplabv3plus_mobilenetv2_w256_os16(
    num_classes: int = 19, output_stride: int = 16
) -> DeepLabV3Plus:
    """DeepLabV3+ MobileNetV2 with a 256-wide head at output stride 16 (the bundled demo model).

    These are the DeepLabV3+ paper's choices (ASPP rates 6, 12, 18 at output stride 16, 256
    channels); mmseg's Cityscapes model uses 512 channels at output stride 8, which is 2.8x the
    parameters and 5x the CPU time.

    Args:
        num_classes: Number of output classes.
        output_stride: 16 (as bundled) or 8.

    Returns:
        The model, randomly initialized.
    """
    return _build("mobilenetv2-256", num_classes, output_stride)
