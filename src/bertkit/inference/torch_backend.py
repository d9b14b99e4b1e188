"""The PyTorch backend: any bertkit model (every family, base encoder or head) behind
:class:`~bertkit.inference.backend.Backend`.

Notation: B batch, T tokens, H hidden, V vocab, C classes, K choices, L encoder layers.

Heads (the ``head`` argument), and the class that loads them per family:

==========================  =================================  ======================================
head                        outputs                            classes
==========================  =================================  ======================================
``base``                    last_hidden_state (B, T, H),       ``AutoModel``
                            pooler_output (B, H) when pooled,
                            hidden_states (B, L+1, T, H) asked
``masked-lm``               logits (B, T, V)                   ``AutoModelForMaskedLM``
``sequence-classification`` logits (B, C)                      ``AutoModelForSequenceClassification``
``token-classification``    logits (B, T, C)                   ``AutoModelForTokenClassification``
``question-answering``      start_logits, end_logits (B, T)    ``AutoModelForQuestionAnswering``
``multiple-choice``         logits (B, K) from (B, K, T) in    ``AutoModelForMultipleChoice``
==========================  =================================  ======================================
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["HEADS", "TorchBackend", "head_class", "outputs_of"]

HEADS = ("base", "masked-lm", "sequence-classification", "token-classification",
         "question-answering", "multiple-choice")


def head_class(head: str, model_type: str) -> type[nn.Module]:
    """The class of ``head`` for the family ``model_type``; ValueError naming both when bertkit
    has none (a family that lacks the head does not support that task yet)."""
    from bertkit.models import auto

    names = {"base": "AutoModel", "masked-lm": "AutoModelForMaskedLM",
             "sequence-classification": "AutoModelForSequenceClassification",
             "token-classification": "AutoModelForTokenClassification",
             "question-answering": "AutoModelForQuestionAnswering",
             "multiple-choice": "AutoModelForMultipleChoice"}
    if head not in names:
        raise ValueError(f"head {head!r}: unknown; use one of {', '.join(HEADS)}")
    try:
        return getattr(auto, names[head]).class_for(model_type)
    except ValueError as e:
        raise ValueError(f"head {head!r}: {e}") from None


def outputs_of(raw: Any, want_hidden: bool = False) -> dict[str, Tensor]:
    """A model's return value -> Hugging Face-named float outputs (see the module table)."""
    if isinstance(raw, Tensor):
        return {"logits": raw}
    if isinstance(raw, tuple) and len(raw) == 2 and all(isinstance(x, Tensor) for x in raw):
        return {"start_logits": raw[0], "end_logits": raw[1]}
    out: dict[str, Tensor] = {}
    if getattr(raw, "mlm_logits", None) is not None:
        out["logits"] = raw.mlm_logits
    if getattr(raw, "last_hidden_state", None) is not None:
        out["last_hidden_state"] = raw.last_hidden_state
    if getattr(raw, "pooler_output", None) is not None:
        out["pooler_output"] = raw.pooler_output
    if want_hidden and getattr(raw, "hidden_states", None) is not None:
        out["hidden_states"] = torch.stack(raw.hidden_states, 1)     # (B, L+1, T, H)
    if not out:
        raise TypeError(f"cannot read outputs from a {type(raw).__name__}")
    return out


class TorchBackend:
    """A loaded model in eval mode; one padded batch in, named float32 outputs (CPU) out."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu",
                 output_hidden_states: bool = False) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.output_hidden_states = output_hidden_states
        config = getattr(model, "config", None)
        self.model_type = getattr(config, "model_type", "bert")
        types = self.model_type not in ("distilbert",)
        self.input_names: tuple[str, ...] = ("input_ids", "attention_mask",
                                             *(("token_type_ids",) if types else ()))
        self.output_names: tuple[str, ...] = ()

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, head: str = "base",
                        device: str | torch.device = "cpu", output_hidden_states: bool = False,
                        **_: Any) -> TorchBackend:
        """Load ``model_dir`` (HF layout) with its family's class for ``head``."""
        from bertkit.config import AutoConfig

        config = AutoConfig.from_pretrained(model_dir)
        model = head_class(head, config.model_type).from_pretrained(model_dir)  # type: ignore[attr-defined]
        return cls(model, device, output_hidden_states)

    @torch.inference_mode()
    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """{input_ids, attention_mask[, token_type_ids]: (B, T) or (B, K, T)} -> outputs."""
        for name in ("input_ids", "attention_mask"):
            if name not in inputs:
                raise ValueError(f"backend input {name!r} is missing (have {sorted(inputs)})")
        args = {k: v.to(self.device) for k, v in inputs.items() if k in self.input_names}
        kw: dict[str, Any] = {}
        if self.output_hidden_states:
            kw["output_hidden_states"] = True
        raw = self.model(args["input_ids"], args["attention_mask"],
                         args.get("token_type_ids"), **kw)
        out = {k: v.float().cpu() for k, v in outputs_of(raw, self.output_hidden_states).items()}
        self.output_names = tuple(out)
        return out
