"""Checkpoint reading and pure key conversion (NVlabs SegFormer, mmsegmentation, transformers)."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from robustbench_seg.errors import RobustSegError

__all__ = [
    "Converted",
    "FORMATS",
    "NATIVE_METADATA_KEY",
    "convert_checkpoint",
    "ENCODER_FORMATS",
    "convert_hf_segformer",
    "convert_mmcls_mobilenetv2",
    "convert_mmcls_resnet",
    "convert_mit_imagenet",
    "convert_mmseg_deeplabv3plus",
    "convert_native",
    "convert_official_segformer",
    "detect_format",
    "load_pickle",
    "read_checkpoint",
    "unwrap_state_dict",
]

StateDict = dict[str, torch.Tensor]
# A replacement is a template for ``re.Match.expand`` or a function of the match; ``None`` drops.
Replacement = str | Callable[[re.Match[str]], str] | None
Rule = tuple[str, Replacement]

NATIVE_METADATA_KEY = "robustseg"


@dataclass(frozen=True)
class Converted:
    """A state dict in our key names.

    Attributes:
        state_dict: Tensors under the target model's parameter/buffer names.
        source_format: One of ``FORMATS``.
        encoder_only: True when the keys belong to ``model.backbone`` (ImageNet encoders and
            backbones).
        metadata: Native-format metadata (model name, num_classes, source), else empty.
    """

    state_dict: StateDict
    source_format: str
    encoder_only: bool = False
    metadata: Mapping[str, object] | None = None


def _apply_rules(state_dict: Mapping[str, torch.Tensor], rules: list[Rule], fmt: str) -> StateDict:
    """Maps every key by the first matching rule; a key no rule matches raises."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out: StateDict = {}
    leftovers = []
    for key, value in state_dict.items():
        for pattern, repl in compiled:
            m = pattern.fullmatch(key)
            if m is None:
                continue
            if repl is not None:
                new = repl(m) if callable(repl) else m.expand(repl)
                if new in out:
                    raise RobustSegError(f"{fmt} checkpoint maps two keys onto {new!r}")
                out[new] = value
            break
        else:
            leftovers.append(key)
    if leftovers:
        shown = ", ".join(leftovers[:5]) + (" ..." if len(leftovers) > 5 else "")
        raise RobustSegError(f"{len(leftovers)} unexpected key(s) in the {fmt} checkpoint: {shown}")
    return out


def _plus_one(group: int, rest: str) -> Callable[[re.Match[str]], str]:
    """A replacement turning a 0-based index (match group ``group``) into a 1-based name."""

    def repl(m: re.Match[str]) -> str:
        return m.expand(rest.replace("{i}", str(int(m.group(group)) + 1)))

    return repl


# ---------------------------------------------------------------------------------------------
# Official SegFormer (NVlabs, mmseg 0.x naming): our names are the official names.

_OFFICIAL_RULES: list[Rule] = [
    (r"backbone\.(.+)", r"backbone.\1"),
    (r"decode_head\.conv_seg\.(weight|bias)", None),  # built by BaseDecodeHead, never used
    (r"decode_head\.(linear_c[1-4]\.proj|linear_pred)\.(weight|bias)", r"decode_head.\1.\2"),
    (r"decode_head\.linear_fuse\.conv\.weight", "decode_head.linear_fuse.conv.weight"),
    (
        r"decode_head\.linear_fuse\.bn\.(weight|bias|running_mean|running_var|num_batches_tracked)",
        r"decode_head.linear_fuse.bn.\1",
    ),
]


