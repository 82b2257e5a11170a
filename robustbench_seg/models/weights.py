"""Known pretrained weights (NVlabs SegFormer via the HF hub, mmsegmentation) and their cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import atomic_path, current_umask, sha256_file
from robustbench_seg.models.convert import (
    NATIVE_METADATA_KEY,
    Converted,
    convert_checkpoint,
    read_checkpoint,
)
from robustbench_seg.models.registry import TAG_SEPARATOR, get_model_entry, split_name

__all__ = [
    "CATALOG",
    "HF_WEIGHT_FILES",
    "WeightsInfo",
    "catalog_entry",
    "cache_dir",
    "ASSETS",
    "download_url",
    "export_weights",
    "hf_snapshot",
    "load_state_dict_strict",
    "load_weights",
    "load_weights_file",
    "resolve_weights",
    "save_weights",
    "verify_sha256",
]


@dataclass(frozen=True)
class WeightsInfo:
    """One published checkpoint.

    Attributes:
        name: Catalog id, ``<architecture>.<tag>``, e.g. ``"segformer-b5.cityscapes"``.
        model: Registry name of the architecture it fits.
        source: ``hf://<repo id>``, an ``https://`` URL or a bundled file.
        num_classes: Classes of its head (ImageNet encoders and backbones: 0, no segmentation
            head: they load into ``model.backbone``).
        dataset: What it was trained on.
        sha256: The file's sha256, hex: the full 64-digit digest (the bundled ``synthetic``
            files) or its first 8 digits (the mmseg/mmcv files: the prefix their file names
            carry, torch.hub's ``check_hash`` convention; their full digests are published
            nowhere); ``None`` when unknown (``hf://`` entries: the hub's own cache). The file
            is checked against it on every use, cached or just downloaded.
        miou: Published single-scale Cityscapes val mIoU, when the source states it.
        eval_mode: The inference its published score used (``"slide 1024/768"``, ``"whole"``).
    """

    name: str
    model: str
    source: str
    num_classes: int
    dataset: str
    sha256: str | None = None
    miou: float | None = None
    eval_mode: str = "whole"

    @property
    def sha256_is_prefix(self) -> bool:
        """True when ``sha256`` holds a prefix of the digest, not all of it."""
        return self.sha256 is not None and len(self.sha256) < 64

    @property
    def tag(self) -> str:
        """The weights tag: ``"cityscapes"`` of ``"segformer-b5.cityscapes"``."""
        return self.name.partition(TAG_SEPARATOR)[2]


_MMSEG = "https://download.openmmlab.com/mmsegmentation/v0.5"
# Published numbers: NVlabs/SegFormer README (Cityscapes, 1024x1024 sliding window) and
# mmsegmentation configs/deeplabv3plus/README.md, configs/mobilenet_v2/README.md.
_SEGFORMER_MIOU = {"b0": 76.2, "b1": 78.5, "b2": 81.0, "b3": 81.7, "b4": 82.3, "b5": 82.4}
# The ImageNet backbones mmseg's DeepLabV3+ configs start from (``pretrained=`` in
# configs/_base_/models/deeplabv3plus_r50-d8.py and configs/mobilenet_v2/*): mmcv's model zoo.
_IMAGENET_BACKBONES = {
    "r50": "https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    "r101": "https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth",
    "mobilenetv2": "https://download.openmmlab.com/mmclassification/v0/imagenet/"
    "mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth",
}


def _sha_prefix(url: str) -> str | None:
    """mmcv's convention (torch.hub ``check_hash``): the file name ends with the first 8 hex
    digits of its sha256."""
    digest = re.search(r"-([0-9a-f]{8})\.pth$", url)
    return digest.group(1) if digest else None


def _catalog() -> dict[str, WeightsInfo]:
    entries = []
    for v, miou in _SEGFORMER_MIOU.items():
        entries.append(
            WeightsInfo(
                f"segformer-{v}.cityscapes",
                f"segformer-{v}",
                f"hf://nvidia/segformer-{v}-finetuned-cityscapes-1024-1024",
                19,
                "cityscapes",
                miou=miou,
                eval_mode="slide 1024/768",
            )
        )
        entries.append(
            WeightsInfo(
                f"segformer-{v}.imagenet",
                f"segformer-{v}",
                f"hf://nvidia/mit-{v}",
                0,
                "imagenet-1k",
            )
        )
    mmseg = [
        # (catalog id, model, path under v0.5, mIoU, eval mode)
        (
            "deeplabv3plus-r50.cityscapes",
            "deeplabv3plus-r50",
            "deeplabv3plus/deeplabv3plus_r50-d8_512x1024_80k_cityscapes/"
            "deeplabv3plus_r50-d8_512x1024_80k_cityscapes_20200606_114049-f9fb496d.pth",
            80.09,
            "whole",
        ),
        (
            "deeplabv3plus-r101.cityscapes",
            "deeplabv3plus-r101",
            "deeplabv3plus/deeplabv3plus_r101-d8_512x1024_80k_cityscapes/"
            "deeplabv3plus_r101-d8_512x1024_80k_cityscapes_20200606_114143-068fcfe9.pth",
            80.97,
            "whole",
        ),
        (
            "deeplabv3plus-r50.cityscapes-769",
            "deeplabv3plus-r50",
            "deeplabv3plus/deeplabv3plus_r50-d8_769x769_80k_cityscapes/"
            "deeplabv3plus_r50-d8_769x769_80k_cityscapes_20200606_210233-0e9dfdc4.pth",
            79.83,
            "slide 769/513",
        ),
        (
            "deeplabv3plus-r101.cityscapes-769",
            "deeplabv3plus-r101",
            "deeplabv3plus/deeplabv3plus_r101-d8_769x769_80k_cityscapes/"
            "deeplabv3plus_r101-d8_769x769_80k_cityscapes_20200607_000405-a7573d20.pth",
            80.98,
            "slide 769/513",
        ),
        (
            "deeplabv3plus-mobilenetv2.cityscapes",
            "deeplabv3plus-mobilenetv2",
            "mobilenet_v2/deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes/"
            "deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes_20200825_124836-d256dd4b.pth",
            75.20,
            "whole",
        ),
    ]
    for name, model, path, miou, mode in mmseg:
        url = f"{_MMSEG}/{path}"
        entries.append(
            WeightsInfo(
                name,
                model,
                url,
                19,
                "cityscapes",
                sha256=_sha_prefix(url),
                miou=miou,
                eval_mode=mode,
            )  # fmt: skip
        )
    for model, backbone in (
        ("deeplabv3plus-r50", "r50"),
        ("deeplabv3plus-r101", "r101"),
        ("deeplabv3plus-mobilenetv2", "mobilenetv2"),
        ("deeplabv3plus-mobilenetv2-w256-os16", "mobilenetv2"),
    ):
        url = _IMAGENET_BACKBONES[backbone]
        entries.append(
            WeightsInfo(f"{model}.imagenet", model, url, 0, "imagenet-1k", sha256=_sha_prefix(url))
        )
    for model, miou, sha in _SYNTHETIC:
        name = f"{model}.synthetic"
        entries.append(
            WeightsInfo(
                name,
                model,
                str(ASSETS / f"{name}.safetensors"),
                19,
                "synthetic-city",
                sha256=sha,
                miou=miou,
                eval_mode="whole",
            )
        )
    return {e.name: e for e in entries}


# The bundled models (robustseg demo): trained with `robustseg train` on the synthetic city,
# shipped in fp16; their commands, logs and curves are in assets/training/. mIoU: synthetic val
# split (100 images at 512x256, seed 0) with the fp16 weights.
ASSETS = Path(__file__).resolve().parent.parent / "assets"
_SYNTHETIC = (  # (architecture, mIoU, sha256 of the file)
    (
        "segformer-b0",
        55.4,
        "1ffcbb91de61e056728a91f4bf496872ec00f74b17f132ffbda478e6e5b36fa8",
    ),
    (
        "deeplabv3plus-mobilenetv2-w256-os16",
        50.4,
        "2d5e689a38b40951e1280ae5c728f8f81737faa16c8cd1d2d4fde634e36a0e40",
    ),
)


CATALOG: dict[str, WeightsInfo] = _catalog()


def catalog_entry(weights: str, model_name: str | None = None) -> WeightsInfo | None:
    """The catalog entry a weights spec names, or ``None`` for paths, URLs and ``hf://`` ids.

    Args:
        weights: ``"default"``, a tag (``"synthetic"``, with ``model_name``) or a catalog id
            (``"segformer-b0.synthetic"``).
        model_name: The architecture (a registry name or alias, optionally with a tag).

    Raises:
        RobustSegError: ``"default"`` or a tag without a model; a model without default
            weights; a catalog id for another architecture; a tag the catalog does not have.
    """
    spec = os.fspath(weights)
    entry = tag = None
    if model_name is not None:
        entry = get_model_entry(model_name)
        tag = split_name(model_name)[1]
    if spec == "default":
        if entry is None:
            raise RobustSegError('weights="default" needs a model name')
        tag = tag or entry.default_weights
        if tag is None:
            raise RobustSegError(f"model {entry.name!r} has no default weights")
        spec = f"{entry.name}{TAG_SEPARATOR}{tag}"
    elif entry is not None and f"{entry.name}{TAG_SEPARATOR}{spec}" in CATALOG:
        spec = f"{entry.name}{TAG_SEPARATOR}{spec}"  # a bare tag
    if spec not in CATALOG:
        if entry is not None and os.fspath(weights) == "default":
            tags = sorted(w.tag for w in CATALOG.values() if w.model == entry.name)
            raise RobustSegError(
                f"no weights {spec!r} in the catalog; {entry.name} has: {', '.join(tags) or 'none'}"
            )
        return None
    info = CATALOG[spec]
    if entry is not None and info.model != entry.name:
        raise RobustSegError(
            f"weights {spec!r} are for {info.model}, not {entry.name}; use a {entry.name} tag "
            f"({', '.join(sorted(w.tag for w in CATALOG.values() if w.model == entry.name))})"
        )
    return info


def cache_dir() -> Path:
    """``$ROBUSTSEG_CACHE`` or ``~/.cache/robustseg`` (read at call time)."""
    env = os.environ.get("ROBUSTSEG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "robustseg"


def _cached_path(url: str) -> Path:
    name = Path(urllib.parse.urlparse(url).path).name or hashlib.sha256(url.encode()).hexdigest()
    return cache_dir() / "checkpoints" / name


def verify_sha256(path: Path, expected: str, *, what: str) -> None:
    """Checks a file against a catalog's sha256 (a full digest or a prefix of one).

    Args:
        path: The file, read whole (0.2-0.45 s for a 338 MB checkpoint here: see
            benchmarks/bench_weights_hash.py).
        expected: Hex digest or prefix of at least 8 digits.
        what: What the file should be (a URL or catalog id), for the message.

    Raises:
        RobustSegError: One line naming the file and saying what to do; nothing was read from
            it as a checkpoint.
    """
    expected = expected.lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", expected):
        raise RobustSegError(f"bad sha256 {expected!r} for {what}: need 8 to 64 hex digits")
    actual = sha256_file(path)
    if not actual.startswith(expected):
        want = expected if len(expected) < 64 else f"{expected[:16]}..."
        raise RobustSegError(
            f"{path} is not the file {what} names (sha256 {actual[:16]}..., expected {want}); "
            "nothing was loaded from it: delete it and run again to download it, or put the "
            "official file there"
        )


def _catalog_sha_for(path: Path) -> tuple[str, str] | None:
    """``(url, sha256)`` when ``path`` is where the cache keeps a catalog download."""
    path = path.resolve()
    for info in CATALOG.values():
        if info.sha256 is not None and re.match(r"^[a-z]+://", info.source):
            if _cached_path(info.source).resolve() == path:
                return info.source, info.sha256
    return None


def download_url(
    url: str,
    *,
    sha256: str | None = None,
    allow_http: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Downloads ``url`` once into the cache (temp file + atomic rename) and returns the path.

    Args:
        url: An ``https://`` URL (``http://`` only with ``allow_http``; meant for tests).
        sha256: Expected sha256 (or a prefix of it); a mismatching download is deleted.
        allow_http: Permit plain ``http://`` URLs.
        timeout: Socket timeout in seconds.

    Returns:
        The cached file, ``<cache_dir>/checkpoints/<file name of the URL>``.

    Raises:
        RobustSegError: Insecure URL, network failure (naming the cache path to fill by hand),
            or a checksum mismatch (of the download, or of the file already in the cache: it
            is checked on every call).
    """
    scheme = urllib.parse.urlparse(url).scheme
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise RobustSegError(f"only https:// URLs can be downloaded, not {url!r}")
    dest = _cached_path(url)
    if dest.is_file():
        if sha256 is not None:
            verify_sha256(dest, sha256, what=url)
        return dest
    digest = hashlib.sha256()
    with atomic_path(dest, suffix=".part") as tmp:  # kept only if the download completes and checks
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RobustSegError(
                f"cannot download {url} ({reason}); download it on a machine with internet and "
                f"put it at {dest}, or pass the file with --weights PATH"
            ) from exc
        actual = digest.hexdigest()
        if sha256 is not None and not actual.startswith(sha256.lower()):
            raise RobustSegError(
                f"sha256 mismatch for {url}: expected {sha256}..., got {actual}; "
                "the download was discarded"
            )
    return dest


def _hf_cache_dir() -> Path:
    """The hub cache, honouring ``HF_HUB_CACHE`` / ``HF_HOME`` at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# What a SegFormer checkpoint for our own implementation needs from its hub repo.
HF_WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")


HF_PREFIX = "hf://"


def is_hf_spec(spec: object) -> bool:
    """True for ``hf://org/name[@revision]`` strings."""
    return isinstance(spec, str) and spec.startswith(HF_PREFIX)


def parse_hf_spec(spec: str) -> tuple[str, str | None]:
    """``"hf://org/name@rev"`` -> ``("org/name", "rev")``; no ``@`` -> revision ``None``.

    Raises:
        RobustSegError: A spec that is not ``hf://`` followed by a repo id.
    """
    repo, at, rev = spec.removeprefix(HF_PREFIX).partition("@")
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo) or (at and not rev.strip()):
        raise RobustSegError(
            f"bad Hugging Face model {spec!r}: use hf://ORG/NAME or hf://ORG/NAME@REVISION"
        )
    return repo, rev.strip() or None


