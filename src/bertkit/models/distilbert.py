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
from bertkit.models.bert import BertModel, BertOutput, MaskedLMHead, PreTrainedMixin, init_weights
from bertkit.models.heads import _linear, num_labels
from bertkit.models.roberta import MaskedLMOutput, mlm_forward

__all__ = ["DistilBertModel", "DistilBertForMaskedLM", "DistilBertForSequenceClassification",
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


class DistilBertForMaskedLM(PreTrainedMixin, nn.Module):
    """DistilBERT with its MLM head; logits only at ``masked_lm_positions`` when given."""

    hf_architecture = "DistilBertForMaskedLM"
    config_class = DistilBertConfig

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.config = config
        self.distilbert = DistilBertModel(config)
        self.mlm = MaskedLMHead(config)
        self.mlm.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, masked_lm_positions: Tensor | None = None,
                masked_lm_ids: Tensor | None = None, masked_lm_weights: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> MaskedLMOutput:
        return mlm_forward(self.distilbert, self.mlm, input_ids, attention_mask, None,
                           masked_lm_positions, masked_lm_ids, masked_lm_weights,
                           output_hidden_states, output_attentions)


class DistilBertForSequenceClassification(PreTrainedMixin, nn.Module):
    """pre_classifier(H, H) + ReLU + dropout + classifier(H, C) on the first token's state."""

    hf_architecture = "DistilBertForSequenceClassification"
    config_class = DistilBertConfig

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__()
        self.config = config
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = _linear(config, config.hidden_size)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.classifier = _linear(config, num_labels(config))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        h = self.distilbert(input_ids, attention_mask).last_hidden_state[:, 0]  # (B, H)
        return self.classifier(self.dropout(F.relu(self.pre_classifier(h))))


