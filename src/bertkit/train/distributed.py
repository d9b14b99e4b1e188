"""torch.distributed glue: torchrun detection, DDP or FSDP2 wrapping, full state dicts, sums.

Launch (one machine, N processes)::

    torchrun --nproc-per-node N -m bertkit.train.pretrain --data DIR --out RUN ...

Several machines: the same command on each with ``--nnodes M --node-rank R
--rdzv-backend c10d --rdzv-endpoint HOST:PORT`` (HOST = any node all can reach); see
``docs/distributed.md``. Each rank reads its own part of the data
(``PretrainingDataset(rank=, world_size=)``); rank 0 alone logs, writes metrics and checkpoints.
The backend is gloo on CPU and nccl on CUDA.

Data parallel is DDP (:func:`wrap_model`, every rank holds the whole model), or FSDP2
(:func:`shard_model`, parameters, gradients and optimizer state sharded over the ranks) for a model
that does not fit one device. Either way a checkpoint holds the full, unsharded state dicts of a
single process (:func:`full_state_dicts`, :func:`load_optimizer_state`), so a run resumes under
another world size or mode and exports unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["SINGLE", "DistEnv", "all_reduce_max", "all_reduce_sum", "full_state_dicts",
           "init_distributed", "is_sharded", "load_optimizer_state", "main_first", "no_sync",
           "shard_model", "shutdown", "wrap_model"]


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


def shutdown(env: DistEnv, clean: bool = True) -> None:
    """Leave the process group. After a ``clean`` run the ranks first meet at a barrier, so that
    none closes its connections while rank 0 is still writing the last checkpoint; after an error
    they do not, since the others may never arrive."""
    if env.distributed and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, env: DistEnv) -> nn.Module:
    """DDP around ``model`` when distributed, else ``model`` itself."""
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def shard_model(model: nn.Module, env: DistEnv, layers: Iterable[nn.Module]) -> nn.Module:
    """FSDP2 ``fully_shard`` on each of ``layers``, then on ``model`` (the rest: embeddings, heads).

    In place: ``model`` keeps its class, attributes and parameter names, its parameters become
    DTensors sharded along dim 0 over all ranks and are moved to ``env.device`` (so build it on the
    CPU). Each layer's full weights are gathered just for its forward and backward, and gradients
    are reduce-scattered (averaged) at the end of backward. Build the optimizer after this call.
    Weights tied across units (the MLM decoder = word embeddings) must live in the same unit: here
    both are in the root.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if not env.distributed:
        raise ValueError("FSDP needs several processes: launch with torchrun --nproc-per-node N")
    # FSDP2 warns once per rank that the root returns a view tensor (an in-place op on it would
    # skip the pre-backward all-gather); the loss functions here never modify outputs in place.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(env.device.type, (env.world_size,))
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    logger.info("FSDP: parameters sharded over %d ranks (%s)", env.world_size, env.device.type)
    return model


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` (or the module that ``torch.compile`` wraps) is an FSDP2 module."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(getattr(model, "_orig_mod", model), FSDPModule)


@contextlib.contextmanager
def _fsdp_no_sync(model: Any) -> Iterator[None]:
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def no_sync(model: nn.Module, skip: bool) -> contextlib.AbstractContextManager[None]:
    """No gradient sync on accumulation micro-steps when ``skip``.

    DDP: ``no_sync()`` (no all-reduce); FSDP2: ``set_requires_gradient_sync(False)`` (unsharded
    gradients accumulate locally; the last micro-step reduce-scatters their sum).
    """
    if not skip:
        return contextlib.nullcontext()
    inner = getattr(model, "_orig_mod", model)  # under torch.compile
    if is_sharded(inner):
        return _fsdp_no_sync(inner)
    if hasattr(inner, "no_sync"):
        return inner.no_sync()  # type: ignore[operator, no-any-return]
    return contextlib.nullcontext()


def _state_dict_options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _param_fqns(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimizer's order (its state-dict ids 0, 1, ...)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's and optimizer's full state dicts, as one process's ``state_dict()`` gives them.

    Unsharded model: ``model.state_dict()``, ``optimizer.state_dict()``. FSDP2: a collective
    (every rank calls it); the full tensors are gathered onto rank 0's CPU and the optimizer's
    parameter names turned back into the ids 0, 1, ... of a single process; other ranks get
    ``({}, {})``.
    """
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = _state_dict_options()
    model_sd = get_model_state_dict(model, options=opts)
    if not optimizer.state:  # no step yet; DCP would create the state by a zero-gradient step
        return model_sd, (optimizer.state_dict() if dist.get_rank() == 0 else {})
    osd = get_optimizer_state_dict(model, optimizer, options=opts)
    if not osd:
        return model_sd, {}
    ids = {fqn: i for i, fqn in enumerate(_param_fqns(model, optimizer))}
    return model_sd, {"state": {ids[k]: v for k, v in osd["state"].items()},
                      "param_groups": [{**g, "params": [ids[k] for k in g["params"]]}
                                       for g in osd["param_groups"]]}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                         state: dict[str, Any]) -> None:
    """Load a full (single-process) optimizer state dict, sharding it when ``model`` is FSDP2.

    Every rank passes the whole ``state`` (e.g. each loads the checkpoint); each keeps its shard.
    """
    if not is_sharded(model) or not state["state"]:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    fqns = _param_fqns(model, optimizer)
    n = sum(len(g["params"]) for g in state["param_groups"])
    if n != len(fqns):
        raise ValueError(f"optimizer state has {n} parameters, the model {len(fqns)}")
    by_name = {"state": {fqns[i]: v for i, v in state["state"].items()},
               "param_groups": [{**g, "params": [fqns[i] for i in g["params"]]}
                                for g in state["param_groups"]]}
    # every rank holds the full dict and keeps its own shard of it: no broadcast
    set_optimizer_state_dict(model, optimizer, by_name,
                             options=StateDictOptions(full_state_dict=True))


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
