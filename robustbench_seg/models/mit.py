"""Mix Transformer (MiT) encoder of SegFormer (Xie et al. 2021, arXiv 2105.15203, NVlabs code)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_seg.models.layers import DropPath

__all__ = ["MIT_CONFIGS", "MiTConfig", "MixVisionTransformer"]


@dataclass(frozen=True)
class MiTConfig:
    """Hyper-parameters of one MiT variant (paper Table 6, official ``mit_b*`` classes).

    Attributes:
        embed_dims: Channel width of each of the four stages.
        depths: Number of transformer blocks per stage.
        num_heads: Attention heads per stage.
        sr_ratios: Sequence-reduction ratio of the keys/values per stage.
        mlp_ratio: Hidden expansion of the Mix-FFN (4 in the released weights).
        patch_sizes: Kernel size of each overlapping patch embedding (padding is ``k // 2``).
        strides: Stride of each overlapping patch embedding.
        drop_path_rate: Stochastic-depth rate of the last block; it grows linearly from 0.
        norm_eps: Epsilon of the block and stage LayerNorms (the official code uses 1e-6; the
            patch-embedding and sequence-reduction LayerNorms keep PyTorch's default 1e-5).
    """

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    patch_sizes: tuple[int, int, int, int] = (7, 3, 3, 3)
    strides: tuple[int, int, int, int] = (4, 2, 2, 2)
    drop_path_rate: float = 0.1
    norm_eps: float = 1e-6


_WIDE = (64, 128, 320, 512)

MIT_CONFIGS: dict[str, MiTConfig] = {
    "b0": MiTConfig(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
    "b1": MiTConfig(embed_dims=_WIDE, depths=(2, 2, 2, 2)),
    "b2": MiTConfig(embed_dims=_WIDE, depths=(3, 4, 6, 3)),
    "b3": MiTConfig(embed_dims=_WIDE, depths=(3, 4, 18, 3)),
    "b4": MiTConfig(embed_dims=_WIDE, depths=(3, 8, 27, 3)),
    "b5": MiTConfig(embed_dims=_WIDE, depths=(3, 6, 40, 3)),
}


class OverlapPatchEmbed(nn.Module):
    """Strided convolution with overlapping windows, then LayerNorm over channels."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[-2:]
        # (B, C, H, W) -> (B, H*W, C)
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced sequence.

    Keys and values share one fused linear layer (``kv``: rows ``[0:C]`` key, ``[C:2C]``
    value) as in the official code; attention runs through ``F.scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, attn_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).view(b, n, heads, c // heads).transpose(1, 2)
        if self.sr_ratio > 1:
            # (B, N, C) -> (B, C, H, W) as a channels-last view, no copy
            x = x.view(b, height, width, c).permute(0, 3, 1, 2)
            x = self.norm(self.sr(x).flatten(2).transpose(1, 2))
        # (B, M, 2C) -> (2, B, heads, M, C/heads)
        k, v = self.kv(x).view(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    """3x3 depthwise convolution applied to a token sequence (the "Mix" of Mix-FFN)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        b, _, c = x.shape
        # (B, N, C) -> (B, C, H, W) as a channels-last view; the result maps back without a copy
        x = self.dwconv(x.view(b, height, width, c).permute(0, 3, 1, 2))
        return x.flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """Linear -> 3x3 depthwise conv -> GELU -> Linear; the conv replaces positional encoding."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), height, width)))
        return self.drop(self.fc2(x))


class Block(nn.Module):
    """Pre-norm transformer block: efficient self-attention and Mix-FFN, both residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int,
        mlp_ratio: int,
        drop_path: float,
        norm_eps: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x), height, width))


class MixVisionTransformer(nn.Module):
    """The hierarchical MiT encoder; returns four feature maps at strides 4, 8, 16, 32.

    Submodules are named as in the official code (``patch_embed{i}``, ``block{i}``,
    ``norm{i}`` for stages ``i = 1..4``), so official state dicts map one to one.

    Args:
        config: The variant's hyper-parameters, e.g. ``MIT_CONFIGS["b2"]``.
        in_channels: Input image channels.
        drop_path_rate: Overrides ``config.drop_path_rate`` when given.
    """

    def __init__(
        self, config: MiTConfig, in_channels: int = 3, drop_path_rate: float | None = None
    ) -> None:
        super().__init__()
        self.config = config
        rate = config.drop_path_rate if drop_path_rate is None else drop_path_rate
        total = sum(config.depths)
        dpr = [rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        cur = 0
        prev = in_channels
        for i in range(4):
            dim = config.embed_dims[i]
            embed = OverlapPatchEmbed(prev, dim, config.patch_sizes[i], config.strides[i])
            blocks = nn.ModuleList(
                Block(
                    dim,
                    config.num_heads[i],
                    config.sr_ratios[i],
                    config.mlp_ratio,
                    dpr[cur + j],
                    config.norm_eps,
                )
                for j in range(config.depths[i])
            )
            self.add_module(f"patch_embed{i + 1}", embed)
            self.add_module(f"block{i + 1}", blocks)
            self.add_module(f"norm{i + 1}", nn.LayerNorm(dim, eps=config.norm_eps))
            cur += config.depths[i]
            prev = dim
        self.apply(_init_weights)

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        """Channels of the four returned feature maps."""
        return self.config.embed_dims

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encodes a normalized NCHW batch.

        Args:
            x: Float tensor ``(N, C, H, W)``.

        Returns:
            Four tensors ``(N, C_i, ceil(H / s_i), ceil(W / s_i))`` for strides 4, 8, 16, 32.
        """
        outs = []
        for i in range(1, 5):
            x, height, width = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"block{i}"):
                x = blk(x, height, width)
            x = getattr(self, f"norm{i}")(x)
            # (B, N, C) -> (B, C, H, W) as a channels-last view
            x = x.view(x.shape[0], height, width, -1).permute(0, 3, 1, 2)
            outs.append(x)
        return outs


def _init_weights(m: nn.Module) -> None:
    """Initialisation of the official code (truncated normal linears, fan-out convs)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
