"""Optimizers and learning-rate schedules of BERT pre-training.

* :class:`AdamW`: decoupled weight decay. ``bias_correction=True`` is ``torch.optim.AdamW``;
  ``bias_correction=False`` is Google's ``AdamWeightDecayOptimizer`` (``optimization.py``):
  ``p -= lr * (m / (sqrt(v) + eps) + wd * p)`` with raw (uncorrected) moments.
* :class:`Lamb`: You et al. 2019, layer-wise trust ratio ``||p|| / ||update||`` on the AdamW update.
* :func:`param_groups`: weight decay on every weight except LayerNorm parameters and biases.
* :class:`WarmupDecay`: Google's schedule, a multiplier for ``LambdaLR``: linear warmup from 0 over
  ``warmup_steps``, otherwise ``(1 - step / total_steps) ** power`` (power 1: linear to 0).
* :func:`uncorrected_peak`: how much larger than ``lr`` the early steps of Google's variant are
  under a given warmup (its raw moments make ``m / sqrt(v)`` up to 6.5x the corrected ratio).

Both optimizers update all parameters of a group with ``torch._foreach`` ops (one kernel per op
for the whole group), which matters on CPU, where per-tensor Python overhead adds up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = ["AdamW", "Lamb", "WarmupDecay", "build_optimizer", "build_scheduler", "param_groups",
           "uncorrected_peak"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: decayed weights, and LayerNorm parameters + biases (no decay), as Google's.

    >>> m = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    >>> [len(g["params"]) for g in param_groups(m, 0.01)]
    [1, 3]
    """
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in no_decay or name.endswith("bias"):
            plain.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": plain, "weight_decay": 0.0}]


class _AdamBase(torch.optim.Optimizer):
    """Shared moment updates of AdamW and LAMB (foreach over a group's parameters)."""

    def __init__(self, params: Iterable[Any], lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float, bias_correction: bool) -> None:
        if lr < 0 or eps < 0 or not all(0.0 <= b < 1.0 for b in betas) or weight_decay < 0:
            raise ValueError(f"bad optimizer settings lr={lr} betas={betas} eps={eps} "
                             f"weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "bias_correction": bias_correction})

    def _moments(self, group: dict[str, Any]
                 ) -> tuple[list[Tensor], list[Tensor], tuple[Tensor, ...], float]:
        """Update m, v of every parameter with a gradient.

        Returns ``(params, m, denom, c)``: the Adam update is ``c * m / denom`` with
        ``denom = sqrt(v) / sqrt(1 - b2^t) + eps`` and ``c = 1 / (1 - b1^t)`` under bias
        correction, else ``denom = sqrt(v) + eps`` and ``c = 1`` (Google's).
        """
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return [], [], (), 1.0
        grads = [p.grad for p in params]
        b1, b2 = group["betas"]
        ms, vs = [], []
        for p in params:
            st = self.state[p]
            if not st:
                st["step"] = torch.zeros((), dtype=torch.float64)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["step"] += 1
            ms.append(st["exp_avg"])
            vs.append(st["exp_avg_sq"])
        step = float(self.state[params[0]]["step"])
        torch._foreach_lerp_(ms, grads, 1 - b1)                  # m = b1 m + (1 - b1) g
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - b2)  # v = b2 v + (1 - b2) g^2
        denom = torch._foreach_sqrt(vs)
        c = 1.0
        if group["bias_correction"]:
            torch._foreach_div_(denom, math.sqrt(1 - b2 ** step))
            c = 1.0 / (1 - b1 ** step)
        torch._foreach_add_(denom, group["eps"])
        return params, ms, denom, c


class AdamW(_AdamBase):
    """Adam with decoupled weight decay; ``bias_correction=False`` is Google's AdamWeightDecay.

    Defaults are Google's: betas (0.9, 0.999), eps 1e-6, weight decay 0.01, no bias correction.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.01, bias_correction: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, bias_correction)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params, ms, denom, c = self._moments(group)
            if not params:
                continue
            lr, wd = group["lr"], group["weight_decay"]
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)  # == p -= lr * wd * p (old p)
            torch._foreach_addcdiv_(params, ms, denom, value=-lr * c)
        return loss


class Lamb(_AdamBase):
    """LAMB: ``p -= lr * r * u`` with ``u = adam_update + wd * p`` and ``r = ||p|| / ||u||``.

    ``r`` is 1 when either norm is 0 (as in the paper's reference code). Bias correction is on by
    default, as in You et al.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.01, bias_correction: bool = True) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, bias_correction)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params, ms, denom, c = self._moments(group)
            if not params:
                continue
            updates = torch._foreach_div(ms, denom)
            if c != 1.0:
                torch._foreach_mul_(updates, c)
            if group["weight_decay"]:
                torch._foreach_add_(updates, params, alpha=group["weight_decay"])
            w_norms = torch._foreach_norm(params)
            u_norms = torch._foreach_norm(updates)
            for p, u, wn, un in zip(params, updates, w_norms, u_norms, strict=True):
                ratio = torch.where((wn > 0) & (un > 0), wn / un, torch.ones_like(wn))
                p.add_(u * ratio, alpha=-group["lr"])
        return loss


