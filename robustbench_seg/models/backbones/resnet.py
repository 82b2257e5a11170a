"""Dilated ResNetV1c (He et al. 2016; deep stem of He et al. 2019), in mmsegmentation's layout.

Module and parameter names follow ``mmseg/models/backbones/resnet.py`` (``ResNetV1c``) and
``mmseg/models/utils/res_layer.py`` (``ResLayer``) so that mmsegmentation checkpoints load 1:1:
``stem.{0..8}``, ``layer{1..4}.{j}.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.{0,1}}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustbench_seg.errors import RobustSegError


@dataclass(frozen=True)
class StageGeometry:
    """Per-stage stride (of the first block) and dilation for a target output stride.

    Attributes:
        strides: Stride of the first block of each of the four stages.
        dilations: Dilation of each stage (the first block of a dilated stage uses half of it,
            mmseg's ``contract_dilation=True``).
    """

    strides: tuple[int, int, int, int]
    dilations: tuple[int, int, int, int]


# mmseg `configs/_base_/models/deeplabv3plus_r50-d8.py` (OS 8) and the `-d16` configs (OS 16).
RESNET_GEOMETRY: dict[int, StageGeometry] = {
    8: StageGeometry(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)),
    16: StageGeometry(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)),
}


@dataclass(frozen=True)
class ResNetConfig:
    """A ResNet variant.

    Attributes:
        depths: Number of bottleneck blocks per stage.
        stem_channels: Output channels of the deep stem (its first two convs have half).
        base_channels: Bottleneck width of the first stage (doubles per stage; output is 4x).
    """

    depths: tuple[int, int, int, int]
    stem_channels: int = 64
    base_channels: int = 64


# mmseg `ResNet.arch_settings`.
RESNET_CONFIGS: dict[str, ResNetConfig] = {
    "r50": ResNetConfig(depths=(3, 4, 6, 3)),
    "r101": ResNetConfig(depths=(3, 4, 23, 3)),
}


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels)


class Bottleneck(nn.Module):
    """ResNet bottleneck, ``pytorch`` style (the stride sits on the 3x3 conv).

    Args:
        inplanes: Input channels.
        planes: Width of the block; the output has ``planes * 4`` channels.
        stride: Stride of the 3x3 conv.
        dilation: Dilation (and padding) of the 3x3 conv.
        downsample: Projection of the identity path, or None for a plain residual.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = _bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _res_layer(
    inplanes: int, planes: int, num_blocks: int, stride: int, dilation: int
) -> nn.Sequential:
    """One stage, as mmseg's ``ResLayer`` with ``contract_dilation=True`` and no multi-grid."""
    outplanes = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), _bn(outplanes)
        )
    first_dilation = dilation // 2 if dilation > 1 else dilation
    blocks = [Bottleneck(inplanes, planes, stride, first_dilation, downsample)]
    blocks += [Bottleneck(outplanes, planes, 1, dilation) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


class ResNetV1c(nn.Module):
    """ResNetV1c: deep stem (three 3x3 convs), max pool, four bottleneck stages.

    Args:
        config: Depths and widths.
        geometry: Strides and dilations of the four stages (sets the output stride).

    Attributes:
        out_channels: Channels of the four stage outputs.
        out_strides: Strides (w.r.t. the input) of the four stage outputs.
    """

    def __init__(self, config: ResNetConfig, geometry: StageGeometry) -> None:
        super().__init__()
        half = config.stem_channels // 2
        self.stem = nn.Sequential(
            nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False),
            _bn(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, padding=1, bias=False),
            _bn(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, config.stem_channels, 3, padding=1, bias=False),
            _bn(config.stem_channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = config.stem_channels
        channels: list[int] = []
        strides: list[int] = []
        total_stride = 4
        for i, (depth, stride, dilation) in enumerate(
            zip(config.depths, geometry.strides, geometry.dilations, strict=True)
        ):
            planes = config.base_channels * 2**i
            self.add_module(f"layer{i + 1}", _res_layer(inplanes, planes, depth, stride, dilation))
            inplanes = planes * Bottleneck.expansion
            total_stride *= stride
            channels.append(inplanes)
            strides.append(total_stride)
        self.out_channels: tuple[int, ...] = tuple(channels)
        self.out_strides: tuple[int, ...] = tuple(strides)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Runs the backbone.

        Args:
            x: Normalized images, (N, 3, H, W).

        Returns:
            The four stage outputs, at strides ``out_strides``.
        """
        x = self.maxpool(self.stem(x))
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return tuple(outs)


def resnet_v1c(variant: str, output_stride: int = 8) -> ResNetV1c:
    """Builds a dilated ResNetV1c.

    Args:
        variant: ``"r50"`` or ``"r101"``.
        output_stride: 8 or 16: stride of the last stage's output.

    Returns:
        The backbone, randomly initialized.

    Raises:
        RobustSegError: For an unknown variant or output stride.
    """
    if variant not in RESNET_CONFIGS:
        raise RobustSegError(
            f"unknown ResNet variant {variant!r}; valid: {', '.join(sorted(RESNET_CONFIGS))}"
        )
    if output_stride not in RESNET_GEOMETRY:
        raise RobustSegError(
            f"output_stride must be one of {sorted(RESNET_GEOMETRY)}, got {output_stride!r}"
        )
    return ResNetV1c(RESNET_CONFIGS[variant], RESNET_GEOMETRY[output_stride])
