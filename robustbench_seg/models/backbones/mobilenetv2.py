"""Dilated MobileNetV2 (Sandler et al. 2018), in mmsegmentation's layout.

Module and parameter names follow ``mmseg/models/backbones/mobilenet_v2.py`` (``MobileNetV2``) and
``mmseg/models/utils/inverted_residual.py`` (``InvertedResidual``) so that mmsegmentation
checkpoints load 1:1: ``conv1.{conv,bn}``, ``layer{1..7}.{j}.conv.{k}.{conv,bn}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustbench_seg.errors import RobustSegError
from robustbench_seg.models.layers import ConvBNReLU


class _ConvBNReLU6(ConvBNReLU):
    """mmcv ``ConvModule`` (``conv``, ``bn``) with ReLU6, MobileNetV2's activation, or linear."""

    def __init__(self, *args: Any, act: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, act=act, **kwargs)
        if act:
            self.activate = nn.ReLU6(inplace=True)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (if ratio != 1), 3x3 depthwise, 1x1 linear projection.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the depthwise conv (1 or 2).
        expand_ratio: Hidden width as a multiple of ``in_channels``.
        dilation: Dilation (and padding) of the depthwise conv.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expand_ratio: int, dilation: int = 1
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        hidden = int(round(in_channels * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_ConvBNReLU6(in_channels, hidden, 1))
        layers += [
            _ConvBNReLU6(
                hidden, hidden, 3, stride=stride, padding=dilation, dilation=dilation, groups=hidden
            ),
            _ConvBNReLU6(hidden, out_channels, 1, act=False),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


@dataclass(frozen=True)
class MobileNetV2Config:
    """Layer table of MobileNetV2 (width multiplier 1.0).

    Attributes:
        stem_channels: Output channels of ``conv1`` (stride 2).
        layers: Per layer ``(expand_ratio, out_channels, num_blocks)`` (mmseg ``arch_settings``).
        out_indices: Which layers' outputs are the four stage outputs.
    """

    stem_channels: int = 32
    layers: tuple[tuple[int, int, int], ...] = (
        (1, 16, 1),
        (6, 24, 2),
        (6, 32, 3),
        (6, 64, 4),
        (6, 96, 3),
        (6, 160, 3),
        (6, 320, 1),
    )
    out_indices: tuple[int, int, int, int] = (1, 2, 4, 6)


@dataclass(frozen=True)
class MobileNetV2Geometry:
    """Stride of the first block and dilation of each of the seven layers.

    Attributes:
        strides: Per-layer stride (of its first block).
        dilations: Per-layer dilation. As in mmseg, only a layer's first block is dilated.
    """

    strides: tuple[int, ...]
    dilations: tuple[int, ...]


# mmseg `configs/mobilenet_v2/deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes.py` (OS 8); OS 16
# keeps the stride of layer 4 (as in the ImageNet network) and dilates from layer 6 on.
MOBILENETV2_GEOMETRY: dict[int, MobileNetV2Geometry] = {
    8: MobileNetV2Geometry(strides=(1, 2, 2, 1, 1, 1, 1), dilations=(1, 1, 1, 2, 2, 4, 4)),
    16: MobileNetV2Geometry(strides=(1, 2, 2, 2, 1, 1, 1), dilations=(1, 1, 1, 1, 1, 2, 2)),
}


class MobileNetV2(nn.Module):
    """MobileNetV2 feature extractor returning four stage outputs (no final 1x1 conv, no pooling).

    Args:
        config: Layer table.
        geometry: Strides and dilations of the seven layers (sets the output stride).

    Attributes:
        out_channels: Channels of the four stage outputs.
        out_strides: Strides (w.r.t. the input) of the four stage outputs.
    """

    def __init__(self, config: MobileNetV2Config, geometry: MobileNetV2Geometry) -> None:
        super().__init__()
        self.out_indices = config.out_indices
        self.conv1 = _ConvBNReLU6(3, config.stem_channels, 3, stride=2, padding=1)
        in_channels = config.stem_channels
        total_stride = 2
        channels: list[int] = []
        strides: list[int] = []
        for i, ((ratio, out_channels, n), stride, dilation) in enumerate(
            zip(config.layers, geometry.strides, geometry.dilations, strict=True)
        ):
            blocks = []
            for j in range(n):
                blocks.append(
                    InvertedResidual(
                        in_channels,
                        out_channels,
                        stride if j == 0 else 1,
                        expand_ratio=ratio,
                        dilation=dilation if j == 0 else 1,
                    )
                )
                in_channels = out_channels
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            total_stride *= stride
            if i in config.out_indices:
                channels.append(out_channels)
                strides.append(total_stride)
        self.num_layers = len(config.layers)
        self.out_channels: tuple[int, ...] = tuple(channels)
        self.out_strides: tuple[int, ...] = tuple(strides)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Runs the backbone.

        Args:
            x: Normalized images, (N, 3, H, W).

        Returns:
            The outputs of the layers in ``out_indices``, at strides ``out_strides``.
        """
        x = self.conv1(x)
        outs = []
        for i in range(self.num_layers):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


def mobilenet_v2(output_stride: int = 8) -> MobileNetV2:
    """Builds a dilated MobileNetV2 (width 1.0) with stage outputs at layers 2, 3, 5 and 7.

    Args:
        output_stride: 8 or 16: stride of the last stage's output.

    Returns:
        The backbone, randomly initialized.

    Raises:
        RobustSegError: For an unsupported output stride.
    """
    if output_stride not in MOBILENETV2_GEOMETRY:
        raise RobustSegError(
            f"output_stride must be one of {sorted(MOBILENETV2_GEOMETRY)}, got {output_stride!r}"
        )
    return MobileNetV2(MobileNetV2Config(), MOBILENETV2_GEOMETRY[output_stride])
