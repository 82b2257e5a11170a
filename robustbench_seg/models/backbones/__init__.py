"""Dilated CNN backbones for DeepLabV3+ (ResNetV1c, MobileNetV2), in mmsegmentation's layout."""

from robustbench_seg.models.backbones.mobilenetv2 import MobileNetV2, mobilenet_v2
from robustbench_seg.models.backbones.resnet import ResNetV1c, resnet_v1c

__all__ = ["MobileNetV2", "ResNetV1c", "mobilenet_v2", "resnet_v1c"]
