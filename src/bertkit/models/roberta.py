"""RoBERTa as a delta on BERT: positions counted from the padding id, one token type, ``lm_head``.

The encoder layers are BERT's (post-LN, same names in HF checkpoints under ``roberta.``). What
differs: position ids come from the input ids (non-padding tokens numbered from
``pad_token_id + 1``, padding at ``pad_token_id``), the MLM head is always GELU, and the
sequence classifier is dense + tanh + ``out_proj`` on the ``<s>`` state instead of the pooler.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import BertConfig, RobertaConfig
from bertkit.models.bert import (
    BertModel,
    BertOutput,
    MaskedLMHead,
    gather_positions,
    init_weights,
    masked_lm_loss,
)
from bertkit.models.heads import (
    ChoiceScorer,
    SpanExtractor,
    TaskModel,
    TokenClassifier,
    _linear,
    num_labels,
)

__all__ = ["RobertaModel", "RobertaForMaskedLM", "RobertaForMultipleChoice", "RobertaForQuestionAnswering",
           "RobertaForSequenceClassification", "RobertaForTokenClassification", "MaskedLMModel", "MaskedLMOutput",
           "roberta_position_ids"]


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


class MaskedLMModel(TaskModel):
    """A family's encoder (no pooler) and its MLM head; a family mixin names the encoder."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.mlm = self.mlm_head(config)
        self.mlm.apply(lambda m: init_weights(m, config.initializer_range))

    @classmethod
    def mlm_head(cls, config: BertConfig) -> MaskedLMHead:
        """The family's head (H -> H, or ALBERT's H -> E), tied to the word embeddings."""
        return MaskedLMHead(config)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, masked_lm_positions: Tensor | None = None,
                masked_lm_ids: Tensor | None = None, masked_lm_weights: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> MaskedLMOutput:
        """mlm_logits (B, P, V) at ``masked_lm_positions`` (B, P) when given, else (B, T, V)."""
        return mlm_forward(getattr(self, self.base_name), self.mlm, input_ids, attention_mask,
                           token_type_ids, masked_lm_positions, masked_lm_ids, masked_lm_weights,
                           output_hidden_states, output_attentions)


class RobertaTask:
    """Family mixin of RoBERTa's task models: the encoder under ``roberta.``, no pooler."""

    base_name = "roberta"
    base_class = RobertaModel
    config_class = RobertaConfig


class RobertaForMaskedLM(RobertaTask, MaskedLMModel):
    """RoBERTa with its ``lm_head`` (dense + GELU + LayerNorm + tied decoder + bias); no pooler."""

    hf_architecture = "RobertaForMaskedLM"

    @classmethod
    def mlm_head(cls, config: BertConfig) -> MaskedLMHead:
        return MaskedLMHead(config, act="gelu")


class RobertaClassificationHead(nn.Module):
    """dropout, dense(H, H), tanh, dropout, out_proj(H, C) on the ``<s>`` state (B, T, H)."""

    def __init__(self, config: RobertaConfig, p_drop: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p_drop)
        self.dense = _linear(config, config.hidden_size)
        self.out_proj = _linear(config, num_labels(config))

    def forward(self, hidden: Tensor) -> Tensor:
        x = self.dense(self.dropout(hidden[:, 0]))
        return self.out_proj(self.dropout(F.tanh(x)))


class RobertaForSequenceClassification(RobertaTask, TaskModel):
    """RoBERTa's classifier: class logits (B, C) from the ``<s>`` state; no pooler."""

    hf_architecture = "RobertaForSequenceClassification"

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        self.classifier = RobertaClassificationHead(config, self.dropout_p(config))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """(B, T) inputs -> (B, num_labels) logits."""
        return self.classifier(self.encode(input_ids, attention_mask,
                                           token_type_ids).last_hidden_state)


class RobertaForTokenClassification(RobertaTask, TokenClassifier):
    """RoBERTa's token classifier (``classifier`` on every token)."""

    hf_architecture = "RobertaForTokenClassification"


class RobertaForQuestionAnswering(RobertaTask, SpanExtractor):
    """RoBERTa's span extractor (``qa_outputs``)."""

    hf_architecture = "RobertaForQuestionAnswering"


class RobertaForMultipleChoice(RobertaTask, ChoiceScorer):
    """RoBERTa's multiple-choice scorer: the pooler (kept here, unlike the classifier) + dropout
    (``hidden_dropout_prob``, as in transformers) + ``classifier`` per choice; (B, K, T) -> (B, K)."""

    hf_architecture = "RobertaForMultipleChoice"
    dropout_field = "hidden_dropout_prob"
