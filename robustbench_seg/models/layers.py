"""Shared building blocks (stochastic depth as in Huang et al. 2016; mmcv-style ConvModule)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBNReLU", "DropPath", "drop_path"]


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Drops whole residual branches per sample (stochastic depth), rescaling the kept ones.

    Args:
        x: A batch whose first dimension indexes samples.
        drop_prob: Probability of dropping the branch of one sample.
        training: Identity unless True.

    Returns:
        ``x`` with some samples zeroed and the others divided by ``1 - drop_prob``.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep_prob)
    return x * mask.div_(keep_prob)


class DropPath(nn.Module):
    """Stochastic depth as a module (identity in eval mode).

    Args:
        drop_prob: Probability of dropping the branch of one sample.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class ConvBNReLU(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + optional ReLU, named like mmcv's ``ConvModule``.

    The submodule names (``conv``, ``bn``, ``activate``) match mmcv so that mmsegmentation
    checkpoints map one to one (``linear_fuse.conv.weight``, ``linear_fuse.bn.running_mean``).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: Convolution stride.
        padding: Padding; ``None`` keeps the spatial size (``dilation * (kernel_size // 2)``).
        dilation: Convolution dilation.
        groups: Convolution groups (``in_channels`` for a depthwise convolution).
        act: Whether to apply ReLU after the normalisation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = dilation * (kernel_size // 2)
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate: nn.Module = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))
