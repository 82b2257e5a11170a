"""Segmentation models (SegFormer, DeepLabV3+): registry, loader, checkpoint conversion, weights."""

from robustbench_seg.models.loader import LoadedModel, create_model, load
from robustbench_seg.models.registry import (
    ModelEntry,
    Preprocessing,
    get_model_entry,
    list_models,
    register_model,
)

__all__ = [
    "LoadedModel",
    "ModelEntry",
    "Preprocessing",
    "create_model",
    "get_model_entry",
    "list_models",
    "load",
    "register_model",
]
