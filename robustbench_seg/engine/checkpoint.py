"""The files of a training run directory: configuration, resumable checkpoint, weights, log, plot.

A run directory holds ``config.json``, ``checkpoint.pt`` (everything needed to resume),
``weights.safetensors`` (native weights of the latest checkpoint, what ``evaluate --weights``
loads), ``best.safetensors`` (best validation mIoU), ``log.jsonl`` and ``curves.png``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import atomic_path, open_append, save_figure, write_text_atomic

if TYPE_CHECKING:
    from robustbench_seg.engine.recipes import Recipe

__all__ = [
    "BEST",
    "CHECKPOINT",
    "CONFIG",
    "CURVES",
    "LOG",
    "WEIGHTS",
    "append_log",
    "load_checkpoint",
    "plot_curves",
    "remove_stale_parts",
    "rng_state",
    "save_checkpoint",
    "save_native",
    "set_rng_state",
    "truncate_log",
    "write_config",
]

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.safetensors"
BEST = "best.safetensors"
LOG = "log.jsonl"
CURVES = "curves.png"
CONFIG = "config.json"


# ----------------------------------------------------------------------------- configuration


def write_config(
    run_dir: Path, config: Mapping[str, Any], config_hash: str, recipe: Recipe
) -> None:
    """Writes ``config.json``: the hashed configuration, its hash and the full recipe.

    Args:
        run_dir: The run directory (created if missing).
        config: The configuration ``--resume`` must match.
        config_hash: Its hash.
        recipe: The recipe the run trains with (recorded in full).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"config": config, "config_hash": config_hash, "recipe": dataclasses.asdict(recipe)}
    with atomic_path(run_dir / CONFIG, suffix=".part") as tmp:
        tmp.write_text(json.dumps(cfg, indent=2))


# ----------------------------------------------------------------------------- checkpoint