def convert_official_segformer(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Official SegFormer checkpoint (``backbone.*``, ``decode_head.*``) -> ours.

    Args:
        state_dict: The checkpoint's ``state_dict`` (a wrapper is stripped if present).

    Returns:
        Our state dict; ``decode_head.conv_seg`` (unused by SegFormerHead) is dropped.
    """
    return _apply_rules(unwrap_state_dict(state_dict), _OFFICIAL_RULES, "official SegFormer")


_MIT_IMAGENET_RULES: list[Rule] = [
    (r"head\.(weight|bias)", None),  # ImageNet classifier
    (r"((?:patch_embed|block|norm)[1-4]\..+)", r"\1"),
]


def convert_mit_imagenet(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Official ImageNet MiT encoder (``mit_b*.pth``, no ``backbone.`` prefix) -> our backbone.

    Args:
        state_dict: The encoder checkpoint.

    Returns:
        A state dict for ``model.backbone`` (the ``head.*`` classifier is dropped).
    """
    return _apply_rules(unwrap_state_dict(state_dict), _MIT_IMAGENET_RULES, "MiT ImageNet")


# ---------------------------------------------------------------------------------------------
# Hugging Face transformers 4.x (SegformerForSemanticSegmentation / SegformerModel /
# SegformerForImageClassification). Key and value are separate linears there; ours fuses them.

_KV_PART = "::kv_part="

_HF_ENC = r"(?:segformer\.)?encoder\."
_HF_BLOCK = _HF_ENC + r"block\.(\d)\.(\d+)\."
_HF_RULES: list[Rule] = [
    (r"classifier\.(weight|bias)", None),  # ImageNet classifier of the mit-b* checkpoints
    (
        _HF_ENC + r"patch_embeddings\.(\d)\.proj\.(weight|bias)",
        _plus_one(1, r"backbone.patch_embed{i}.proj.\2"),
    ),
    (
        _HF_ENC + r"patch_embeddings\.(\d)\.layer_norm\.(weight|bias)",
        _plus_one(1, r"backbone.patch_embed{i}.norm.\2"),
    ),
    (_HF_ENC + r"layer_norm\.(\d)\.(weight|bias)", _plus_one(1, r"backbone.norm{i}.\2")),
    (
        _HF_BLOCK + r"layer_norm_([12])\.(weight|bias)",
        _plus_one(1, r"backbone.block{i}.\2.norm\3.\4"),
    ),
    (
        _HF_BLOCK + r"attention\.self\.query\.(weight|bias)",
        _plus_one(1, r"backbone.block{i}.\2.attn.q.\3"),
    ),
    (
        _HF_BLOCK + r"attention\.self\.(key|value)\.(weight|bias)",
        _plus_one(1, r"backbone.block{i}.\2.attn.kv.\4" + _KV_PART + r"\3"),
    ),
    (
        _HF_BLOCK + r"attention\.self\.(sr|layer_norm)\.(weight|bias)",
        lambda m: (
            f"backbone.block{int(m.group(1)) + 1}.{m.group(2)}.attn."
            f"{'sr' if m.group(3) == 'sr' else 'norm'}.{m.group(4)}"
        ),
    ),
    (
        _HF_BLOCK + r"attention\.output\.dense\.(weight|bias)",
        _plus_one(1, r"backbone.block{i}.\2.attn.proj.\3"),
    ),
    (
        _HF_BLOCK + r"mlp\.(dense1|dwconv\.dwconv|dense2)\.(weight|bias)",
        lambda m: (
            f"backbone.block{int(m.group(1)) + 1}.{m.group(2)}.mlp."
            f"{ {'dense1': 'fc1', 'dense2': 'fc2'}.get(m.group(3), m.group(3)) }.{m.group(4)}"
        ),
    ),
    (
        r"decode_head\.linear_c\.(\d)\.proj\.(weight|bias)",
        _plus_one(1, r"decode_head.linear_c{i}.proj.\2"),
    ),
    (r"decode_head\.linear_fuse\.weight", "decode_head.linear_fuse.conv.weight"),
    (
        r"decode_head\.batch_norm\.(weight|bias|running_mean|running_var|num_batches_tracked)",
        r"decode_head.linear_fuse.bn.\1",
    ),
    (r"decode_head\.classifier\.(weight|bias)", r"decode_head.linear_pred.\1"),
]


def _fuse_kv(state_dict: StateDict) -> StateDict:
    """Concatenates separate key/value tensors into one ``kv`` tensor (key rows first)."""
    out: StateDict = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if _KV_PART in key:
            base, part = key.split(_KV_PART)
            parts.setdefault(base, {})[part] = value
        else:
            out[key] = value
    for base, kv in parts.items():
        if set(kv) != {"key", "value"}:
            raise RobustSegError(f"checkpoint has only the {sorted(kv)} half of {base!r}")
        out[base] = torch.cat([kv["key"], kv["value"]], dim=0)
    return out


def convert_hf_segformer(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Hugging Face transformers SegFormer state dict -> ours.

    Accepts ``SegformerForSemanticSegmentation`` (full model), ``SegformerModel`` and
    ``SegformerForImageClassification`` (encoder only, e.g. ``nvidia/mit-b*``; the ImageNet
    ``classifier`` is dropped). Separate ``key``/``value`` linears are fused into ``kv``.

    Args:
        state_dict: The transformers state dict.

    Returns:
        Our state dict (encoder keys under ``backbone.``).
    """
    return _fuse_kv(_apply_rules(state_dict, _HF_RULES, "Hugging Face SegFormer"))


# ---------------------------------------------------------------------------------------------
# mmsegmentation DeepLabV3+ (our DeepLabV3+ modules are named as mmseg's).

_MMSEG_DEEPLAB_RULES: list[Rule] = [
    (r"auxiliary_head\..+", None),  # FCN auxiliary head, training only
    (r"((?:backbone|decode_head)\..+)", r"\1"),
]


def convert_mmseg_deeplabv3plus(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """mmsegmentation DeepLabV3+ checkpoint -> ours (names are identical but for the aux head).

    Args:
        state_dict: The checkpoint, optionally wrapped in ``{"state_dict": ...}``.

    Returns:
        Our state dict without ``auxiliary_head.*``.
    """
    return _apply_rules(unwrap_state_dict(state_dict), _MMSEG_DEEPLAB_RULES, "mmseg DeepLabV3+")


# ---------------------------------------------------------------------------------------------
# ImageNet classifiers the DeepLabV3+ backbones start from (mmcv / mmcls model zoo). Keys are
# mmcls's, with or without its ``backbone.`` prefix: mmcls ``ResNetV1c`` (``stem.*``,
# ``layer1-4.*``, classifier ``fc.*``) and ``MobileNetV2`` (``conv1``, ``layer1-7``, the final
# 1x1 ``conv2`` to 1280 channels and ``head.fc`` feed only the classifier).

_MMCLS_RESNET_RULES: list[Rule] = [
    (r"(?:backbone\.)?(stem|layer[1-4])\.(.+)", r"\1.\2"),
    (r"(?:backbone\.)?fc\.(weight|bias)", None),  # ImageNet classifier
    (r"head\.fc\.(weight|bias)", None),  # the same under mmcls's ImageClassifier
]

_MMCLS_MOBILENETV2_RULES: list[Rule] = [
    (r"(?:backbone\.)?(conv1|layer[1-7])\.(.+)", r"\1.\2"),
    (r"(?:backbone\.)?conv2\.(.+)", None),  # 320 -> 1280 conv of the classifier
    (r"head\.fc\.(weight|bias)", None),  # ImageNet classifier
]


def convert_mmcls_resnet(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """mmcls / open-mmlab ImageNet ResNetV1c (``resnet50_v1c-*.pth``) -> our ResNet backbone.

    Args:
        state_dict: The classifier checkpoint.

    Returns:
        A state dict for ``model.backbone`` (the ``fc`` classifier is dropped).
    """
    return _apply_rules(unwrap_state_dict(state_dict), _MMCLS_RESNET_RULES, "mmcls ResNetV1c")


def convert_mmcls_mobilenetv2(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """mmcls ImageNet MobileNetV2 (``mobilenet_v2_batch256_imagenet_*.pth``) -> our backbone.

    Args:
        state_dict: The classifier checkpoint.

    Returns:
        A state dict for ``model.backbone`` (``conv2`` and ``head.fc`` are dropped).
    """
    return _apply_rules(
        unwrap_state_dict(state_dict), _MMCLS_MOBILENETV2_RULES, "mmcls MobileNetV2"
    )


def convert_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our own format: keys are already ours."""
    return dict(state_dict)


# ---------------------------------------------------------------------------------------------
# Format detection and file reading.

FORMATS: dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    "native": convert_native,
    "hf-segformer": convert_hf_segformer,
    "official-segformer": convert_official_segformer,
    "mit-imagenet": convert_mit_imagenet,
    "mmseg-deeplabv3plus": convert_mmseg_deeplabv3plus,
    "mmcls-resnet-v1c": convert_mmcls_resnet,
    "mmcls-mobilenetv2": convert_mmcls_mobilenetv2,
}
# Formats whose keys belong to ``model.backbone``.
ENCODER_FORMATS = ("mit-imagenet", "mmcls-resnet-v1c", "mmcls-mobilenetv2")


def unwrap_state_dict(obj: Mapping[str, object]) -> StateDict:
    """Returns ``obj["state_dict"]`` (mmcv/mmengine checkpoints) or ``obj["model"]``, else ``obj``.

    Raises:
        RobustSegError: If the result is not a mapping of names to tensors.
    """
    for wrapper in ("state_dict", "model"):
        inner = obj.get(wrapper) if isinstance(obj, Mapping) else None
        if isinstance(inner, Mapping):
            obj = inner
            break
    if not isinstance(obj, Mapping) or not obj:
        raise RobustSegError("the checkpoint holds no state dict (expected a dict of tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(obj) or not all(isinstance(k, str) for k in obj):
        bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:3]
        raise RobustSegError(f"the checkpoint's state dict holds non-tensor entries: {bad}")
    return tensors


def detect_format(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> str:
    """Names the source format of a (unwrapped) state dict.

    Args:
        state_dict: The tensors.
        metadata: safetensors metadata, if any (our native files carry ``robustseg``).

    Returns:
        A key of ``FORMATS``.

    Raises:
        RobustSegError: If no known format matches.
    """
    if metadata and NATIVE_METADATA_KEY in metadata:
        return "native"
    keys = list(state_dict)
    if any(re.match(_HF_ENC + r"(patch_embeddings|block|layer_norm)\.", k) for k in keys):
        return "hf-segformer"
    if any(k.startswith("backbone.patch_embed1.") for k in keys):
        return "official-segformer"
    if any(k.startswith("patch_embed1.") for k in keys):
        return "mit-imagenet"
    if any(k.startswith(("decode_head.aspp_modules.", "decode_head.c1_bottleneck.")) for k in keys):
        return "mmseg-deeplabv3plus"
    if not any(k.startswith("decode_head.") for k in keys):
        if any(re.fullmatch(r"(?:backbone\.)?stem\.0\.weight", k) for k in keys):
            return "mmcls-resnet-v1c"
        if any(re.fullmatch(r"(?:backbone\.)?conv1\.conv\.weight", k) for k in keys):
            return "mmcls-mobilenetv2"
    raise RobustSegError(
        f"unrecognised checkpoint: none of the known formats ({', '.join(FORMATS)}) has keys "
        f"like {keys[:3]}"
    )


def read_checkpoint(path: str | Path) -> tuple[StateDict, dict[str, str]]:
    """Reads a checkpoint file or a ``save_pretrained`` directory.

    Supports ``.safetensors`` files and pickled PyTorch files (``.pth``, ``.pt``, ``.bin``, read
    by :func:`load_pickle`: tensors and plain data only, never code). A directory must hold
    ``model.safetensors`` or ``pytorch_model.bin`` (sharded checkpoints are not supported).

    Args:
        path: The file or directory.

    Returns:
        ``(state_dict, metadata)``; the state dict is unwrapped from ``state_dict``/``model``
        wrappers and ``metadata`` is the safetensors header metadata (empty for pickles).

    Raises:
        RobustSegError: For a missing, truncated or non-checkpoint file, or a pickle that names
            a function or class outside the allow-list.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise RobustSegError(
                f"{p} is a directory without model.safetensors or pytorch_model.bin"
            )
    if not p.is_file():
        raise RobustSegError(f"checkpoint not found: {p}")
    with p.open("rb") as fh:
        head = fh.read(8)
    if zipfile.is_zipfile(p) or head[:2] == b"\x80\x02" or p.suffix in (".pth", ".pt", ".bin"):
        return unwrap_state_dict(load_pickle(p)), {}
    return _read_safetensors(p)


def _pickle_allow_list() -> list[object | tuple[object, str]]:
    """The globals besides torch's own that a checkpoint's pickle may name: NumPy arrays,
    scalars and dtypes, which mmcv/mmseg checkpoints keep in their ``meta`` (e.g. a
    ``np.float64`` best score). Under both NumPy module paths (``numpy.core`` before 2.0,
    ``numpy._core`` after), bound to the installed functions without importing the old path.
    Each builds a value from data (an object array's items come through the same unpickler)."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]

    allowed: list[object | tuple[object, str]] = [(np.ndarray, "numpy.ndarray")]
    allowed.append((np.dtype, "numpy.dtype"))
    # A dtype's state is set on an instance of its class (``numpy.dtypes.Float64DType``, ...).
    allowed += sorted({type(np.dtype(c)) for c in np.typecodes["All"]} - {np.dtype}, key=str)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((multiarray._reconstruct, f"{module}._reconstruct"))
        allowed.append((multiarray.scalar, f"{module}.scalar"))
    return allowed


def load_pickle(path: str | Path) -> object:
    """Unpickles a PyTorch file without running anything it names.

    ``torch.load(weights_only=True)``: tensors, containers, numbers and strings, plus the NumPy
    globals of ``_pickle_allow_list``. Any other global (a function a crafted ``__reduce__``
    names, or a foreign class) is neither imported nor called: the load is refused.

    Args:
        path: A ``.pth`` / ``.pt`` / ``.bin`` file (zip or legacy format).

    Returns:
        The unpickled object, tensors on the CPU.

    Raises:
        RobustSegError: One line naming the file: a global outside the allow-list (named), or
            a file that is truncated or not a PyTorch pickle.
    """
    import pickle

    p = Path(path)
    try:
        with torch.serialization.safe_globals(_pickle_allow_list()):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:  # torch's own words follow its generic preamble
            why = str(exc).partition("WeightsUnpickler error:")[2].strip() or str(exc).strip()
            raise RobustSegError(
                f"refused {p}: {why.splitlines()[0] if why else 'UnpicklingError'} (only "
                "tensors, plain data and NumPy values are read; nothing was run)"
            ) from None
        raise RobustSegError(
            f"refused {p}: its pickle names {found.group(1)}, which a weights file does not "
            "need (only tensors, plain data and NumPy values are read; nothing was run); "
            "re-save it as a plain state dict or .safetensors"
        ) from None
    except Exception as exc:  # zip/pickle/EOF errors have many types
        raise RobustSegError(
            f"cannot read {p} as a PyTorch checkpoint (truncated or not a checkpoint?): "
            f"{_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _read_safetensors(p: Path) -> tuple[StateDict, dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types
        raise RobustSegError(
            f"cannot read {p} as a checkpoint (truncated, or neither safetensors nor a PyTorch "
            f"file?): {_first_line(exc)}"
        ) from exc
    if not state:
        raise RobustSegError(f"{p} holds no tensors")
    return state, metadata


def convert_checkpoint(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> Converted:
    """Auto-detects the source format and converts to our key names.

    Args:
        state_dict: The (unwrapped) tensors of a checkpoint.
        metadata: safetensors metadata, if any.

    Returns:
        The converted state dict with its source format.
    """
    fmt = detect_format(state_dict, metadata)
    converted = FORMATS[fmt](state_dict)
    meta: dict[str, object] = {}
    if fmt == "native" and metadata:
        try:
            meta = json.loads(metadata[NATIVE_METADATA_KEY])
        except (json.JSONDecodeError, TypeError) as exc:
            raise RobustSegError(f"corrupt robustseg metadata in the checkpoint: {exc}") from exc
    encoder_only = fmt in ENCODER_FORMATS or (
        fmt == "hf-segformer" and not any(k.startswith("decode_head.") for k in converted)
    )
    if encoder_only:
        converted = {k.removeprefix("backbone."): v for k, v in converted.items()}
    return Converted(converted, fmt, encoder_only, meta)
