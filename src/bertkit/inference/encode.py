"""Batch inference: embeddings for many texts with minimal padding.

``encode`` sorts the texts by token length, cuts the sorted list into batches (so each batch pads
only to its own longest text), runs the model under ``torch.inference_mode`` and returns results in
the caller's order. On mixed-length input this wastes far less compute on padding than batching in
the given order.

Layer indexes (``layers=``) follow Google's ``extract_features.py``: they count the L encoder layers
only, so ``0`` is the first encoder layer and ``-1`` the last (the embedding output is not
selectable). In a ``hidden_states`` tuple (embeddings first) Google's ``i >= 0`` is
``hidden_states[i + 1]`` and ``-k`` is ``hidden_states[-k]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

Pooling = Literal["mean", "cls", "pooler"]


def pool(hidden: Tensor, attention_mask: Tensor, pooling: Pooling,
         pooler_output: Tensor | None = None) -> Tensor:
    """(B, T, H) states + (B, T) mask -> (B, H) sentence vectors.

    ``mean`` averages the real tokens (special tokens included, as sentence-transformers does),
    ``cls`` takes the first token's state, ``pooler`` the model's tanh pooler output.
    """
    if pooling == "mean":
        m = attention_mask.to(hidden.dtype)[..., None]           # (B, T, 1)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)    # (B, H)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "pooler":
        if pooler_output is None:
            raise ValueError("pooling='pooler' needs a model with a pooler")
        return pooler_output
    raise ValueError(f"unknown pooling {pooling!r}; use mean, cls, pooler or None")


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first).

    >>> length_sorted_batches([3, 9, 1, 8], 2)
    [[1, 3], [0, 2]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def hidden_state_indices(layers: Sequence[int], num_layers: int, flag: str = "layers"
                         ) -> list[int]:
    """Google's encoder-layer indexes -> positions in ``hidden_states`` (L + 1, embeddings first).

    >>> hidden_state_indices([-1, -2, 0], 6)
    [6, 5, 1]

    Raises ValueError naming ``flag`` and the model's layer count for an index outside -L..L-1.
    """
    if not layers:
        raise ValueError(f"{flag}: give at least one layer index")
    out = []
    for i in layers:
        if not -num_layers <= i < num_layers:
            raise ValueError(f"{flag}: layer {i} is out of range for a model with {num_layers} "
                             f"encoder layers (use {-num_layers}..{num_layers - 1}, -1 = last)")
        out.append(i + 1 if i >= 0 else num_layers + 1 + i)
    return out


def select_layers(hidden_states: Sequence[Tensor], indices: Sequence[int]) -> Tensor:
    """L + 1 tensors (B, T, H) -> (B, T, n, H) holding ``hidden_states[j]`` for j in ``indices``."""
    return torch.stack([hidden_states[j] for j in indices], dim=2)


def _pad(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad id lists -> input_ids (B, T) and attention_mask (B, T)."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[b, :len(r)] = 1
    return ids, mask


def encode(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 32,
           max_length: int = 512, pooling: Pooling | None = "mean", normalize: bool = False,
           progress: bool = False, layers: Sequence[int] | None = None) -> Tensor | list[Tensor]:
    """Embed ``texts`` with ``model`` (a ``BertModel``) in input order.

    Returns a (len(texts), H) tensor of pooled vectors (L2-normalised if ``normalize``), or, with
    ``pooling=None``, a list of (T_i, H) per-token states, the special tokens included.

    ``layers`` (Google's indexes: -1 = last encoder layer, 0 = first; see the module docstring)
    adds a layer axis: per-token states become (T_i, n_layers, H) and pooled vectors
    (len(texts), n_layers, H), each chosen layer pooled (and normalised) on its own. The pooler
    reads only the last layer, so ``pooling="pooler"`` with ``layers`` is a ValueError.
    ``layers=None`` returns the last layer without a layer axis, as before.
    """
    if isinstance(texts, str):
        raise TypeError("encode expects a sequence of texts, not one str; wrap it in a list")
    indices = None
    if layers is not None:
        if pooling == "pooler":
            raise ValueError("pooling='pooler' reads only the last layer; use mean, cls or None "
                             "with layers")
        indices = hidden_state_indices(layers, model.config.num_hidden_layers)
    if not texts:
        H = model.config.hidden_size
        empty = torch.empty(0, H) if indices is None else torch.empty(0, len(indices), H)
        return empty if pooling else []
    ids: list[list[int]] = tokenizer(list(texts), max_length=max_length, padding=False,
                                     truncation=True, return_tensors=None)["input_ids"]
    batches = length_sorted_batches([len(r) for r in ids], batch_size)
    device = next(model.parameters()).device
    results: list[Tensor | None] = [None] * len(texts)
    was_training = model.training
    model.eval()
    try:
        from tqdm.auto import tqdm

        with torch.inference_mode():
            for batch in tqdm(batches, desc="encode", unit="batch", disable=not progress):
                input_ids, mask = _pad([ids[i] for i in batch], tokenizer.pad_token_id)
                input_ids, mask = input_ids.to(device), mask.to(device)
                out = model(input_ids, attention_mask=mask,
                            output_hidden_states=indices is not None)
                h = out.last_hidden_state                                   # (B, T, H)
                if indices is not None:
                    h = select_layers(out.hidden_states, indices)           # (B, T, n, H)
                if pooling is None:
                    for row, i in enumerate(batch):
                        results[i] = h[row, :len(ids[i])].float().cpu()
                    continue
                if indices is None:
                    vecs = pool(h, mask, pooling, out.pooler_output).float()   # (B, H)
                else:
                    vecs = torch.stack([pool(h[:, :, k], mask, pooling)
                                        for k in range(len(indices))], 1).float()  # (B, n, H)
                if normalize:
                    vecs = torch.nn.functional.normalize(vecs, dim=-1)
                for row, i in enumerate(batch):
                    results[i] = vecs[row].cpu()
    finally:
        model.train(was_training)
    if pooling is None:
        return [r for r in results if r is not None]
    return torch.stack([r for r in results if r is not None])
