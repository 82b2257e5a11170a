"""Training as the SegFormer paper (arXiv 2105.15203 §4.1) and mmsegmentation's Cityscapes configs.

SegFormer: ``segformer_mit-b*_8x1_1024x1024_160k_cityscapes.py`` (AdamW 6e-5, wd 0.01, no decay on
norms, head lr x10, 1500-iteration linear warmup then poly 1.0, 160k iterations, batch 8, crop
1024). DeepLabV3+: ``deeplabv3plus_*-d8_512x1024_80k_cityscapes.py`` (SGD 0.01, momentum 0.9,
wd 5e-4, poly 0.9 down to 1e-4, 80k iterations, batch 8, crop 512x1024, auxiliary FCN head on
stage 3 with loss weight 0.4).

A run directory holds ``config.json``, ``checkpoint.pt`` (everything needed to resume),
``weights.safetensors`` (native weights of the latest checkpoint, what ``evaluate --weights``
loads), ``best.safetensors`` (best validation mIoU), ``log.jsonl`` and ``curves.png``.

Reproducibility: the sample at slot ``j`` of the global batch of iteration ``t`` is image
``perm(seed, epoch)[(t * batch + j) % N]`` augmented with a generator seeded from
``SeedSequence([seed, t, j])``, and torch's generator (dropout, stochastic depth) is reseeded
from ``(seed, t, rank)`` every iteration. The batch is thus independent of the number of
processes and of gradient accumulation, and a resumed run repeats a straight one exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_seg.data.cityscapes import (
    IGNORE_INDEX,
    CityscapesPair,
    list_pairs,
    load_label,
    resolve_root,
)
from robustbench_seg.data.transforms import AugmentConfig, augment, pad_to, rescaled_size
from robustbench_seg.engine import distributed as D
from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import atomic_path
from robustbench_seg.models.layers import ConvBNReLU, DropPath
from robustbench_seg.models.registry import ModelEntry, Preprocessing, get_model_entry

__all__ = [
    "RECIPES",
    "FCNHead",
    "Recipe",
    "TrainResult",
    "TrainSet",
    "build_optimizer",
    "get_recipe",
    "lr_at",
    "recipe_overrides",
    "seg_loss",
    "train",
]

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.safetensors"
BEST = "best.safetensors"
LOG = "log.jsonl"
CURVES = "curves.png"
CONFIG = "config.json"

# ImageNet backbones the mmseg DeepLabV3+ configs start from (mmcv's open-mmlab/mmcls model zoo);
# not in our catalog, so ``--init imagenet`` names the file to pass instead.
_IMAGENET_BACKBONES = {
    "deeplabv3plus-r50": "https://download.openmmlab.com/pretrain/third_party/"
    "resnet50_v1c-2cccc1ad.pth",
    "deeplabv3plus-r101": "https://download.openmmlab.com/pretrain/third_party/"
    "resnet101_v1c-e67eebb6.pth",
    "deeplabv3plus-mobilenetv2": "https://download.openmmlab.com/mmclassification/v0/imagenet/"
    "mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth",
}


# ----------------------------------------------------------------------------- recipe


@dataclass(frozen=True)
class Recipe:
    """Every value of a training recipe (mmseg config names in brackets).

    Attributes:
        family: ``"segformer"`` or ``"deeplabv3plus"``.
        iters: Total iterations of the schedule [``max_iters``].
        batch_size: Global batch (over all processes and accumulation steps) [8 x 1 / 4 x 2].
        samples_per_gpu: Images per process and forward pass when ``accumulate`` is not given
            [``data.samples_per_gpu``: 1 for SegFormer, 2 for DeepLabV3+]; the rest of the
            per-process batch is accumulated.
        crop: ``(height, width)`` training crop [``crop_size``].
        scale: ``(long, short)`` base resize scale [``img_scale``].
        ratio_range: Random resize ratio range.
        cat_max_ratio: Crop retry threshold (a class may cover at most this share).
        flip_prob: Horizontal flip probability.
        photometric: Whether ``PhotoMetricDistortion`` is applied.
        optimizer: ``"adamw"`` or ``"sgd"``.
        lr: Base learning rate.
        weight_decay: Weight decay.
        momentum: SGD momentum.
        betas: AdamW betas.
        head_lr_mult: Learning-rate multiplier of parameters whose name contains ``head``
            [``paramwise_cfg.custom_keys.head.lr_mult``].
        norm_decay_mult: Weight-decay multiplier of parameters whose name contains ``norm``.
        poly_power: Exponent of the poly schedule.
        min_lr: Floor of the poly schedule.
        warmup_iters: Linear warm-up length (0: none).
        warmup_ratio: Learning-rate factor at iteration 0 of the warm-up.
        aux_weight: Loss weight of the auxiliary FCN head (0: no auxiliary head).
        aux_channels: Width of the auxiliary head's conv.
        aux_dropout: Dropout before the auxiliary classifier.
        ignore_index: Ignored label value.
        class_weight: Per-class cross-entropy weights [``loss_decode.class_weight``]: ``None``
            (all 1), one weight per class, or ``"enet"``: ``1 / ln(1.02 + p_c)`` from the
            training labels' class frequencies ``p_c`` (Paszke et al. 2016), computed when
            training starts and recorded as numbers.
        freeze_norms: Keep normalisation layers in eval mode and dropout / stochastic depth off
            (batch-independent layers; used to compare multi-process and single-process runs).
        eval_mode: Validation inference, ``"whole"`` or ``"slide"``.
        eval_crop: Sliding-window size (slide).
        eval_stride: Sliding-window step (slide).
        eval_every: Default validation interval in iterations (0: never).
        checkpoint_every: Checkpoint interval in iterations.
    """

    family: str
    iters: int
    batch_size: int
    crop: tuple[int, int]
    samples_per_gpu: int
    optimizer: str
    lr: float
    weight_decay: float
    poly_power: float
    min_lr: float
    scale: tuple[int, int] = (2048, 1024)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    head_lr_mult: float = 1.0
    norm_decay_mult: float = 1.0
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6
    aux_weight: float = 0.0
    aux_channels: int = 256
    aux_dropout: float = 0.1
    ignore_index: int = IGNORE_INDEX
    class_weight: str | tuple[float, ...] | None = None
    freeze_norms: bool = False
    eval_mode: str = "whole"
    eval_crop: tuple[int, int] = (1024, 1024)
    eval_stride: tuple[int, int] = (768, 768)
    eval_every: int = 16000
    checkpoint_every: int = 16000

    @property
    def augment_config(self) -> AugmentConfig:
        """The data pipeline part of the recipe."""
        return AugmentConfig(
            scale=self.scale,
            ratio_range=self.ratio_range,
            crop=self.crop,
            cat_max_ratio=self.cat_max_ratio,
            flip_prob=self.flip_prob,
            photometric=self.photometric,
            ignore_index=self.ignore_index,
        )

    def hashed(self) -> dict[str, Any]:
        """The fields that change the trained weights (what ``--resume`` must match)."""
        d = dataclasses.asdict(self)
        for key in _UNHASHED:
            d.pop(key)
        if d["class_weight"] is None:  # runs from before the option keep their hash
            d.pop("class_weight")
        return d


# Validation and checkpointing settings may change between a run and its resumption.
# So may the split of the global batch over processes and accumulation steps (it only changes
# BatchNorm statistics).
_UNHASHED = (
    "samples_per_gpu",
    "eval_mode",
    "eval_crop",
    "eval_stride",
    "eval_every",
    "checkpoint_every",
)

RECIPES: dict[str, Recipe] = {
    "segformer": Recipe(
        family="segformer",
        iters=160_000,
        batch_size=8,
        crop=(1024, 1024),
        samples_per_gpu=1,
        optimizer="adamw",
        lr=6e-5,
        weight_decay=0.01,
        head_lr_mult=10.0,
        norm_decay_mult=0.0,
        poly_power=1.0,
        min_lr=0.0,
        warmup_iters=1500,
        warmup_ratio=1e-6,
        eval_mode="slide",
        eval_every=16000,
        checkpoint_every=16000,
    ),
    "deeplabv3plus": Recipe(
        family="deeplabv3plus",
        iters=80_000,
        batch_size=8,
        crop=(512, 1024),
        samples_per_gpu=2,
        optimizer="sgd",
        lr=0.01,
        weight_decay=5e-4,
        momentum=0.9,
        poly_power=0.9,
        min_lr=1e-4,
        aux_weight=0.4,
        eval_mode="whole",
        eval_every=8000,
        checkpoint_every=8000,
    ),
}

_PAIR_FIELDS = ("crop", "scale", "ratio_range", "betas", "eval_crop", "eval_stride")


def recipe_overrides() -> list[str]:
    """Names accepted as ``**recipe_overrides`` by ``train`` (all fields but ``family``)."""
    return [f.name for f in dataclasses.fields(Recipe) if f.name != "family"]


def get_recipe(model: str, **overrides: Any) -> Recipe:
    """The recipe of a registered model's family with some values replaced.

    Args:
        model: Registry name or alias.
        **overrides: Recipe fields (see ``recipe_overrides``); ``None`` values are ignored;
            pair fields accept one number for both (``crop=512``).

    Returns:
        The recipe.

    Raises:
        RobustSegError: Unknown model, a family without a recipe, an unknown override name or
            an invalid value.
    """
    entry = get_model_entry(model)
    if entry.family not in RECIPES:
        raise RobustSegError(
            f"no training recipe for {entry.name!r} (family {entry.family!r}); recipes exist "
            f"for {', '.join(sorted(RECIPES))}"
        )
    valid = recipe_overrides()
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in valid:
            raise RobustSegError(f"unknown recipe option {key!r}; valid: {', '.join(valid)}")
        if value is None:
            continue
        if key in _PAIR_FIELDS:
            value = (value, value) if isinstance(value, (int, float)) else tuple(value)
            if len(value) != 2:
                raise RobustSegError(f"{key} takes one or two numbers, got {value!r}")
        changes[key] = value
    recipe = dataclasses.replace(RECIPES[entry.family], **changes)
    _validate(recipe)
    return recipe


def _validate(r: Recipe) -> None:
    checks = [
        (r.iters >= 1, f"iters must be >= 1, got {r.iters}"),
        (r.batch_size >= 1, f"batch_size must be >= 1, got {r.batch_size}"),
        (r.samples_per_gpu >= 1, f"samples_per_gpu must be >= 1, got {r.samples_per_gpu}"),
        (min(r.crop) >= 1, f"crop must be positive, got {r.crop}"),
        (r.optimizer in ("adamw", "sgd"), f"optimizer must be adamw or sgd, not {r.optimizer!r}"),
        (r.lr > 0, f"lr must be > 0, got {r.lr}"),
        (0 < r.ratio_range[0] <= r.ratio_range[1], f"bad ratio_range {r.ratio_range}"),
        (r.eval_mode in ("whole", "slide"), f"eval_mode must be whole or slide: {r.eval_mode!r}"),
        (r.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {r.checkpoint_every}"),
        (r.eval_every >= 0, f"eval_every must be >= 0, got {r.eval_every}"),
        (
            r.class_weight is None
            or r.class_weight == "enet"
            or (not isinstance(r.class_weight, str) and min(r.class_weight) > 0),
            f"class_weight must be 'enet', none or positive numbers, got {r.class_weight!r}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise RobustSegError(message)


def lr_at(recipe: Recipe, iteration: int, base_lr: float) -> float:
    """Learning rate of a parameter group at a 0-based iteration (mmcv ``PolyLrUpdaterHook``).

    ``(base_lr - min_lr) * (1 - t / iters) ** power + min_lr``, times the linear warm-up
    factor ``1 - (1 - t / warmup) * (1 - warmup_ratio)`` for ``t < warmup_iters``.
    """
    coeff = (1.0 - iteration / recipe.iters) ** recipe.poly_power
    lr = (base_lr - recipe.min_lr) * coeff + recipe.min_lr
    if iteration < recipe.warmup_iters:
        k = (1.0 - iteration / recipe.warmup_iters) * (1.0 - recipe.warmup_ratio)
        lr *= 1.0 - k
    return lr


# ----------------------------------------------------------------------------- model parts


class FCNHead(nn.Module):
    """mmseg ``FCNHead(num_convs=1, concat_input=False)``, the training-only auxiliary head.

    Parameter names as mmseg's ``auxiliary_head.*``: ``convs.0.{conv,bn}``, ``conv_seg``.

    Args:
        in_channels: Channels of the backbone stage it reads (stage 3).
        channels: Width of its 3x3 conv.
        num_classes: Number of classes.
        dropout: ``Dropout2d`` ratio before the classifier.
    """

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvBNReLU(in_channels, channels, 3))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, 0.0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))


class _TrainNet(nn.Module):
    """The model plus its training-only auxiliary head; ``model``'s keys stay untouched."""

    def __init__(self, model: nn.Module, auxiliary_head: nn.Module | None) -> None:
        super().__init__()
        self.model = model
        self.auxiliary_head = auxiliary_head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.auxiliary_head is None:
            return self.model(x), None
        feats = self.model.forward_features(x)
        logits = self.model.decode_head.classify(feats["fused"])
        return logits, self.auxiliary_head(feats["stage3"])


