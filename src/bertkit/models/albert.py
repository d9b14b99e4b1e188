"""ALBERT: factorised embeddings and groups of shared layers, with its SOP head.

The module tree differs from BERT's, so ALBERT has its own file, built from BERT's parts:
embeddings of width E (``embedding_size``) projected to H by ``embed_proj``; ``num_hidden_groups``
groups of ``inner_group_num`` BERT layers each, whose parameters exist once; layer ``i`` of
``num_hidden_layers`` runs group ``i * groups // layers`` (all of its inner layers); a linear +
tanh pooler; an MLM head H -> E with the decoder tied to the E-wide word embeddings; and
sentence-order prediction (SOP) on the pooled state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import AlbertConfig
from bertkit.models.bert import (
    BertOutput,
    Embeddings,
    EncoderLayer,
    MaskedLMHead,
    Pooler,
    PreTrainedMixin,
    gather_positions,
    init_weights,
    masked_lm_loss,
    padding_mask,
    run_layers,
)
from bertkit.models.heads import ChoiceScorer, PooledClassifier, SpanExtractor, TokenClassifier
from bertkit.models.roberta import MaskedLMModel

__all__ = ["AlbertModel", "AlbertForMaskedLM", "AlbertForMultipleChoice", "AlbertForPreTraining",
           "AlbertForQuestionAnswering",
           "AlbertForSequenceClassification", "AlbertForTokenClassification",
           "AlbertPreTrainingOutput"]


class AlbertModel(PreTrainedMixin, nn.Module):
    """Embeddings (B, T, E) -> E->H projection -> shared layer groups -> (B, T, H), pooler."""

    hf_architecture = "AlbertModel"
    config_class = AlbertConfig

    def __init__(self, config: AlbertConfig, add_pooler: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config, width=config.embedding_size)
        self.embed_proj = nn.Linear(config.embedding_size, config.hidden_size)
        self.groups = nn.ModuleList(
            nn.ModuleList(EncoderLayer(config) for _ in range(config.inner_group_num))
            for _ in range(config.num_hidden_groups))
        self.pooler = Pooler(config) if add_pooler else None
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def group_of(self, i: int) -> int:
        """The group that layer ``i`` of ``num_hidden_layers`` runs (HF's rule)."""
        return int(i / (self.config.num_hidden_layers / self.config.num_hidden_groups))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> BertOutput:
        """(B, T) inputs -> BertOutput; ``hidden_states`` holds the projected embeddings and
        the output of every layer application (num_hidden_layers x inner_group_num)."""
        mask = padding_mask(attention_mask)
        x = self.embed_proj(self.embeddings(input_ids, token_type_ids, position_ids))
        applied = (layer for i in range(self.config.num_hidden_layers)
                   for layer in self.groups[self.group_of(i)])
        return run_layers(x, mask, applied, self.pooler, output_hidden_states, output_attentions)


@dataclass
class AlbertPreTrainingOutput:
    """mlm_logits (B, P, V) at the masked positions or (B, T, V); sop_logits (B, 2)."""

    loss: Tensor | None
    mlm_loss: Tensor | None
    sop_loss: Tensor | None
    mlm_logits: Tensor
    sop_logits: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


class AlbertForPreTraining(PreTrainedMixin, nn.Module):
    """ALBERT with the MLM head (H -> E, tied E-wide decoder) and sentence-order prediction."""

    hf_architecture = "AlbertForPreTraining"
    config_class = AlbertConfig

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.config = config
        self.albert = AlbertModel(config, add_pooler=True)
        self.mlm = MaskedLMHead(config, width=config.embedding_size)
        self.sop = nn.Linear(config.hidden_size, 2)
        self.dropout = nn.Dropout(config.classifier_dropout_prob)
        self.mlm.apply(lambda m: init_weights(m, config.initializer_range))
        init_weights(self.sop, config.initializer_range)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, masked_lm_positions: Tensor | None = None,
                masked_lm_ids: Tensor | None = None, masked_lm_weights: Tensor | None = None,
                next_sentence_labels: Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> AlbertPreTrainingOutput:
        """As ``BertForPreTraining``; ``next_sentence_labels`` are SOP labels (1 = swapped)."""
        out = self.albert(input_ids, attention_mask, token_type_ids,
                          output_hidden_states=output_hidden_states,
                          output_attentions=output_attentions)
        h = out.last_hidden_state
        if masked_lm_positions is not None:
            h = gather_positions(h, masked_lm_positions)
        mlm_logits = self.mlm(h, self.albert.embeddings.word.weight)
        assert out.pooler_output is not None
        sop_logits = self.sop(self.dropout(out.pooler_output))
        mlm_loss = sop_loss = None
        if masked_lm_ids is not None:
            mlm_loss = masked_lm_loss(mlm_logits, masked_lm_ids, masked_lm_weights)
        if next_sentence_labels is not None:
            sop_loss = F.cross_entropy(sop_logits.float(), next_sentence_labels.reshape(-1).long())
        losses = [x for x in (mlm_loss, sop_loss) if x is not None]
        return AlbertPreTrainingOutput(
            loss=sum(losses[1:], losses[0]) if losses else None, mlm_loss=mlm_loss,
            sop_loss=sop_loss, mlm_logits=mlm_logits, sop_logits=sop_logits,
            hidden_states=out.hidden_states, attentions=out.attentions)


class AlbertTask:
    """Family mixin of ALBERT's task models: the encoder under ``albert.``, dropout
    ``classifier_dropout_prob`` before a classifier."""

    base_name = "albert"
    base_class = AlbertModel
    config_class = AlbertConfig
    dropout_field = "classifier_dropout_prob"


class AlbertForMaskedLM(AlbertTask, MaskedLMModel):
    """ALBERT with its MLM head only (HF's ``AlbertForMaskedLM``: no pooler, no SOP)."""

    hf_architecture = "AlbertForMaskedLM"

    @classmethod
    def mlm_head(cls, config: AlbertConfig) -> MaskedLMHead:
        return MaskedLMHead(config, width=config.embedding_size)


class AlbertForSequenceClassification(AlbertTask, PooledClassifier):
    """ALBERT's classifier: dropout + ``classifier`` on the pooled state."""

    hf_architecture = "AlbertForSequenceClassification"


class AlbertForTokenClassification(AlbertTask, TokenClassifier):
    """ALBERT's token classifier (dropout + ``classifier`` on every token)."""

    hf_architecture = "AlbertForTokenClassification"


class AlbertForQuestionAnswering(AlbertTask, SpanExtractor):
    """ALBERT's span extractor (``qa_outputs``)."""

    hf_architecture = "AlbertForQuestionAnswering"


class AlbertForMultipleChoice(AlbertTask, ChoiceScorer):
    """ALBERT's multiple-choice scorer: pooled state + dropout (``classifier_dropout_prob``) +
    ``classifier`` per choice; (B, K, T) -> (B, K)."""

    hf_architecture = "AlbertForMultipleChoice"
