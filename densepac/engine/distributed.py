"""Thin helpers over ``torch.distributed`` for runs launched with ``torchrun``.

Nothing is cached here: every helper asks ``torch.distributed`` for the current process
group, so the same code runs unchanged in one process (all helpers become no-ops).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from densepac.errors import InputError

__all__ = [
    "DistInfo",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "rank",
    "world_size",
    "barrier",
    "all_reduce_sum",
    "all_gather_object",
    "cleanup",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, number of processes, rank on this host, device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(
            f"environment variable {name}={value!r} is not an integer; unset it or launch with torchrun"
        ) from None


def init_distributed(device: str | torch.device = "cpu") -> DistInfo:
    """Join the process group described by torchrun's env vars, or do nothing.

    ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` come from torchrun; without them (or with
    ``WORLD_SIZE=1``) this is a single-process run. The backend is nccl for ``device``
    "cuda" (each process then uses GPU ``LOCAL_RANK``) and gloo otherwise. Calling it
    again, or after the caller set up the group itself, just reports the current group.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {str(device)!r} requested but CUDA is not available; use device='cpu'")
    local_rank = _env_int("LOCAL_RANK", 0)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))

    if is_distributed():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev)

    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return DistInfo(0, 1, 0, dev)
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run a single process")
    if dev.type == "cuda":
        # nccl binds each process to one GPU before the group forms.
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    # env:// reads MASTER_ADDR / MASTER_PORT / RANK / WORLD_SIZE set by torchrun.
    dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank (0 in a single process)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 in a single process)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 and in a single process: the one that writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it (unchanged in a single process).

    The tensor may live on any device: it is moved to the device the backend works on
    (CUDA for nccl, CPU for gloo) for the collective and copied back.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return tensor
    if dist.get_backend() == "nccl":
        comm_device = torch.device("cuda", torch.cuda.current_device())
    else:
        comm_device = torch.device("cpu")
    if tensor.device == comm_device:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor
    buf = tensor.to(comm_device)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    tensor.copy_(buf)
    return tensor


def all_gather_object(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process).

    Goes through pickle between the ranks of one job, never through a file.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup() -> None:
    """Leave the process group if one is open; safe to call more than once."""
    if is_distributed():
        dist.destroy_process_group()
