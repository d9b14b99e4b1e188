"""One plain training loop with explicit steps, shared by pre-training, fine-tuning and distillation.

A *step* is one optimizer update over ``micro_batches`` (gradient accumulation), on every rank:

1. ``counts = sum(count_fn(mb))`` over the micro-batches and the ranks (e.g. masked tokens), so a
   loss can be normalised by the whole global batch, not per micro-batch;
2. per micro-batch: forward under autocast, ``loss_fn(model, mb, counts)`` returns this
   micro-batch's *share* of the step's loss (shares summed over micro-batches and ranks give the
   loss of the global batch), backward of ``share * world_size`` (DDP averages gradients), with
   DDP's gradient all-reduce skipped on all but the last micro-batch;
3. the shares are summed across ranks (the logged losses are global); gradients are clipped at
   their global norm; a non-finite loss or gradient norm skips the update (counted; after
   ``max_nonfinite_in_row`` in a row :class:`NonFiniteLossError` stops the run); otherwise the
   optimizer and the LR scheduler step.

:func:`train_steps` yields a :class:`StepResult` after every step; the caller's ``for`` loop does
evaluation, logging and checkpointing: no callbacks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from bertkit.errors import BertkitError
from bertkit.train.distributed import SINGLE, DistEnv, all_reduce_sum, no_sync

__all__ = ["CountFn", "LoopSettings", "LoopState", "LossFn", "NonFiniteLossError", "StepResult",
           "autocast", "to_device", "train_step", "train_steps"]

Batch = dict[str, Tensor]
LossFn = Callable[[nn.Module, Batch, dict[str, Tensor]], dict[str, Tensor]]
"""(model, micro_batch, global counts) -> {"loss": share to backward, other metric shares...}."""
CountFn = Callable[[Batch], dict[str, Tensor]]
"""micro_batch -> counts to sum over the global batch (e.g. {"masked": w.sum(), "seqs": B})."""


class NonFiniteLossError(BertkitError, RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient norm."""


@dataclass
class LoopSettings:
    """How a step is taken."""

    max_grad_norm: float | None = 1.0
    autocast_dtype: torch.dtype | None = None  # torch.bfloat16 / torch.float16, None = fp32
    max_nonfinite_in_row: int = 10


@dataclass
class LoopState:
    """Counters that a checkpoint carries (``asdict`` / ``LoopState(**d)``)."""

    step: int = 0                # optimizer updates taken
    batches: int = 0             # global batches consumed (taken or skipped)
    nonfinite_total: int = 0
    nonfinite_in_row: int = 0


@dataclass
class StepResult:
    """What one step did: global metrics (losses), lr used, grad norm, counts, skipped or not."""

    step: int
    metrics: dict[str, float]
    lr: float
    grad_norm: float
    counts: dict[str, float] = field(default_factory=dict)
    skipped: bool = False


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype``, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _sum_dicts(dicts: Iterable[dict[str, Tensor]], env: DistEnv) -> dict[str, Tensor]:
    """Key-wise sum over ``dicts`` and over ranks (one all-reduce)."""
    dicts = list(dicts)
    keys = sorted(dicts[0])
    flat = torch.stack([torch.stack([d[k].detach().double().reshape(()).cpu() for k in keys])
                        for d in dicts]).sum(0)
    if env.distributed:
        flat = all_reduce_sum(flat.to(env.device), env).cpu()
    return dict(zip(keys, flat.unbind(0), strict=True))


def train_step(model: nn.Module, micro_batches: list[Batch], optimizer: torch.optim.Optimizer,
               scheduler: Any, loss_fn: LossFn, count_fn: CountFn, state: LoopState,
               settings: LoopSettings, env: DistEnv = SINGLE,
               scaler: torch.amp.GradScaler | None = None) -> StepResult:
    """One optimizer update over ``micro_batches`` (see the module docstring); updates ``state``."""
    optimizer.zero_grad(set_to_none=True)
    batches = [to_device(mb, env.device) for mb in micro_batches]
    counts = _sum_dicts((count_fn(mb) for mb in batches), env)
    counts_dev = {k: v.to(env.device, torch.float32) for k, v in counts.items()}
    lr = float(optimizer.param_groups[0]["lr"])
    shares = []
    for i, mb in enumerate(batches):
        with no_sync(model, i < len(batches) - 1):
            with autocast(env.device, settings.autocast_dtype):
                out = loss_fn(model, mb, counts_dev)
            loss = out["loss"] * env.world_size
            (scaler.scale(loss) if scaler is not None else loss).backward()
        shares.append({k: v.detach() for k, v in out.items()})
    metrics = {k: float(v) for k, v in _sum_dicts(shares, env).items()}
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if scaler is not None:
        scaler.unscale_(optimizer)
    max_norm = settings.max_grad_norm if settings.max_grad_norm is not None else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True))
    state.batches += 1
    finite = math.isfinite(metrics["loss"])
    if scaler is not None:  # the scaler skips steps with inf/nan gradients and lowers its scale
        scale = scaler.get_scale()
        if finite:
            scaler.step(optimizer)
        scaler.update()
        taken = finite and scaler.get_scale() >= scale
    else:
        finite = finite and math.isfinite(grad_norm)
        if finite:
            optimizer.step()
        taken = finite
    if taken:
        scheduler.step()
        state.step += 1
    optimizer.zero_grad(set_to_none=True)
    if finite:
        state.nonfinite_in_row = 0
    else:
        state.nonfinite_total += 1
        state.nonfinite_in_row += 1
        if state.nonfinite_in_row >= settings.max_nonfinite_in_row:
            raise NonFiniteLossError(
                f"{state.nonfinite_in_row} steps in a row had a non-finite loss or gradient norm "
                f"(at step {state.step}, {state.nonfinite_total} in all); stopping. Lower the "
                "learning rate, use fp32 or bf16 instead of fp16, or check the data")
    return StepResult(step=state.step, metrics=metrics, lr=lr, grad_norm=grad_norm,
                      counts={k: float(v) for k, v in counts.items()}, skipped=not taken)


def train_steps(model: nn.Module, batches: Iterable[list[Batch]],
                optimizer: torch.optim.Optimizer, scheduler: Any, loss_fn: LossFn,
                count_fn: CountFn, max_steps: int, state: LoopState | None = None,
                settings: LoopSettings | None = None, env: DistEnv = SINGLE,
                scaler: torch.amp.GradScaler | None = None) -> Iterator[StepResult]:
    """Take steps until ``state.step == max_steps`` or ``batches`` ends; yield after each.

    Each item of ``batches`` is the list of this rank's micro-batches of one global batch.
    """
    state = state if state is not None else LoopState()
    settings = settings or LoopSettings()
    model.train()
    it = iter(batches)
    while state.step < max_steps:  # check before pulling, so no batch is consumed in vain
        micro_batches = next(it, None)
        if micro_batches is None:
            return
        yield train_step(model, micro_batches, optimizer, scheduler, loss_fn, count_fn, state,
                         settings, env, scaler)