def hf_snapshot(
    repo_id: str, revision: str | None = None, *, files: Sequence[str] = HF_WEIGHT_FILES
) -> Path:
    """Fetches (or finds in the local hub cache) a model repo's weights and config.

    Args:
        repo_id: ``"org/name"``.
        revision: Branch, tag or commit; default ``main``.
        files: The repo's files to fetch (``allow_patterns``; globs work): the weights and
            ``config.json`` by default; ``hf://`` models add their image processor's and
            tokenizer's configs (``models.hf.HF_MODEL_FILES``).

    Returns:
        The snapshot directory (holds ``model.safetensors``, ``pytorch_model.bin`` or their
        shards); its name is the commit.

    Raises:
        RobustSegError: When the files are neither cached nor downloadable; the message says
            which file to fetch and where to pass it.
    """
    from huggingface_hub import snapshot_download

    cache = _hf_cache_dir()
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache,
            local_files_only=_hf_offline(),
            allow_patterns=list(files),
        )
    except Exception as exc:  # the hub raises many error types (offline, 404, HTTP, ...)
        rev = f" --revision {revision}" if revision else ""
        weights_only = tuple(files) == HF_WEIGHT_FILES
        tail = (
            f", or download https://huggingface.co/{repo_id}/resolve/{revision or 'main'}/"
            "pytorch_model.bin and pass it with --weights PATH"
            if weights_only
            else ""
        )
        raise RobustSegError(
            f"cannot get hf://{repo_id}{'@' + revision if revision else ''} "
            f"({type(exc).__name__}) and it is not in the Hugging Face cache {cache}; on a "
            f"machine with internet run `huggingface-cli download {repo_id}{rev}` and copy "
            f"{cache / ('models--' + repo_id.replace('/', '--'))}{tail}"
        ) from exc
    path = Path(folder)
    weights = ("model.safetensors", "pytorch_model.bin")
    if not any((path / n).is_file() for n in (*weights, *(f"{n}.index.json" for n in weights))):
        raise RobustSegError(f"hf://{repo_id} has no model.safetensors or pytorch_model.bin")
    return path


