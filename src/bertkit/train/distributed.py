"""torch.distributed glue: torchrun detection, DDP wrapping, sums across ranks.

Launch (one machine, N processes)::

    torchrun --nproc-per-node N -m bertkit.cli pretrain --data DIR --out RUN ...

Several machines: the same command on each with ``--nnodes M --node-rank R
--rdzv-backend c10d --rdzv-endpoint HOST:PORT`` (HOST = any node all can reach). Each rank reads
its own part of the data (``PretrainingDataset(rank=, world_size=)``); rank 0 alone logs, writes
metrics and checkpoints. The backend is gloo on CPU and nccl on CUDA.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["SINGLE", "DistEnv", "all_reduce_sum", "init_distributed", "no_sync", "shutdown", "wrap_model"]


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: rank among world_size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistEnv()
"""One process on the CPU."""


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), else one process.

    ``device``: "auto" (CUDA when available), "cpu" or "cuda". Under torchrun each rank takes
    ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend)
        logger.info("rank %d of %d (%s, %s)", rank, world, backend, dev)
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, env: DistEnv) -> nn.Module:
    """DDP around ``model`` when distributed, else ``model`` itself."""
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def no_sync(model: nn.Module, skip: bool) -> contextlib.AbstractContextManager[None]:
    """DDP's ``no_sync`` (no gradient all-reduce on accumulation micro-steps) when ``skip``."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()  # type: ignore[operator, no-any-return]
    return contextlib.nullcontext()


def all_reduce_sum(t: Tensor, env: DistEnv) -> Tensor:
    """Sum of ``t`` over ranks (in place; ``t`` itself when not distributed)."""
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: Tensor, env: DistEnv) -> Tensor:
    """Maximum of ``t`` over ranks (in place)."""
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


@contextlib.contextmanager
def main_first(env: DistEnv) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. to create files), the others after a barrier."""
    if env.distributed and not env.is_main:
        dist.barrier()
    yield
    if env.distributed and env.is_main:
        dist.barrier()