def _set_train_mode(net: nn.Module, freeze_norms: bool) -> None:
    net.train()
    if freeze_norms:
        for m in net.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d, DropPath)):
                m.eval()


def seg_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """mmseg's decode-head loss: logits resized (bilinear) to the label, cross-entropy.

    Averaged over all pixels, ignored ones counting zero (mmseg's ``avg_non_ignore=False``),
    so the loss of a batch is the mean of its samples' losses and splitting a batch over
    processes or accumulation steps leaves the gradient unchanged. With ``weight`` each
    pixel's loss is multiplied by its class's weight (still averaged over pixels, as mmseg).
    """
    logits = F.interpolate(
        logits.float(), size=label.shape[-2:], mode="bilinear", align_corners=False
    )
    return F.cross_entropy(
        logits, label, weight=weight, ignore_index=ignore_index, reduction="none"
    ).mean()


def enet_class_weights(
    pairs: Sequence[CityscapesPair], num_classes: int, c: float = 1.02
) -> tuple[float, ...]:
    """ENet's class weights ``1 / ln(c + p_k)``, ``p_k`` the class's share of labelled pixels.

    Classes absent from ``pairs`` get the largest weight, ``1 / ln(c)``. Rounded to 4 decimals
    (they are recorded in the run's configuration).
    """
    counts = np.zeros(num_classes, np.int64)
    for pair in pairs:
        lab = load_label(pair)
        counts += np.bincount(lab[lab < num_classes].ravel(), minlength=num_classes)[:num_classes]
    if counts.sum() == 0:
        raise RobustSegError("class_weight='enet': the training labels hold no labelled pixel")
    p = counts / counts.sum()
    return tuple(round(float(1.0 / np.log(c + q)), 4) for q in p)


