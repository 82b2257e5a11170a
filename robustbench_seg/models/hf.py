"""Hugging Face ``transformers`` segmentation models behind the model contract (``hf://org/name``).

``AutoModelForSemanticSegmentation`` models (SegFormer, UperNet, DPT, BEiT, MobileViT, ...) return
their logits; Mask2Former, MaskFormer and OneFormer return the per-pixel class scores of
transformers' ``post_process_semantic_segmentation`` (as logs, see :class:`HFSegmentationModel`).
The image processor's config becomes a ``Preprocessing`` and the model's ``id2label`` is matched
to the dataset's class names (:data:`CLASS_SYNONYMS`). ``transformers`` is imported only here,
and only when an ``hf://`` model is loaded: it is the optional ``hf`` extra.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_seg.errors import RobustSegError, exception_line
from robustbench_seg.models.registry import Preprocessing
from robustbench_seg.models.weights import HF_PREFIX, hf_snapshot, is_hf_spec, parse_hf_spec

__all__ = [
    "CLASS_SYNONYMS",
    "HF_MODEL_FILES",
    "HF_PREFIX",
    "HFModel",
    "HFSegmentationModel",
    "is_hf_spec",
    "load_hf_model",
    "match_classes",
    "parse_hf_spec",
    "preprocessing_from_processor",
    "read_class_map",
]

# What a snapshot of an hf:// model needs: configs (model, image processor, tokenizer), the
# tokenizer's merges (OneFormer) and the weights, whole or sharded.
HF_MODEL_FILES = (
    "*.json",
    "*.txt",
    "model.safetensors",
    "model-*.safetensors",
    "pytorch_model.bin",
    "pytorch_model-*.bin",
)
INSTALL_HINT = "hf:// models need transformers: pip install 'robustseg[hf]'"

# Names that mean the same class, the dataset's usual name first. A dataset class tries its own
# name, then the other names of its group in this order; a model label is every comma-separated
# part of its id2label entry (ADE20K: "person, individual, someone, somebody, mortal, soul").
# Comparison ignores case, spaces and punctuation. The groups do not share a name.
CLASS_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("road", "street", "route"),
    ("sidewalk", "pavement", "footpath"),
    ("building", "edifice"),
    ("wall",),
    ("fence", "fencing"),
    ("pole", "poles"),
    ("traffic light", "traffic signal", "stoplight"),
    ("traffic sign", "sign", "signboard", "road sign", "traffic sign (front)"),
    ("vegetation", "tree", "trees", "plant", "plants"),
    ("terrain", "grass", "earth", "ground", "soil"),
    ("sky",),
    ("person", "pedestrian", "people", "human", "individual"),
    ("rider", "cyclist", "bicyclist", "motorcyclist"),
    ("car", "automobile", "motorcar", "auto"),
    ("truck", "lorry", "motortruck"),
    ("bus", "autobus", "coach"),
    ("train", "tram", "on rails", "railroad train"),
    ("motorcycle", "motorbike", "minibike"),
    ("bicycle", "bike", "cycle"),
    ("airplane", "aeroplane", "plane"),
    ("couch", "sofa"),
    ("tv", "tv monitor", "television"),
)

# AutoModelForSemanticSegmentation returns logits; these return mask and class queries.
_UNIVERSAL = {
    "mask2former": "Mask2FormerForUniversalSegmentation",
    "maskformer": "MaskFormerForInstanceSegmentation",
    "oneformer": "OneFormerForUniversalSegmentation",
}
# transformers' Mask2Former post-processing resizes the mask logits to this size first, for
# every input size ("Scale back to preprocessed image size - (384, 384) for all models").
_MASK2FORMER_MASK_SIZE = (384, 384)
# log() of a score of 0 would be -inf; the smallest positive float32 (subnormal, 2^-149) keeps
# every logit finite and changes no score that is not 0 (log(2^-149) = -103.3).
_SCORE_FLOOR = 2.0**-149


def _key(name: str) -> str:
    """Case-, space- and punctuation-insensitive form of a class name."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


_SYNONYM_GROUP = {_key(n): tuple(_key(m) for m in group) for group in CLASS_SYNONYMS for n in group}


# ----------------------------------------------------------------------------- classes


def _label_keys(label: str) -> list[str]:
    return [k for k in (_key(p) for p in re.split(r"[,;]", str(label))) if k]


