"""``AutoModel`` & co: the family's class from ``config.json``'s ``model_type``.

    >>> AutoModel.class_for("roberta").__name__
    'RobertaModel'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from bertkit.config import AutoConfig, BertConfig, ConfigError
from bertkit.models.albert import AlbertForPreTraining, AlbertModel
from bertkit.models.bert import BertForPreTraining, BertModel
from bertkit.models.distilbert import (
    DistilBertForMaskedLM,
    DistilBertForSequenceClassification,
    DistilBertModel,
)
from bertkit.models.heads import BertForSequenceClassification
from bertkit.models.roberta import (
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
    RobertaModel,
)

__all__ = ["AutoModel", "AutoModelForMaskedLM", "AutoModelForSequenceClassification"]


class _Auto:
    """Pick a class from ``CLASSES`` by the config's ``model_type``."""

    CLASSES: dict[str, type[nn.Module]] = {}
    what = "model"

    @classmethod
    def class_for(cls, model_type: str) -> type[nn.Module]:
        if model_type not in cls.CLASSES:
            raise ConfigError(f"no {cls.what} class for model_type {model_type!r}; bertkit has "
                              f"one for {', '.join(cls.CLASSES)}")
        return cls.CLASSES[model_type]

    @classmethod
    def from_pretrained(cls, path: str | Path, **config_overrides: Any) -> nn.Module:
        """Load a model directory (HF layout, or Google's for BERT) with its family's class."""
        config = AutoConfig.from_pretrained(path)
        return cls.class_for(config.model_type).from_pretrained(path, **config_overrides)

    @classmethod
    def from_config(cls, config: BertConfig) -> nn.Module:
        """A freshly initialised model of ``config``'s family."""
        return cls.class_for(config.model_type)(config)


class AutoModel(_Auto):
    """The base encoder: output ``last_hidden_state`` (and hidden states/attentions on request)."""

    CLASSES = {"bert": BertModel, "roberta": RobertaModel, "distilbert": DistilBertModel,
               "albert": AlbertModel}
    what = "base model"


class AutoModelForMaskedLM(_Auto):
    """The family's MLM model (with NSP/SOP where pre-training has it): output ``mlm_logits``."""

    CLASSES = {"bert": BertForPreTraining, "roberta": RobertaForMaskedLM,
               "distilbert": DistilBertForMaskedLM, "albert": AlbertForPreTraining}
    what = "masked-LM"


class AutoModelForSequenceClassification(_Auto):
    """The family's sequence classifier: logits (B, num_labels)."""

    CLASSES = {"bert": BertForSequenceClassification,
               "roberta": RobertaForSequenceClassification,
               "distilbert": DistilBertForSequenceClassification}
    what = "sequence-classification"
