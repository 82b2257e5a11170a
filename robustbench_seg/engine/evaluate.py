"""The benchmark runner: a model on clean Cityscapes and every Cityscapes-C cell (SegFormer Table 5).

A run directory holds ``run.json`` (configuration, its hash, versions, times),
``cells/<cell>.npz`` (19x19 confusion matrix and image count, written atomically),
``results.csv`` (one tidy row per cell and class) and ``summary.csv`` (the Table 5 row). Re-running
with the same ``out`` skips finished cells when the configuration hash matches. Under ``torchrun``
ranks take disjoint image shards and all-reduce the confusion matrices; rank 0 writes.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from corruptions import make_protocol
from corruptions.registry import get_corruption
from robustbench_seg.data.cityscapes import CLASS_NAMES, NUM_CLASSES, list_pairs, resolve_root
from robustbench_seg.data.cityscapes_c import (
    CLEAN,
    CellView,
    cell_name,
    tree_settings,
    worker_start_method,
)
from robustbench_seg.engine import metrics
from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import atomic_path, package_versions, write_json_atomic

RUN_JSON = "run.json"
_VERSIONED = ("robustseg", "torch", "numpy", "opencv-python-headless", "imagecorruptions-imaug")
CELLS = "cells"


# ----------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    """A model ready for evaluation, with what the runner must know about it."""

    module: nn.Module
    name: str
    preprocessing: Any  # robustbench_seg.models.registry.Preprocessing
    num_classes: int
    weights: str | None = None
    weights_sha256: str | None = None


def _sha256_path(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


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
        mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise RobustSegError(f"custom model: cannot import {target!r}: {exc}") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise RobustSegError(f"custom model: {target} has no function {func!r}")
    return fn


def _custom_model(spec: str) -> LoadedModel:
    """``file.py:build`` / ``pkg.mod:build`` returning ``(module, metadata)``; metadata has
    ``num_classes``, ``mean``, ``std`` and optionally ``channel_order`` (RGB), ``value_scale``
    (255) and ``name``."""
    from robustbench_seg.models.registry import Preprocessing

    result = _load_builder(spec)()
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module)):
        raise RobustSegError(
            f"custom model {spec}: the builder must return (nn.Module, metadata dict)"
        )
    module, meta = result
    missing = [k for k in ("num_classes", "mean", "std") if k not in meta]
    if missing:
        raise RobustSegError(f"custom model {spec}: metadata lacks {', '.join(missing)}")
    pre = Preprocessing(
        mean=tuple(float(v) for v in meta["mean"]), std=tuple(float(v) for v in meta["std"]),
        channel_order=meta.get("channel_order", "RGB"), value_scale=float(meta.get("value_scale", 255.0)),
    )  # fmt: skip
    return LoadedModel(module.eval(), meta.get("name", spec), pre, int(meta["num_classes"]),
                       weights=None, weights_sha256=_sha256_path(Path(spec.rpartition(":")[0]))
                       if Path(spec.rpartition(":")[0]).is_file() else None)  # fmt: skip


def load_model(model: str | nn.Module, *, weights: str | None = "default", preprocessing=None,
               num_classes: int | None = None, name: str | None = None) -> LoadedModel:  # fmt: skip
    """Resolve a model argument: a registry name/alias (with weights), a custom builder spec, or
    a module (``preprocessing`` defaults to mmseg's ImageNet mean/std on RGB 0-255)."""
    from robustbench_seg.models.registry import MMSEG_PREPROCESSING, get_model_entry

    if isinstance(model, nn.Module):
        n = num_classes if num_classes is not None else getattr(model, "num_classes", NUM_CLASSES)
        return LoadedModel(model.eval(), name or type(model).__name__,
                           preprocessing or MMSEG_PREPROCESSING, int(n))  # fmt: skip
    if ":" in model and not model.startswith("hf://"):
        return _custom_model(model)
    from robustbench_seg.models.weights import load_weights, resolve_weights

    entry = get_model_entry(model)
    n = num_classes or entry.num_classes
    module = entry.build(n)
    sha = None
    if weights is not None:
        path = resolve_weights(weights, model_name=entry.name)
        load_weights(module, path, model_name=entry.name)
        sha = _sha256_path(Path(path))
    return LoadedModel(module.eval(), entry.name, entry.preprocessing, n,
                       weights=None if weights is None else str(weights), weights_sha256=sha)  # fmt: skip


class _CheckedModel(nn.Module):
    """Validates the wrapped model's output on its first call (custom models)."""

    def __init__(self, inner: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.inner, self.num_classes, self.checked = inner, num_classes, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        if not self.checked:
            if not isinstance(y, torch.Tensor) or y.ndim != 4 or y.shape[0] != x.shape[0]:
                shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise RobustSegError(
                    f"the model must return logits (N, num_classes, h, w); got {shape}"
                )
            if y.shape[1] != self.num_classes:
                raise RobustSegError(
                    f"the model returned {y.shape[1]} classes, expected {self.num_classes}"
                )
            self.checked = True
        return y


# ----------------------------------------------------------------------------- settings


@dataclass
class EvalConfig:
    """Everything that determines a run's numbers (hashed for resume)."""

    model: str
    weights: str | None
    weights_sha256: str | None
    num_classes: int
    cityscapes_root: str
    split: str
    images_sha256: str
    num_images: int
    cells: list[str]
    seed: int
    backend: str
    cityscapes_c: str | None
    inference: str
    crop: int
    stride: int
    precision: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _Cell:
    name: str
    corruption: str | None
    severity: int | None
    done: bool = False
    conf: torch.Tensor | None = None
    seen: int = 0


@dataclass
class _Items(torch.utils.data.Dataset):
    """All (cell, image) items still to do, cell-major; workers corrupt on the fly."""

    views: list[CellView]
    n: int
    items: list[tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.items = [(k, i) for k in range(len(self.views)) for i in range(self.n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, j: int):
        k, i = self.items[j]
        _, image, label = self.views[k][i]
        return k, image, label


def _collate(batch):
    return batch


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RobustSegError(
            "--device cuda requested but no CUDA GPU is available (use --device cpu)"
        )
    if spec not in ("cpu",) and not spec.startswith("cuda"):
        raise RobustSegError(f"unknown device {spec!r}; use auto, cpu or cuda[:N]")
    return torch.device(spec)


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return _dist()


def _save_cell(path: Path, conf: np.ndarray, images: int, digest: str) -> None:
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, confusion=conf.astype(np.int64), images=np.int64(images), config=digest)


def _load_cell(path: Path, digest: str) -> tuple[np.ndarray, int] | None:
    try:
        with np.load(path) as z:
            if str(z["config"]) != digest:
                return None
            return z["confusion"].astype(np.int64), int(z["images"])
    except (OSError, KeyError, ValueError):
        return None


# ----------------------------------------------------------------------------- tables


def results_frame(model: str, cells: dict[str, tuple[np.ndarray, int]], class_names=CLASS_NAMES):
    """Tidy results: one row per cell and class (IoU, mIoU, pixel accuracy as fractions)."""
    import pandas as pd

    rows = []
    for cell, (conf, images) in cells.items():
        if cell == CLEAN:
            corruption, category, severity = CLEAN, CLEAN, 0
        else:
            corruption, _, sev = cell.rpartition("-")
            category, severity = get_corruption(corruption).category, int(sev)
        iou = metrics.iou_per_class(conf)
        miou, acc = metrics.mean_iou(conf), metrics.pixel_accuracy(conf)
        for c, name in enumerate(class_names[: conf.shape[0]]):
            rows.append({
                "model": model, "cell": cell, "corruption": corruption, "category": category,
                "severity": severity, "class": name, "iou": iou[c], "miou": miou,
                "pixel_accuracy": acc, "images": images,
            })  # fmt: skip
    return pd.DataFrame(rows)


def summary_frame(results) -> Any:
    """The Table 5 row(s) from tidy results: clean mIoU, each corruption's mean over its
    severities, mPC and rPC, all in percent."""
    import pandas as pd

    out = []
    for model, df in results.groupby("model", sort=False):
        per_cell = df.drop_duplicates("cell").set_index("cell")
        row: dict[str, Any] = {"model": model}
        row["clean"] = 100 * per_cell.loc[CLEAN, "miou"] if CLEAN in per_cell.index else np.nan
        corr = per_cell[per_cell["corruption"] != CLEAN]
        means = {}
        for corruption, g in corr.groupby("corruption", sort=False):
            means[corruption] = 100 * float(g["miou"].mean())
        row.update(means)
        if means:
            row["mPC"] = metrics.mpc(means)
            row["rPC"] = (
                100 * metrics.rpc(row["mPC"], row["clean"])
                if row["clean"] == row["clean"]
                else np.nan
            )
        out.append(row)
    return pd.DataFrame(out)


def format_summary(summary) -> str:
    """The summary as an aligned text table (transposed: one line per column)."""
    lines = []
    for _, row in summary.iterrows():
        lines.append(f"{row['model']}")
        for key, value in row.items():
            if key != "model":
                lines.append(f"  {key:<18} {value:6.2f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- runner


def evaluate(
    model: str | nn.Module,
    *,
    weights: str | None = "default",
    preprocessing=None,
    num_classes: int | None = None,
    cityscapes_root: str | os.PathLike | None = None,
    split: str = "val",
    cityscapes_c: str | os.PathLike | None = None,
    corruptions: str | Sequence[str] = "benchmark",
    severities: str | Sequence[int] = "protocol",
    clean: bool = True,
    limit: int | None = None,
    inference: str = "slide",
    crop: int = 1024,
    stride: int = 768,
    batch_size: int = 2,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    seed: int = 0,
    backend: str = "fast",
    progress: bool = True,
):
    """Evaluate a model on clean Cityscapes and Cityscapes-C.

    Args:
        model: registry name or alias (``"b5"``), custom builder (``"file.py:build"``,
            ``"pkg.mod:build"``), or an ``nn.Module`` returning (N, K, h, w) logits.
        weights: for registry models: ``"default"`` (catalog), a path, URL, ``hf://`` id, or None
            (random init).
        preprocessing: for a module: a ``Preprocessing`` (default: ImageNet mean/std, RGB 0-255).
        num_classes: number of classes (default: the model's).
        cityscapes_root: dataset root (default ``$CITYSCAPES_DATASET``).
        split: split to evaluate.
        cityscapes_c: a tree made by ``make-cityscapes-c`` (else corrupt on the fly, same pixels).
        corruptions, severities: as ``make-cityscapes-c`` (``benchmark``, ``protocol``).
        clean: also evaluate the clean images.
        limit: only the first N images (sorted).
        inference: ``slide`` (crop/stride windows) or ``whole``.
        crop, stride: sliding-window size and step.
        batch_size: windows (slide) or images (whole) per forward pass.
        workers: DataLoader worker processes that read and corrupt (default: min(4, cores)).
        device: ``auto``, ``cpu``, ``cuda``.
        precision: ``fp32``, ``fp16``, ``bf16`` (autocast; fp16 needs CUDA).
        out: run directory (resumable); None keeps everything in a temporary folder.
        overwrite: start afresh when ``out`` holds a run of another configuration.
        seed, backend: corruption seed and backend for on-the-fly corruption.
        progress: show a progress bar.

    Returns:
        The tidy results (pandas DataFrame, one row per cell and class).
    """
    from robustbench_seg.engine.inference import predict_logits, preprocess

    t_start = datetime.now(timezone.utc)
    if isinstance(model, str) and ":" not in model:
        from robustbench_seg.models.registry import get_model_entry

        get_model_entry(model)  # an unknown name fails before anything else is looked at
    dev = _device(device)
    if precision not in ("fp32", "fp16", "bf16"):
        raise RobustSegError(f"unknown precision {precision!r}; use fp32, fp16 or bf16")
    if precision == "fp16" and dev.type != "cuda":
        raise RobustSegError("fp16 needs a CUDA device; use fp32 or bf16 on CPU")
    if inference not in ("slide", "whole"):
        raise RobustSegError(f"unknown inference mode {inference!r}; use slide or whole")
    if batch_size < 1 or crop < 1 or stride < 1:
        raise RobustSegError("--batch-size, --crop and --stride must be >= 1")
    root = resolve_root(cityscapes_root)
    pairs = list_pairs(root, split)
    if limit is not None:
        if limit < 1:
            raise RobustSegError(f"--limit must be >= 1, got {limit}")
        pairs = pairs[:limit]
    protocol = make_protocol(corruptions, severities) if corruptions else None
    if cityscapes_c is not None:
        meta = tree_settings(cityscapes_c)
        seed, backend = int(meta["seed"]), str(meta["backend"])
    rank, world = init_distributed(dev)

    loaded = load_model(model, weights=weights, preprocessing=preprocessing,
                        num_classes=num_classes)  # fmt: skip
    net = _CheckedModel(loaded.module, loaded.num_classes).to(dev).eval()

    cell_specs: list[tuple[str | None, int | None]] = [(None, None)] if clean else []
    if protocol is not None:
        cell_specs += protocol.variants()
    if not cell_specs:
        raise RobustSegError("nothing to evaluate: no clean cell and no corruptions")
    images_sha = hashlib.sha256("\n".join(p.image.rel_path for p in pairs).encode()).hexdigest()
    config = EvalConfig(
        model=loaded.name, weights=loaded.weights, weights_sha256=loaded.weights_sha256,
        num_classes=loaded.num_classes, cityscapes_root=str(root.resolve()), split=split,
        images_sha256=images_sha, num_images=len(pairs), cells=[cell_name(c, s) for c, s in cell_specs],
        seed=seed, backend=backend, cityscapes_c=str(Path(cityscapes_c).resolve()) if cityscapes_c else None,
        inference=inference, crop=crop, stride=stride, precision=precision,
    )  # fmt: skip
    digest = config.digest()

    tmpdir = None
    if out is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="robustseg-run-")
        out = tmpdir.name
    run_dir = Path(out)
    cells_dir = run_dir / CELLS
    run_json = run_dir / RUN_JSON
    if rank == 0:
        if run_json.exists():
            try:
                previous = json.loads(run_json.read_text())
            except (OSError, json.JSONDecodeError):
                previous = {}
            if previous.get("config_hash") != digest:
                if not overwrite:
                    raise RobustSegError(
                        f"{run_dir} holds a run with another configuration; use another --out "
                        "or --overwrite"
                    )
                for f in cells_dir.glob("*.npz"):
                    f.unlink()
                for f in ("results.csv", "summary.csv"):
                    (run_dir / f).unlink(missing_ok=True)
        cells_dir.mkdir(parents=True, exist_ok=True)
        info = {
            "config": config.__dict__, "config_hash": digest, "settings": {
                "batch_size": batch_size, "workers": workers, "device": str(dev), "world_size": world,
            }, "versions": package_versions(_VERSIONED), "device": torch.cuda.get_device_name(dev)
            if dev.type == "cuda" else platform.processor() or platform.machine(),
            "started": t_start.isoformat(timespec="seconds"), "finished": None,
        }  # fmt: skip
        write_json_atomic(run_json, info)
    if world > 1:
        torch.distributed.barrier()

    cells = [_Cell(cell_name(c, s), c, s) for c, s in cell_specs]
    finished: dict[str, tuple[np.ndarray, int]] = {}
    for cell in cells:
        loaded_cell = _load_cell(cells_dir / f"{cell.name}.npz", digest)
        if loaded_cell is not None and loaded_cell[1] == len(pairs):
            cell.done = True
            finished[cell.name] = loaded_cell
    todo = [c for c in cells if not c.done]

    my_pairs = pairs[rank::world]
    views = [CellView(my_pairs, c.corruption, c.severity, cityscapes_c=cityscapes_c, seed=seed,
                      backend=backend) for c in todo]  # fmt: skip
    items = _Items(views, len(my_pairs))
    n_workers = min(4, os.cpu_count() or 1) if workers is None else workers
    per_batch = batch_size if inference == "whole" else 1
    loader = torch.utils.data.DataLoader(
        items, batch_size=per_batch, shuffle=False, num_workers=n_workers, collate_fn=_collate,
        worker_init_fn=_worker_init if n_workers > 0 else None,
        prefetch_factor=4 if n_workers > 0 else None, persistent_workers=False,
        multiprocessing_context=worker_start_method() if n_workers > 0 else None,
    )  # fmt: skip
    for cell in todo:
        cell.conf = torch.zeros(
            (loaded.num_classes, loaded.num_classes), dtype=torch.int64, device=dev
        )

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo) * len(pairs), unit="img", disable=not progress or rank != 0,
               desc=loaded.name, dynamic_ncols=True)  # fmt: skip
    next_final = 0

    def finalize(cell: _Cell) -> None:
        conf = cell.conf
        images = torch.tensor(cell.seen, device=dev)
        if world > 1:
            torch.distributed.all_reduce(conf)
            torch.distributed.all_reduce(images)
        arr = conf.cpu().numpy()
        if rank == 0:
            _save_cell(cells_dir / f"{cell.name}.npz", arr, int(images), digest)
        finished[cell.name] = (arr, int(images))
        cell.done = True

    try:
        with torch.inference_mode():
            for batch in loader:
                groups: dict[tuple, list] = {}
                for k, image, label in batch:
                    groups.setdefault((k, image.shape), []).append((image, label))
                for (k, _shape), group in groups.items():
                    images = np.stack([g[0] for g in group])
                    labels = torch.from_numpy(np.stack([g[1] for g in group])).to(dev)
                    x = preprocess(images, loaded.preprocessing, dev)
                    logits = predict_logits(net, x, mode=inference, crop=crop, stride=stride,
                                            batch_size=batch_size, out_size=labels.shape[-2:],
                                            precision=precision)  # fmt: skip
                    cell = todo[k]
                    cell.conf += metrics.confusion_matrix_torch(
                        labels, logits.argmax(1), loaded.num_classes
                    )
                    cell.seen += len(group)
                    bar.update(len(group) * world)
                    bar.set_postfix_str(cell.name, refresh=False)
                while next_final < len(todo) and todo[next_final].seen == len(my_pairs):
                    finalize(todo[next_final])
                    next_final += 1
        while next_final < len(todo):  # a rank with no images still joins every all-reduce
            finalize(todo[next_final])
            next_final += 1
    finally:
        bar.close()

    ordered = {c.name: finished[c.name] for c in cells}
    results = results_frame(loaded.name, ordered)
    if rank == 0:
        results.to_csv(run_dir / "results.csv", index=False)
        summary_frame(results).to_csv(run_dir / "summary.csv", index=False, float_format="%.4f")
        info = json.loads(run_json.read_text())
        info["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        info["seconds"] = time.time() - t_start.timestamp()
        write_json_atomic(run_json, info)
    if tmpdir is not None:
        tmpdir.cleanup()
    return results
