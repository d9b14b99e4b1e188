"""Inference: batching, backends and post-processing, apart from training.

``encode`` (embeddings in input order, length-sorted batches) lives in :mod:`.encode`; backends
follow the :class:`.backend.Backend` protocol.
"""

from bertkit.inference.backend import Backend
from bertkit.inference.encode import (
    Pooling,
    encode,
    hidden_state_indices,
    length_sorted_batches,
    pool,
    select_layers,
)

__all__ = ["Backend", "Pooling", "encode", "hidden_state_indices", "length_sorted_batches",
           "pool", "select_layers"]