@dataclass
class WarmupDecay:
    """LR multiplier at ``step`` (Google's ``create_optimizer``); pass to ``LambdaLR``.

    ``step / warmup_steps`` while ``step < warmup_steps``, else
    ``max(0, 1 - step / total_steps) ** power`` (``decay="linear"`` is power 1, ``"constant"``
    keeps 1). As in Google's code the decay runs over all ``total_steps``, so the multiplier drops
    from 1 to ``1 - warmup/total`` when warmup ends; ``after_warmup=True`` starts the decay there
    instead, ``(total - step) / (total - warmup)`` as transformers'
    ``get_linear_schedule_with_warmup``.

    >>> f = WarmupDecay(warmup_steps=10, total_steps=100)
    >>> [round(f(s), 3) for s in (0, 5, 10, 50, 100)]
    [0.0, 0.5, 0.9, 0.5, 0.0]
    >>> g = WarmupDecay(warmup_steps=10, total_steps=100, after_warmup=True)
    >>> [round(g(s), 3) for s in (0, 5, 10, 55, 100)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    warmup_steps: int
    total_steps: int
    decay: Literal["linear", "polynomial", "constant"] = "linear"
    power: float = 1.0
    after_warmup: bool = False

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        if self.decay == "constant":
            return 1.0
        power = 1.0 if self.decay == "linear" else self.power
        start = self.warmup_steps if self.after_warmup else 0
        return max(0.0, 1.0 - (step - start) / max(1, self.total_steps - start)) ** power


def uncorrected_peak(warmup_steps: int, betas: tuple[float, float] = (0.9, 0.999)) -> float:
    """Largest ``warmup(t - 1) * (1 - b1^t) / sqrt(1 - b2^t)`` over the updates ``t`` of a run.

    Without bias correction, a steady gradient ``g`` gives the update ``lr * m / sqrt(v)`` with
    ``m = (1 - b1^t) g`` and ``v = (1 - b2^t) g^2``: 3.2x ``lr`` at step 1, 6.5x at step 10, still
    1.26x at step 1000 (with Google's betas). Google's recipe hides this under 10,000 warmup steps;
    a short warmup does not, and a step of several times ``lr`` can stall a small model at the
    unigram solution (``benchmarks/learn_pretrain.py``). Returns the peak multiplier of ``lr``.

    >>> round(uncorrected_peak(10_000), 2), round(uncorrected_peak(100), 2)
    (1.0, 3.23)
    """
    b1, b2 = betas
    horizon = max(warmup_steps, 1) + min(10**6, int(10 / max(1e-12, 1 - b2)))
    peak = 0.0
    for t in range(1, horizon + 1):  # update t runs at WarmupDecay(t - 1), as the scheduler does
        ramp = min(1.0, (t - 1) / warmup_steps) if warmup_steps > 0 else 1.0
        peak = max(peak, ramp * (1 - b1 ** t) / math.sqrt(1 - b2 ** t))
    return peak


def build_optimizer(model: nn.Module, name: Literal["adamw", "lamb"], lr: float,
                    weight_decay: float = 0.01, betas: tuple[float, float] = (0.9, 0.999),
                    eps: float = 1e-6, bias_correction: bool = False) -> torch.optim.Optimizer:
    """AdamW or LAMB over :func:`param_groups` of ``model``."""
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        return AdamW(groups, lr=lr, betas=betas, eps=eps, bias_correction=bias_correction)
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=eps, bias_correction=bias_correction)
    raise ValueError(f"unknown optimizer {name!r}; choose adamw or lamb")


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                    decay: Literal["linear", "polynomial", "constant"] = "linear",
                    power: float = 1.0, after_warmup: bool = False
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with :class:`WarmupDecay` (its state round-trips through ``state_dict``)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupDecay(warmup_steps, total_steps, decay, power, after_warmup))