def resolve_weights(
    weights: str | os.PathLike[str], *, model_name: str | None = None, allow_http: bool = False
) -> Path:
    """Turns a weights spec into a local file or directory, downloading if needed.

    Args:
        weights: ``"default"`` or a weights tag (both need ``model_name``), a catalog id
            (``"segformer-b0.synthetic"``), ``hf://<repo>[@rev]``, an ``https://`` URL, or a
            local path.
        model_name: The architecture (registry name or alias, optionally ``arch.tag``);
            needed for ``"default"`` and tags.
        allow_http: Permit ``http://`` URLs (tests against a local server).

    Returns:
        A checkpoint file or a ``save_pretrained`` directory.

    Raises:
        RobustSegError: Unknown catalog id, missing file, failed download.
    """
    spec = os.fspath(weights)
    sha = None
    info = catalog_entry(spec, model_name)
    if info is not None:
        spec, sha = info.source, info.sha256
    if is_hf_spec(spec):
        return hf_snapshot(*parse_hf_spec(spec))
    if re.match(r"^[a-z]+://", spec):
        return download_url(spec, sha256=sha, allow_http=allow_http)
    path = Path(spec).expanduser()
    if sha is not None and path.is_file():  # a bundled asset: check it is the file we shipped
        actual = sha256_file(path)
        if not actual.startswith(sha):
            raise RobustSegError(
                f"{path} is damaged or not the shipped file (sha256 {actual[:12]}..., expected "
                f"{sha[:12]}...); reinstall robustseg or restore it with git"
            )
    elif sha is None and path.is_file():  # a catalog download named by its cache path
        known = _catalog_sha_for(path)
        if known is not None:
            verify_sha256(path, known[1], what=known[0])
    if not path.exists():
        close = [n for n in CATALOG if spec.lower() in n] if spec else []
        hint = f" (catalog ids like {close[0]!r} are also accepted)" if close else ""
        raise RobustSegError(f"weights file not found: {path}{hint}")
    return path


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str
) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the first mismatches.

    Raises:
        RobustSegError: Missing or unexpected keys, or tensors of another shape.
    """
    expected = model.state_dict()
    problems = []
    for key, value in state_dict.items():
        if key not in expected:
            problems.append(f"unexpected {key} {tuple(value.shape)}")
        elif expected[key].shape != value.shape:
            problems.append(
                f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}"
            )
    missing = [k for k in expected if k not in state_dict]
    problems += [f"missing {k} {tuple(expected[k].shape)}" for k in missing]
    if problems:
        shown = "; ".join(problems[:4])
        more = f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""
        raise RobustSegError(
            f"{what} does not fit this model (another architecture or class count?): {shown}{more}"
        )
    model.load_state_dict(state_dict, strict=True)


def load_weights(
    model: nn.Module,
    weights: str | os.PathLike[str],
    *,
    model_name: str | None = None,
    allow_http: bool = False,
) -> Converted:
    """Resolves, reads, converts and strictly loads weights into ``model``.

    Encoder-only checkpoints (ImageNet MiT, ``nvidia/mit-b*``, mmcls ResNetV1c and MobileNetV2
    classifiers) load into ``model.backbone``.

    Args:
        model: The freshly built model.
        weights: See ``resolve_weights``.
        model_name: Canonical registry name (for ``"default"`` and the native-format check).
        allow_http: Permit ``http://`` URLs (tests).

    Returns:
        The converted checkpoint (format, metadata).

    Raises:
        RobustSegError: For any unusable or mismatching checkpoint.
    """
    path = resolve_weights(weights, model_name=model_name, allow_http=allow_http)
    return load_weights_file(model, path, model_name=model_name)


def load_weights_file(model: nn.Module, path: Path, *, model_name: str | None = None) -> Converted:
    """Reads, converts and strictly loads a file ``resolve_weights`` returned (already checked
    against the catalog's sha256, so not hashed again) into ``model``.

    Args:
        model: The freshly built model.
        path: A checkpoint file or ``save_pretrained`` folder.
        model_name: Canonical registry name (for the native-format check).

    Returns:
        The converted checkpoint (format, metadata).

    Raises:
        RobustSegError: For any unusable or mismatching checkpoint.
    """
    state, metadata = read_checkpoint(path)
    converted = convert_checkpoint(state, metadata)
    saved_for = (converted.metadata or {}).get("model")
    if model_name is not None and saved_for is not None:
        arch = get_model_entry(model_name).name
        if split_name(str(saved_for))[0] != arch:
            raise RobustSegError(f"{path} holds weights for {saved_for!r}, not {arch!r}")
    target = model
    if converted.encoder_only:
        if not hasattr(model, "backbone"):
            raise RobustSegError(
                f"{path} is an encoder-only checkpoint; this model has no backbone"
            )
        target = model.backbone  # type: ignore[assignment]
    load_state_dict_strict(target, converted.state_dict, f"{path} ({converted.source_format})")
    return converted


def save_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    model_name: str,
    source: str = "",
    extra: Mapping[str, object] | None = None,
) -> Path:
    """Writes our native format: safetensors with JSON metadata, atomically.

    Args:
        model: The model to save.
        path: Destination ``.safetensors`` file.
        model_name: Canonical registry name.
        source: Where the weights came from (free text, e.g. a catalog id or run directory).
        extra: More JSON-serialisable metadata.

    Returns:
        The written path.
    """
    num_classes = getattr(model, "num_classes", None)
    meta = {"model": model_name, "num_classes": num_classes, "source": source, **(extra or {})}
    dest = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return _save_safetensors(state, dest, {NATIVE_METADATA_KEY: json.dumps(meta)})


def export_weights(
    src: str | os.PathLike[str], dest: str | os.PathLike[str], *, half: bool = True
) -> Path:
    """Rewrites native weights (e.g. a run's ``weights.safetensors``) for shipping.

    Floating-point tensors become fp16 when ``half`` (integer buffers are kept); the metadata
    is kept and records the dtype. Loading casts back to the model's dtype.

    Args:
        src: A native ``.safetensors`` file written by ``save_weights`` / ``robustseg train``.
        dest: Destination file (written atomically).
        half: Store floating-point tensors in fp16.

    Returns:
        The written path.

    Raises:
        RobustSegError: ``src`` is not a native robustseg file.
    """
    src = Path(src)
    state, meta = read_checkpoint(src)
    if NATIVE_METADATA_KEY not in meta:
        raise RobustSegError(f"{src} is not a robustseg weights file (no metadata)")
    info = json.loads(meta[NATIVE_METADATA_KEY])
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    info["dtype"] = "float16" if half else "as trained"
    return _save_safetensors(state, Path(dest), {NATIVE_METADATA_KEY: json.dumps(info)})


def _save_safetensors(state: Mapping[str, torch.Tensor], dest: Path, meta: dict[str, str]) -> Path:
    """``safetensors.torch.save_file``, atomically, with the mode a plain ``open`` gives
    (``0o666`` less the umask): ``save_file`` replaces the temporary file with one of mode 0600."""
    from safetensors.torch import save_file

    with atomic_path(dest, suffix=".part") as tmp:
        save_file(dict(state), str(tmp), metadata=meta)
        os.chmod(tmp, 0o666 & ~current_umask())
    return dest
