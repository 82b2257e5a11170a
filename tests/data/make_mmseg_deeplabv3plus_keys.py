"""Writes mmseg_deeplabv3plus_keys.json: state-dict keys of mmsegmentation's DeepLabV3+ checkpoints.

The list is derived from mmsegmentation's source (constructor by constructor), not from our
model, so that the loading test compares two independent descriptions of the same layout:

- ``mmcv.cnn.ConvModule``: ``.conv`` (no bias when a norm follows, ``bias='auto'``) and ``.bn``
  (``build_norm_layer`` names BN/SyncBN ``bn``, plus the postfix; it has weight, bias,
  running_mean, running_var, num_batches_tracked).
- ``mmcv.cnn.DepthwiseSeparableConvModule``: ``.depthwise_conv`` (a ConvModule with
  ``groups=in_channels``) and ``.pointwise_conv`` (1x1 ConvModule), both with norm.
- ``mmseg/models/backbones/resnet.py``: ``ResNetV1c`` = ``ResNet(deep_stem=True)``: ``stem`` is an
  ``nn.Sequential`` conv(3->32)/BN/ReLU/conv(32->32)/BN/ReLU/conv(32->64)/BN/ReLU (indices 0..8);
  ``layer{1..4}`` are ``ResLayer`` (``mmseg/models/utils/res_layer.py``) of ``Bottleneck`` blocks
  (``conv1, bn1, conv2, bn2, conv3, bn3``; ``downsample`` = Sequential(1x1 conv, BN) on the first
  block of each stage, since ``inplanes != planes * 4`` there). Depths: 50 -> (3, 4, 6, 3),
  101 -> (3, 4, 23, 3) (``ResNet.arch_settings``).
- ``mmseg/models/backbones/mobilenet_v2.py``: ``MobileNetV2``: ``conv1`` (ConvModule 3->32,
  stride 2), ``layer{1..7}`` from ``arch_settings`` [[1, 16, 1], [6, 24, 2], [6, 32, 3], [6, 64, 4],
  [6, 96, 3], [6, 160, 3], [6, 320, 1]] (expand_ratio, channels, blocks); each block is
  ``InvertedResidual`` (``mmseg/models/utils/inverted_residual.py``): ``conv`` =
  Sequential([1x1 expand ConvModule if expand_ratio != 1], 3x3 depthwise ConvModule,
  1x1 linear ConvModule), hidden = round(in_channels * expand_ratio).
- ``mmseg/models/decode_heads/sep_aspp_head.py``: ``DepthwiseSeparableASPPHead(ASPPHead)``:
  ``image_pool`` = Sequential(AdaptiveAvgPool2d, ConvModule 1x1) (``aspp_head.py``),
  ``aspp_modules`` = ``DepthwiseSeparableASPPModule``: ConvModule 1x1 for dilation 1, else
  DepthwiseSeparableConvModule 3x3; ``bottleneck`` = ConvModule 3x3 ((len(dilations) + 1) *
  channels -> channels) from ``ASPPHead``; ``c1_bottleneck`` = ConvModule 1x1 (c1_in ->
  c1_channels); ``sep_bottleneck`` = Sequential of two DepthwiseSeparableConvModules;
  ``conv_seg`` = Conv2d 1x1 with bias (``decode_head.py``, ``BaseDecodeHead``).
- Auxiliary ``FCNHead`` (``fcn_head.py``, num_convs=1, concat_input=False, kernel 3): ``convs.0``
  (ConvModule in -> 256) and ``conv_seg``.
- Configs: ``configs/_base_/models/deeplabv3plus_r50-d8.py`` (decode in 2048, channels 512,
  dilations (1, 12, 24, 36), c1_in 256, c1_channels 48; aux in 1024, channels 256; 19 classes),
  ``deeplabv3plus_r101-d8_512x1024_80k_cityscapes.py`` (depth=101), and
  ``configs/mobilenet_v2/deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes.py`` (decode in 320,
  c1_in 24, aux in 96; the rest inherited from the R101 Cityscapes config).

Run from the repository root: ``python tests/data/make_mmseg_deeplabv3plus_keys.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

Entry = tuple[str, list[int]]
NUM_CLASSES = 19
DESCRIPTION = (
    "State-dict (key, shape) of mmsegmentation's Cityscapes DeepLabV3+ checkpoints (19 classes), "
    "derived from mmseg's source by make_mmseg_deeplabv3plus_keys.py (see its docstring)."
)


def bn(prefix: str, c: int) -> list[Entry]:
    return [
        (f"{prefix}.weight", [c]),
        (f"{prefix}.bias", [c]),
        (f"{prefix}.running_mean", [c]),
        (f"{prefix}.running_var", [c]),
        (f"{prefix}.num_batches_tracked", []),
    ]


def conv_module(prefix: str, cin: int, cout: int, k: int, groups: int = 1) -> list[Entry]:
    return [(f"{prefix}.conv.weight", [cout, cin // groups, k, k]), *bn(f"{prefix}.bn", cout)]


def dsconv_module(prefix: str, cin: int, cout: int, k: int) -> list[Entry]:
    return [
        *conv_module(f"{prefix}.depthwise_conv", cin, cin, k, groups=cin),
        *conv_module(f"{prefix}.pointwise_conv", cin, cout, 1),
    ]


def resnet_v1c(depth: int) -> list[Entry]:
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    p = "backbone"
    out: list[Entry] = []
    for idx, (cin, cout) in zip((0, 3, 6), ((3, 32), (32, 32), (32, 64)), strict=True):
        out += [(f"{p}.stem.{idx}.weight", [cout, cin, 3, 3]), *bn(f"{p}.stem.{idx + 1}", cout)]
    inplanes = 64
    for i, n in enumerate(blocks):
        planes = 64 * 2**i
        for j in range(n):
            b = f"{p}.layer{i + 1}.{j}"
            out += [(f"{b}.conv1.weight", [planes, inplanes, 1, 1]), *bn(f"{b}.bn1", planes)]
            out += [(f"{b}.conv2.weight", [planes, planes, 3, 3]), *bn(f"{b}.bn2", planes)]
            out += [(f"{b}.conv3.weight", [planes * 4, planes, 1, 1]), *bn(f"{b}.bn3", planes * 4)]
            if j == 0:
                out += [(f"{b}.downsample.0.weight", [planes * 4, inplanes, 1, 1])]
                out += bn(f"{b}.downsample.1", planes * 4)
            inplanes = planes * 4
    return out


def mobilenet_v2() -> list[Entry]:
    arch = [[1, 16, 1], [6, 24, 2], [6, 32, 3], [6, 64, 4], [6, 96, 3], [6, 160, 3], [6, 320, 1]]
    p = "backbone"
    out = conv_module(f"{p}.conv1", 3, 32, 3)
    cin = 32
    for i, (t, c, n) in enumerate(arch):
        for j in range(n):
            b = f"{p}.layer{i + 1}.{j}.conv"
            hidden = int(round(cin * t))
            k = 0
            if t != 1:
                out += conv_module(f"{b}.{k}", cin, hidden, 1)
                k += 1
            out += conv_module(f"{b}.{k}", hidden, hidden, 3, groups=hidden)
            out += conv_module(f"{b}.{k + 1}", hidden, c, 1)
            cin = c
    return out


def sep_aspp_head(in_ch: int, c1_in: int, ch: int = 512, c1_ch: int = 48) -> list[Entry]:
    p = "decode_head"
    dilations = (1, 12, 24, 36)
    out = conv_module(f"{p}.image_pool.1", in_ch, ch, 1)
    for i, d in enumerate(dilations):
        if d == 1:
            out += conv_module(f"{p}.aspp_modules.{i}", in_ch, ch, 1)
        else:
            out += dsconv_module(f"{p}.aspp_modules.{i}", in_ch, ch, 3)
    out += conv_module(f"{p}.bottleneck", (len(dilations) + 1) * ch, ch, 3)
    out += conv_module(f"{p}.c1_bottleneck", c1_in, c1_ch, 1)
    out += dsconv_module(f"{p}.sep_bottleneck.0", ch + c1_ch, ch, 3)
    out += dsconv_module(f"{p}.sep_bottleneck.1", ch, ch, 3)
    out += [
        (f"{p}.conv_seg.weight", [NUM_CLASSES, ch, 1, 1]),
        (f"{p}.conv_seg.bias", [NUM_CLASSES]),
    ]
    return out


def fcn_aux_head(in_ch: int, ch: int = 256) -> list[Entry]:
    p = "auxiliary_head"
    return [
        *conv_module(f"{p}.convs.0", in_ch, ch, 3),
        (f"{p}.conv_seg.weight", [NUM_CLASSES, ch, 1, 1]),
        (f"{p}.conv_seg.bias", [NUM_CLASSES]),
    ]


def main() -> None:
    models = {
        "r50": resnet_v1c(50) + sep_aspp_head(2048, 256) + fcn_aux_head(1024),
        "r101": resnet_v1c(101) + sep_aspp_head(2048, 256) + fcn_aux_head(1024),
        "mobilenetv2": mobilenet_v2() + sep_aspp_head(320, 24) + fcn_aux_head(96),
    }
    lines = ["{", '  "description": ' + json.dumps(DESCRIPTION) + ",", '  "models": {']
    for m, (name, entries) in enumerate(models.items()):
        lines.append(f"    {json.dumps(name)}: [")
        # One entry per line keeps the file diffable.
        rows = [f"      {json.dumps([k, s])}" for k, s in entries]
        lines.append(",\n".join(rows))
        lines.append("    ]" + ("," if m < len(models) - 1 else ""))
    lines += ["  }", "}"]
    Path(__file__).with_name("mmseg_deeplabv3plus_keys.json").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
