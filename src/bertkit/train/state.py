"""The state of a training run, which saves itself as a checkpoint and loads itself back.

:class:`RunState` holds what a run needs to continue exactly: the model, the optimizer, the LR
scheduler, the fp16 gradient scaler, the loop's counters (:class:`~bertkit.train.loop.LoopState`),
the data cursor (:class:`Cursor`, with the fingerprint of the data it points into) and, in the
checkpoint, every rank's RNG states. Pre-training, fine-tuning and distillation save and resume
through it, so a checkpoint's layout is written in one place (:meth:`RunState.state_dict`) and
read in one place (:meth:`RunState.load_state_dict`).

The checkpoint dict keeps the keys bertkit has always written (``model``, ``optimizer``,
``scheduler``, ``scaler``, ``loop``, ``rng``, ``cursor``; ``extra`` when a kind of run has
state of its own), so earlier checkpoints resume and export
as before. Only tensors and plain values: :func:`~bertkit.train.checkpoint.load_checkpoint` reads
it with ``torch.load(weights_only=True)``; :func:`~bertkit.train.checkpoint.save_checkpoint`
writes it atomically with the model's own ``config.json`` and ``architectures``, so a checkpoint
is not tied to one architecture.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertkit.train import checkpoint as C
from bertkit.train.distributed import DistEnv, full_state_dicts, load_optimizer_state
from bertkit.train.loop import LoopState

logger = logging.getLogger(__name__)

__all__ = ["Cursor", "RunState", "seed_all"]


@dataclass
class Cursor:
    """Position in the data: epoch, and global batches consumed within it."""

    epoch: int = 0
    batch: int = 0


def seed_all(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class RunState:
    """Everything a checkpoint carries; ``model`` is the unwrapped model (plain or FSDP-sharded,
    never the DDP or compiled wrapper)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None = None
    loop: LoopState = field(default_factory=LoopState)
    cursor: Cursor = field(default_factory=Cursor)
    data: str = ""
    """Fingerprint of the data ``cursor`` points into (a cursor into other data is not used)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """A kind of run's own state (tensors and plain values), saved under ``extra`` when not
    empty: e.g. fine-tuning's epoch records, best score and best weights."""

    def state_dict(self, env: DistEnv) -> dict[str, Any] | None:
        """The checkpoint dict on rank 0, None on the others. Collective under torchrun: every
        rank calls it (RNG states are gathered, FSDP shards assembled)."""
        rngs: list[Any] = [C.capture_rng()]
        if env.distributed:
            import torch.distributed as dist

            rngs = [None] * env.world_size
            dist.all_gather_object(rngs, C.capture_rng())
        model_sd, opt_sd = full_state_dicts(self.model, self.optimizer)
        if not env.is_main:
            return None
        return {"model": model_sd, "optimizer": opt_sd,
                "scheduler": {k: v for k, v in self.scheduler.state_dict().items()
                              if k != "lr_lambdas"},
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "loop": dataclasses.asdict(self.loop), "rng": rngs,
                "cursor": {"epoch": self.cursor.epoch, "batch": self.cursor.batch,
                           "data": self.data},
                **({"extra": self.extra} if self.extra else {})}

    def save(self, run: str | os.PathLike[str], env: DistEnv, keep_last: int) -> Path | None:
        """Write ``RUN/checkpoint-STEP`` (rank 0; collective, see :meth:`state_dict`)."""
        ck = self.state_dict(env)
        if ck is None:
            return None
        return C.save_checkpoint(run, self.loop.step, ck, self.model.config, keep_last,
                                 architectures=[self.model.hf_architecture])

    def load_state_dict(self, ck: dict[str, Any], env: DistEnv, lr: float, seed: int) -> None:
        """Continue from checkpoint dict ``ck`` (its ``model`` weights are loaded by the caller,
        before sharding): optimizer, schedule, scaler, counters, cursor, :attr:`extra` and RNG.

        The schedule's shape comes from the caller's scheduler (this run's flags: a phase 2 may
        extend it) at the checkpoint's step, with peak ``lr``. A cursor into other data than
        :attr:`data` is dropped (the run starts at that data's beginning). RNG states from
        another number of ranks are replaced by a seed derived from ``seed`` and the step.
        """
        load_optimizer_state(self.model, self.optimizer, ck["optimizer"])
        sched = self.scheduler
        sched.load_state_dict({**ck["scheduler"], "lr_lambdas": [None]})
        sched.base_lrs = [lr for _ in self.optimizer.param_groups]
        for g, base in zip(self.optimizer.param_groups, sched.base_lrs, strict=True):
            g["lr"] = base * sched.lr_lambdas[0](sched.last_epoch)
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.loop = LoopState(**ck["loop"])
        self.extra = ck.get("extra", {})
        if ck["cursor"]["data"] == self.data:
            self.cursor = Cursor(ck["cursor"]["epoch"], ck["cursor"]["batch"])
        else:
            logger.info("--data differs from the checkpoint's data: starting at its beginning")
        rngs = ck["rng"]
        if len(rngs) != env.world_size:
            logger.warning("checkpoint from %d ranks, now %d: data order kept, RNG re-seeded",
                           len(rngs), env.world_size)
            seed_all(seed + 7919 * self.loop.step + env.rank)
        else:
            C.restore_rng(rngs[env.rank])
