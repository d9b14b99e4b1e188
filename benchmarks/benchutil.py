"""Measuring helpers shared by the step benchmarks (``bench_pretrain.py``, ``bench_distill.py``):
one step's peak memory growth and interleaved step timings."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


def peak_step_mb(fn: Callable[[], object]) -> float:
    """Peak RSS growth (MB) while ``fn`` runs (VmHWM after a reset, minus VmRSS before)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return float("nan")
    before = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - before) / 1024


def peak_step_cuda_mb(fn: Callable[[], object]) -> float:
    """Peak CUDA memory growth (MB) while ``fn`` runs."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def peak_step(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """The peak-memory measure for ``device``."""
    return peak_step_cuda_mb if device.type == "cuda" else peak_step_mb


def time_steps(fns: Mapping[str, Callable[[], object]], repeats: int, device: torch.device,
               alternate: bool = True) -> dict[str, list[float]]:
    """Seconds per call of each ``fn``, ``repeats`` rounds of one call each; with ``alternate``
    every other round runs them in reverse order (neither side always goes first)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats):
        order = list(fns.items())
        if alternate and r % 2:
            order.reverse()
        for k, fn in order:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
    return times
