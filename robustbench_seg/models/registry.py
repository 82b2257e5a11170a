"""The architecture registry: names, builders and the model contract (timm-style ``arch.tag`` names).

A registry entry is an architecture; its weights live in ``weights.CATALOG`` under
``<architecture>.<tag>`` (``segformer-b5.cityscapes``). This module is a leaf: it imports no
weights, data or engine code.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral
from typing import Literal

from torch import nn

from robustbench_seg.errors import RobustSegError

__all__ = [
    "MMSEG_PREPROCESSING",
    "TAG_SEPARATOR",
    "ModelEntry",
    "Preprocessing",
    "get_model_entry",
    "list_models",
    "register_model",
    "split_name",
]

# Between an architecture and a weights tag: ``segformer-b0.synthetic``.
TAG_SEPARATOR = "."


@dataclass(frozen=True)
class Preprocessing:
    """The model contract: how an image becomes the model's input and its outputs the classes.

    The runner resizes the uint8 RGB image to ``image_resize`` if one is given (Pillow's
    ``Image.resize(size, Image.BILINEAR)``, byte for byte), computes
    ``x = (image[..., order] * value_scale / 255 - mean) / std`` (float32, NCHW), resizes ``x``
    to ``input_size`` if one is given with ``torch.nn.functional.interpolate(x,
    size=input_size, mode="bilinear", align_corners=False, antialias=True)``, runs the model,
    keeps the output channels ``output_classes`` (if given) and upsamples the logits bilinearly
    to the label size. Every field is recorded in a run's ``run.json`` and enters its
    configuration hash: a run never resumes under another contract.

    Attributes:
        mean: Per-channel mean, in the model's channel order and value scale.
        std: Per-channel standard deviation, same order and scale.
        channel_order: ``"RGB"`` or ``"BGR"``: the channel order the model expects.
        value_scale: The image values the mean/std refer to span ``[0, value_scale]``
            (255.0: raw uint8 values; 1.0: values divided by 255 first).
        input_size: ``None`` (the image as it is) or ``(H, W)``: the size the model was trained
            on; every image (or, in sliding-window inference, the whole image before the
            windows are cut) is resized to it, after normalisation (float, antialiased).
        output_classes: ``None`` (the model's outputs are the dataset's classes, in order) or
            one output channel index per dataset class, in the dataset's order (e.g.
            ``tuple(range(19))`` for a 20-output model whose last channel is background).
        image_resize: ``None`` or ``(H, W)`` (height first, as ``input_size``; Pillow's size is
            ``(W, H)``): the uint8 image is resized to it *before* normalisation, with the
            integer arithmetic of Pillow's ``Image.resize((W, H), Image.BILINEAR)`` (the same
            bytes), so that a model trained on a PIL pipeline sees the values it was trained
            on. It applies before ``input_size`` (both may be given).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: Literal["RGB", "BGR"] = "RGB"
    value_scale: float = 255.0
    input_size: tuple[int, int] | None = None
    output_classes: tuple[int, ...] | None = None
    image_resize: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        size = self.image_resize
        if size is not None and (
            len(size) != 2
            or not all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in size)
        ):
            raise RobustSegError(f"image_resize must be (H, W), two integers >= 1, got {size!r}")


# mmsegmentation's img_norm_cfg (to_rgb=True), the ImageNet statistics on 0-255; identical to
# the Hugging Face SegFormer image processor's mean/std on 0-1.
MMSEG_PREPROCESSING = Preprocessing(
    mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), channel_order="RGB"
)


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        name: Canonical architecture name, e.g. ``"segformer-b5"`` (no ``.``: that separates
            a weights tag).
        builder: ``"module:function"`` (imported lazily) or a callable; called as
            ``builder(num_classes=..., **builder_kwargs)``.
        preprocessing: Input normalisation the weights were trained with.
        num_classes: Default number of classes (Cityscapes: 19).
        output_stride: Ratio of input size to logits size (logits are at 1/4 resolution).
        aliases: Short names that resolve to this entry.
        default_weights: Weights tag used by ``weights="default"``: the catalog entry
            ``<name>.<tag>`` (see ``weights.CATALOG``).
        family: ``"segformer"`` or ``"deeplabv3plus"``.
        builder_kwargs: Fixed builder arguments of this variant, e.g. ``(("variant", "b5"),)``.
    """

    name: str
    builder: str | Callable[..., nn.Module]
    preprocessing: Preprocessing = MMSEG_PREPROCESSING
    num_classes: int = 19
    output_stride: int = 4
    aliases: tuple[str, ...] = ()
    default_weights: str | None = None
    family: str = ""
    builder_kwargs: tuple[tuple[str, object], ...] = ()

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
            num_classes=self.num_classes if num_classes is None else num_classes,
            **dict(self.builder_kwargs),
            **kwargs,
        )


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Adds an entry; a name or alias that is already taken raises ``ValueError``."""
    for key in (entry.name, *entry.aliases):
        if TAG_SEPARATOR in key:
            raise ValueError(f"model name {key!r} contains {TAG_SEPARATOR!r} (the tag separator)")
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model name {key!r} is already registered")
    _REGISTRY[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name
    return entry


def list_models() -> list[str]:
    """Canonical names of all registered models, sorted."""
    return sorted(_REGISTRY)


def split_name(name: str) -> tuple[str, str | None]:
    """``"segformer-b0.synthetic"`` -> ``("segformer-b0", "synthetic")``; no tag -> ``None``."""
    arch, sep, tag = name.strip().partition(TAG_SEPARATOR)
    return arch, (tag.strip().lower() or None) if sep else None


def get_model_entry(name: str) -> ModelEntry:
    """Looks up an architecture by name or alias (case-insensitive); a weights tag is ignored.

    Raises:
        RobustSegError: For an unknown name; the message lists the valid names and the closest.
    """
    key = split_name(name)[0].lower()
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    choices = [*_REGISTRY, *_ALIASES]
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.0)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise RobustSegError(
        f"unknown model {name!r}.{hint} Valid names: {', '.join(list_models())} "
        f"(aliases: {', '.join(sorted(_ALIASES))}), optionally with a weights tag "
        f"(e.g. segformer-b0{TAG_SEPARATOR}synthetic)"
    )


def _register_defaults() -> None:
    for v in ("b0", "b1", "b2", "b3", "b4", "b5"):
        register_model(
            ModelEntry(
                name=f"segformer-{v}",
                builder="robustbench_seg.models.segformer:segformer",
                builder_kwargs=(("variant", v),),
                aliases=(v,),
                default_weights="cityscapes",
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
                default_weights="cityscapes",
                family="deeplabv3plus",
            )
        )
    # The bundled demo model's architecture: the DeepLabV3+ paper's 256-wide head at output
    # stride 16 (mmseg's Cityscapes models: 512 wide at stride 8).
    register_model(
        ModelEntry(
            name="deeplabv3plus-mobilenetv2-w256-os16",
            builder="robustbench_seg.models.deeplabv3plus:deeplabv3plus_mobilenetv2_w256_os16",
            aliases=("dlv3p-mbv2-w256",),
            default_weights="synthetic",
            family="deeplabv3plus",
        )
    )


_register_defaults()
