"""``AutoModel`` & co: the family's class from ``config.json``'s ``model_type``.

    >>> AutoModel.class_for("roberta").__name__
    'RobertaModel'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from bertkit.config import AutoConfig, BertConfig, ConfigError
from bertkit.models import albert, distilbert, heads, roberta
from bertkit.models.albert import AlbertForPreTraining, AlbertModel
from bertkit.models.bert import BertForPreTraining, BertModel
from bertkit.models.distilbert import DistilBertForMaskedLM, DistilBertModel
from bertkit.models.roberta import RobertaForMaskedLM, RobertaModel

__all__ = ["AutoModel", "AutoModelForMaskedLM", "AutoModelForMultipleChoice",
           "AutoModelForQuestionAnswering", "AutoModelForSequenceClassification",
           "AutoModelForTokenClassification", "TASK_ARCHITECTURES"]


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


def _family_classes(suffix: str) -> dict[str, type[nn.Module]]:
    """{model_type: the family's ``<Family>For<suffix>`` class} for the families that have one."""
    found = {"bert": getattr(heads, f"BertFor{suffix}", None),
             "roberta": getattr(roberta, f"RobertaFor{suffix}", None),
             "distilbert": getattr(distilbert, f"DistilBertFor{suffix}", None),
             "albert": getattr(albert, f"AlbertFor{suffix}", None)}
    return {k: v for k, v in found.items() if v is not None}


class AutoModelForSequenceClassification(_Auto):
    """The family's sequence classifier: logits (B, num_labels)."""

    CLASSES = _family_classes("SequenceClassification")
    what = "sequence-classification"


class AutoModelForTokenClassification(_Auto):
    """The family's token classifier: logits (B, T, num_labels)."""

    CLASSES = _family_classes("TokenClassification")
    what = "token-classification"


class AutoModelForQuestionAnswering(_Auto):
    """The family's span extractor: start and end logits, each (B, T)."""

    CLASSES = _family_classes("QuestionAnswering")
    what = "question-answering"


class AutoModelForMultipleChoice(_Auto):
    """The family's multiple-choice scorer: logits (B, K) from (B, K, T) inputs."""

    CLASSES = _family_classes("MultipleChoice")
    what = "multiple-choice"


TASK_ARCHITECTURES: dict[str, type[nn.Module]] = {
    c.hf_architecture: c  # type: ignore[attr-defined]
    for auto in (AutoModelForSequenceClassification, AutoModelForTokenClassification,
                 AutoModelForQuestionAnswering, AutoModelForMultipleChoice)
    for c in auto.CLASSES.values()}
