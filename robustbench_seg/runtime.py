"""The runtime every command shares: device, ``torchrun`` process group (PyTorch DDP; NCCL on
GPUs, gloo on CPUs), autocast, DataLoader workers and configuration hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from robustbench_seg.errors import RobustSegError
from robustbench_seg.procs import check_workers, worker_start_method

__all__ = [
    "PRECISIONS",
    "DistInfo",
    "all_reduce_sum",
    "autocast",
    "barrier",
    "broadcast_object",
    "check_precision",
    "config_hash",
    "data_loader",
    "default_workers",
    "dist_info",
    "init_distributed",
    "resolve_device",
    "shutdown",
    "worker_init",
    "worker_start_method",
]

PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits.

    Attributes:
        rank: Global rank (0 on a single process).
        world_size: Number of processes.
        local_rank: Rank on this node (selects the GPU).
        backend: ``"nccl"``, ``"gloo"`` or ``""`` (no process group).
        device: The device this rank trains on.
        owns_group: True when ``init_distributed`` created the process group (and
            ``shutdown`` should destroy it).
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that writes files and shows progress)."""
        return self.rank == 0

    @property
    def sync_bn(self) -> bool:
        """Whether SyncBatchNorm is usable: several processes on NCCL (gloo has no kernel)."""
        return self.world_size > 1 and self.backend == "nccl"


def resolve_device(spec: str) -> torch.device:
    """``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        RobustSegError: Unknown spec, or CUDA asked for without a GPU.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RobustSegError("--device cuda requested but no CUDA GPU is available")
        return torch.device(spec)
    if spec == "cpu":
        return torch.device("cpu")
    raise RobustSegError(f"unknown device {spec!r}; use auto, cpu or cuda[:N]")


def init_distributed(device: str = "auto") -> DistInfo:
    """Joins the process group that ``torchrun`` describes in the environment, if any.

    On CUDA each rank uses GPU ``LOCAL_RANK`` and NCCL (also when a device index was given:
    under ``torchrun`` the index is the launcher's, not the user's); on CPU gloo.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        This process's rank, world size and device.
    """
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    backend = ""
    owns = False
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            owns = True
        backend = str(dist.get_backend())
    elif dist.is_available() and dist.is_initialized():
        backend = str(dist.get_backend())
    rank = dist.get_rank() if backend else 0
    world = dist.get_world_size() if backend else 1
    return DistInfo(rank, world, local_rank, backend, dev, owns)


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sums ``tensor`` over ranks in place (no-op on one process) and returns it."""
    if info.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(info: DistInfo) -> None:
    """Waits for every rank (no-op on one process)."""
    if info.world_size > 1:
        dist.barrier()


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. an error message decided on rank 0)."""
    if info.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(info: DistInfo) -> None:
    """Leaves the process group if ``init_distributed`` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the current process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_precision(precision: str, device: torch.device) -> None:
    """Raises a one-line error for an unknown precision or fp16 without CUDA."""
    if precision not in PRECISIONS:
        raise RobustSegError(f"precision must be fp32, fp16 or bf16, not {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise RobustSegError("fp16 autocast needs a GPU; use bf16 or fp32 on CPU")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``fp16`` / ``bf16``, nothing for ``fp32``."""
    check_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def config_hash(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of ``config`` as sorted JSON (what resume compares)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def default_workers() -> int:
    """DataLoader workers when none are asked for: ``min(4, cores)``."""
    return min(4, os.cpu_count() or 1)


def worker_init(_: int = 0) -> None:
    """Start of every loader worker: one OpenCV and one torch thread (the workers are many), and
    an end with its parent."""
    from robustbench_seg.procs import pool_worker_init

    pool_worker_init()
    torch.set_num_threads(1)


def data_loader(
    dataset: torch.utils.data.Dataset,
    *,
    workers: int | None,
    collate_fn: Callable[[list], Any] | None = None,
    prefetch_factor: int = 2,
    **kwargs: Any,
) -> torch.utils.data.DataLoader:
    """A DataLoader with the shared worker set-up.

    Args:
        dataset: The dataset.
        workers: Worker processes (``None``: :func:`default_workers`; 0: in this process).
        collate_fn: Batch collation (default: torch's).
        prefetch_factor: Batches each worker loads ahead.
        **kwargs: More DataLoader arguments (``batch_size``, ``batch_sampler``, ...).

    Raises:
        RobustSegError: A negative worker count.
    """
    n = check_workers(workers, default_workers())
    if n > 0:
        kwargs.update(
            prefetch_factor=prefetch_factor,
            worker_init_fn=worker_init,
            multiprocessing_context=worker_start_method(),
        )
    return torch.utils.data.DataLoader(
        dataset, num_workers=n, collate_fn=collate_fn, persistent_workers=False, **kwargs
    )