def read_class_map(class_map: Mapping[str, str | int] | str | os.PathLike[str]) -> dict[str, Any]:
    """An explicit class mapping: a dict, or a JSON file holding one.

    Returns:
        ``{dataset class name: model label or output index}``.

    Raises:
        RobustSegError: Unreadable file, not a JSON object, values neither names nor indices.
    """
    if isinstance(class_map, Mapping):
        mapping = dict(class_map)
        source = "class_map"
    else:
        path = Path(class_map).expanduser()
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RobustSegError(f"cannot read the class map {path}: {exc}") from None
        source = str(path)
        if not isinstance(mapping, dict):
            raise RobustSegError(
                f'{path}: a class map is a JSON object {{"dataset class": "model label or '
                'output index", ...}}'
            )
    for name, target in mapping.items():
        if isinstance(target, bool) or not isinstance(target, (str, int)):
            raise RobustSegError(
                f"{source}: {name!r} maps to {target!r}; give a model label or an output index"
            )
    return mapping


def _resolve_target(target: str | int, labels: Sequence[str], what: str, name: str) -> int:
    """The output a class map entry names: an index, or a label (whole, first or any part)."""
    if isinstance(target, int):
        if not 0 <= target < len(labels):
            raise RobustSegError(
                f"{what}: class map entry {name!r}: output index {target} is outside "
                f"0..{len(labels) - 1}"
            )
        return target
    key = _key(target)
    tiers = (
        [i for i, lab in enumerate(labels) if _key(lab) == key],
        [i for i, lab in enumerate(labels) if _label_keys(lab)[:1] == [key]],
        [i for i, lab in enumerate(labels) if key in _label_keys(lab)],
    )
    for hits in tiers:
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise RobustSegError(
                f"{what}: class map entry {name!r}: {target!r} names several model labels "
                f"({', '.join(f'{i}: {labels[i]!r}' for i in hits)}); give the output index"
            )
    raise RobustSegError(
        f"{what}: class map entry {name!r}: the model has no label {target!r} (its labels are "
        "config.json's id2label; an output index works too)"
    )


def match_classes(
    model_labels: Sequence[str],
    dataset_names: Sequence[str],
    class_map: Mapping[str, str | int] | None = None,
    *,
    what: str = "the model",
) -> tuple[int, ...]:
    """One model output per dataset class, matched by name.

    The explicit ``class_map`` entries come first; then every other dataset class takes a model
    label holding its own name; then the classes still unmatched take a label holding one of
    their synonyms (:data:`CLASS_SYNONYMS`, in the table's order). Each step sees only the
    outputs earlier steps left; a label whose first part is the name goes before one holding it
    later, the lowest index among equals. Names compare without case, spaces and punctuation.

    Args:
        model_labels: The model's ``id2label`` in output order.
        dataset_names: The dataset's class names in order.
        class_map: ``{dataset class: model label or output index}``.
        what: Names the model in errors.

    Returns:
        The output index of each dataset class, in the dataset's order.

    Raises:
        RobustSegError: In one line: dataset classes no label matches (with how to map them),
            a class map entry for no dataset class or naming no (or several) labels, or two
            dataset classes on one output.
    """
    by_key = {_key(n): i for i, n in enumerate(dataset_names)}
    chosen: dict[int, int] = {}  # dataset class -> output
    explicit: set[int] = set()
    for name, target in (class_map or {}).items():
        d = by_key.get(_key(name))
        if d is None:
            raise RobustSegError(
                f"{what}: the class map names {name!r}, which is not a dataset class "
                f"({', '.join(dataset_names)})"
            )
        chosen[d] = _resolve_target(target, model_labels, what, name)
        explicit.add(d)
    keys = [_label_keys(lab) for lab in model_labels]

    def find(name: str, claimed: set[int]) -> int | None:
        free = [i for i in range(len(keys)) if i not in claimed]
        hits = [i for i in free if keys[i][:1] == [name]] or [i for i in free if name in keys[i]]
        return hits[0] if hits else None

    # own names first, then synonyms, each among the outputs earlier steps left free
    for synonyms in (False, True):
        claimed = set(chosen.values())
        for d, name in enumerate(dataset_names):
            own = _key(name)
            cands = [k for k in _SYNONYM_GROUP.get(own, ()) if k != own] if synonyms else [own]
            for cand in cands if d not in chosen else ():
                hit = find(cand, claimed)
                if hit is not None:
                    chosen[d] = hit
                    break
    missing = [n for d, n in enumerate(dataset_names) if d not in chosen]
    if missing:
        example = json.dumps({missing[0]: "<model label or output index>"})
        raise RobustSegError(
            f"{what}: no model label matches the dataset class(es) {', '.join(map(repr, missing))}; "
            f"map them with --class-map FILE.json (from Python: class_map=...), a JSON object "
            f"like {example}"
        )
    outputs: dict[int, int] = {}
    for d in sorted(chosen):
        o = chosen[d]
        if o in outputs:
            a, b = dataset_names[outputs[o]], dataset_names[d]
            raise RobustSegError(
                f"{what}: dataset classes {a!r} and {b!r} both map to the model's output {o} "
                f"({model_labels[o]!r}); give one of them another label with --class-map "
                "(from Python: class_map=...)"
            )
        outputs[o] = d
    return tuple(chosen[d] for d in range(len(dataset_names)))


