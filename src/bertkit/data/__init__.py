"""Pre-training and fine-tuning data: corpora, instance creation, shards and datasets.

``PretrainingDataset`` is re-exported lazily so that worker processes importing
``bertkit.data.*`` do not pay for torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PretrainingDataset"]


def __getattr__(name: str) -> Any:
    if name == "PretrainingDataset":
        from bertkit.data.shards import PretrainingDataset

        return PretrainingDataset
    raise AttributeError(f"module 'bertkit.data' has no attribute {name!r}")
