"""The server's batching queue without sockets: own results, order, token budget, shutdown."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from bertkit.inference.batcher import Encoded, NonFiniteOutputError
from bertkit.serve.queue import BatchQueue, QueueClosedError


class EchoBackend:
    """``last_hidden_state`` (B, T, 1) = the input ids; records each batch's (B, T)."""

    input_names = ("input_ids", "attention_mask")

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.gate = gate

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.gate is not None:
            self.gate.wait(10)
        ids = batch["input_ids"]
        self.shapes.append(tuple(ids.shape))
        out = ids.float().unsqueeze(-1)
        out[ids == 666] = float("nan")
        return {"last_hidden_state": out}


def _request(r: int, n: int) -> list[Encoded]:
    """Request ``r``: ``n`` inputs of different lengths whose ids say (request, input)."""
    return [Encoded([1000 * r + i] * (1 + (7 * r + 3 * i) % 40)) for i in range(n)]


def _check(rows, items) -> None:
    assert len(rows) == len(items)
    for row, it in zip(rows, items, strict=True):
        got = row["last_hidden_state"][:len(it), 0].long().tolist()
        assert got == it.input_ids


def test_concurrent_requests_get_their_own_rows_in_order():
    backend = EchoBackend()
    q = BatchQueue(backend, pad_id=0, token_types=False, max_batch_tokens=200)
    requests = [_request(r, 1 + r % 6) for r in range(1, 49)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(q.run, requests))
    q.close()
    for rows, items in zip(results, requests, strict=True):
        _check(rows, items)
    assert sum(b for b, _ in backend.shapes) == sum(len(r) for r in requests)


def test_requests_share_batches_within_the_token_budget():
    gate = threading.Event()
    backend = EchoBackend(gate)
    q = BatchQueue(backend, pad_id=0, token_types=False, max_batch_tokens=120)
    first = q.submit([Encoded([1, 2, 3])])            # holds the worker until the gate opens
    futures = [q.submit(_request(r, 3)) for r in range(1, 21)]
    assert q.depth >= 1
    gate.set()
    first.result(10)
    for r, f in enumerate(futures, 1):
        _check(f.result(10), _request(r, 3))
    q.close()
    assert all(b * t <= 120 or b == 1 for b, t in backend.shapes), backend.shapes
    assert max(b for b, _ in backend.shapes) > 3     # inputs of several requests in one batch
    assert q.metrics.batches == len(backend.shapes)
    assert q.metrics.tokens == 3 + sum(len(it) for r in range(1, 21) for it in _request(r, 3))


def test_an_input_over_the_budget_runs_alone():
    backend = EchoBackend()
    q = BatchQueue(backend, pad_id=0, token_types=False, max_batch_tokens=16)
    _check(q.run([Encoded([5] * 40), Encoded([6] * 3)]), [Encoded([5] * 40), Encoded([6] * 3)])
    q.close()
    assert (1, 40) in backend.shapes


def test_a_non_finite_request_fails_alone():
    gate = threading.Event()
    q = BatchQueue(EchoBackend(gate), pad_id=0, token_types=False)
    hold = q.submit([Encoded([1])])
    good = q.submit([Encoded([7, 8])])
    bad = q.submit([Encoded([666, 9])])
    gate.set()
    hold.result(10)
    _check(good.result(10), [Encoded([7, 8])])
    with pytest.raises(NonFiniteOutputError):
        bad.result(10)
    q.close()


def test_close_finishes_queued_requests_and_refuses_new_ones():
    gate = threading.Event()
    q = BatchQueue(EchoBackend(gate), pad_id=0, token_types=False)
    futures = [q.submit(_request(r, 2)) for r in range(1, 6)]
    closer = threading.Thread(target=q.close)
    closer.start()
    gate.set()
    closer.join(10)
    assert not closer.is_alive()
    for r, f in enumerate(futures, 1):
        _check(f.result(0), _request(r, 2))
    with pytest.raises(QueueClosedError):
        q.submit([Encoded([1])])
    assert q.submit([]).result(0) == []


def test_length_groups_bound_the_padding():
    from bertkit.serve.queue import length_groups

    lengths = [10, 3, 9, 5, 2, 40, 21, 1]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert all(lengths[i] >= 0.5 * lengths[g[0]] for i in g)
    assert length_groups(lengths, 0) == [sorted(range(8), key=lambda i: -lengths[i])]


def test_short_inputs_are_not_padded_to_a_long_one():
    gate = threading.Event()
    backend = EchoBackend(gate)
    q = BatchQueue(backend, pad_id=0, token_types=False)
    hold = q.submit([Encoded([1])])
    long_one = q.submit([Encoded([2] * 100)])
    short = [q.submit([Encoded([3] * 10)]) for _ in range(6)]
    gate.set()
    hold.result(10)
    long_one.result(10)
    for f in short:
        _check(f.result(10), [Encoded([3] * 10)])
    q.close()
    assert (1, 100) in backend.shapes and (6, 10) in backend.shapes
