"""RoBERTa as a delta on BERT: positions counted from the padding id, one token type, ``lm_head``.

The encoder layers are BERT's (post-LN, same names in HF checkpoints under ``roberta.``). What
differs: position ids come from the input ids (non-padding tokens numbered from
``pad_token_id + 1``, padding at ``pad_token_id``), the MLM head is always GELU, and the
sequence classifier is dense + tanh + ``out_proj`` on the ``<s>`` state instead of the pooler.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import RobertaConfig
from bertkit.models.bert import (
    BertModel,
    BertOutput,
    MaskedLMHead,
    PreTrainedMixin,
    gather_positions,
    init_weights,
    masked_lm_loss,
)
from bertkit.models.heads import _dropout, _linear, num_labels

__all__ = ["RobertaModel", "RobertaForMaskedLM", "RobertaForSequenceClassification",
           "MaskedLMOutput", "roberta_position_ids"]


def roberta_position_ids(input_ids: Tensor, pad_id: int) -> Tensor:
    """(B, T) ids -> (B, T) positions: pad_id + 1, pad_id + 2, ... for tokens, pad_id for padding."""
    real = input_ids.ne(pad_id).long()
    return real.cumsum(dim=1) * real + pad_id


class RobertaModel(BertModel):
    """BERT's encoder with RoBERTa's position ids (``position_ids`` given explicitly still win)."""

    hf_architecture = "RobertaModel"
    config_class = RobertaConfig

    def __init__(self, config: RobertaConfig, add_pooler: bool = True) -> None:
        super().__init__(config, add_pooler)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> BertOutput:
        if position_ids is None:
            position_ids = roberta_position_ids(input_ids, self.config.pad_token_id)
        return super().forward(input_ids, attention_mask, token_type_ids, position_ids,
                               output_hidden_states, output_attentions)


class MaskedLMOutput:
    """What a family's ``...ForMaskedLM`` returns: mlm_logits (B, P, V) at the masked positions,
    or (B, T, V); loss when labels are given; hidden states and attentions when asked."""

    def __init__(self, mlm_logits: Tensor, loss: Tensor | None, out: BertOutput) -> None:
        self.mlm_logits = mlm_logits
        self.loss = loss
        self.last_hidden_state = out.last_hidden_state
        self.hidden_states = out.hidden_states
        self.attentions = out.attentions


def mlm_forward(base: nn.Module, head: MaskedLMHead, input_ids: Tensor,
                attention_mask: Tensor | None, token_type_ids: Tensor | None,
                masked_lm_positions: Tensor | None, masked_lm_ids: Tensor | None,
                masked_lm_weights: Tensor | None, output_hidden_states: bool,
                output_attentions: bool) -> MaskedLMOutput:
    """Encode, then vocabulary logits only at ``masked_lm_positions`` (B, P) when given."""
    out = base(input_ids, attention_mask, token_type_ids,
               output_hidden_states=output_hidden_states, output_attentions=output_attentions)
    h = out.last_hidden_state
    if masked_lm_positions is not None:
        h = gather_positions(h, masked_lm_positions)
    logits = head(h, base.embeddings.word.weight)
    loss = None if masked_lm_ids is None else masked_lm_loss(logits, masked_lm_ids,
                                                             masked_lm_weights)
    return MaskedLMOutput(logits, loss, out)


class RobertaForMaskedLM(PreTrainedMixin, nn.Module):
    """RoBERTa with its ``lm_head`` (dense + GELU + LayerNorm + tied decoder + bias); no pooler."""

    hf_architecture = "RobertaForMaskedLM"
    config_class = RobertaConfig

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.config = config
        self.roberta = RobertaModel(config, add_pooler=False)
        self.mlm = MaskedLMHead(config, act="gelu")
        self.mlm.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, masked_lm_positions: Tensor | None = None,
                masked_lm_ids: Tensor | None = None, masked_lm_weights: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> MaskedLMOutput:
        return mlm_forward(self.roberta, self.mlm, input_ids, attention_mask, token_type_ids,
                           masked_lm_positions, masked_lm_ids, masked_lm_weights,
                           output_hidden_states, output_attentions)


class RobertaClassificationHead(nn.Module):
    """dropout, dense(H, H), tanh, dropout, out_proj(H, C) on the ``<s>`` state (B, T, H)."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.dropout = _dropout(config)
        self.dense = _linear(config, config.hidden_size)
        self.out_proj = _linear(config, num_labels(config))

    def forward(self, hidden: Tensor) -> Tensor:
        x = self.dense(self.dropout(hidden[:, 0]))
        return self.out_proj(self.dropout(F.tanh(x)))


class RobertaForSequenceClassification(PreTrainedMixin, nn.Module):
    """RoBERTa's classifier: class logits (B, C) from the ``<s>`` state; no pooler."""

    hf_architecture = "RobertaForSequenceClassification"
    config_class = RobertaConfig

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.config = config
        self.roberta = RobertaModel(config, add_pooler=False)
        self.classifier = RobertaClassificationHead(config)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        return self.classifier(self.roberta(input_ids, attention_mask,
                                            token_type_ids).last_hidden_state)
