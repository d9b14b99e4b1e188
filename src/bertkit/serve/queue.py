"""One model, many requests: a FIFO queue that a single worker thread drains into batches.

Request threads tokenize and post-process; they hand their unpadded inputs
(:class:`~bertkit.inference.batcher.Encoded`) to :meth:`BatchQueue.submit` and wait on a future.
The worker takes the oldest request and as many following ones as fit ``max_batch_tokens`` (their
unpadded tokens), runs them all through :func:`~bertkit.inference.batcher.run_features` (which
sorts by length and pads each batch to its own longest input within the budget) and hands each
request its own rows, in its own order. A request whose outputs are not finite fails alone: the
group is rerun request by request.

>>> q = BatchQueue(backend, pad_id=0)            # doctest: +SKIP
>>> rows = q.run([Encoded([101, 7592, 102])])    # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from torch import Tensor

from bertkit.errors import BertkitError
from bertkit.inference.batcher import Encoded, NonFiniteOutputError, run_features
from bertkit.serve.metrics import Metrics

logger = logging.getLogger(__name__)

__all__ = ["BatchQueue", "QueueClosedError", "length_groups"]

Rows = list[dict[str, Tensor]]


def length_groups(lengths: Sequence[int], min_fill: float = 0.5) -> list[list[int]]:
    """Indices grouped by length, longest first: a group closes when an input is shorter than
    ``min_fill`` x its group's longest, so padding at most doubles a group's tokens at 0.5
    (0: one group).

    >>> length_groups([10, 3, 9, 5, 2])
    [[0, 2, 3], [1, 4]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] >= min_fill * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class QueueClosedError(BertkitError, RuntimeError):
    """The queue is shutting down and takes no new requests."""


@dataclass
class _Job:
    items: Sequence[Encoded]
    future: Future = field(default_factory=Future)

    @property
    def tokens(self) -> int:
        return sum(len(it) * (len(it.input_ids) if it.choices else 1) for it in self.items)


def _heap_trimmer() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)``: hand the heap's free pages back to the OS (a no-op where the
    C library has no such call). Batches of ever-changing shapes leave freed tensor memory in
    malloc's arenas, which a server under sustained load otherwise keeps as resident memory."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


TRIM_EVERY_S = 1.0  # at most one malloc_trim per second of batching (each costs ~1 ms)


class BatchQueue:
    """A single worker thread running every request's inputs through ``backend`` in batches of
    at most ``max_batch_tokens`` padded tokens (an input longer than that runs alone), inputs
    shorter than ``min_fill`` x a batch's longest in a later batch (on a CPU, padding costs as
    much as real tokens)."""

    def __init__(self, backend: Callable[[dict[str, Tensor]], dict[str, Tensor]], pad_id: int,
                 token_types: bool = True, max_batch_tokens: int = 16384,
                 metrics: Metrics | None = None, min_fill: float = 0.5,
                 model_batch_tokens: int | None = None) -> None:
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        self.backend, self.pad_id, self.token_types = backend, pad_id, token_types
        self.max_batch_tokens, self.min_fill = max_batch_tokens, min_fill
        # a round's requests, sorted by length, run in forward passes of this many padded tokens
        self.model_batch_tokens = min(model_batch_tokens or max_batch_tokens, max_batch_tokens)
        self.metrics = metrics or Metrics()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._loop, name="bertkit-batcher", daemon=True)
        self._worker.start()

    # -- request side ----------------------------------------------------------------------

    def submit(self, items: Sequence[Encoded]) -> Future:
        """A future of ``items``' output rows (``{name: tensor}`` each, in ``items``' order)."""
        job = _Job(list(items))
        if not job.items:
            job.future.set_result([])
            return job.future
        with self._lock:
            if self._closed:
                raise QueueClosedError("the server is shutting down")
            self._jobs.put(job)
            self.metrics.set_queue_depth(self._jobs.qsize())
        return job.future

    def run(self, items: Sequence[Encoded]) -> Rows:
        """:meth:`submit` and wait: the drop-in for a pipeline's ``run``."""
        return self.submit(items).result()

    def close(self, timeout: float | None = None) -> None:
        """Take no new requests, finish the queued ones, stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        self._worker.join(timeout)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def depth(self) -> int:
        """Requests waiting for the worker."""
        return self._jobs.qsize()

    # -- worker side -----------------------------------------------------------------------

    def _next(self, block: bool) -> _Job | None:
        """The job held back last time, else the oldest queued one (None: queue empty, or the
        shutdown mark, which sets ``_stopping``)."""
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        try:
            got = self._jobs.get(block=block)
        except queue.Empty:
            return None
        if got is None:
            self._stopping = True
        return got

    def _take(self) -> list[_Job]:
        """The oldest job and the following ones that fit the token budget together (the first
        that does not fit is held back for the next group)."""
        first = self._next(block=True)
        if first is None:
            return []
        group, tokens = [first], first.tokens
        while (nxt := self._next(block=False)) is not None:
            if tokens + nxt.tokens > self.max_batch_tokens:
                self._carry = nxt
                break
            group.append(nxt)
            tokens += nxt.tokens
        return group

    def _loop(self) -> None:
        self._carry: _Job | None = None
        self._stopping = False
        trim, last_trim = _heap_trimmer(), time.monotonic()
        while not (self._stopping and self._carry is None and self._jobs.empty()):
            group = self._take()
            self.metrics.set_queue_depth(self._jobs.qsize())
            if group:
                self._serve(group)
            if time.monotonic() - last_trim >= TRIM_EVERY_S:
                trim()
                last_trim = time.monotonic()

    def _forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["attention_mask"]
        self.metrics.batch(mask.shape[0], mask.numel(), int(mask.sum()))
        return self.backend(batch)

    def _run(self, items: Sequence[Encoded]) -> Rows:
        """Rows of ``items`` in order; inputs of similar length run together (see
        :func:`length_groups`) so that short inputs are not padded to a long one's length."""
        rows: list[dict[str, Tensor] | None] = [None] * len(items)
        for group in length_groups([len(it) for it in items], self.min_fill):
            out = run_features(self._forward, [items[i] for i in group], self.pad_id,
                               self.model_batch_tokens, token_types=self.token_types)
            for i, r in zip(group, out, strict=True):
                rows[i] = r
        return [r for r in rows if r is not None]

    def _serve(self, group: list[_Job]) -> None:
        """Run a group's inputs together; each job gets its own rows or its own error."""
        items = [it for job in group for it in job.items]
        try:
            rows = self._run(items)
        except NonFiniteOutputError:
            if len(group) > 1:
                for job in group:
                    self._serve([job])
                return
            group[0].future.set_exception(NonFiniteOutputError(
                "the model's outputs are not finite (NaN or inf) for this request"))
            return
        except Exception as e:  # noqa: BLE001 - handed to the waiting request, never lost
            logger.exception("batch of %d request(s) failed", len(group))
            for job in group:
                job.future.set_exception(e)
            return
        start = 0
        for job in group:
            job.future.set_result(rows[start:start + len(job.items)])
            start += len(job.items)
