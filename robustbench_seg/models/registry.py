"""The model registry: names, builders and preprocessing (torchvision-style weights metadata)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from robustbench_seg.errors import RobustSegError

__all__ = [
    "MMSEG_PREPROCESSING",
    "ModelEntry",
    "Preprocessing",
    "create_model",
    "get_model_entry",
    "list_models",
    "register_model",
]


@dataclass(frozen=True)
class Preprocessing:
    """How to turn an image into the model's input: ``(image[..., order] - mean) / std``.

    Attributes:
        mean: Per-channel mean, in the model's channel order and value scale.
        std: Per-channel standard deviation, same order and scale.
        channel_order: ``"RGB"`` or ``"BGR"``: the channel order the model expects.
        value_scale: The image values the mean/std refer to span ``[0, value_scale]``
            (255.0: raw uint8 values; 1.0: values divided by 255 first).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: Literal["RGB", "BGR"] = "RGB"
    value_scale: float = 255.0


# mmsegmentation's img_norm_cfg (to_rgb=True), the ImageNet statistics on 0-255; identical to
# the Hugging Face SegFormer image processor's mean/std on 0-1.
MMSEG_PREPROCESSING = Preprocessing(
    mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), channel_order="RGB"
)


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        name: Canonical registry name, e.g. ``"segformer-b5"``.
        builder: ``"module:function"`` (imported lazily) or a callable; called as
            ``builder(num_classes=...)``.
        preprocessing: Input normalisation the weights were trained with.
        num_classes: Default number of classes (Cityscapes: 19).
        output_stride: Ratio of input size to logits size (logits are at 1/4 resolution).
        aliases: Short names that resolve to this entry.
        default_weights: Catalog id used by ``weights="default"`` (see ``weights.CATALOG``).
        family: ``"segformer"`` or ``"deeplabv3plus"``.
    """

    name: str
    builder: str | Callable[..., nn.Module]
    preprocessing: Preprocessing = MMSEG_PREPROCESSING
    num_classes: int = 19
    output_stride: int = 4
    aliases: tuple[str, ...] = ()
    default_weights: str | None = None
    family: str = ""

    def build(self, num_classes: int | None = None, **kwargs: object) -> nn.Module:
        """Builds the model with random weights."""
        builder = self.builder
        if isinstance(builder, str):
            module_name, func_name = builder.split(":")
            try:
                builder = getattr(importlib.import_module(module_name), func_name)
            except (ImportError, AttributeError) as exc:
                raise RobustSegError(f"model {self.name!r} is not available: {exc}") from exc
        assert callable(builder)
        return builder(
            num_classes=self.num_classes if num_classes is None else num_classes, **kwargs
        )


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Adds an entry; a name or alias that is already taken raises ``ValueError``."""
    for key in (entry.name, *entry.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model name {key!r} is already registered")
    _REGISTRY[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name
    return entry


def list_models() -> list[str]:
    """Canonical names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_model_entry(name: str) -> ModelEntry:
    """Looks up a model by name or alias (case-insensitive).

    Raises:
        RobustSegError: For an unknown name; the message lists the valid names and the closest.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    choices = [*_REGISTRY, *_ALIASES]
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.0)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise RobustSegError(
        f"unknown model {name!r}.{hint} Valid names: {', '.join(list_models())} "
        f"(aliases: {', '.join(sorted(_ALIASES))})"
    )


def create_model(
    name: str, *, num_classes: int = 19, weights: str | None = None, **kwargs: object
) -> nn.Module:
    """Builds a registered model, optionally with weights.

    Args:
        name: Registry name or alias (``"segformer-b5"``, ``"b5"``, ``"deeplabv3plus-r50"``).
        num_classes: Number of output classes.
        weights: ``None`` (random init), ``"default"`` (the catalog's Cityscapes weights for
            this model), a catalog id, a file or ``save_pretrained`` directory, an ``https://``
            URL, or ``hf://<repo id>``. See ``robustbench_seg.models.weights.load_weights``.
        **kwargs: Passed to the builder (e.g. ``drop_path_rate`` for SegFormer).

    Returns:
        The model in eval mode if weights were loaded, else in training mode.

    Raises:
        RobustSegError: Unknown name, unusable weights, or weights of another shape.
    """
    entry = get_model_entry(name)
    if weights is None:
        return entry.build(num_classes, **kwargs)
    from robustbench_seg.models.weights import is_catalog_spec, load_weights, resolve_weights

    path = resolve_weights(weights, model_name=entry.name)  # fail fast, before building
    model = entry.build(num_classes, **kwargs)
    load_weights(model, path, model_name=entry.name, trusted=is_catalog_spec(weights))
    return model.eval()


def _register_defaults() -> None:
    for v in ("b0", "b1", "b2", "b3", "b4", "b5"):
        register_model(
            ModelEntry(
                name=f"segformer-{v}",
                builder=_segformer_builder(v),
                aliases=(v,),
                default_weights=f"segformer-{v}-cityscapes",
                family="segformer",
            )
        )
    for backbone, alias in (
        ("r50", "dlv3p-r50"),
        ("r101", "dlv3p-r101"),
        ("mobilenetv2", "dlv3p-mbv2"),
    ):
        register_model(
            ModelEntry(
                name=f"deeplabv3plus-{backbone}",
                builder=f"robustbench_seg.models.deeplabv3plus:deeplabv3plus_{backbone}",
                aliases=(alias,),
                default_weights=f"deeplabv3plus-{backbone}-cityscapes",
                family="deeplabv3plus",
            )
        )
    # Trained on the synthetic city (robustbench_seg/assets/); what `robustseg demo` evaluates.
    register_model(
        ModelEntry(
            name="segformer-b0.synthetic",
            builder=_segformer_builder("b0"),
            default_weights="segformer-b0-synthetic",
            family="segformer",
        )
    )
    register_model(
        ModelEntry(
            name="deeplabv3plus-mobilenetv2.synthetic",
            builder="robustbench_seg.models.deeplabv3plus:deeplabv3plus_mobilenetv2_synthetic",
            default_weights="deeplabv3plus-mobilenetv2-synthetic",
            family="deeplabv3plus",
        )
    )


def _segformer_builder(variant: str) -> Callable[..., nn.Module]:
    def build(num_classes: int = 19, drop_path_rate: float | None = None) -> nn.Module:
        from robustbench_seg.models.segformer import segformer

        return segformer(variant, num_classes=num_classes, drop_path_rate=drop_path_rate)

    build.__name__ = f"segformer_{variant}"
    return build


_register_defaults()
