"""Training recipes of the SegFormer paper (arXiv 2105.15203 §4.1) and mmseg's Cityscapes configs.

SegFormer: ``segformer_mit-b*_8x1_1024x1024_160k_cityscapes.py`` (AdamW 6e-5, wd 0.01, no decay on
norms, head lr x10, 1500-iteration linear warmup then poly 1.0, 160k iterations, batch 8, crop
1024). DeepLabV3+: ``deeplabv3plus_*-d8_512x1024_80k_cityscapes.py`` (SGD 0.01, momentum 0.9,
wd 5e-4, poly 0.9 down to 1e-4, 80k iterations, batch 8, crop 512x1024, auxiliary FCN head on
stage 3 with loss weight 0.4).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from robustbench_seg.data.cityscapes import IGNORE_INDEX
from robustbench_seg.data.transforms import AugmentConfig
from robustbench_seg.errors import RobustSegError
from robustbench_seg.models.registry import get_model_entry

__all__ = [
    "RECIPES",
    "Recipe",
    "get_recipe",
    "lr_at",
    "recipe_overrides",
    "validate_recipe",
]


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
    validate_recipe(recipe)
    return recipe


def validate_recipe(r: Recipe) -> None:
    """Checks a recipe's values.

    Args:
        r: The recipe.

    Raises:
        RobustSegError: The first invalid value, in one line.
    """
    checks = [
        (r.iters >= 1, f"iters must be >= 1, got {r.iters}"),
        (r.batch_size >= 1, f"batch_size must be >= 1, got {r.batch_size}"),
        (r.samples_per_gpu >= 1, f"samples_per_gpu must be >= 1, got {r.samples_per_gpu}"),
        (min(r.crop) >= 1, f"crop must be positive, got {r.crop}"),
        (r.optimizer in ("adamw", "sgd"), f"optimizer must be adamw or sgd, not {r.optimizer!r}"),
        (r.lr > 0, f"lr must be > 0, got {r.lr}"),
        (0 < r.ratio_range[0] <= r.ratio_range[1], f"bad ratio_range {r.ratio_range}"),
        (r.eval_mode in ("whole", "slide"), f"eval_mode must be whole or slide: {r.eval_mode!r}"),
        (
            r.eval_mode != "slide"
            or all(s <= c for s, c in zip(r.eval_stride, r.eval_crop, strict=True)),
            f"eval_stride {r.eval_stride} is larger than eval_crop {r.eval_crop}: pixels between "
            "the windows would get no prediction",
        ),
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

    Args:
        recipe: Schedule settings (``iters``, ``poly_power``, ``min_lr``, warm-up).
        iteration: 0-based iteration ``t``.
        base_lr: The group's learning rate before scheduling.

    Returns:
        The learning rate.
    """
    coeff = (1.0 - iteration / recipe.iters) ** recipe.poly_power
    lr = (base_lr - recipe.min_lr) * coeff + recipe.min_lr
    if iteration < recipe.warmup_iters:
        k = (1.0 - iteration / recipe.warmup_iters) * (1.0 - recipe.warmup_ratio)
        lr *= 1.0 - k
    return lr
