"""Effective receptive fields per stage and head (Luo et al. 2016; SegFormer Figure 3)."""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustbench_seg.data.images import file_shape
from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import atomic_path, check_dir, claim_dir, save_figure
from robustbench_seg.models.loader import load
from robustbench_seg.models.registry import (
    MMSEG_PREPROCESSING,
    TAG_SEPARATOR,
    Preprocessing,
    get_model_entry,
    split_name,
)
from robustbench_seg.progress import progress_iter
from robustbench_seg.runtime import resolve_device
from robustbench_seg.sizes import format_size

__all__ = [
    "AREA_FRACTIONS",
    "COLUMN_TITLES",
    "MASS_FRACTIONS",
    "MIN_SIZE",
    "STAGES",
    "ErfResult",
    "central_square_share",
    "central_square_sides",
    "compute_erf",
    "erf_gradients",
    "erf_statistics",
    "load_erf",
    "log_normalize",
    "render_erf_grid",
    "select_images",
    "smallest_central_square",
]

# Keys of ``forward_features`` in column order; "fused" is the decoder head's features.
STAGES: tuple[str, ...] = ("stage1", "stage2", "stage3", "stage4", "fused")
COLUMN_TITLES: tuple[str, ...] = ("Stage-1", "Stage-2", "Stage-3", "Stage-4", "Head")
# Central squares covering these shares of the image area (CSV ``share_{p}pct``).
AREA_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.25)
# Shares of the gradient mass for the smallest-central-square figures (CSV ``side{p}_*``).
MASS_FRACTIONS: tuple[float, ...] = (0.5, 0.9)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
FILE_NAMES = {"png": "erf.png", "pdf": "erf.pdf", "csv": "erf.csv", "npz": "erf_maps.npz"}
# The smallest input side, for every model (the rows of one grid share one size): SegFormer's
# stage 4 has stride 32, so a smaller side gives it no whole output unit, and its stage 1 cannot
# run at all below 29 (its attention reduces the 1/4-scale map with an 8x8 convolution).
MIN_SIZE = 32


# ----------------------------------------------------------------------------- the gradient


