"""Length-aware batching by a token budget, and running features through a backend.

Notation: B batch, T tokens (the batch's longest input), N inputs.

:func:`token_budget_batches` sorts inputs by length (longest first) and packs them greedily so that
each *padded* batch, ``B x T``, stays within ``max_batch_tokens`` (text-embeddings-inference's
``--max-batch-tokens``): each batch pads only to its own longest input. An input longer than the
budget alone makes a batch of one. :func:`run_features` pads each batch, calls the backend, checks
the outputs are finite and hands back one row of outputs per input, in input order.

>>> token_budget_batches([3, 9, 1, 8, 2], max_batch_tokens=18)
[[1, 3], [0, 4, 2]]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bertkit.errors import BertkitError

logger = logging.getLogger(__name__)

__all__ = ["Encoded", "NonFiniteOutputError", "pad_batch", "pad_rows", "run_features",
           "token_budget_batches"]


CPU_BATCH_TOKENS = 2048  # padded tokens per forward pass on a CPU (bench_inference: BERT-Base
#                          on 2 cores ran 1.8-1.9x transformers' padded batches at 512-3,072
#                          tokens, 1.3x at 8,192, 1.07x at 16,384: small batches stay in cache)
GPU_BATCH_TOKENS = 16384  # a GPU wants large batches


def default_batch_tokens(device: Any) -> int:
    """The token budget of a forward pass for ``device`` (a torch device or its name)."""
    return CPU_BATCH_TOKENS if str(device).startswith("cpu") else GPU_BATCH_TOKENS


class NonFiniteOutputError(BertkitError, RuntimeError):
    """A model gave NaN or infinite outputs; ``features`` are the indices (in the list given to
    :func:`run_features`) of the inputs whose outputs were not finite."""

    def __init__(self, message: str, features: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.features = list(features)


@dataclass
class Encoded:
    """One model input, unpadded: ``input_ids`` and ``token_type_ids`` of length T_i, or K rows of
    them (multiple choice: one row per choice)."""

    input_ids: list[int] | list[list[int]]
    token_type_ids: list[int] | list[list[int]] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def choices(self) -> bool:
        """True for a multiple-choice input (K rows)."""
        return bool(self.input_ids) and isinstance(self.input_ids[0], list)

    def __len__(self) -> int:
        """Tokens (the longest row for multiple choice)."""
        if self.choices:
            return max(len(r) for r in self.input_ids)  # type: ignore[arg-type]
        return len(self.input_ids)


def token_budget_batches(lengths: Sequence[int], max_batch_tokens: int,
                         max_batch_size: int | None = None, rows: Sequence[int] | None = None
                         ) -> list[list[int]]:
    """Indices packed into batches whose padded size ``B x T x rows`` fits ``max_batch_tokens``.

    Sorted by length, longest first (ties in input order), so T of a batch is its first input's
    length; ``rows[i]`` counts the sequences input ``i`` stands for (K choices; default 1). A batch
    closes when one more input would pass the budget or ``max_batch_size``. Every index appears
    exactly once.
    """
    if max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    k = list(rows) if rows is not None else [1] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    width = n_rows = 0
    for i in order:
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or (n_rows + k[i]) * width > max_batch_tokens):
            batches.append(current)
            current, n_rows = [], 0
        if not current:
            width = max(1, lengths[i])
        current.append(i)
        n_rows += k[i]
    if current:
        batches.append(current)
    return batches


def pad_rows(rows: Sequence[Sequence[int]], width: int, value: int) -> Tensor:
    """(len(rows), width) int64, each row left-aligned and padded with ``value``."""
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for r, row in enumerate(rows):
        out[r, :len(row)] = torch.tensor(list(row), dtype=torch.long)
    return out


def pad_batch(items: Sequence[Encoded], pad_id: int, token_types: bool = True
              ) -> dict[str, Tensor]:
    """Pad to the batch's longest input: ``input_ids``, ``attention_mask`` (1 = real token) and,
    with ``token_types``, ``token_type_ids``; each (B, T), or (B, K, T) for multiple choice."""
    if not items:
        raise ValueError("pad_batch needs at least one input")
    choice = items[0].choices
    if any(it.choices != choice for it in items):
        raise ValueError("a batch mixes multiple-choice and single inputs")
    if choice:
        ks = {len(it.input_ids) for it in items}
        if len(ks) != 1:
            raise ValueError(f"multiple-choice batch with different numbers of choices: "
                             f"{sorted(ks)}")
        ids = [r for it in items for r in it.input_ids]  # type: ignore[misc]
        types = [r for it in items for r in (it.token_type_ids or [[0] * len(x)
                                                                   for x in it.input_ids])]
    else:
        ids = [it.input_ids for it in items]
        types = [it.token_type_ids or [0] * len(it.input_ids) for it in items]
    width = max(len(r) for r in ids)
    batch = {"input_ids": pad_rows(ids, width, pad_id),                       # (B*K, T)
             "attention_mask": pad_rows([[1] * len(r) for r in ids], width, 0)}
    if token_types:
        batch["token_type_ids"] = pad_rows(types, width, 0)  # type: ignore[arg-type]
    if choice:
        shape = (len(items), len(items[0].input_ids), width)                   # (B, K, T)
        batch = {k: v.reshape(shape) for k, v in batch.items()}
    return batch


def _nonfinite_rows(outputs: dict[str, Tensor]) -> list[int]:
    """Batch rows holding a NaN or an infinity in any float output."""
    bad: Tensor | None = None
    for t in outputs.values():
        if not t.is_floating_point():
            continue
        rows = ~torch.isfinite(t).reshape(t.shape[0], -1).all(1)
        bad = rows if bad is None else bad | rows
    return [] if bad is None else bad.nonzero().flatten().tolist()


def run_features(backend: Callable[[dict[str, Tensor]], dict[str, Tensor]],
                 items: Sequence[Encoded], pad_id: int, max_batch_tokens: int = 16384,
                 max_batch_size: int | None = None, token_types: bool = True,
                 progress: bool = False, desc: str = "predict") -> list[dict[str, Tensor]]:
    """Each input's outputs, in input order: ``{name: output row}`` (token-level outputs keep the
    batch's padded T; cut them to ``len(item)``).

    Raises :class:`NonFiniteOutputError` naming the inputs of a batch with NaN or infinite outputs.
    """
    from tqdm.auto import tqdm

    rows = [len(it.input_ids) if it.choices else 1 for it in items]
    batches = token_budget_batches([len(it) for it in items], max_batch_tokens, max_batch_size,
                                   rows)
    results: list[dict[str, Tensor] | None] = [None] * len(items)
    for idx in tqdm(batches, disable=not progress, desc=desc, unit="batch", dynamic_ncols=True):
        out = backend(pad_batch([items[i] for i in idx], pad_id, token_types))
        bad = _nonfinite_rows(out)
        if bad:
            features = sorted(idx[r] for r in bad)
            raise NonFiniteOutputError(f"the model's outputs are not finite (NaN or inf) for "
                                       f"{len(features)} input(s)", features)
        for r, i in enumerate(idx):
            results[i] = {name: t[r] for name, t in out.items()}
    return [r for r in results if r is not None]