# ----------------------------------------------------------------------------- preprocessing


def _three(value: Any, key: str, what: str) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, (int, float)) else list(value or ())
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise RobustSegError(f"{what}: the image processor's {key} is {value!r}, not 3 numbers")
    return out  # type: ignore[return-value]


def preprocessing_from_processor(processor: Any, what: str = "the model") -> Preprocessing:
    """The model contract of a transformers image processor.

    Rules: ``do_rescale`` with ``rescale_factor`` r sets ``value_scale = 255 r`` (1/255: 1.0),
    without it ``value_scale`` is 255; ``do_normalize`` takes ``image_mean``/``image_std`` as
    they are (they refer to the rescaled values), without it mean 0 and std 1;
    ``do_flip_channel_order`` (MobileViT) is BGR. A resize to a fixed ``{"height", "width"}``
    (without ``keep_aspect_ratio``) becomes ``input_size``; sizes that depend on the image
    (``shortest_edge``, ``longest_edge``, ``keep_aspect_ratio``) are not applied: the model sees
    the image at its own size. Not applied either: the resampling filter (the contract resizes
    bilinearly with antialiasing, on the float image), ``do_center_crop`` (every pixel is
    scored) and ``do_pad``/``size_divisor``. ``do_reduce_labels`` concerns the training labels
    only: the outputs are ``id2label``'s, which matching uses.

    Raises:
        RobustSegError: Mean or std that are not 3 finite numbers, std <= 0, a bad size.
    """
    scale = 255.0
    if getattr(processor, "do_rescale", False):
        factor = float(getattr(processor, "rescale_factor", 1 / 255))
        scale = round(255.0 * factor, 12)
        if not math.isfinite(scale) or scale <= 0:
            raise RobustSegError(f"{what}: the image processor's rescale_factor is {factor}")
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if getattr(processor, "do_normalize", False):
        mean = _three(getattr(processor, "image_mean", None), "image_mean", what)
        std = _three(getattr(processor, "image_std", None), "image_std", what)
        if min(std) <= 0:
            raise RobustSegError(f"{what}: the image processor's image_std {std} is not > 0")
    order = "BGR" if getattr(processor, "do_flip_channel_order", False) else "RGB"
    input_size = None
    size = getattr(processor, "size", None)
    if (
        getattr(processor, "do_resize", False)
        and isinstance(size, Mapping)
        and {"height", "width"} <= set(size)
        and not getattr(processor, "keep_aspect_ratio", False)
    ):
        input_size = (int(size["height"]), int(size["width"]))
        if min(input_size) < 1:
            raise RobustSegError(f"{what}: the image processor's size is {dict(size)}")
    return Preprocessing(mean, std, order, scale, input_size)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the module


