"""What every inference backend (torch, onnxruntime) offers the runner and the pipelines.

A backend runs one padded batch. Inputs are int64 (B, T) tensors named as in Hugging Face:
``input_ids``, ``attention_mask`` and, for families with token types, ``token_type_ids``.
Outputs are float tensors named as Hugging Face's model outputs: ``last_hidden_state`` (B, T, H)
and ``pooler_output`` (B, H) for a base encoder, ``logits`` for masked-LM (B, T, V), sequence
(B, C) and token (B, T, C) classification, ``start_logits``/``end_logits`` (B, T) for QA.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Backend(Protocol):
    """One padded batch in, the model's named outputs out (on the CPU, float32)."""

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """{name: (B, T) int64} -> {output name: float32 tensor}."""
        ...
