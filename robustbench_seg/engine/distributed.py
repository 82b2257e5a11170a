"""``torchrun`` process-group helpers for training (PyTorch DDP; NCCL on GPUs, gloo on CPUs)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from robustbench_seg.errors import RobustSegError

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "init_distributed",
    "resolve_device",
    "shutdown",
]


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

    On CUDA each rank uses GPU ``LOCAL_RANK`` and NCCL; on CPU gloo.

    Args:
        device: ``auto``, ``cpu`` or ``cuda``.

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
