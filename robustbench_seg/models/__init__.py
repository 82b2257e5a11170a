"""Segmentation models (SegFormer, DeepLabV3+): registry, checkpoint conversion, weights."""

from robustbench_seg.models.registry import (
    ModelEntry,
    Preprocessing,
    create_model,
    get_model_entry,
    list_models,
    register_model,
)

__all__ = [
    "ModelEntry",
    "Preprocessing",
    "create_model",
    "get_model_entry",
    "list_models",
    "register_model",
]