def erf_gradients(
    model: nn.Module, x: torch.Tensor, stages: Sequence[str] = STAGES
) -> dict[str, torch.Tensor]:
    """Input gradients of the central output unit of each stage, ``|grad|`` summed over RGB.

    One forward pass through ``model.forward_features``; one ``torch.autograd.grad`` per stage
    on that graph (kept until the last stage, then freed). The central unit of a feature map
    ``(N, C, h, w)`` is position ``(h // 2, w // 2)``, summed over channels (and the batch:
    images do not interact in eval mode, so each image gets its own gradient).

    Args:
        model: Has ``forward_features(x) -> dict`` of NCHW maps holding ``stages``; should be
            in eval mode, with parameters not requiring grad (only the input needs it).
        x: Normalized float batch ``(N, 3, H, W)``.
        stages: Keys of ``forward_features`` to differentiate.

    Returns:
        For each stage, ``(N, H, W)`` float32 maps ``sum_c |d out / d x[:, c]|``.

    Raises:
        RobustSegError: The model has no ``forward_features``, or lacks a stage, or a stage
            is not an NCHW map.
    """
    forward_features = _forward_features(model)
    x = x.detach().requires_grad_(True)
    grads: dict[str, torch.Tensor] = {}
    with torch.enable_grad():
        feats = forward_features(x)
        units = []
        for name in stages:
            feat = feats.get(name) if isinstance(feats, dict) else None
            if feat is None or feat.ndim != 4:
                raise RobustSegError(
                    f"{type(model).__name__}.forward_features gave no 4-d map {name!r} "
                    f"(needs {', '.join(stages)})"
                )
            units.append(feat[:, :, feat.shape[2] // 2, feat.shape[3] // 2].sum())
        del feats  # the graph lives on through `units` only
        for i, (name, unit) in enumerate(zip(stages, units, strict=True)):
            (grad,) = torch.autograd.grad(unit, x, retain_graph=i < len(units) - 1)
            grads[name] = grad.abs().sum(1)
        del units
    return grads


def _forward_features(model: nn.Module) -> Callable[[torch.Tensor], dict]:
    fn = getattr(model, "forward_features", None)
    if not callable(fn):
        raise RobustSegError(
            f"model {type(model).__name__} has no forward_features(x) -> dict of stage "
            "features; the ERF needs one (SegFormer and DeepLabV3+ have it)"
        )
    return fn


# ----------------------------------------------------------------------------- map statistics


def _central_box(height: int, width: int, side: np.ndarray | int) -> tuple[np.ndarray, ...]:
    """Rows ``[y0, y1)`` and columns ``[x0, x1)`` of central squares of ``side`` pixels.

    The square holds ``(height // 2, width // 2)``, with ``side // 2`` pixels before it; even
    sides have one more pixel before the centre than after. Clipped to the image, so the
    boxes grow monotonically and ``side = max(height, width)`` covers the whole image.
    """
    side = np.asarray(side)
    y0 = height // 2 - side // 2
    x0 = width // 2 - side // 2
    return (
        np.clip(y0, 0, height),
        np.clip(y0 + side, 0, height),
        np.clip(x0, 0, width),
        np.clip(x0 + side, 0, width),
    )


def _masses(erf: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Mass of ``erf`` inside the central square of each side (summed-area table)."""
    h, w = erf.shape
    sat = np.zeros((h + 1, w + 1), np.float64)
    sat[1:, 1:] = erf.astype(np.float64).cumsum(0).cumsum(1)
    y0, y1, x0, x1 = _central_box(h, w, sides)
    return sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]


def _check_map(erf: np.ndarray) -> np.ndarray:
    erf = np.asarray(erf)
    if erf.ndim != 2 or erf.size == 0:
        raise RobustSegError(f"an ERF map must be a non-empty 2-d array, got shape {erf.shape}")
    return erf


def central_square_share(erf: np.ndarray, area_fraction: float) -> float:
    """Share of the map's mass inside the central square covering ``area_fraction`` of it.

    The square's side is ``round(sqrt(area_fraction * H * W))`` (at least 1), centred on
    ``(H // 2, W // 2)`` and clipped to the image (so for very elongated images and large
    fractions it covers less than ``area_fraction``).

    Args:
        erf: Non-negative ``(H, W)`` map.
        area_fraction: In ``(0, 1]``.

    Returns:
        Mass inside / total mass, in ``[0, 1]``; NaN for an all-zero map.
    """
    erf = _check_map(erf)
    if not 0.0 < area_fraction <= 1.0:
        raise RobustSegError(f"area_fraction must be in (0, 1], got {area_fraction}")
    h, w = erf.shape
    side = max(1, round(math.sqrt(area_fraction * h * w)))
    total = float(erf.sum(dtype=np.float64))
    if total <= 0.0:
        return math.nan
    return float(_masses(erf, np.array([side]))[0]) / total


def central_square_sides(erf: np.ndarray, mass_fractions: Sequence[float]) -> list[int]:
    """Sides of the smallest central squares holding each share of the map's mass.

    Squares are centred on ``(H // 2, W // 2)`` and clipped to the image; sides run from 1 to
    ``max(H, W)`` (the whole image), so a side can exceed the shorter image side.

    Args:
        erf: Non-negative ``(H, W)`` map.
        mass_fractions: Shares in ``(0, 1]``.

    Returns:
        One side in pixels per share; 0 for an all-zero map.
    """
    erf = _check_map(erf)
    if any(not 0.0 < q <= 1.0 for q in mass_fractions):
        raise RobustSegError(f"mass fractions must be in (0, 1], got {list(mass_fractions)}")
    h, w = erf.shape
    sides = np.arange(1, max(h, w) + 1)
    masses = np.maximum.accumulate(_masses(erf, sides))
    total = masses[-1]
    if total <= 0.0:
        return [0 for _ in mass_fractions]
    # relative tolerance: the summed-area differences carry float64 rounding
    idx = np.searchsorted(masses, [q * total * (1.0 - 1e-12) for q in mass_fractions])
    return [int(sides[min(i, len(sides) - 1)]) for i in idx]


def smallest_central_square(erf: np.ndarray, mass_fraction: float) -> int:
    """Side of the smallest central square holding ``mass_fraction`` of the map's mass."""
    return central_square_sides(erf, [mass_fraction])[0]


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}"


def erf_statistics(erf: np.ndarray) -> dict[str, float]:
    """The CSV figures of one ERF map.

    Args:
        erf: Non-negative ``(H, W)`` map (the averaged ``|grad|``).

    Returns:
        ``mass`` (total), ``share_{1,5,25}pct`` (``central_square_share`` of each
        ``AREA_FRACTIONS``), and for each of ``MASS_FRACTIONS`` ``side{50,90}_px`` and
        ``side{50,90}_frac`` (the side over the image's shorter side).
    """
    erf = _check_map(erf)
    stats: dict[str, float] = {"mass": float(erf.sum(dtype=np.float64))}
    for f in AREA_FRACTIONS:
        stats[f"share_{_pct(f)}pct"] = central_square_share(erf, f)
    short = min(erf.shape)
    for q, side in zip(MASS_FRACTIONS, central_square_sides(erf, MASS_FRACTIONS), strict=True):
        stats[f"side{_pct(q)}_px"] = side
        stats[f"side{_pct(q)}_frac"] = side / short
    return stats


def log_normalize(erf: np.ndarray, decades: float = 4.0) -> np.ndarray:
    """Log-scales a map for display: ``log10(erf / max)`` mapped from ``[-decades, 0]`` to [0, 1].

    Values below ``10 ** -decades`` of the peak (and zeros) map to 0, the peak to 1. Dividing
    by the peak first makes the picture independent of the gradient's absolute scale (which
    depends on the preprocessing and the weights), unlike ``log(1 + erf)``.

    Args:
        erf: Non-negative map.
        decades: Dynamic range shown.

    Returns:
        Float32 map in ``[0, 1]`` (all zeros for an all-zero map).
    """
    erf = np.asarray(erf, np.float64)
    peak = float(erf.max()) if erf.size else 0.0
    if peak <= 0.0:
        return np.zeros(erf.shape, np.float32)
    rel = np.maximum(erf / peak, 10.0**-decades)
    return ((np.log10(rel) + decades) / decades).astype(np.float32)


# ----------------------------------------------------------------------------- images


def select_images(
    *,
    cityscapes_root: str | os.PathLike | None = None,
    split: str = "val",
    images_dir: str | os.PathLike | None = None,
    num_images: int = 100,
    seed: int = 0,
    dataset: str = "cityscapes",
    data_root: str | os.PathLike | None = None,
) -> list[tuple[str, Path]]:
    """A seeded choice of ``num_images`` images (all of them if there are fewer).

    ``np.random.default_rng(seed).choice`` without replacement over the sorted list, then
    sorted back into list order.

    Args:
        cityscapes_root: Cityscapes root (``$CITYSCAPES_DATASET`` when neither this nor
            ``images_dir`` is given); images of ``split``.
        split: Cityscapes split.
        images_dir: Instead: every image file under this folder (recursive).
        num_images: How many to pick, at least 1.
        seed: Seed of the choice.
        dataset, data_root: Instead of Cityscapes, the images of another registered dataset
            (``robustbench_seg.data.datasets``).

    Returns:
        ``(image id, path)`` pairs; ids are Cityscapes ids or paths relative to ``images_dir``.

    Raises:
        RobustSegError: ``num_images < 1``, both sources given, or no images found.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise RobustSegError(f"--num-images must be an integer >= 1, got {num_images!r}")
    given = [o for o, v in (("--cityscapes-root", cityscapes_root), ("--data-root", data_root),
                            ("--images", images_dir)) if v is not None]  # fmt: skip
    if len(given) > 1:
        raise RobustSegError(f"pass one of {', '.join(given)}, not both")
    if images_dir is not None:
        folder = Path(images_dir).expanduser()
        if not folder.is_dir():
            raise RobustSegError(f"image folder {folder} does not exist or is not a directory")
        paths = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not paths:
            raise RobustSegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
        items = [(p.relative_to(folder).as_posix(), p) for p in paths]
    else:
        from robustbench_seg.data.datasets import get_dataset

        data = get_dataset(dataset)
        root = data.root_from_options(data_root, cityscapes_root)
        condition = data.conditions[0] if data.conditions else None  # a natural set: its first
        items = [(im.image_id, im.path) for im in data.images(root, split, condition)]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(items), size=min(num_images, len(items)), replace=False))
    return [items[i] for i in chosen]


def _load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    import cv2

    from robustbench_seg.data.images import read_rgb

    img = read_rgb(path)
    h, w = size
    if img.shape[:2] != (h, w):
        shrink = h * w < img.shape[0] * img.shape[1]
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return img


# ----------------------------------------------------------------------------- results


@dataclass
class ErfResult:
    """Averaged ERF maps of several models, their figures, and where they were written.

    Attributes:
        models: Row labels (model names).
        stages: Column keys, ``STAGES``.
        maps: ``(len(models), len(stages), H, W)`` float32: mean over images of
            ``sum_rgb |d central unit / d input|``.
        image_ids: The images averaged over.
        size: ``(H, W)`` of the input.
        stats: One dict per (model, stage): the CSV rows.
        files: Written outputs by kind (``png``, ``pdf``, ``csv``, ``npz``).
        seconds: Wall time of ``compute_erf``.
    """

    models: tuple[str, ...]
    stages: tuple[str, ...]
    maps: np.ndarray
    image_ids: tuple[str, ...]
    size: tuple[int, int]
    stats: list[dict[str, object]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    def map(self, model: str, stage: str) -> np.ndarray:
        """The averaged map of one model and stage."""
        return self.maps[self.models.index(model), self.stages.index(stage)]

    def line(self) -> str:
        """One-line summary for the CLI."""
        h, w = self.size
        where = f" -> {self.files['png'].parent}" if self.files else ""
        return (
            f"ERF of {len(self.models)} model(s) x {len(self.stages)} stages over "
            f"{len(self.image_ids)} image(s) at {h}x{w}; {self.seconds:.1f} s{where}"
        )


def _stats_rows(
    models: Sequence[str], stages: Sequence[str], maps: np.ndarray, num_images: int
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i, model in enumerate(models):
        for j, stage in enumerate(stages):
            h, w = maps.shape[-2:]
            row: dict[str, object] = {
                "model": model,
                "stage": stage,
                "height": h,
                "width": w,
                "num_images": num_images,
            }
            row.update(erf_statistics(maps[i, j]))
            rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with atomic_path(path, suffix=path.suffix) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


def _write_npz(path: Path, result: ErfResult) -> None:
    with atomic_path(path, suffix=path.suffix) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            maps=result.maps.astype(np.float32),
            models=np.array(result.models, dtype=str),
            stages=np.array(result.stages, dtype=str),
            image_ids=np.array(result.image_ids, dtype=str),
            size=np.array(result.size, dtype=np.int64),
        )


def load_erf(path: str | os.PathLike) -> ErfResult:
    """Reads the ``erf_maps.npz`` written by ``compute_erf`` (figures recomputed).

    Raises:
        RobustSegError: Missing or malformed file.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            maps = z["maps"]
            models = tuple(str(m) for m in z["models"])
            stages = tuple(str(s) for s in z["stages"])
            image_ids = tuple(str(s) for s in z["image_ids"])
            h, w = (int(v) for v in z["size"])
    except (OSError, KeyError, ValueError) as exc:
        raise RobustSegError(f"cannot read ERF maps {path}: {exc}") from exc
    return ErfResult(
        models=models,
        stages=stages,
        maps=maps,
        image_ids=image_ids,
        size=(h, w),
        stats=_stats_rows(models, stages, maps, len(image_ids)),
    )


def _wrap_label(label: str, width: int) -> str:
    """Breaks a long name after hyphens into lines of at most ``width`` characters if possible."""
    lines: list[str] = []
    for part in label.split("-"):
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += "-" + part
        else:
            if lines:
                lines[-1] += "-"
            lines.append(part)
    return "\n".join(lines)


def render_erf_grid(
    result: ErfResult,
    paths: Sequence[str | os.PathLike],
    *,
    decades: float = 4.0,
    cmap: str = "viridis",
    panel_width: float = 2.2,
) -> None:
    """Draws the Figure 3 style grid (rows: models, columns: stages 1-4 and the head).

    Each panel is ``log_normalize(map, decades)``; a shared colour bar gives the gradient
    relative to the panel's peak. Uses matplotlib's Agg canvas (no pyplot, no global backend).

    Args:
        result: The maps.
        paths: Files to write; the format follows each suffix (``.png``, ``.pdf``, ...).
        decades: Dynamic range shown, in powers of ten.
        cmap: Matplotlib colour map.
        panel_width: Width of one panel in inches.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols = len(result.models), len(result.stages)
    h, w = result.size
    panel_height = panel_width * h / w
    fig = Figure(figsize=(1.2 + panel_width * n_cols + 0.8, 0.5 + (panel_height + 0.1) * n_rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    titles = dict(zip(STAGES, COLUMN_TITLES, strict=True))
    image = None
    for i, model in enumerate(result.models):
        for j, stage in enumerate(result.stages):
            ax = axes[i, j]
            image = ax.imshow(
                log_normalize(result.maps[i, j], decades),
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if not result.maps[i, j].any():
                ax.text(0.5, 0.5, "zero gradient", color="w", ha="center", transform=ax.transAxes)
            if i == 0:
                ax.set_title(titles.get(stage, stage), fontsize=10)
            if j == 0:
                ax.set_ylabel(_wrap_label(model, max(8, round(panel_height * 12))), fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.9, top=0.9, bottom=0.03, wspace=0.05, hspace=0.05)
    if image is not None:
        cax = fig.add_axes((0.92, 0.1, 0.012, 0.75))
        bar = fig.colorbar(image, cax=cax)
        ticks = np.linspace(0.0, 1.0, int(decades) + 1)
        bar.set_ticks(ticks)
        bar.set_ticklabels([f"$10^{{{int(round(t * decades - decades))}}}$" for t in ticks])
        bar.ax.tick_params(labelsize=7)
        bar.set_label("|grad| / peak", fontsize=8)
    for path in paths:
        save_figure(fig, path, dpi=150, bbox_inches="tight", pad_inches=0.05)


# ----------------------------------------------------------------------------- the command


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise RobustSegError(f"size must be (height, width), got {size!r}") from exc
    if h < 1 or w < 1:
        raise RobustSegError(f"--size must be positive, got {format_size((h, w))}")
    if h < MIN_SIZE or w < MIN_SIZE:
        raise RobustSegError(
            f"--size must be at least {MIN_SIZE}x{MIN_SIZE}, got {format_size((h, w))}: "
            f"SegFormer's deepest stage has stride {MIN_SIZE}, so a smaller image leaves it no "
            "whole output unit (and its first stage cannot run below 29 pixels)"
        )
    return h, w


def _weights_list(weights: str | Sequence[str | None] | None, n_models: int) -> list[str | None]:
    if weights is None or isinstance(weights, str | os.PathLike):
        return [None if weights is None else str(weights)] * n_models
    weights = [None if w is None else str(w) for w in weights]
    if len(weights) == 1:
        return weights * n_models
    if len(weights) != n_models:
        raise RobustSegError(
            f"got {len(weights)} --weights for {n_models} --model: give one per model, or one"
        )
    return weights


def _model_specs(
    models: Sequence[str | nn.Module] | str | nn.Module,
    weights: str | Sequence[str | None] | None,
    preprocessing: Preprocessing | None,
) -> list[tuple[str, str | nn.Module, str | None, Preprocessing]]:
    if isinstance(models, str | nn.Module):
        models = [models]
    if not models:
        raise RobustSegError("no model given: pass --model NAME (one or more)")
    specs = []
    labels: set[str] = set()
    for model, w in zip(models, _weights_list(weights, len(models)), strict=True):
        if isinstance(model, str):
            entry = get_model_entry(model)  # unknown names fail before any work
            tag = split_name(model)[1]
            label = entry.name if tag is None else f"{entry.name}{TAG_SEPARATOR}{tag}"
            pre = preprocessing or entry.preprocessing
        else:
            _forward_features(model)
            label, pre = type(model).__name__, preprocessing or MMSEG_PREPROCESSING
        base, k = label, 2
        while label in labels:
            label, k = f"{base}-{k}", k + 1
        labels.add(label)
        specs.append((label, model, w, pre))
    return specs


def _build(model: str | nn.Module, weights: str | None, seed: int) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random-weight ERFs are reproducible too
        net = load(model, weights).module
    _forward_features(net)
    return net


def _is_erf(folder: Path) -> bool:
    """An earlier ``robustseg erf`` output from before output folders were marked."""
    return (folder / FILE_NAMES["npz"]).is_file() and (folder / FILE_NAMES["csv"]).is_file()


def compute_erf(
    models: Sequence[str | nn.Module] | str | nn.Module,
    *,
    weights: str | Sequence[str | None] | None = None,
    cityscapes_root: str | os.PathLike | None = None,
    split: str = "val",
    images_dir: str | os.PathLike | None = None,
    num_images: int = 100,
    size: int | Sequence[int] = (512, 1024),
    dataset: str = "cityscapes",
    data_root: str | os.PathLike | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    out: str | os.PathLike | None = None,
    preprocessing: Preprocessing | None = None,
    decades: float = 4.0,
    progress: bool = True,
) -> ErfResult:
    """Effective receptive fields of each model's four encoder stages and head.

    For every image (one at a time, resized to ``size``, normalized with the model's
    preprocessing) and every stage, the gradient of the central unit of the stage's features
    (summed over channels) w.r.t. the input; ``|grad|`` summed over RGB and averaged over the
    images (Luo et al. 2016). The model runs in eval mode with frozen parameters; its
    training mode and ``requires_grad`` flags are restored afterwards.

    Args:
        models: Registry names/aliases and/or modules with ``forward_features``.
        weights: For registry names: ``None`` (random init, seeded with ``seed``), one spec for
            all models (e.g. ``"default"``), or one per model (see ``robustbench_seg.models.load``).
        cityscapes_root: Cityscapes root; ``$CITYSCAPES_DATASET`` if neither source is given.
        split: Cityscapes split.
        images_dir: Instead of Cityscapes: every image under this folder.
        num_images: Images averaged over (seeded choice); all if fewer exist.
        size: Input ``(H, W)`` (or one int for a square), each at least :data:`MIN_SIZE`;
            images are resized (area/bilinear).
        seed: Seeds the image choice and random-weight initialization.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (or a ``torch.device``).
        out: Output folder for ``erf.png``, ``erf.pdf``, ``erf.csv``, ``erf_maps.npz``;
            ``None`` writes nothing.
        preprocessing: Overrides the registry's preprocessing (modules default to mmseg's).
        decades: Dynamic range of the rendered maps.
        progress: Show a progress bar per model.

    Returns:
        The maps, their figures and the written files.

    Raises:
        RobustSegError: Unknown model, a model without ``forward_features``, bad weights,
            ``num_images < 1``, bad size, or no images found.
    """
    from robustbench_seg.engine.inference import preprocess

    start = time.perf_counter()
    hw = _pair(size)
    specs = _model_specs(models, weights, preprocessing)
    images = select_images(
        cityscapes_root=cityscapes_root,
        split=split,
        images_dir=images_dir,
        num_images=num_images,
        seed=seed,
        dataset=dataset,
        data_root=data_root,
    )
    for _, path in images:  # every image readable as documented, before any work
        file_shape(path)
    folder = None if out is None else Path(out).expanduser()
    if folder is not None:
        check_dir(folder, "erf", recognise=_is_erf)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    maps = np.zeros((len(specs), len(STAGES), *hw), np.float64)
    for i, (label, model, w, pre) in enumerate(specs):
        net = _build(model, w, seed)
        was_training = net.training
        flags = [(p, p.requires_grad) for p in net.parameters()]
        try:
            net.to(device).eval().requires_grad_(False)
            for _, path in progress_iter(images, len(images), f"erf {label}", unit="img",
                                         enabled=progress):  # fmt: skip
                x = preprocess(_load_image(path, hw), pre, device)
                grads = erf_gradients(net, x)
                for j, stage in enumerate(STAGES):
                    maps[i, j] += grads[stage][0].double().cpu().numpy()
                del x, grads
        finally:
            net.train(was_training)
            for p, flag in flags:
                p.requires_grad_(flag)
        del net
    maps32 = (maps / len(images)).astype(np.float32)  # the stored maps: figures match load_erf
    labels = tuple(s[0] for s in specs)
    result = ErfResult(
        models=labels,
        stages=STAGES,
        maps=maps32,
        image_ids=tuple(image_id for image_id, _ in images),
        size=hw,
        stats=_stats_rows(labels, STAGES, maps32, len(images)),
    )
    if folder is not None:
        with claim_dir(folder, "erf", recognise=_is_erf):
            files = {kind: folder / name for kind, name in FILE_NAMES.items()}
            _write_npz(files["npz"], result)
            _write_csv(files["csv"], result.stats)
            render_erf_grid(result, [files["png"], files["pdf"]], decades=decades)
        result.files = files
    result.seconds = time.perf_counter() - start
    return result
