"""Training-only auxiliary heads, with mmsegmentation's module and parameter names."""

from __future__ import annotations

import torch
from torch import nn

from robustbench_seg.models.layers import ConvBNReLU

__all__ = ["FCNHead"]


class FCNHead(nn.Module):
    """mmseg ``FCNHead(num_convs=1, concat_input=False)``, the training-only auxiliary head.

    Parameter names as mmseg's ``auxiliary_head.*``: ``convs.0.{conv,bn}``, ``conv_seg``.

    Args:
        in_channels: Channels of the backbone stage it reads (stage 3).
        channels: Width of its 3x3 conv.
        num_classes: Number of classes.
        dropout: ``Dropout2d`` ratio before the classifier.
    """

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvBNReLU(in_channels, channels, 3))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, 0.0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))