def build_optimizer(net: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """AdamW or SGD with mmcv's ``paramwise_cfg`` custom keys ``head`` and ``norm``.

    Each parameter takes the multipliers of the first key its name contains, longest key
    first and alphabetical among equals (mmcv ``DefaultOptimizerConstructor``): ``head``
    (lr x ``head_lr_mult``) wins over ``norm`` (decay x ``norm_decay_mult``).
    Every group records its ``base_lr`` for the schedule.
    """
    keys: dict[str, tuple[float, float]] = {}
    if recipe.head_lr_mult != 1.0:
        keys["head"] = (recipe.head_lr_mult, 1.0)
    if recipe.norm_decay_mult != 1.0:
        keys["norm"] = (1.0, recipe.norm_decay_mult)
    order = sorted(sorted(keys), key=len, reverse=True)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        mults = next((keys[k] for k in order if k in name), (1.0, 1.0))
        groups.setdefault(mults, []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": recipe.lr * lr_mult,
            "base_lr": recipe.lr * lr_mult,
            "weight_decay": recipe.weight_decay * decay_mult,
        }
        for (lr_mult, decay_mult), params in groups.items()
    ]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=recipe.lr, betas=recipe.betas)
    return torch.optim.SGD(param_groups, lr=recipe.lr, momentum=recipe.momentum)


