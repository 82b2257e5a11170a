"""SegFormer: MiT encoder + All-MLP decoder (Xie et al. 2021, arXiv 2105.15203, NVlabs code)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_seg.models.layers import ConvBNReLU
from robustbench_seg.models.mit import MIT_CONFIGS, MiTConfig, MixVisionTransformer

__all__ = [
    "SEGFORMER_CONFIGS",
    "SegFormer",
    "SegFormerConfig",
    "SegFormerHead",
    "bilinear_matrix",
    "segformer",
]


@dataclass(frozen=True)
class SegFormerConfig:
    """One SegFormer variant.

    Attributes:
        encoder: The MiT encoder's hyper-parameters.
        decoder_dim: Width of the All-MLP decoder (256 for B0/B1, 768 for B2-B5).
        dropout: Dropout before the classifier (``Dropout2d``, as mmseg's decode heads).
    """

    encoder: MiTConfig
    decoder_dim: int
    dropout: float = 0.1


SEGFORMER_CONFIGS: dict[str, SegFormerConfig] = {
    name: SegFormerConfig(encoder=cfg, decoder_dim=256 if name in ("b0", "b1") else 768)
    for name, cfg in MIT_CONFIGS.items()
}


class MLP(nn.Module):
    """Per-stage linear projection of the decoder (official name ``linear_c{i}.proj``)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)


