"""DistilBERT as a delta on BERT: no token types, no pooler, optional sinusoidal positions.

The layers are BERT's post-LN layers (HF names them ``q_lin``, ``sa_layer_norm``, ``ffn.lin1``,
... under ``distilbert.transformer``; the map is in ``bertkit.convert.weight_maps``). The MLM
head is ``vocab_transform`` + activation + ``vocab_layer_norm`` + the tied ``vocab_projector``;
the sequence classifier is ``pre_classifier`` + ReLU + dropout + ``classifier`` on the first token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import DistilBertConfig
from bertkit.models.bert import BertModel, BertOutput
from bertkit.models.heads import (
    ChoiceScorer,
    SpanExtractor,
    TaskModel,
    TokenClassifier,
    _linear,
    num_labels,
)
from bertkit.models.roberta import MaskedLMModel

__all__ = ["DistilBertModel", "DistilBertForMaskedLM", "DistilBertForMultipleChoice",
           "DistilBertForQuestionAnswering",
           "DistilBertForSequenceClassification", "DistilBertForTokenClassification",
           "sinusoidal_positions"]


def sinusoidal_positions(n_positions: int, dim: int) -> Tensor:
    """(n_positions, dim): sin on even, cos on odd columns, wavelengths 2 pi ... 10000 x 2 pi."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    freq = torch.pow(10000.0, -2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim)
    angles = pos * freq[None]                                     # (P, dim)
    out = torch.empty(n_positions, dim, dtype=torch.float64)
    out[:, 0::2] = torch.sin(angles[:, 0::2])
    out[:, 1::2] = torch.cos(angles[:, 1::2])
    return out.float()


class DistilBertModel(BertModel):
    """Embeddings (word + position) and BERT layers; no pooler, token types ignored."""

    hf_architecture = "DistilBertModel"
    config_class = DistilBertConfig

    def __init__(self, config: DistilBertConfig, add_pooler: bool = False) -> None:
        super().__init__(config, add_pooler=False)
        if config.sinusoidal_pos_embds:  # fixed, as HF's: not trained
            weight = self.embeddings.position.weight
            with torch.no_grad():
                weight.copy_(sinusoidal_positions(*weight.shape))
            weight.requires_grad_(False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> BertOutput:
        """As BERT's, with ``token_type_ids`` ignored (DistilBERT has none)."""
        return super().forward(input_ids, attention_mask, None, position_ids,
                               output_hidden_states, output_attentions)


class DistilBertTask:
    """Family mixin of DistilBERT's task models: the encoder under ``distilbert.``, HF's dropouts
    (``dropout`` before a token classifier, ``qa_dropout`` before ``qa_outputs``)."""

    base_name = "distilbert"
    base_class = DistilBertModel
    config_class = DistilBertConfig
    dropout_field = "hidden_dropout_prob"  # HF's ``dropout``
    qa_dropout_field = "qa_dropout"


class DistilBertForMaskedLM(DistilBertTask, MaskedLMModel):
    """DistilBERT with its MLM head (``vocab_transform``, ``vocab_layer_norm``, tied
    ``vocab_projector``); logits only at ``masked_lm_positions`` when given."""

    hf_architecture = "DistilBertForMaskedLM"


class FirstTokenHead:
    """DistilBERT's classifier layers, attributes of the task model under HF's names:
    ``pre_classifier`` (H, H) + ReLU + dropout (``seq_classif_dropout``) + ``classifier``."""

    pre_classifier: nn.Linear
    dropout: nn.Dropout
    classifier: nn.Linear

    def _add_head(self, config: DistilBertConfig, n_out: int) -> None:
        self.pre_classifier = _linear(config, config.hidden_size)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.classifier = _linear(config, n_out)

    def _head(self, first: Tensor) -> Tensor:
        """(N, H) first-token states -> (N, n_out)."""
        return self.classifier(self.dropout(F.relu(self.pre_classifier(first))))


class DistilBertForSequenceClassification(DistilBertTask, FirstTokenHead, TaskModel):
    """pre_classifier(H, H) + ReLU + dropout + classifier(H, C) on the first token's state."""

    hf_architecture = "DistilBertForSequenceClassification"

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self._add_head(config, num_labels(config))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """(B, T) inputs (token types ignored) -> (B, num_labels) logits."""
        return self._head(self.encode(input_ids, attention_mask, None).last_hidden_state[:, 0])


class DistilBertForTokenClassification(DistilBertTask, TokenClassifier):
    """DistilBERT's token classifier (dropout + ``classifier`` on every token)."""

    hf_architecture = "DistilBertForTokenClassification"


class DistilBertForQuestionAnswering(DistilBertTask, SpanExtractor):
    """DistilBERT's span extractor (``qa_dropout`` + ``qa_outputs``)."""

    hf_architecture = "DistilBertForQuestionAnswering"


class DistilBertForMultipleChoice(DistilBertTask, FirstTokenHead, ChoiceScorer):
    """DistilBERT's multiple-choice scorer: the first-token head (``pre_classifier`` + ReLU +
    dropout + ``classifier`` to one score) per choice, no pooler; (B, K, T) -> (B, K)."""

    hf_architecture = "DistilBertForMultipleChoice"
    needs_pooler = False

    def __init__(self, config: DistilBertConfig) -> None:
        TaskModel.__init__(self, config)
        self._add_head(config, 1)

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None,
               token_type_ids: Tensor | None) -> BertOutput:
        return super().encode(input_ids, attention_mask, None)  # no token types

    def choice_vector(self, out: BertOutput) -> Tensor:
        return out.last_hidden_state[:, 0]

    def score(self, vector: Tensor) -> Tensor:
        return self._head(vector)
