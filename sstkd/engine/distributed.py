"""Distributed helpers: torchrun initialisation, rank queries, reductions, SyncBN.

Everything is a no-op in a single process started without ``torchrun`` (``WORLD_SIZE`` unset
or 1): no process group is created and no environment variable is needed.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    """``True`` when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """Global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """``LOCAL_RANK`` set by torchrun (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """``True`` on rank 0 (and in a single process): the one that logs and writes files."""
    return rank() == 0


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> torch.device:
    """Initialise the process group from torchrun's environment when ``WORLD_SIZE > 1``.

    Args:
        backend: ``None`` picks ``nccl`` with CUDA and ``gloo`` otherwise.
        timeout_s: collective timeout.

    Returns:
        the device this process should use: ``cuda:LOCAL_RANK`` (made current) when CUDA is
        available, else ``cpu``.

    Raises:
        ValueError: ``WORLD_SIZE > 1`` but ``RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT`` missing.
    """
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank()}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"init_distributed: WORLD_SIZE={ws} but {missing} are not set; start "
                         "with torchrun (e.g. torchrun --nproc_per_node=2 -m sstkd.train ...)")
    backend = backend or ("nccl" if use_cuda else "gloo")
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                            device_id=device if use_cuda else None)
    return device


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a copy; the input itself is returned in one process)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out)
    return out / world_size()


def cleanup() -> None:
    """Destroy the process group if one was created."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """Replace BatchNorm layers by ``SyncBatchNorm`` when distributed; unchanged otherwise."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model) if is_distributed() else model