# ----------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, 0x5EED])).permutation(n)


class TrainSet(torch.utils.data.Dataset):
    """Training samples addressed by ``(iteration, slot)`` of the global batch.

    Args:
        pairs: The training images with their labels.
        recipe: Batch size and augmentation.
        preprocessing: The model's normalisation.
        seed: Run seed.
    """

    def __init__(
        self, pairs: list[CityscapesPair], recipe: Recipe, preprocessing: Preprocessing, seed: int
    ) -> None:
        self.pairs = pairs
        self.recipe = recipe
        self.aug = recipe.augment_config
        self.preprocessing = preprocessing
        self.seed = seed

    def __len__(self) -> int:
        return len(self.pairs)

    def index(self, iteration: int, slot: int) -> int:
        """Dataset index of a slot: shuffled epochs, without replacement inside one."""
        k = iteration * self.recipe.batch_size + slot
        n = len(self.pairs)
        return int(_epoch_permutation(self.seed, k // n, n)[k % n])

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        from robustbench_seg.data.cityscapes_c import read_rgb
        from robustbench_seg.engine.inference import preprocess

        iteration, slot = key
        pair = self.pairs[self.index(iteration, slot)]
        image = read_rgb(pair.image.path)
        label = load_label(pair, image.shape[:2])
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, iteration, slot]))
        image, label = augment(image, label, self.aug, rng)
        x = preprocess(image, self.preprocessing)[0]
        # mmseg pads after Normalize: image with 0, label with ignore.
        x = torch.nn.functional.pad(
            x, (0, self.aug.crop[1] - x.shape[2], 0, self.aug.crop[0] - x.shape[1])
        )
        y = pad_to(label, self.aug.crop, self.recipe.ignore_index)
        return x, torch.from_numpy(y.astype(np.int64))


