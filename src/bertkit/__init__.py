"""bertkit: the complete BERT system in PyTorch.

The public API, imported lazily so that ``bertkit --help`` does not pay for torch::

    from bertkit import BertConfig, BertModel, BertTokenizer, encode
    model = BertModel.from_pretrained("path/to/hf-dir")
    tok = BertTokenizer.from_pretrained("path/to/hf-dir")
    vectors = encode(model, tok, ["a sentence", "another one"])   # (2, H)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "BertkitError": "bertkit.errors",
    "BertConfig": "bertkit.config",
    "ConfigError": "bertkit.config",
    "BertModel": "bertkit.models.bert",
    "BertForPreTraining": "bertkit.models.bert",
    "BertForSequenceClassification": "bertkit.models.heads",
    "BertForTokenClassification": "bertkit.models.heads",
    "BertForQuestionAnswering": "bertkit.models.heads",
    "BertForMultipleChoice": "bertkit.models.heads",
    "BertTokenizer": "bertkit.tokenization",
    "AutoTokenizer": "bertkit.tokenization",
    "CheckpointError": "bertkit.convert.hf",
    "AutoConfig": "bertkit.config",
    "RobertaConfig": "bertkit.config",
    "AlbertConfig": "bertkit.config",
    "DistilBertConfig": "bertkit.config",
    "AutoModel": "bertkit.models.auto",
    "AutoModelForMaskedLM": "bertkit.models.auto",
    "AutoModelForSequenceClassification": "bertkit.models.auto",
    "AutoModelForTokenClassification": "bertkit.models.auto",
    "AutoModelForQuestionAnswering": "bertkit.models.auto",
    "AutoModelForMultipleChoice": "bertkit.models.auto",
    "RobertaModel": "bertkit.models.roberta",
    "RobertaForMaskedLM": "bertkit.models.roberta",
    "RobertaForSequenceClassification": "bertkit.models.roberta",
    "RobertaForTokenClassification": "bertkit.models.roberta",
    "RobertaForQuestionAnswering": "bertkit.models.roberta",
    "RobertaForMultipleChoice": "bertkit.models.roberta",
    "AlbertModel": "bertkit.models.albert",
    "AlbertForPreTraining": "bertkit.models.albert",
    "AlbertForMaskedLM": "bertkit.models.albert",
    "AlbertForSequenceClassification": "bertkit.models.albert",
    "AlbertForTokenClassification": "bertkit.models.albert",
    "AlbertForQuestionAnswering": "bertkit.models.albert",
    "AlbertForMultipleChoice": "bertkit.models.albert",
    "DistilBertModel": "bertkit.models.distilbert",
    "DistilBertForMaskedLM": "bertkit.models.distilbert",
    "DistilBertForSequenceClassification": "bertkit.models.distilbert",
    "DistilBertForTokenClassification": "bertkit.models.distilbert",
    "DistilBertForQuestionAnswering": "bertkit.models.distilbert",
    "DistilBertForMultipleChoice": "bertkit.models.distilbert",
    "TFCheckpoint": "bertkit.convert.tf_checkpoint",
    "convert_google_dir": "bertkit.convert.google",
    "encode": "bertkit.inference",
    "pipeline": "bertkit.inference.pipelines",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bertkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
