"""The one way from a model spec and weights to a ready module (torchvision/timm ``get_model``).

A spec is a registry architecture with an optional weights tag (``"b5"``, ``"segformer-b0.synthetic"``),
a custom builder (``"path/to/file.py:build"``, ``"package.module:build"``), a Hugging Face model
(``"hf://org/name[@revision]"``, through ``models.hf``, imported only then) or an ``nn.Module``.
Every command (evaluate, train, erf, demo) and the benchmarks go through :func:`load`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_seg.errors import RobustSegError, exception_line
from robustbench_seg.models.registry import (
    MMSEG_PREPROCESSING,
    TAG_SEPARATOR,
    ModelEntry,
    Preprocessing,
    get_model_entry,
    split_name,
)
from robustbench_seg.models.weights import is_hf_spec

__all__ = [
    "METADATA_KEYS",
    "LoadedModel",
    "create_model",
    "is_custom_spec",
    "load",
    "state_dict_sha256",
]

# What a custom builder's metadata may hold (``build() -> (module, metadata)``).
METADATA_KEYS = (
    "num_classes",
    "mean",
    "std",
    "channel_order",
    "value_scale",
    "input_size",
    "output_classes",
    "image_resize",
    "name",
)


@dataclass
class LoadedModel:
    """A model ready to run, with what a runner must know about it.

    Attributes:
        module: The network, in eval mode when weights were loaded.
        name: ``arch.tag`` for catalog weights, the architecture name otherwise; a custom
            model's ``name`` metadata (default: its spec).
        preprocessing: The model contract (normalisation, input size, output classes).
        num_classes: Dataset classes the model predicts (``len(output_classes)`` if declared).
        num_outputs: Channels the module returns.
        weights: The weights spec as given (``None``: random init or a custom model's own);
            ``hf://org/name@<commit>`` for a Hugging Face model: the snapshot loaded.
        architecture: The registry entry (``None`` for custom models and modules).
    """

    module: nn.Module
    name: str
    preprocessing: Preprocessing
    num_classes: int
    num_outputs: int
    weights: str | None
    architecture: ModelEntry | None = None
    _sha256: str | None = field(default=None, repr=False)

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the state dict as loaded (names, dtypes, shapes, bytes): the identity a
        run records, so that it never resumes with other weights. Computed on first use."""
        if self._sha256 is None:
            self._sha256 = state_dict_sha256(self.module)
        return self._sha256


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 over a module's state dict: each key, dtype, shape and raw bytes, in key order."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def is_custom_spec(spec: object) -> bool:
    """True for ``file.py:fn`` / ``package.module:fn`` specs (not ``hf://`` or URLs)."""
    return isinstance(spec, str) and ":" in spec and "://" not in spec


def load(
    spec: str | nn.Module,
    weights: str | os.PathLike[str] | None = None,
    *,
    num_classes: int | None = None,
    dataset_classes: int | None = None,
    preprocessing: Preprocessing | None = None,
    name: str | None = None,
    allow_http: bool = False,
    dataset_class_names: Sequence[str] | None = None,
    class_map: Mapping[str, str | int] | str | os.PathLike[str] | None = None,
    **build_kwargs: Any,
) -> LoadedModel:
    """Builds a model from a spec and loads its weights.

    Args:
        spec: A registry name or alias with an optional weights tag (``"b5"``,
            ``"segformer-b0.synthetic"``), a custom builder ``"path/to/file.py:build"`` or
            ``"package.module:build"`` returning ``(module, metadata)`` (keys: see
            ``METADATA_KEYS`` and the README's model contract), a Hugging Face model
            ``"hf://org/name[@revision]"`` (needs ``transformers``: ``robustseg[hf]``), or an
            ``nn.Module`` returning ``(N, K, h, w)`` logits.
        weights: ``None``: random init (registry) or the builder's own weights (custom);
            ``"default"``: the spec's tag, else the architecture's default tag; a tag
            (``"synthetic"``), a catalog id (``"segformer-b0.synthetic"``), a file or
            ``save_pretrained`` folder, an ``https://`` URL or ``hf://<repo id>``. For a custom
            model a file whose state dict is loaded strictly into the module.
        num_classes: Registry models: classes of the head to build (default: the entry's).
            Modules: their output count (default: ``module.num_classes``, else 19).
        dataset_classes: If given, the classes the dataset scores; a model predicting another
            number is refused (declare ``output_classes``).
        preprocessing: For an ``nn.Module``: its contract (default: mmseg's ImageNet mean/std
            on RGB 0-255).
        name: For an ``nn.Module``: the name runs record (default: its class name).
        allow_http: Permit ``http://`` weight URLs (tests against a local server).
        dataset_class_names: The dataset's class names in order: an ``hf://`` model's
            ``id2label`` is matched to them (``models.hf.match_classes``) and the module returns
            those classes in this order. Other models declare their classes themselves.
        class_map: ``hf://`` models: explicit ``{dataset class: model label or output index}``
            entries (or a JSON file of them) for names the matching does not pair.
        **build_kwargs: Passed to a registry builder (``output_stride``, ``drop_path_rate``).

    Returns:
        The loaded model.

    Raises:
        RobustSegError: Unknown name, unusable weights, bad builder or metadata, or a class
            count that does not fit the dataset.
    """
    if not isinstance(spec, nn.Module) and (preprocessing is not None or name is not None):
        raise RobustSegError(
            "preprocessing and name are for nn.Module models; registry and custom models "
            "declare their own"
        )
    if class_map is not None and not is_hf_spec(spec):
        raise RobustSegError("a class map is for hf:// models; other models declare output_classes")
    if isinstance(spec, nn.Module):
        loaded = _from_module(spec, num_classes, preprocessing, name)
    elif is_hf_spec(spec):
        if build_kwargs or num_classes is not None:
            raise RobustSegError(f"{spec}: a Hugging Face model brings its own classes and options")
        if weights is not None and os.fspath(weights) != "default":
            raise RobustSegError(
                f"{spec} brings its weights; drop weights={os.fspath(weights)!r} (a revision is "
                "pinned with hf://ORG/NAME@REVISION)"
            )
        loaded = _from_hf(spec, dataset_class_names, class_map, dataset_classes)
    elif is_custom_spec(spec):
        if build_kwargs or num_classes is not None:
            raise RobustSegError(
                f"custom model {spec}: the builder decides its classes and options"
            )
        loaded = _from_builder(str(spec), weights)
    elif isinstance(spec, str):
        loaded = _from_registry(spec, weights, num_classes, allow_http, build_kwargs)
    else:
        raise RobustSegError(f"a model is a name, a builder spec or an nn.Module, not {spec!r}")
    if dataset_classes is not None and loaded.num_classes != dataset_classes:
        if loaded.preprocessing.output_classes is None:
            raise RobustSegError(
                f"model {loaded.name} returns {loaded.num_outputs} outputs but the dataset has "
                f"{dataset_classes} classes; declare output_classes (one output index per "
                "dataset class, in the dataset's order) in the model's metadata"
            )
        raise RobustSegError(
            f"model {loaded.name}: output_classes lists {loaded.num_classes} outputs but the "
            f"dataset has {dataset_classes} classes"
        )
    return loaded


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """The module of :func:`load` for a registry model, in training mode without weights.

    Args:
        name: Registry name or alias (``"segformer-b5"``, ``"b5"``, ``"deeplabv3plus-r50"``),
            optionally with a weights tag.
        num_classes: Number of output classes (default: the entry's, 19).
        weights: As :func:`load`.
        **kwargs: Passed to the builder (e.g. ``drop_path_rate`` for SegFormer).

    Returns:
        The model in eval mode if weights were loaded, else in training mode.
    """
    module = load(name, weights, num_classes=num_classes, **kwargs).module
    return module.train(weights is None)


# ----------------------------------------------------------------------------- registry


def _from_registry(
    spec: str,
    weights: str | os.PathLike[str] | None,
    num_classes: int | None,
    allow_http: bool,
    build_kwargs: Mapping[str, Any],
) -> LoadedModel:
    from robustbench_seg.models import weights as W

    entry = get_model_entry(spec)  # an unknown name fails before any file is looked at
    tag = split_name(spec)[1]
    wspec = None if weights is None else os.fspath(weights)
    if tag is not None and wspec not in (None, "default", tag, f"{entry.name}{TAG_SEPARATOR}{tag}"):
        raise RobustSegError(
            f"{spec!r} names its weights ({tag!r}) and weights={wspec!r} names others; "
            "give one of the two"
        )
    model_name = entry.name if tag is None else f"{entry.name}{TAG_SEPARATOR}{tag}"
    info = None if wspec is None else W.catalog_entry(wspec, model_name)
    path = None
    if wspec is not None:  # resolve (and download) before building: fail fast
        path = W.resolve_weights(wspec, model_name=model_name, allow_http=allow_http)
    n = entry.num_classes if num_classes is None else int(num_classes)
    if n < 1:
        raise RobustSegError(f"num_classes must be >= 1, got {n}")
    module = entry.build(n, **build_kwargs)
    if path is not None:
        W.load_weights_file(module, path, model_name=entry.name)
        module.eval()
    name = info.name if info is not None else entry.name
    return LoadedModel(module, name, entry.preprocessing, n, n, wspec, entry)


# ----------------------------------------------------------------------------- hf://


def _from_hf(
    spec: str,
    dataset_class_names: Sequence[str] | None,
    class_map: Mapping[str, str | int] | str | os.PathLike[str] | None,
    dataset_classes: int | None,
) -> LoadedModel:
    from robustbench_seg.models.hf import load_hf_model

    hf = load_hf_model(
        spec, dataset_class_names=dataset_class_names, class_map=class_map,
        dataset_classes=dataset_classes,
    )  # fmt: skip
    n = hf.module.num_classes
    return LoadedModel(hf.module, hf.name, hf.preprocessing, n, n, hf.weights)


# ----------------------------------------------------------------------------- modules


def _from_module(
    module: nn.Module,
    num_classes: int | None,
    preprocessing: Preprocessing | None,
    name: str | None,
) -> LoadedModel:
    pre = preprocessing or MMSEG_PREPROCESSING
    outputs = num_classes if num_classes is not None else getattr(module, "num_classes", 19)
    classes = _check_contract(pre, int(outputs), name or type(module).__name__)
    return LoadedModel(
        module.eval(), name or type(module).__name__, pre, classes, int(outputs), None
    )


def _check_contract(pre: Preprocessing, outputs: int, what: str) -> int:
    """Validates a contract against the model's output count; returns the classes it predicts."""
    if outputs < 1:
        raise RobustSegError(f"model {what}: num_classes must be >= 1, got {outputs}")
    if pre.input_size is not None and (len(pre.input_size) != 2 or min(pre.input_size) < 1):
        raise RobustSegError(f"model {what}: input_size must be (H, W), got {pre.input_size!r}")
    if pre.output_classes is None:
        return outputs
    bad = [i for i in pre.output_classes if not 0 <= i < outputs]
    if bad or len(set(pre.output_classes)) != len(pre.output_classes) or not pre.output_classes:
        raise RobustSegError(
            f"model {what}: output_classes must be distinct output indices in 0..{outputs - 1}, "
            f"got {list(pre.output_classes)}"
        )
    return len(pre.output_classes)


# ----------------------------------------------------------------------------- custom builders


def _load_builder(spec: str) -> Callable[..., Any]:
    target, _, func = spec.rpartition(":")
    if not target or not func:
        raise RobustSegError(
            f"custom model {spec!r}: use path/to/file.py:function or package.module:function"
        )
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise RobustSegError(f"custom model file not found: {path}")
        mod_spec = importlib.util.spec_from_file_location(f"robustseg_user_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_spec.name] = module  # workers started by fork see it too
        try:
            mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - any error in the user's file is one line
            raise RobustSegError(f"custom model {path}: {exception_line(exc)}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise RobustSegError(f"custom model: cannot import {target!r}: {exc}") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise RobustSegError(f"custom model: {target} has no function {func!r}")
    return fn


def _from_builder(spec: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    fn = _load_builder(spec)
    try:
        result = fn()
    except RobustSegError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's build() failing is one line
        raise RobustSegError(f"custom model {spec}: build() raised {exception_line(exc)}") from exc
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module)):
        raise RobustSegError(
            f"custom model {spec}: the builder must return (nn.Module, metadata dict)"
        )
    module, meta = result
    if not isinstance(meta, Mapping):
        raise RobustSegError(f"custom model {spec}: the metadata must be a dict")
    pre, outputs = _parse_metadata(meta, spec)
    name = str(meta.get("name", spec))
    if weights is not None and os.fspath(weights) != "default":
        from robustbench_seg.models.convert import read_checkpoint
        from robustbench_seg.models.weights import load_state_dict_strict, resolve_weights

        path = resolve_weights(weights)
        state, _ = read_checkpoint(path)
        load_state_dict_strict(module, state, str(path))
    classes = _check_contract(pre, outputs, spec)
    wspec = None if weights is None or os.fspath(weights) == "default" else os.fspath(weights)
    return LoadedModel(module.eval(), name, pre, classes, outputs, wspec)


def _parse_metadata(meta: Mapping[str, Any], spec: str) -> tuple[Preprocessing, int]:
    unknown = sorted(set(meta) - set(METADATA_KEYS))
    if unknown:
        raise RobustSegError(
            f"custom model {spec}: unknown metadata key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(METADATA_KEYS)}"
        )
    missing = [k for k in ("num_classes", "mean", "std") if k not in meta]
    if missing:
        raise RobustSegError(f"custom model {spec}: metadata lacks {', '.join(missing)}")
    try:
        outputs = _int(meta["num_classes"], "num_classes")
        mean = _floats(meta["mean"], "mean", 3)
        std = _floats(meta["std"], "std", 3)
        if min(std) <= 0:
            raise ValueError("std must be > 0")
        order = str(meta.get("channel_order", "RGB")).upper()
        if order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be RGB or BGR, not {meta['channel_order']!r}")
        scale = float(meta.get("value_scale", 255.0))
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"value_scale must be > 0, got {meta['value_scale']!r}")
        size = meta.get("input_size")
        if size is not None:
            size = tuple(_int(v, "input_size") for v in size)
            if len(size) != 2:
                raise ValueError(f"input_size must be (H, W), got {meta['input_size']!r}")
        out_cls = meta.get("output_classes")
        if out_cls is not None:
            out_cls = tuple(_int(v, "output_classes") for v in out_cls)
        resize = meta.get("image_resize")
        if resize is not None:
            resize = tuple(_int(v, "image_resize") for v in resize)
        pre = Preprocessing(mean, std, order, scale, size, out_cls, resize)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise RobustSegError(f"custom model {spec}: bad metadata: {exc}") from None
    return pre, outputs


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"{key} takes integers, got {value!r}")
    return int(value)


def _floats(value: Any, key: str, n: int) -> tuple[float, ...]:
    try:
        if isinstance(value, str):
            raise TypeError
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} takes {n} finite numbers, got {value!r}") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{key} takes {n} finite numbers, got {value!r}")
    return out