class _Slots(torch.utils.data.Sampler):
    """Yields this rank's micro-batches, ``[(t, slot), ...]``, for iterations ``start..stop-1``."""

    def __init__(
        self, start: int, stop: int, micro: int, accumulate: int, info: D.DistInfo
    ) -> None:
        self.start, self.stop, self.micro, self.accumulate, self.info = (
            start, stop, micro, accumulate, info,
        )  # fmt: skip

    def __len__(self) -> int:
        return (self.stop - self.start) * self.accumulate

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for t in range(self.start, self.stop):
            for a in range(self.accumulate):
                first = (a * self.info.world_size + self.info.rank) * self.micro
                yield [(t, first + j) for j in range(self.micro)]


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _check_crop_fits(pairs: list[CityscapesPair], recipe: Recipe) -> None:
    from PIL import Image

    sizes = set()
    for pair in pairs:
        with Image.open(pair.image.path) as im:
            sizes.add((im.height, im.width))
    scale = tuple(int(s * recipe.ratio_range[1]) for s in recipe.scale)
    for h, w in sorted(sizes):
        rh, rw = rescaled_size(h, w, scale)  # type: ignore[arg-type]
        if rh < recipe.crop[0] or rw < recipe.crop[1]:
            raise RobustSegError(
                f"crop {recipe.crop[0]}x{recipe.crop[1]} (HxW) cannot fit: {w}x{h} training images "
                f"are at most {rw}x{rh} after the largest resize (scale {recipe.scale}, ratio "
                f"{recipe.ratio_range[1]}); use a smaller --crop or a larger --scale"
            )


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced.

    Attributes:
        out: The run directory.
        iteration: Iterations completed.
        loss: Mean training loss of the last logged interval.
        val_miou: Last validation mIoU (NaN if never evaluated).
        val_accuracy: Last validation pixel accuracy (NaN if never evaluated).
        best_miou: Best validation mIoU (NaN if never evaluated).
        best_iteration: Iteration of the best validation mIoU (0 if none).
        weights: Native weights of the last checkpoint (``evaluate --weights``).
        best: Native weights with the best validation mIoU, if any.
        checkpoint: The training checkpoint (``--resume``).
        log: The JSONL log.
        curves: The loss / mIoU plot, if drawn.
        seconds: Wall time of this call.
        rank_divergence: Largest parameter difference between any rank and rank 0 at the end
            (0.0 on one process; DDP keeps it at 0).
    """

    out: Path
    iteration: int
    loss: float
    val_miou: float
    val_accuracy: float
    best_miou: float
    best_iteration: int
    weights: Path
    best: Path | None
    checkpoint: Path
    log: Path
    curves: Path | None
    seconds: float
    rank_divergence: float = 0.0


def _config(model: str, init: str, seed: int, precision: str, recipe: Recipe) -> dict[str, Any]:
    return {"model": model, "init": init, "seed": seed, "precision": precision, **recipe.hashed()}


def _config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _atomic_write(dest: Path, write: Any) -> None:
    with atomic_path(dest, suffix=".part") as tmp:
        write(str(tmp))


def _rng_state() -> dict[str, Any]:
    # The legacy global state is saved only so that code outside the loop sees it restored.
    np_state = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    random.setstate(state["python"])


def _seed_torch(seed: int, iteration: int, rank: int) -> None:
    state = np.random.SeedSequence([seed, iteration, rank, 1]).generate_state(1, np.uint64)[0]
    torch.manual_seed(int(state) & ((1 << 63) - 1))


def _describe_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted({*old, *new})
             if old.get(k) != new.get(k)]  # fmt: skip
    return ", ".join(diffs[:4]) + (f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else "")


# ----------------------------------------------------------------------------- init


def _initialize(model: nn.Module, entry: ModelEntry, init: str) -> str:
    """Loads the starting weights; returns what was loaded (for the metadata)."""
    from robustbench_seg.models.convert import read_checkpoint
    from robustbench_seg.models.weights import (
        is_catalog_spec,
        load_state_dict_strict,
        load_weights,
        resolve_weights,
    )

    if init == "none":
        return "random"
    if init == "imagenet":
        if entry.family == "segformer":
            variant = entry.name.removeprefix("segformer-").split(".")[0]  # b0.synthetic -> b0
            init = f"mit-{variant}-imagenet"
        else:
            url = _IMAGENET_BACKBONES.get(entry.name.split(".")[0], "")
            raise RobustSegError(
                f"no ImageNet weights for {entry.name} in the catalog: download {url} (the "
                "backbone mmseg's config starts from) and pass --init PATH, or --init none"
            )
    try:
        load_weights(model, init, model_name=entry.name)
        return init
    except RobustSegError as exc:
        # An ImageNet classifier checkpoint of the backbone (mmcls / open-mmlab layout)?
        if entry.family == "segformer" or "unrecognised checkpoint" not in str(exc):
            raise RobustSegError(f"--init {init}: {exc}") from exc
    path = resolve_weights(init, model_name=entry.name)
    state, _ = read_checkpoint(path, trusted=is_catalog_spec(init))
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    # ImageNet classifier parts the segmentation backbone does not have.
    dropped = ("fc.", "head.", "classifier.", "conv2.")
    state = {k: v for k, v in state.items() if not k.startswith(dropped)}
    load_state_dict_strict(model.backbone, state, f"--init {path} (backbone)")  # type: ignore[arg-type]
    return init


# ----------------------------------------------------------------------------- validation


@torch.no_grad()
def _validate_model(
    model: nn.Module,
    pairs: list[CityscapesPair],
    preprocessing: Preprocessing,
    recipe: Recipe,
    precision: str,
    info: D.DistInfo,
) -> tuple[float, float]:
    from robustbench_seg.data.cityscapes_c import read_rgb
    from robustbench_seg.engine import metrics
    from robustbench_seg.engine.inference import predict_logits, preprocess

    num_classes = int(getattr(model, "num_classes", 19))
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=info.device)
    for pair in pairs[info.rank :: info.world_size]:
        image = read_rgb(pair.image.path)
        label = torch.from_numpy(load_label(pair, image.shape[:2])).to(info.device)
        x = preprocess(image, preprocessing, info.device)
        logits = predict_logits(
            model, x, mode=recipe.eval_mode, crop=recipe.eval_crop, stride=recipe.eval_stride,
            batch_size=2, precision=precision,  # type: ignore[arg-type]
        )  # fmt: skip
        conf += metrics.confusion_matrix_torch(label, logits.argmax(1)[0], num_classes)
    D.all_reduce_sum(conf, info)
    c = conf.cpu().numpy()
    return metrics.mean_iou(c), metrics.pixel_accuracy(c)


# ----------------------------------------------------------------------------- plotting


def _plot_curves(log_path: Path, dest: Path) -> Path | None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    loss = [(r["iter"], r["loss"]) for r in rows if r.get("loss") is not None]
    miou = [(r["iter"], r["val_miou"]) for r in rows if r.get("val_miou") is not None]
    if not loss and not miou:
        return None
    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if loss:
        ax.plot(*zip(*loss, strict=True), color="tab:blue", lw=1, label="train loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss", color="tab:blue")
    if miou:
        ax2 = ax.twinx()
        ax2.plot(*zip(*miou, strict=True), "o-", color="tab:red", label="val mIoU")
        ax2.set_ylabel("val mIoU", color="tab:red")
    ax.set_title(f"{log_path.parent.name}")
    fig.tight_layout()
    _atomic_write(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return dest


# ----------------------------------------------------------------------------- train


def _rank_divergence(net: nn.Module, info: D.DistInfo) -> float:
    """Max |param - rank 0's param| over all ranks (a DDP sanity check; one broadcast)."""
    if info.world_size == 1:
        return 0.0
    import torch.distributed as dist

    flat = torch.cat([p.detach().reshape(-1).float() for p in net.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def train(
    model: str,
    *,
    cityscapes_root: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str],
    init: str = "imagenet",
    resume: bool = False,
    eval_every: int | None = None,
    precision: str = "fp32",
    seed: int = 0,
    device: str = "auto",
    accumulate: int | None = None,
    workers: int | None = None,
    log_every: int = 50,
    stop_after: int | None = None,
    progress: bool = True,
    **recipe_overrides: Any,
) -> TrainResult:
    """Trains a registered model on Cityscapes ``train``, validating on ``val``.

    Run it as is for one process, or under ``torchrun`` for DDP over GPUs and nodes (NCCL,
    SyncBatchNorm) or CPU processes (gloo). The global batch stays ``batch_size``: each step
    runs ``accumulate`` micro-batches of ``batch_size / (world_size * accumulate)`` images per
    process.

    Args:
        model: Registry name or alias (``"segformer-b5"``, ``"dlv3p-r50"``).
        cityscapes_root: Dataset root (default ``$CITYSCAPES_DATASET``).
        out: Run directory.
        init: ``"imagenet"`` (ImageNet encoder from the catalog: ``nvidia/mit-b*``), ``"none"``
            (random), or weights as ``evaluate --weights`` takes (file, catalog id,
            ``hf://``, URL); for DeepLabV3+ also an ImageNet backbone checkpoint (mmcls /
            open-mmlab ResNetV1c or MobileNetV2).
        resume: Continue the run in ``out`` from its checkpoint (same configuration).
        eval_every: Validate every N iterations and at the end (0: never; default: the
            recipe's 16000 / 8000).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast; fp16 with a GradScaler,
            CUDA only).
        seed: Seed of initialisation, data order and augmentation.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        accumulate: Micro-batches per step and process (default: the per-process batch
            ``batch_size / world_size`` in micro-batches of the recipe's ``samples_per_gpu``).
        workers: DataLoader workers per process (default ``min(4, cpus)``; 0: in process).
        log_every: Log the mean loss every N iterations.
        stop_after: Stop (with a checkpoint) after this iteration, keeping the schedule of
            ``iters``; resume later with ``resume=True``.
        progress: Show a progress bar (rank 0).
        **recipe_overrides: Recipe fields to change (see ``Recipe``, ``recipe_overrides()``):
            ``iters``, ``batch_size``, ``crop``, ``lr``, ``weight_decay``, ...

    Returns:
        The run's outputs and final numbers.

    Raises:
        RobustSegError: Unknown model or option, no training split, a crop that cannot fit,
            a resume with another configuration, init weights that do not fit, bad batch
            splitting.
    """
    t_start = time.perf_counter()
    entry = get_model_entry(model)
    recipe = get_recipe(entry.name, **recipe_overrides)
    if eval_every is not None:
        recipe = dataclasses.replace(recipe, eval_every=eval_every)
        _validate(recipe)
    if precision not in ("fp32", "bf16", "fp16"):
        raise RobustSegError(f"precision must be fp32, bf16 or fp16, not {precision!r}")
    if log_every < 1:
        raise RobustSegError(f"log_every must be >= 1, got {log_every}")
    info = D.init_distributed(device)
    if precision == "fp16" and info.device.type != "cuda":
        raise RobustSegError("fp16 training needs a CUDA GPU; use bf16 or fp32 on CPU")

    # --- batch split
    per_rank, rem = divmod(recipe.batch_size, info.world_size)
    if rem:
        raise RobustSegError(
            f"batch size {recipe.batch_size} is not divisible by {info.world_size} processes"
        )
    if accumulate is None:
        accumulate = max(1, per_rank // recipe.samples_per_gpu)
        while per_rank % accumulate:
            accumulate -= 1
    if accumulate < 1 or per_rank % accumulate:
        raise RobustSegError(
            f"per-process batch {per_rank} (batch {recipe.batch_size} / {info.world_size} "
            f"processes) is not divisible by --accumulate {accumulate}"
        )
    micro = per_rank // accumulate
    if (
        entry.family == "deeplabv3plus"
        and micro < 2
        and not recipe.freeze_norms
        and not info.sync_bn
    ):
        raise RobustSegError(
            "DeepLabV3+ needs >= 2 images per micro-batch in training mode (BatchNorm after "
            f"global pooling); got {micro}: use a smaller --accumulate, a larger --batch-size, "
            "or --freeze-norms"
        )

    # --- data
    root = resolve_root(cityscapes_root)
    try:
        train_pairs = list_pairs(root, "train")
    except RobustSegError as exc:
        raise RobustSegError(f"no usable training split: {exc}") from exc
    _check_crop_fits(train_pairs, recipe)
    if recipe.class_weight == "enet":
        recipe = dataclasses.replace(
            recipe, class_weight=enet_class_weights(train_pairs, entry.num_classes)
        )
    if recipe.class_weight is not None and len(recipe.class_weight) != entry.num_classes:
        raise RobustSegError(
            f"class_weight has {len(recipe.class_weight)} values; {entry.name} has "
            f"{entry.num_classes} classes"
        )
    val_pairs: list[CityscapesPair] = []
    if recipe.eval_every > 0:
        try:
            val_pairs = list_pairs(root, "val")
        except RobustSegError as exc:
            raise RobustSegError(f"{exc} (validation split; pass --eval-every 0 to skip)") from exc

    # --- run directory and configuration
    out_dir = Path(out).expanduser()
    ckpt_path = out_dir / CHECKPOINT
    config = _config(entry.name, init, seed, precision, recipe)
    config_hash = _config_hash(config)
    ckpt: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.is_file():
            raise RobustSegError(f"--resume: no {CHECKPOINT} in {out_dir}")
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["config_hash"] != config_hash:
            raise RobustSegError(
                f"--resume: {ckpt_path} was trained with another configuration "
                f"({_describe_diff(ckpt['config'], config)}); use the same options or another --out"
            )
    elif ckpt_path.exists():
        raise RobustSegError(
            f"{out_dir} already holds a run ({CHECKPOINT}); pass --resume or another --out"
        )
    D.barrier(info)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg = {"config": config, "config_hash": config_hash, "recipe": dataclasses.asdict(recipe)}
        _atomic_write(out_dir / CONFIG, lambda t: Path(t).write_text(json.dumps(cfg, indent=2)))

    # --- model, auxiliary head, optimizer
    torch.manual_seed(seed)
    net_model = entry.build()
    source = "random"
    if ckpt is None:
        source = _initialize(net_model, entry, init)
    aux = None
    if recipe.aux_weight > 0:
        if not hasattr(getattr(net_model, "decode_head", None), "classify") or not hasattr(
            net_model.backbone,
            "out_channels",  # type: ignore[union-attr]
        ):
            raise RobustSegError(
                f"{entry.name} cannot take an auxiliary head (aux_weight > 0); use aux_weight=0"
            )
        stage3 = net_model.backbone.out_channels[2]  # type: ignore[union-attr,index]
        aux = FCNHead(stage3, recipe.aux_channels, net_model.num_classes, recipe.aux_dropout)  # type: ignore[arg-type]
    net = _TrainNet(net_model, aux)
    if info.sync_bn and not recipe.freeze_norms:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # type: ignore[assignment]
    net.to(info.device)
    optimizer = build_optimizer(net, recipe)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    class_weight = (
        None
        if recipe.class_weight is None
        else torch.tensor(recipe.class_weight, dtype=torch.float32, device=info.device)
    )
    start = 0
    best = {"miou": float("nan"), "iter": 0}
    if ckpt is not None:
        net.model.load_state_dict(ckpt["model"])
        if aux is not None:
            net.auxiliary_head.load_state_dict(ckpt["aux"])  # type: ignore[union-attr]
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        start = int(ckpt["iteration"])
        best = dict(ckpt["best"])
        source = ckpt.get("source", source)
    ddp: nn.Module = net
    if info.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(
            net, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )

    stop = recipe.iters if stop_after is None else max(start, min(stop_after, recipe.iters))
    dataset = TrainSet(train_pairs, recipe, entry.preprocessing, seed)
    n_workers = min(4, os.cpu_count() or 1) if workers is None else workers
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_Slots(start, stop, micro, accumulate, info),
        num_workers=n_workers,
        worker_init_fn=_worker_init if n_workers > 0 else None,
        pin_memory=info.device.type == "cuda",
    )

    # --- log (a resumed run drops entries past its checkpoint)
    log_path = out_dir / LOG
    if info.is_main:
        kept = []
        if resume and log_path.is_file():
            kept = [
                line for line in log_path.read_text().splitlines()
                if line.strip() and json.loads(line)["iter"] <= start
            ]  # fmt: skip
        log_path.write_text("".join(line + "\n" for line in kept))

    def log(row: dict[str, Any]) -> None:
        if info.is_main:
            with log_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")

    def save(iteration: int) -> None:
        if not info.is_main:
            return
        state = {
            "model": net.model.state_dict(),
            "aux": net.auxiliary_head.state_dict() if aux is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": {
                "iteration": iteration,
                "base_lrs": [g["base_lr"] for g in optimizer.param_groups],
            },
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": _rng_state(),
            "iteration": iteration,
            "config": config,
            "config_hash": config_hash,
            "best": best,
            "source": source,
        }
        _atomic_write(ckpt_path, lambda tmp: torch.save(state, tmp))
        _save_native(out_dir / WEIGHTS, iteration)

    def _save_native(dest: Path, iteration: int) -> None:
        from robustbench_seg.models.weights import save_weights

        save_weights(
            net.model, dest, model_name=entry.name, source=f"robustseg train ({source})",
            extra={"iteration": iteration, "config_hash": config_hash},
        )  # fmt: skip

    def validate(iteration: int) -> tuple[float, float]:
        net.eval()
        miou, acc = _validate_model(
            net.model, val_pairs, entry.preprocessing, recipe, precision, info
        )
        _set_train_mode(net, recipe.freeze_norms)
        if info.is_main and not math.isnan(miou) and not (best["miou"] >= miou):
            best.update(miou=miou, iter=iteration)
            _save_native(out_dir / BEST, iteration)
        return miou, acc

    # --- loop
    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=recipe.iters, initial=start, desc=f"train {entry.name}", unit="it",
                   dynamic_ncols=True)  # fmt: skip
    _set_train_mode(net, recipe.freeze_norms)
    batches = iter(loader)
    loss_sum = torch.zeros((), dtype=torch.float64, device=info.device)
    loss_count = 0
    last_loss = float("nan")
    val_miou = val_acc = float("nan")
    t_log = time.perf_counter()
    for t in range(start, stop):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(recipe, t, group["base_lr"])
        _seed_torch(seed, t, info.rank)
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=info.device)
        for a in range(accumulate):
            images, labels = next(batches)
            images = images.to(info.device, non_blocking=True)
            labels = labels.to(info.device, non_blocking=True)
            sync = a == accumulate - 1 or not isinstance(ddp, nn.parallel.DistributedDataParallel)
            with contextlib.nullcontext() if sync else ddp.no_sync():  # type: ignore[operator]
                with _autocast(info.device, precision):
                    logits, aux_logits = ddp(images)
                loss = seg_loss(logits, labels, recipe.ignore_index, class_weight)
                if aux_logits is not None:
                    loss = loss + recipe.aux_weight * seg_loss(
                        aux_logits, labels, recipe.ignore_index, class_weight
                    )
                loss = loss / accumulate
                (scaler.scale(loss) if scaler is not None else loss).backward()
            step_loss += loss.detach()
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        loss_sum += step_loss
        loss_count += 1
        it = t + 1
        row: dict[str, Any] = {}
        if it % log_every == 0 or it == stop:
            D.all_reduce_sum(loss_sum, info)
            last_loss = float(loss_sum) / (loss_count * info.world_size)
            if not math.isfinite(last_loss):
                raise RobustSegError(
                    f"the loss diverged ({last_loss}) at iteration {it}; lower --lr or use fp32"
                )
            now = time.perf_counter()
            row = {"iter": it, "loss": last_loss, "lr": optimizer.param_groups[0]["lr"],
                   "time": round(now - t_log, 4)}  # fmt: skip
            t_log = now
            loss_sum.zero_()
            loss_count = 0
        if recipe.eval_every and (it % recipe.eval_every == 0 or it == recipe.iters):
            val_miou, val_acc = validate(it)
            row = {"iter": it, **row, "val_miou": val_miou, "val_accuracy": val_acc}
        if row:
            log(row)
        if it % recipe.checkpoint_every == 0 or it == stop:
            save(it)
        if bar is not None:
            bar.update(1)
            post = {"loss": f"{last_loss:.4f}", "lr": f"{optimizer.param_groups[0]['lr']:.2e}"}
            if not math.isnan(val_miou):
                post["mIoU"] = f"{val_miou:.4f}"
            bar.set_postfix(post, refresh=False)
    if bar is not None:
        bar.close()
    if info.is_main and not (out_dir / WEIGHTS).is_file():
        save(stop)  # nothing left to run (e.g. resuming a finished run)
    divergence = _rank_divergence(net, info)
    curves = None
    if info.is_main:
        curves = _plot_curves(log_path, out_dir / CURVES)
    D.barrier(info)
    D.shutdown(info)
    return TrainResult(
        out=out_dir,
        iteration=stop,
        loss=last_loss,
        val_miou=val_miou,
        val_accuracy=val_acc,
        best_miou=float(best["miou"]),
        best_iteration=int(best["iter"]),
        weights=out_dir / WEIGHTS,
        best=out_dir / BEST if (out_dir / BEST).is_file() else None,
        checkpoint=ckpt_path,
        log=log_path,
        curves=curves,
        seconds=time.perf_counter() - t_start,
        rank_divergence=divergence,
    )
