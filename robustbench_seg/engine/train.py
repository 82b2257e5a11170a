"""The training loop: data order, optimizer, auxiliary head, DDP and gradient accumulation.

The recipes (SegFormer paper, mmseg Cityscapes configs) are in ``engine.recipes``; the run
directory's files (checkpoint, weights, log, curves) in ``engine.checkpoint``.

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
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_seg import metrics, runtime
from robustbench_seg.data.datasets import Dataset, get_dataset
from robustbench_seg.data.pairs import IGNORE_INDEX, Pair, check_pairs, load_label
from robustbench_seg.data.transforms import augment, pad_to, rescaled_size
from robustbench_seg.engine.checkpoint import (
    BEST,
    CHECKPOINT,
    CONFIG,
    CURVES,
    LOG,
    WEIGHTS,
    append_log,
    load_checkpoint,
    plot_curves,
    remove_stale_parts,
    save_checkpoint,
    save_native,
    set_rng_state,
    truncate_log,
    write_config,
)
from robustbench_seg.engine.recipes import Recipe, get_recipe, lr_at, validate_recipe
from robustbench_seg.engine.scoring import Segmenter, score_pairs
from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import DirLock, check_dir, claim_dir
from robustbench_seg.models.heads import FCNHead
from robustbench_seg.models.layers import DropPath
from robustbench_seg.models.loader import load
from robustbench_seg.models.registry import ModelEntry, Preprocessing, get_model_entry, split_name
from robustbench_seg.sizes import format_size

__all__ = [
    "TrainResult",
    "TrainSet",
    "build_optimizer",
    "enet_class_weights",
    "seg_loss",
    "train",
]

# ImageNet backbones the mmseg DeepLabV3+ configs start from (mmcv's open-mmlab/mmcls model zoo);
# not in our catalog, so ``--init imagenet`` names the file to pass instead.


# ----------------------------------------------------------------------------- model parts


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
    pairs: Sequence[Pair], num_classes: int, c: float = 1.02
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
        self, pairs: list[Pair], recipe: Recipe, preprocessing: Preprocessing, seed: int
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
        from robustbench_seg.data.images import read_rgb
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
        self, start: int, stop: int, micro: int, accumulate: int, info: runtime.DistInfo
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


def _check_crop_fits(shapes: list[tuple[int, int]], recipe: Recipe) -> None:
    sizes = set(shapes)
    scale = tuple(int(s * recipe.ratio_range[1]) for s in recipe.scale)
    for h, w in sorted(sizes):
        rh, rw = rescaled_size(h, w, scale)  # type: ignore[arg-type]
        if rh < recipe.crop[0] or rw < recipe.crop[1]:
            raise RobustSegError(
                f"crop {format_size(recipe.crop)} cannot fit: {w}x{h} training images "
                f"are at most {rw}x{rh} after the largest resize (scale {recipe.scale[0]}x"
                f"{recipe.scale[1]}, ratio "
                f"{recipe.ratio_range[1]}); use a smaller --crop or a larger --scale"
            )


# ----------------------------------------------------------------------------- results


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


def _config(model: str, init: str, seed: int, precision: str, recipe: Recipe,
            dataset: tuple[str, int]) -> dict[str, Any]:  # fmt: skip
    config = {"model": model, "init": init, "seed": seed, "precision": precision, **recipe.hashed()}
    if dataset != ("cityscapes", 19):  # runs on Cityscapes keep the hash they had before
        config["dataset"], config["num_classes"] = dataset
    return config


def _seed_torch(seed: int, iteration: int, rank: int) -> None:
    state = np.random.SeedSequence([seed, iteration, rank, 1]).generate_state(1, np.uint64)[0]
    torch.manual_seed(int(state) & ((1 << 63) - 1))


# ----------------------------------------------------------------------------- init


def _initial_model(entry: ModelEntry, init: str) -> tuple[nn.Module, str]:
    """The model with its starting weights (``robustbench_seg.models.load``) and what they are.

    ``init`` is ``"none"`` (random), ``"imagenet"`` (the catalog's ``<arch>.imagenet``: an
    ImageNet MiT encoder or the mmcls backbone mmseg's DeepLabV3+ config starts from), or any
    weights spec ``evaluate --weights`` takes; encoder/backbone checkpoints load into
    ``model.backbone``.
    """
    if init == "none":
        return load(entry.name, num_classes=entry.num_classes).module, "random"
    try:
        return load(entry.name, init, num_classes=entry.num_classes).module, init
    except RobustSegError as exc:
        raise RobustSegError(f"--init {init}: {exc}") from exc


# ----------------------------------------------------------------------------- validation


def _validate_model(
    model: nn.Module,
    pairs: list[Pair],
    preprocessing: Preprocessing,
    recipe: Recipe,
    precision: str,
    info: runtime.DistInfo,
) -> tuple[float, float]:
    """Validation mIoU and pixel accuracy, scored as ``evaluate`` scores (``score_pairs``)."""
    scorer = Segmenter(
        model, preprocessing, info.device, mode=recipe.eval_mode, crop=recipe.eval_crop,
        stride=recipe.eval_stride, batch_size=2, precision=precision,
    )  # fmt: skip
    conf = score_pairs(scorer, pairs, info)
    return metrics.mean_iou(conf), metrics.pixel_accuracy(conf)


# ----------------------------------------------------------------------------- train


def _rank_divergence(net: nn.Module, info: runtime.DistInfo) -> float:
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


# ----------------------------------------------------------------------------- train steps


def _batch_split(
    recipe: Recipe, info: runtime.DistInfo, accumulate: int | None, family: str
) -> tuple[int, int]:
    """Splits the global batch over processes and accumulation steps.

    Args:
        recipe: Global batch and ``samples_per_gpu`` (the default micro-batch).
        info: The processes.
        accumulate: Micro-batches per step and process, or ``None`` for the recipe's split.
        family: The model family (DeepLabV3+ needs two images per BatchNorm batch).

    Returns:
        ``(micro, accumulate)``: images per micro-batch and micro-batches per step, per process.

    Raises:
        RobustSegError: A batch that does not split evenly, or a DeepLabV3+ micro-batch of one
            image in training mode without SyncBatchNorm.
    """
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
    if family == "deeplabv3plus" and micro < 2 and not recipe.freeze_norms and not info.sync_bn:
        raise RobustSegError(
            "DeepLabV3+ needs >= 2 images per micro-batch in training mode (BatchNorm after "
            f"global pooling); got {micro}: use a smaller --accumulate, a larger --batch-size, "
            "or --freeze-norms"
        )
    return micro, accumulate


def _prepare_data(
    data: Dataset,
    root: Path,
    recipe: Recipe,
    entry: ModelEntry,
    progress: bool,
) -> tuple[Recipe, list[Pair], list[Pair]]:
    """Lists the training (and, if the run validates, validation) images, checks every image
    header and label map (``check_pairs``), and checks the crop.

    Returns:
        The recipe with ``class_weight="enet"`` replaced by its numbers, the training pairs
        and the validation pairs (empty when ``eval_every`` is 0).

    Raises:
        RobustSegError: No training split, a crop that cannot fit, class weights of the wrong
            length, or no validation split when the run validates.
    """
    try:
        train_pairs = data.pairs(root, "train")
    except RobustSegError as exc:
        raise RobustSegError(f"no usable training split: {exc}") from exc
    _check_crop_fits(check_pairs(train_pairs, progress=progress), recipe)
    if recipe.class_weight == "enet":
        recipe = dataclasses.replace(
            recipe, class_weight=enet_class_weights(train_pairs, entry.num_classes)
        )
    if recipe.class_weight is not None and len(recipe.class_weight) != entry.num_classes:
        raise RobustSegError(
            f"class_weight has {len(recipe.class_weight)} values; {entry.name} has "
            f"{entry.num_classes} classes"
        )
    val_pairs: list[Pair] = []
    if recipe.eval_every > 0:
        try:
            val_pairs = data.pairs(root, "val")
        except RobustSegError as exc:
            raise RobustSegError(f"{exc} (validation split; pass --eval-every 0 to skip)") from exc
        check_pairs(val_pairs, progress=progress)
    return recipe, train_pairs, val_pairs


@dataclass
class _Run:
    """A run directory, the configuration it trains and, when resuming, its checkpoint."""

    out: Path
    config: dict[str, Any]
    config_hash: str
    ckpt: dict[str, Any] | None
    lock: DirLock | None = None  # held by rank 0 while it writes the directory


def _open_run(
    out: str | os.PathLike[str],
    model_name: str,
    init: str,
    seed: int,
    precision: str,
    recipe: Recipe,
    resume: bool,
    info: runtime.DistInfo,
    dataset: tuple[str, int],
) -> _Run:
    """Checks the run directory against ``resume`` and writes its ``config.json`` (rank 0).

    Raises:
        RobustSegError: A resume without a checkpoint or with another configuration, or a new
            run in a directory that holds one.
    """
    out_dir = Path(out).expanduser()
    if info.is_main:
        check_dir(out_dir, "train", recognise=_is_train_run)
    config = _config(model_name, init, seed, precision, recipe, dataset)
    config_hash = runtime.config_hash(config)
    ckpt: dict[str, Any] | None = None
    if resume:
        ckpt = load_checkpoint(out_dir, config, config_hash)
    elif (out_dir / CHECKPOINT).exists():
        raise RobustSegError(
            f"{out_dir} already holds a run ({CHECKPOINT}); pass --resume or another --out"
        )
    runtime.barrier(info)
    lock = None
    if info.is_main:
        lock = claim_dir(out_dir, "train", recognise=_is_train_run)
        remove_stale_parts(out_dir)  # a killed run's half-written checkpoint or weights
        write_config(out_dir, config, config_hash, recipe)
    return _Run(out_dir, config, config_hash, ckpt, lock)


def _is_train_run(folder: Path) -> bool:
    """A training run of ours from before output folders were marked."""
    return (folder / CONFIG).is_file() and (folder / CHECKPOINT).is_file()


@dataclass
class _Parts:
    """The network being trained, its optimizer and where the schedule stands."""

    net: _TrainNet
    ddp: nn.Module  # ``net``, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    class_weight: torch.Tensor | None
    start: int
    best: dict[str, Any]
    source: str


def _auxiliary_head(model: nn.Module, entry: ModelEntry, recipe: Recipe) -> FCNHead | None:
    """The auxiliary FCN head on the backbone's stage 3, if ``aux_weight > 0``."""
    if not recipe.aux_weight > 0:
        return None
    if not hasattr(getattr(model, "decode_head", None), "classify") or not hasattr(
        model.backbone,
        "out_channels",  # type: ignore[union-attr]
    ):
        raise RobustSegError(
            f"{entry.name} cannot take an auxiliary head (aux_weight > 0); use aux_weight=0"
        )
    stage3 = model.backbone.out_channels[2]  # type: ignore[union-attr,index]
    return FCNHead(stage3, recipe.aux_channels, model.num_classes, recipe.aux_dropout)  # type: ignore[arg-type]


def _build_net(
    entry: ModelEntry,
    recipe: Recipe,
    init: str,
    seed: int,
    precision: str,
    info: runtime.DistInfo,
    ckpt: Mapping[str, Any] | None,
    initial: tuple[nn.Module, str] | None = None,
) -> _Parts:
    """Builds the model (initialised, or restored from ``ckpt``), its head and optimizer.

    ``initial``: the model ``_initial_model`` already built (right after ``torch.manual_seed``)
    before the run folder was made, so that a refused ``--init`` leaves no folder.
    """
    if initial is not None and ckpt is None:
        net_model, source = initial
    elif ckpt is None:
        torch.manual_seed(seed)
        net_model, source = _initial_model(entry, init)
    else:
        torch.manual_seed(seed)
        net_model, source = load(entry.name, num_classes=entry.num_classes).module, "random"
    aux = _auxiliary_head(net_model, entry, recipe)
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
        set_rng_state(ckpt["rng"])
        start = int(ckpt["iteration"])
        best = dict(ckpt["best"])
        source = ckpt.get("source", source)
    ddp: nn.Module = net
    if info.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(
            net, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    return _Parts(net, ddp, optimizer, scaler, class_weight, start, best, source)


def _loader(
    dataset: TrainSet,
    start: int,
    stop: int,
    micro: int,
    accumulate: int,
    workers: int | None,
    info: runtime.DistInfo,
) -> torch.utils.data.DataLoader:
    """This rank's micro-batches of iterations ``start..stop-1``, in order."""
    return runtime.data_loader(
        dataset,
        workers=workers,
        batch_sampler=_Slots(start, stop, micro, accumulate, info),
        pin_memory=info.device.type == "cuda",
    )


class _Step:
    """The optimizer step of one iteration: ``accumulate`` micro-batches, then the update.

    Args:
        parts: The network, optimizer, gradient scaler and class weights.
        recipe: Schedule and loss settings.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        accumulate: Micro-batches per step.
        seed: Run seed (torch's generator is reseeded from it every iteration).
        info: The processes.
    """

    def __init__(
        self,
        parts: _Parts,
        recipe: Recipe,
        precision: str,
        accumulate: int,
        seed: int,
        info: runtime.DistInfo,
    ) -> None:
        self.parts, self.recipe, self.precision = parts, recipe, precision
        self.accumulate, self.seed, self.info = accumulate, seed, info

    def __call__(
        self, t: int, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """Runs 0-based iteration ``t`` on the next micro-batches; returns this rank's loss."""
        optimizer, scaler = self.parts.optimizer, self.parts.scaler
        for group in optimizer.param_groups:
            group["lr"] = lr_at(self.recipe, t, group["base_lr"])
        _seed_torch(self.seed, t, self.info.rank)
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=self.info.device)
        for a in range(self.accumulate):
            images, labels = next(batches)
            step_loss += self._micro_batch(images, labels, last=a == self.accumulate - 1)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return step_loss

    def _micro_batch(self, images: torch.Tensor, labels: torch.Tensor, last: bool) -> torch.Tensor:
        """Forward and backward of one micro-batch; DDP syncs gradients on the last one."""
        info, recipe, ddp, scaler = self.info, self.recipe, self.parts.ddp, self.parts.scaler
        class_weight = self.parts.class_weight
        images = images.to(info.device, non_blocking=True)
        labels = labels.to(info.device, non_blocking=True)
        sync = last or not isinstance(ddp, nn.parallel.DistributedDataParallel)
        with contextlib.nullcontext() if sync else ddp.no_sync():  # type: ignore[operator]
            with runtime.autocast(info.device, self.precision):
                logits, aux_logits = ddp(images)
            loss = seg_loss(logits, labels, recipe.ignore_index, class_weight)
            if aux_logits is not None:
                loss = loss + recipe.aux_weight * seg_loss(
                    aux_logits, labels, recipe.ignore_index, class_weight
                )
            loss = loss / self.accumulate
            (scaler.scale(loss) if scaler is not None else loss).backward()
        return loss.detach()


class _LossMeter:
    """The mean training loss over all ranks since the last log row."""

    def __init__(self, info: runtime.DistInfo) -> None:
        self.info = info
        self.sum = torch.zeros((), dtype=torch.float64, device=info.device)
        self.count = 0
        self.t_log = time.perf_counter()

    def add(self, step_loss: torch.Tensor) -> None:
        """Adds one iteration's loss (of this rank)."""
        self.sum += step_loss
        self.count += 1

    def row(self, it: int, lr: float) -> dict[str, Any]:
        """The log row of iteration ``it`` (one all-reduce); starts the next interval.

        Raises:
            RobustSegError: The mean loss is not finite.
        """
        runtime.all_reduce_sum(self.sum, self.info)
        loss = float(self.sum) / (self.count * self.info.world_size)
        if not math.isfinite(loss):
            raise RobustSegError(
                f"the loss diverged ({loss}) at iteration {it}; lower --lr or use fp32"
            )
        now = time.perf_counter()
        row = {"iter": it, "loss": loss, "lr": lr, "time": round(now - self.t_log, 4)}
        self.t_log = now
        self.sum.zero_()
        self.count = 0
        return row


def _save(
    run: _Run, parts: _Parts, model_name: str, iteration: int, info: runtime.DistInfo
) -> None:
    """Writes the checkpoint and the native weights of ``iteration`` (rank 0)."""
    if not info.is_main:
        return
    save_checkpoint(
        run.out / CHECKPOINT,
        model=parts.net.model,
        aux=parts.net.auxiliary_head,
        optimizer=parts.optimizer,
        scaler=parts.scaler,
        iteration=iteration,
        config=run.config,
        config_hash=run.config_hash,
        best=parts.best,
        source=parts.source,
    )
    save_native(
        parts.net.model, run.out / WEIGHTS, model_name=model_name, source=parts.source,
        iteration=iteration, config_hash=run.config_hash,
    )  # fmt: skip


def _validate_and_keep_best(
    run: _Run,
    parts: _Parts,
    entry: ModelEntry,
    recipe: Recipe,
    pairs: list[Pair],
    precision: str,
    info: runtime.DistInfo,
    iteration: int,
) -> tuple[float, float]:
    """Validation mIoU and pixel accuracy; a new best is saved as ``best.safetensors``."""
    parts.net.eval()
    miou, acc = _validate_model(
        parts.net.model, pairs, entry.preprocessing, recipe, precision, info
    )
    _set_train_mode(parts.net, recipe.freeze_norms)
    if info.is_main and not math.isnan(miou) and not (parts.best["miou"] >= miou):
        parts.best.update(miou=miou, iter=iteration)
        save_native(
            parts.net.model, run.out / BEST, model_name=entry.name, source=parts.source,
            iteration=iteration, config_hash=run.config_hash,
        )  # fmt: skip
    return miou, acc


def _progress_bar(
    progress: bool, info: runtime.DistInfo, total: int, initial: int, name: str
) -> Any:
    """Progress on rank 0 when ``progress`` is set (a bar, or lines off a terminal), else ``None``."""
    if not (progress and info.is_main):
        return None
    from robustbench_seg.progress import Progress

    return Progress(total, f"train {name}", unit="it", initial=initial)


def _show_progress(bar: Any, loss: float, lr: float, val_miou: float) -> None:
    """Advances the bar by one iteration with the latest loss, lr and mIoU."""
    bar.update(1)
    post = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}"}
    if not math.isnan(val_miou):
        post["mIoU"] = f"{val_miou:.4f}"
    bar.set_postfix(post, refresh=False)


def train(
    model: str,
    *,
    cityscapes_root: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str],
    init: str = "imagenet",
    dataset: str = "cityscapes",
    data_root: str | os.PathLike[str] | None = None,
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
        cityscapes_root: Cityscapes root (default ``$CITYSCAPES_DATASET``).
        dataset: The dataset (``robustbench_seg.data.datasets``): its ``train`` split trains,
            its ``val`` split validates; the model's head predicts its classes.
        data_root: Its root (instead of ``cityscapes_root``).
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
    if split_name(model)[1] is not None:
        raise RobustSegError(
            f"train takes an architecture ({entry.name}), not {model!r}; give starting weights "
            "with --init"
        )
    data = get_dataset(dataset)
    if data.conditions:
        raise RobustSegError(f"{data.name} is a natural-shift set; train on its source dataset")
    root = data.root_from_options(data_root, cityscapes_root)
    classes = len(data.classes(root))
    if classes != entry.num_classes:  # the head predicts the dataset's classes
        entry = dataclasses.replace(entry, num_classes=classes)
    recipe = get_recipe(entry.name, **recipe_overrides)
    if eval_every is not None:
        recipe = dataclasses.replace(recipe, eval_every=eval_every)
        validate_recipe(recipe)
    if log_every < 1:
        raise RobustSegError(f"log_every must be >= 1, got {log_every}")
    runtime.check_precision(precision, runtime.resolve_device(device))
    info = runtime.init_distributed(device)

    micro, accumulate = _batch_split(recipe, info, accumulate, entry.family)
    recipe, train_pairs, val_pairs = _prepare_data(
        data, root, recipe, entry, progress and info.is_main
    )
    initial = None
    if init != "none" and not resume:  # downloaded, checked and read before the run folder exists
        torch.manual_seed(seed)
        initial = _initial_model(entry, init)
    run = _open_run(out, entry.name, init, seed, precision, recipe, resume, info,
                    (data.name, entry.num_classes))  # fmt: skip
    try:
        parts = _build_net(entry, recipe, init, seed, precision, info, run.ckpt, initial)
        start = parts.start
        stop = recipe.iters if stop_after is None else max(start, min(stop_after, recipe.iters))
        dataset = TrainSet(train_pairs, recipe, entry.preprocessing, seed)
        loader = _loader(dataset, start, stop, micro, accumulate, workers, info)
        log_path = run.out / LOG
        if info.is_main:  # a resumed run drops the entries past its checkpoint
            truncate_log(log_path, start if resume else None)

        bar = _progress_bar(progress, info, recipe.iters, start, entry.name)
        _set_train_mode(parts.net, recipe.freeze_norms)
        step = _Step(parts, recipe, precision, accumulate, seed, info)
        batches = iter(loader)
        meter = _LossMeter(info)
        last_loss = val_miou = val_acc = float("nan")
        for t in range(start, stop):
            meter.add(step(t, batches))
            it = t + 1
            row: dict[str, Any] = {}
            if it % log_every == 0 or it == stop:
                row = meter.row(it, parts.optimizer.param_groups[0]["lr"])
                last_loss = row["loss"]
            if recipe.eval_every and (it % recipe.eval_every == 0 or it == recipe.iters):
                val_miou, val_acc = _validate_and_keep_best(
                    run, parts, entry, recipe, val_pairs, precision, info, it
                )
                row = {"iter": it, **row, "val_miou": val_miou, "val_accuracy": val_acc}
            if row and info.is_main:
                append_log(log_path, row)
            if it % recipe.checkpoint_every == 0 or it == stop:
                _save(run, parts, entry.name, it, info)
            if bar is not None:
                _show_progress(bar, last_loss, parts.optimizer.param_groups[0]["lr"], val_miou)
        if bar is not None:
            bar.close()
        if info.is_main and not (run.out / WEIGHTS).is_file():
            # nothing left to run (e.g. resuming a finished run)
            _save(run, parts, entry.name, stop, info)
        divergence = _rank_divergence(parts.net, info)
        curves = plot_curves(log_path, run.out / CURVES) if info.is_main else None
    finally:  # also when a step fails (a full disk, an interruption)
        if run.lock is not None:
            run.lock.release()
    runtime.barrier(info)
    runtime.shutdown(info)
    return TrainResult(
        out=run.out,
        iteration=stop,
        loss=last_loss,
        val_miou=val_miou,
        val_accuracy=val_acc,
        best_miou=float(parts.best["miou"]),
        best_iteration=int(parts.best["iter"]),
        weights=run.out / WEIGHTS,
        best=run.out / BEST if (run.out / BEST).is_file() else None,
        checkpoint=run.out / CHECKPOINT,
        log=log_path,
        curves=curves,
        seconds=time.perf_counter() - t_start,
        rank_divergence=divergence,
    )