def bilinear_matrix(
    size_in: int,
    size_out: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The ``(size_out, size_in)`` matrix of 1-D bilinear resizing, ``align_corners=False``.

    Follows PyTorch's ``upsample_bilinear2d`` (scale ``in / out``, source coordinate
    ``(o + 0.5) * scale - 0.5`` clamped at 0, neighbour clamped at the border), so that
    ``A_h @ X @ A_w.T`` equals ``F.interpolate(X, mode="bilinear", align_corners=False)``.
    """
    scale = size_in / size_out
    src = ((torch.arange(size_out, dtype=torch.float64) + 0.5) * scale - 0.5).clamp_min(0.0)
    i0 = src.floor().long().clamp_max(size_in - 1)
    i1 = (i0 + 1).clamp_max(size_in - 1)
    frac = src - i0
    rows = torch.arange(size_out)
    mat = torch.zeros(size_out, size_in, dtype=torch.float64)
    mat.index_put_((rows, i0), 1.0 - frac, accumulate=True)
    mat.index_put_((rows, i1), frac, accumulate=True)
    return mat.to(device=device, dtype=dtype)


class SegFormerHead(nn.Module):
    """All-MLP decoder: project each stage, upsample to 1/4, concatenate, fuse, classify.

    The official head computes ``fuse(cat(up(L4 c4), up(L3 c3), up(L2 c2), L1 c1))`` with
    linear maps ``L_i`` and a 1x1 fuse conv ``W = [W4 W3 W2 W1]``. Bilinear upsampling is
    linear with weights summing to one, so it commutes with per-pixel affine maps, and the
    same value is ``sum_i up((W_i L_i) c_i + W_i b_i)``. Composing ``W_i L_i`` (a
    ``D x C_i`` matrix) first avoids the ``4D``-channel concatenation at 1/4 resolution and
    the ``4D -> D`` fuse conv there, which dominate the decoder's cost. The upsampling is done
    as two matrix products on channels-last maps, accumulating into the sum in place, and in
    eval mode the BatchNorm is folded into the composed weights. Parameters and their names are
    exactly those of the official head.

    Args:
        in_channels: Channels of the four encoder stages.
        dim: Decoder width.
        num_classes: Number of output classes.
        dropout: Dropout probability before the classifier.
    """

    def __init__(
        self, in_channels: tuple[int, ...], dim: int, num_classes: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.dim = dim
        for i, c in enumerate(in_channels):
            self.add_module(f"linear_c{i + 1}", MLP(c, dim))
        self.linear_fuse = ConvBNReLU(4 * dim, dim, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout)
        self.linear_pred = nn.Conv2d(dim, num_classes, kernel_size=1)

    def _composed(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-stage ``(weight (D, C_i), bias (D,))`` of fuse-conv o projection (o eval BN)."""
        fuse_w = self.linear_fuse.conv.weight.flatten(1)  # (D, 4D); input order c4, c3, c2, c1
        bn = self.linear_fuse.bn
        fold = not self.training and bn.running_mean is not None
        if fold:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fuse_w = fuse_w * scale[:, None]
        out = []
        for i in range(4):
            proj: nn.Linear = getattr(self, f"linear_c{i + 1}").proj
            w_i = fuse_w[:, (3 - i) * self.dim : (4 - i) * self.dim]
            bias = w_i @ proj.bias
            if fold and i == 0:
                bias = bias + bn.bias - bn.running_mean * scale
            out.append((w_i @ proj.weight, bias))
        return out

    def fuse(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Fused decoder features (after the fuse conv, BN and ReLU), at 1/4 resolution.

        Args:
            features: The four encoder outputs, ``(N, C_i, H_i, W_i)``.

        Returns:
            Tensor ``(N, dim, H_1, W_1)`` (channels-last memory layout).
        """
        n, _, height, width = features[0].shape
        out = torch.empty(0)
        for i, (feat, (weight, bias)) in enumerate(zip(features, self._composed(), strict=True)):
            y = F.linear(feat.permute(0, 2, 3, 1), weight, bias)  # (N, h, w, D)
            if i == 0:
                out = y
                continue
            h, w = y.shape[1:3]
            a_h = bilinear_matrix(h, height, y.dtype, y.device)
            a_w = bilinear_matrix(w, width, y.dtype, y.device)
            # width: (W, w) @ (N*h, w, D) -> (N*h, W, D); height: (H, h) @ (N, h, W*D)
            t = torch.matmul(a_w, y.reshape(n * h, w, -1)).view(n, h, -1)
            out.view(n, height, -1).baddbmm_(a_h.expand(n, -1, -1), t)  # out += A_h @ t
        out = out.permute(0, 3, 1, 2)  # (N, D, H, W), channels-last memory
        if self.training or self.linear_fuse.bn.running_mean is None:
            out = self.linear_fuse.bn(out)
        return self.linear_fuse.activate(out)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        logits = self.linear_pred(self.dropout(self.fuse(features)))
        return logits.contiguous()


class SegFormer(nn.Module):
    """SegFormer for semantic segmentation.

    Takes a normalized float NCHW batch and returns logits at 1/4 of the input resolution
    (``ceil(H / 4)``, ``ceil(W / 4)``); upsampling to label size is the caller's job.

    Args:
        config: The variant, e.g. ``SEGFORMER_CONFIGS["b5"]``.
        num_classes: Number of output classes.
        drop_path_rate: Overrides the encoder's stochastic-depth rate when given.
    """

    def __init__(
        self, config: SegFormerConfig, num_classes: int = 19, drop_path_rate: float | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.backbone = MixVisionTransformer(config.encoder, drop_path_rate=drop_path_rate)
        self.decode_head = SegFormerHead(
            config.encoder.embed_dims, config.decoder_dim, num_classes, config.dropout
        )
        nn.init.normal_(self.decode_head.linear_pred.weight, 0.0, 0.01)
        nn.init.zeros_(self.decode_head.linear_pred.bias)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate features, all part of the autograd graph (for ERF analysis).

        Args:
            x: Normalized float tensor ``(N, 3, H, W)``.

        Returns:
            ``stage1`` .. ``stage4`` (encoder outputs at strides 4..32) and ``fused`` (the
            decoder's fused features at stride 4, before dropout and the classifier).
        """
        feats = self.backbone(x)
        out = {f"stage{i + 1}": f for i, f in enumerate(feats)}
        out["fused"] = self.decode_head.fuse(feats)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, ceil(H / 4), ceil(W / 4))``."""
        return self.decode_head(self.backbone(x))


def segformer(
    variant: str, num_classes: int = 19, drop_path_rate: float | None = None
) -> SegFormer:
    """Builds SegFormer-``variant`` (``"b0"`` .. ``"b5"``) with random weights.

    Args:
        variant: Key of ``SEGFORMER_CONFIGS``.
        num_classes: Number of output classes.
        drop_path_rate: Overrides the default stochastic-depth rate (0.1) when given.

    Returns:
        The model, in training mode.
    """
    return SegFormer(SEGFORMER_CONFIGS[variant], num_classes, drop_path_rate)