def rng_state() -> dict[str, Any]:
    """The generators' states: torch (CPU and CUDA), NumPy's legacy global one and Python's.

    Returns:
        A state ``torch.load(weights_only=True)`` can read back (NumPy's key as a tensor).
    """
    # The legacy global state is saved only so that code outside the loop sees it restored.
    np_state = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restores the generators' states saved by ``rng_state``.

    Args:
        state: What ``rng_state`` returned (CUDA states are skipped without a GPU).
    """
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    random.setstate(state["python"])


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    aux: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    iteration: int,
    config: Mapping[str, Any],
    config_hash: str,
    best: Mapping[str, Any],
    source: str,
) -> None:
    """Writes the training checkpoint (everything ``--resume`` needs) atomically.

    The generators' states are taken here (``rng_state``).

    Args:
        path: Destination, ``checkpoint.pt`` of the run directory.
        model: The model (its keys as in the native weights).
        aux: The training-only auxiliary head, if any.
        optimizer: The optimizer; its groups' ``base_lr`` are recorded with the iteration.
        scaler: The fp16 gradient scaler, if any.
        iteration: Iterations completed.
        config: The run's hashed configuration.
        config_hash: Its hash (what ``load_checkpoint`` checks).
        best: Best validation mIoU so far and its iteration (``{"miou", "iter"}``).
        source: What the run started from (``init``, for the weights' metadata).
    """
    state = {
        "model": model.state_dict(),
        "aux": aux.state_dict() if aux is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": {
            "iteration": iteration,
            "base_lrs": [g["base_lr"] for g in optimizer.param_groups],
        },
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "iteration": iteration,
        "config": config,
        "config_hash": config_hash,
        "best": best,
        "source": source,
    }
    with atomic_path(path, suffix=".part") as tmp:
        torch.save(state, tmp)


# What ``save_checkpoint`` writes and ``--resume`` reads.
_CHECKPOINT_KEYS = ("model", "aux", "optimizer", "scaler", "rng", "iteration", "config",
                    "config_hash", "best", "source")  # fmt: skip

# The temporary files ``atomic_path`` leaves when a run is killed while it writes one of the run
# directory's files: ``.<name>.<8 random characters of mkstemp><suffix>``.
_STALE_PART = re.compile(
    r"\.(?:"
    + "|".join(re.escape(n) for n in (CHECKPOINT, WEIGHTS, BEST, CONFIG))
    + r")\.[A-Za-z0-9_]{8}\.part|\."
    + re.escape(CURVES)
    + r"\.[A-Za-z0-9_]{8}\.png"
)


def remove_stale_parts(run_dir: Path) -> list[Path]:
    """Removes the temporary files a killed run left while writing its checkpoint, weights,
    configuration or curves (only names of that exact pattern; call it holding the lock).

    Args:
        run_dir: The run directory.

    Returns:
        The files removed.
    """
    stale = [p for p in run_dir.iterdir() if _STALE_PART.fullmatch(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load_checkpoint(run_dir: Path, config: Mapping[str, Any], config_hash: str) -> dict[str, Any]:
    """Reads a run's training checkpoint for ``--resume`` (on the CPU).

    Args:
        run_dir: The run directory.
        config: The configuration of the resuming call (named in the error).
        config_hash: Its hash, which must match the checkpoint's.

    Returns:
        The checkpoint as ``save_checkpoint`` wrote it.

    Raises:
        RobustSegError: No checkpoint, one that is not ours (unreadable, or a pickle naming
            code: refused unread, ``models.convert.load_pickle``), or one trained with another
            configuration.
    """
    from robustbench_seg.models.convert import load_pickle

    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise RobustSegError(f"--resume: no {CHECKPOINT} in {run_dir}")
    try:
        ckpt = load_pickle(path)
    except RobustSegError as exc:
        raise RobustSegError(f"--resume: {exc}") from None
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise RobustSegError(
            f"--resume: {path} is not a robustseg training checkpoint (no {', '.join(missing)}); "
            "start a new run with another --out"
        )
    if ckpt["config_hash"] != config_hash:
        raise RobustSegError(
            f"--resume: {path} was trained with another configuration "
            f"({_describe_diff(ckpt['config'], config)}); use the same options or another --out"
        )
    return ckpt


def _describe_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted({*old, *new})
             if old.get(k) != new.get(k)]  # fmt: skip
    return ", ".join(diffs[:4]) + (f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else "")


def save_native(
    model: nn.Module,
    dest: Path,
    *,
    model_name: str,
    source: str,
    iteration: int,
    config_hash: str,
) -> None:
    """Writes a run's native weights (``weights.safetensors`` / ``best.safetensors``).

    Args:
        model: The model (without the auxiliary head).
        dest: Destination file.
        model_name: Canonical registry name.
        source: What the run started from; recorded as ``robustseg train (<source>)``.
        iteration: Iterations completed (metadata).
        config_hash: The run's configuration hash (metadata).
    """
    from robustbench_seg.models.weights import save_weights

    save_weights(
        model, dest, model_name=model_name, source=f"robustseg train ({source})",
        extra={"iteration": iteration, "config_hash": config_hash},
    )  # fmt: skip


# ----------------------------------------------------------------------------- log


def truncate_log(path: Path, keep_until: int | None) -> None:
    """Starts a run's JSONL log: empty, or a resumed run's rows up to its checkpoint.

    Args:
        path: The log, ``log.jsonl`` of the run directory.
        keep_until: The resumed checkpoint's iteration: rows past it are dropped (the run
            logs them again). ``None`` for a new run.
    """
    kept = []
    if keep_until is not None and path.is_file():
        kept = [
            line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["iter"] <= keep_until
        ]  # fmt: skip
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def append_log(path: Path, row: Mapping[str, Any]) -> None:
    """Appends one row to a JSONL log.

    Args:
        path: The log.
        row: JSON-serialisable values (``iter`` first).
    """
    with open_append(path) as fh:
        fh.write(json.dumps(row) + "\n")


def plot_curves(log_path: Path, dest: Path) -> Path | None:
    """Draws a run's training loss and validation mIoU against the iteration.

    Args:
        log_path: The run's JSONL log.
        dest: Destination PNG (written atomically).

    Returns:
        ``dest``, or ``None`` (nothing written) when the log holds neither loss nor mIoU.
    """
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
    save_figure(fig, dest, dpi=100)
    return dest
