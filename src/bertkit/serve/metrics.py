"""Prometheus text metrics of the server, kept without any client library.

Counters of requests by endpoint and status, the queue's depth, histograms of batch sizes (inputs
and padded tokens) and of request latency, and the tokens run through the model (``tokens/s`` is
``rate(bertkit_tokens_total[1m])``; ``/metrics`` also gives the rate since start).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence

__all__ = ["Histogram", "Metrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768)


class Histogram:
    """Cumulative buckets, a sum and a count, as Prometheus histograms."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help, self.buckets = name, help_text, tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        out += [f'{self.name}_bucket{{le="{b:g}"}} {c}'
                for b, c in zip(self.buckets, self.counts, strict=True)]
        out += [f'{self.name}_bucket{{le="+Inf"}} {self.count}',
                f"{self.name}_sum {self.sum:.6f}", f"{self.name}_count {self.count}"]
        return out


class Metrics:
    """Everything ``/metrics`` reports; thread-safe (the worker and the request threads write)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.queue_depth = 0
        self.in_flight = 0
        self.tokens = 0
        self.batches = 0
        self.batch_inputs = Histogram("bertkit_batch_inputs", "inputs per model batch",
                                      SIZE_BUCKETS)
        self.batch_tokens = Histogram("bertkit_batch_tokens", "padded tokens (B x T) per model "
                                      "batch", TOKEN_BUCKETS)
        self.latency = Histogram("bertkit_request_duration_seconds", "request latency",
                                 LATENCY_BUCKETS)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.latency.observe(seconds)

    def batch(self, inputs: int, padded_tokens: int, tokens: int) -> None:
        with self._lock:
            self.batches += 1
            self.tokens += tokens
            self.batch_inputs.observe(inputs)
            self.batch_tokens.observe(padded_tokens)

    def set_queue_depth(self, depth: int) -> None:
        with self._lock:
            self.queue_depth = depth

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            up = max(time.monotonic() - self.started, 1e-9)
            lines = ["# HELP bertkit_requests_total requests by endpoint and status",
                     "# TYPE bertkit_requests_total counter"]
            lines += [f'bertkit_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            lines += ["# HELP bertkit_queue_depth requests waiting for the model",
                      "# TYPE bertkit_queue_depth gauge", f"bertkit_queue_depth {self.queue_depth}",
                      "# HELP bertkit_in_flight_requests requests being served",
                      "# TYPE bertkit_in_flight_requests gauge",
                      f"bertkit_in_flight_requests {self.in_flight}",
                      "# HELP bertkit_tokens_total tokens run through the model",
                      "# TYPE bertkit_tokens_total counter", f"bertkit_tokens_total {self.tokens}",
                      "# HELP bertkit_tokens_per_second tokens run through the model per second "
                      "since start", "# TYPE bertkit_tokens_per_second gauge",
                      f"bertkit_tokens_per_second {self.tokens / up:.3f}",
                      "# HELP bertkit_batches_total model batches run",
                      "# TYPE bertkit_batches_total counter",
                      f"bertkit_batches_total {self.batches}"]
            for h in (self.batch_inputs, self.batch_tokens, self.latency):
                lines += h.lines()
        return "\n".join(lines) + "\n"