class HFSegmentationModel(nn.Module):
    """A transformers segmentation model returning ``(N, K, h, w)`` class scores.

    ``AutoModelForSemanticSegmentation`` models: their logits, as transformers'
    ``post_process_semantic_segmentation`` upsamples them. Mask2Former, MaskFormer, OneFormer:
    ``log(s)`` (a score of 0 as the smallest positive float32) of the semantic scores that their
    ``post_process_semantic_segmentation`` takes the argmax of, ``s_c = sum_q softmax(class
    logits_q)_c * sigmoid(mask logits_q)`` (null class dropped; Mask2Former resizes the mask
    logits to 384x384 first, as transformers does), resized bilinearly to the input size before
    the log. So ``exp`` of the logits at the input size is transformers' score map at that target
    size, their argmax is its segmentation, and the softmax the contract's calibration takes is
    ``s / sum(s)``, a distribution over the classes (the scores themselves would give a
    near-uniform softmax). When the runner resizes further (a fixed ``input_size``, labels of
    another size), it interpolates ``log(s)``: the argmax may then differ from transformers' at a
    few boundary pixels.

    Args:
        model: The transformers model, in eval mode.
        kind: ``"semantic"``, ``"mask2former"``, ``"maskformer"`` or ``"oneformer"``.
        output_classes: The outputs to return, in order (the dataset's classes).
        task_inputs: OneFormer's tokenised ``"the task is semantic"`` ``(1, task_seq_len)``.
    """

    def __init__(
        self,
        model: nn.Module,
        kind: str,
        output_classes: Sequence[int],
        task_inputs: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.model, self.kind = model, kind
        self.num_classes = len(output_classes)
        # In the state dict, so that the weights' sha256 (a run's identity) covers the mapping.
        self.register_buffer("output_classes", torch.tensor(list(output_classes), dtype=torch.long))
        self._all = list(output_classes) == list(range(len(model.config.id2label)))
        if task_inputs is not None:
            self.register_buffer("task_inputs", task_inputs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "semantic":
            logits = self.model(pixel_values=x).logits
            return logits if self._all else logits[:, self.output_classes]
        extra = {}
        if self.kind == "oneformer":
            extra["task_inputs"] = self.task_inputs.expand(x.shape[0], -1)
        out = self.model(pixel_values=x, **extra)
        masks = out.masks_queries_logits.float()  # (N, Q, h, w)
        if self.kind == "mask2former":
            masks = F.interpolate(
                masks, size=_MASK2FORMER_MASK_SIZE, mode="bilinear", align_corners=False
            )
        classes = out.class_queries_logits.float().softmax(-1)[..., :-1]  # (N, Q, K)
        if not self._all:
            classes = classes[..., self.output_classes]
        scores = torch.einsum("bqc, bqhw -> bchw", classes, masks.sigmoid())
        if scores.shape[-2:] != x.shape[-2:]:
            scores = F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return scores.clamp_min(_SCORE_FLOOR).log()


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class HFModel:
    """What :func:`load_hf_model` gives the loader.

    Attributes:
        module: The wrapped model (eval mode).
        preprocessing: Its contract (no ``output_classes``: the module returns the dataset's
            classes itself).
        name: ``hf://org/name``.
        weights: ``hf://org/name@<commit>``: the snapshot that was loaded.
    """

    module: HFSegmentationModel
    preprocessing: Preprocessing
    name: str
    weights: str


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise RobustSegError(INSTALL_HINT) from None
    return transformers


def _image_processor(T: Any, folder: Path, model_type: str, what: str) -> Any:
    if not (folder / "preprocessor_config.json").is_file():
        raise RobustSegError(
            f"{what} has no preprocessor_config.json (its image processor's config: mean, std, "
            "size); robustseg reads the model contract from it"
        )
    try:
        if model_type != "oneformer":
            return T.AutoImageProcessor.from_pretrained(
                folder, use_fast=False, trust_remote_code=False
            )
        # OneFormer's processor reads class metadata from a hub dataset when it is built;
        # semantic scores do not use it, so an empty local file stands in.
        config = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
        with tempfile.TemporaryDirectory() as tmp:
            info = Path(tmp) / "class_info.json"
            info.write_text("{}", encoding="utf-8")
            config.update(repo_path=None, class_info_file=str(info))
            return T.OneFormerImageProcessor.from_dict(config)
    except Exception as exc:  # noqa: BLE001 - any failure to read it is one line
        raise RobustSegError(
            f"{what}: cannot read its image processor: {exception_line(exc)}"
        ) from exc


def _config(T: Any, folder: Path, name: str) -> Any:
    """The model's config, read with ``trust_remote_code=False``: a repository's own code (its
    config.json's ``auto_map``) is never run, and transformers never asks whether to run it."""
    try:
        return T.AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001
        try:
            auto_map = json.loads((folder / "config.json").read_text(encoding="utf-8"))["auto_map"]
        except (OSError, ValueError, KeyError, TypeError):
            auto_map = None
        if auto_map:
            raise RobustSegError(
                f"{name} needs its repository's own code (config.json auto_map: "
                f"{', '.join(sorted(map(str, auto_map)))}), which robustseg never runs; use a "
                "model transformers implements"
            ) from None
        raise RobustSegError(f"{name}: cannot read its config.json: {exception_line(exc)}") from exc


def _task_inputs(T: Any, folder: Path, config: Any, what: str) -> torch.Tensor:
    """OneFormerProcessor's ``task_inputs`` for ``"semantic"``: the tokens of ``"the task is
    semantic"`` padded to ``task_seq_len``, times the attention mask."""
    try:
        tokenizer = T.AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001
        raise RobustSegError(
            f"{what}: OneFormer needs its tokenizer for the task input: {exception_line(exc)}"
        ) from exc
    tokens = tokenizer(
        ["the task is semantic"], padding="max_length", max_length=config.task_seq_len,
        truncation=True,
    )  # fmt: skip
    return torch.tensor(tokens["attention_mask"]) * torch.tensor(tokens["input_ids"])


def load_hf_model(
    spec: str,
    *,
    dataset_class_names: Sequence[str] | None = None,
    class_map: Mapping[str, str | int] | str | os.PathLike[str] | None = None,
    dataset_classes: int | None = None,
) -> HFModel:
    """Loads ``hf://org/name[@revision]`` through the hub cache (``weights.hf_snapshot``).

    Args:
        spec: ``hf://org/name`` or ``hf://org/name@revision`` (branch, tag or commit).
        dataset_class_names: The dataset's classes in order; the model's labels are matched to
            them (:func:`match_classes`). ``None``: every output, in the model's order.
        class_map: Explicit ``{dataset class: model label or output index}`` entries, or a JSON
            file holding them.
        dataset_classes: Without names: the number of classes the dataset scores; a model with
            another count is refused.

    Returns:
        The module, its contract, name and the commit loaded.

    Raises:
        RobustSegError: transformers missing, not cached offline, an architecture that is not a
            semantic or universal segmentation model, unmatched classes, missing weights.
    """
    repo, revision = parse_hf_spec(spec)
    name = f"{HF_PREFIX}{repo}"
    T = _transformers()  # before any download
    folder = hf_snapshot(repo, revision, files=HF_MODEL_FILES)
    config = _config(T, folder, name)
    model_type = config.model_type
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES as semantic,
    )

    if model_type in _UNIVERSAL:
        cls, kind = getattr(T, _UNIVERSAL[model_type]), model_type
    elif model_type in semantic:
        cls, kind = T.AutoModelForSemanticSegmentation, "semantic"
    else:
        raise RobustSegError(
            f"{name} is a {model_type!r} model; hf:// takes semantic segmentation models "
            f"({', '.join(sorted(semantic))}) and {', '.join(sorted(_UNIVERSAL))}"
        )
    pre = preprocessing_from_processor(_image_processor(T, folder, model_type, name), name)
    id2label = {int(k): str(v) for k, v in config.id2label.items()}
    if sorted(id2label) != list(range(len(id2label))):
        raise RobustSegError(f"{name}: config.json's id2label does not number 0..K-1")
    labels = tuple(id2label[i] for i in range(len(id2label)))
    mapping = None if class_map is None else read_class_map(class_map)
    if dataset_class_names is not None:
        outputs = match_classes(labels, list(dataset_class_names), mapping, what=name)
    elif mapping:
        raise RobustSegError(f"{name}: a class map needs the dataset's class names")
    else:
        outputs = tuple(range(len(labels)))
        if dataset_classes is not None and len(labels) != dataset_classes:
            raise RobustSegError(
                f"{name} predicts {len(labels)} classes, the dataset has {dataset_classes}; "
                "pass the dataset's class names (dataset_class_names=...) to match them by name"
            )
    task = _task_inputs(T, folder, config, name) if kind == "oneformer" else None
    try:
        model, info = cls.from_pretrained(folder, output_loading_info=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001
        raise RobustSegError(f"{name}: cannot load the model: {exception_line(exc)}") from exc
    bad = [*info.get("missing_keys", ()), *(str(m[0]) for m in info.get("mismatched_keys", ()))]
    if bad:
        raise RobustSegError(
            f"{name}: the checkpoint does not fill the model: {', '.join(bad[:4])}"
            + (f" (+{len(bad) - 4} more)" if len(bad) > 4 else "")
        )
    module = HFSegmentationModel(model.float().eval(), kind, outputs, task).eval()
    return HFModel(module, pre, name, f"{name}@{folder.name}")
