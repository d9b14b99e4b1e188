"""Fine-tuning heads on the BERT encoder, with Hugging Face's names and checkpoint layout.

Each head is a small module on a family's encoder, named and shaped as in ``transformers`` so
that a directory saved here loads there and back. The generic heads (:class:`PooledClassifier`,
:class:`TokenClassifier`, :class:`SpanExtractor`, :class:`ChoiceScorer`) serve every family: a family's class is the
head plus a mixin naming its encoder (``RobertaForTokenClassification``, ``AlbertFor...``,
``DistilBertFor...``; RoBERTa's and DistilBERT's sequence classifiers have their own heads).
BERT's:

========================================  ==============  =================  ==================
class (config ``architectures``)          encoder output  head               logits
========================================  ==============  =================  ==================
BertForSequenceClassification             pooled (B, H)   ``classifier``     (B, num_labels)
BertForTokenClassification                tokens          ``classifier``     (B, T, num_labels)
BertForQuestionAnswering                  tokens          ``qa_outputs``     2 x (B, T)
BertForMultipleChoice                     pooled per      ``classifier``     (B, K)
                                          choice
========================================  ==============  =================  ==================

The label set lives in the config as HF writes it (``id2label``, ``label2id``, ``problem_type``
``"regression"`` for a single float output), kept in :attr:`BertConfig.extra`; use
:func:`with_labels` to put it there. The heads return logits; the losses are functions below so
the training loop can normalise them over a whole (accumulated, distributed) batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import BertConfig
from bertkit.models.bert import BertModel, BertOutput, PreTrainedMixin, init_weights

__all__ = ["ARCHITECTURES", "ChoiceScorer", "PooledClassifier", "SpanExtractor", "TaskModel", "TokenClassifier",
           "task_architectures", "BertForMultipleChoice", "BertForQuestionAnswering",
           "BertForSequenceClassification", "BertForTokenClassification", "IGNORE_INDEX",
           "HEAD_INITS", "check_model_dir", "classification_loss", "head_init", "is_regression",
           "label_entries", "label_names", "load_task_model", "num_labels", "qa_loss",
           "token_classification_loss", "with_labels"]

IGNORE_INDEX = -100  # label of word pieces and special tokens that carry no loss

HEAD_INITS = ("normal", "truncated")
_HEAD_INIT: ContextVar[str] = ContextVar("head_init", default="normal")


@contextmanager
def head_init(method: str) -> Iterator[None]:
    """Heads constructed inside this block start from ``method``.

    ``"normal"`` (the default) is N(0, initializer_range) as in ``transformers``; ``"truncated"`` is
    Google's ``run_classifier``/``run_squad`` init, the same normal cut at 2 std (std about 0.88 x).
    Both are fine for long runs; in short runs on small data the choice decides whether a token
    classifier leaves the all-"O" solution (see README, WNUT-16), and "normal" did on every seed.
    Weights found in the checkpoint replace either.
    """
    if method not in HEAD_INITS:
        raise ValueError(f"head init {method!r}: expected one of {', '.join(HEAD_INITS)}")
    token = _HEAD_INIT.set(method)
    try:
        yield
    finally:
        _HEAD_INIT.reset(token)


# -- labels in the config ---------------------------------------------------------------------

def label_entries(labels: Sequence[str] | None) -> dict[str, Any]:
    """HF config entries for a label list, or for one regression output when ``labels`` is None."""
    if labels is None:
        return {"problem_type": "regression", "id2label": {"0": "LABEL_0"},
                "label2id": {"LABEL_0": 0}}
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels in {list(labels)}")
    return {"problem_type": "single_label_classification",
            "id2label": {str(i): str(lab) for i, lab in enumerate(labels)},
            "label2id": {str(lab): i for i, lab in enumerate(labels)}}


def with_labels(config: BertConfig, labels: Sequence[str] | None) -> BertConfig:
    """Store a label list (or ``None`` for regression) in ``config.extra``, HF style; returns config."""
    config.extra.update(label_entries(labels))
    return config


def label_names(config: BertConfig) -> list[str]:
    """The labels in id order (``LABEL_i`` names when the config has none: 2 labels, HF's default)."""
    id2label = config.extra.get("id2label")
    if not id2label:
        n = int(config.extra.get("num_labels", 2))
        return [f"LABEL_{i}" for i in range(n)]
    return [str(id2label[k]) for k in sorted(id2label, key=int)]


def num_labels(config: BertConfig) -> int:
    return len(label_names(config))


def is_regression(config: BertConfig) -> bool:
    return config.extra.get("problem_type") == "regression"


def _linear(config: BertConfig, n_out: int) -> nn.Linear:
    """The head's (H -> n_out) layer, initialised as :func:`head_init` says; bias zero."""
    layer = nn.Linear(config.hidden_size, n_out)
    if _HEAD_INIT.get() == "normal":
        nn.init.normal_(layer.weight, std=config.initializer_range)
        nn.init.zeros_(layer.bias)
    else:
        init_weights(layer, config.initializer_range)
    return layer


# -- heads ------------------------------------------------------------------------------------

class TaskModel(PreTrainedMixin, nn.Module):
    """A family's encoder, kept under Hugging Face's prefix (``bert``, ``roberta``, ...), + a head.

    Subclasses name the family (``base_name``, ``base_class``, ``config_class``; a family mixin
    such as :class:`~bertkit.models.roberta.RobertaTask` sets them) and the head; so one head
    class serves every family and checkpoints keep HF's keys (``roberta.encoder...``,
    ``classifier.weight``).
    """

    base_name: ClassVar[str] = "bert"                       # attribute = HF's base prefix
    base_class: ClassVar[Callable[..., nn.Module]] = BertModel
    needs_pooler: ClassVar[bool] = False                    # heads on the pooled first-token state
    dropout_field: ClassVar[str | None] = None     # config field of the classifier's dropout
    qa_dropout_field: ClassVar[str | None] = None  # config field of the dropout before qa_outputs

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.add_module(self.base_name, self.base_class(config, add_pooler=self.needs_pooler))

    @classmethod
    def dropout_p(cls, config: BertConfig) -> float:
        """Dropout before a classifier: the family's ``dropout_field``, else HF's
        ``classifier_dropout``, else ``hidden_dropout_prob``."""
        if cls.dropout_field is not None:
            return float(getattr(config, cls.dropout_field))
        p = config.extra.get("classifier_dropout")
        return config.hidden_dropout_prob if p is None else float(p)

    @classmethod
    def qa_dropout_p(cls, config: BertConfig) -> float:
        """Dropout before ``qa_outputs``: none but where ``qa_dropout_field`` names one
        (DistilBERT's ``qa_dropout``)."""
        return 0.0 if cls.qa_dropout_field is None else float(getattr(config, cls.qa_dropout_field))

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None,
               token_type_ids: Tensor | None) -> BertOutput:
        """(B, T) inputs -> the encoder's output (``last_hidden_state`` (B, T, H))."""
        return getattr(self, self.base_name)(input_ids, attention_mask, token_type_ids)


class PooledClassifier(TaskModel):
    """Dropout + linear on the pooled first-token vector: class logits, or one value for regression."""

    needs_pooler = True

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.dropout = nn.Dropout(self.dropout_p(config))
        self.classifier = _linear(config, num_labels(config))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """(B, T) inputs -> (B, num_labels) logits."""
        pooled = self.encode(input_ids, attention_mask, token_type_ids).pooler_output
        assert pooled is not None
        return self.classifier(self.dropout(pooled))


class TokenClassifier(TaskModel):
    """Dropout + linear on every token: tag logits."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.dropout = nn.Dropout(self.dropout_p(config))
        self.classifier = _linear(config, num_labels(config))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """(B, T) inputs -> (B, T, num_labels) logits."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids).last_hidden_state
        return self.classifier(self.dropout(hidden))


class SpanExtractor(TaskModel):
    """Linear(H, 2) on every token: answer start and end logits (Google's ``run_squad`` head)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.dropout = nn.Dropout(self.qa_dropout_p(config))
        self.qa_outputs = _linear(config, 2)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, T) inputs -> start logits (B, T), end logits (B, T)."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids).last_hidden_state
        start, end = self.qa_outputs(self.dropout(hidden)).unbind(-1)
        return start, end


class BertForSequenceClassification(PooledClassifier):
    """BERT's sequence classifier (pooled first token -> dropout -> ``classifier``)."""

    hf_architecture = "BertForSequenceClassification"


class BertForTokenClassification(TokenClassifier):
    """BERT's token classifier (every token -> dropout -> ``classifier``)."""

    hf_architecture = "BertForTokenClassification"


class BertForQuestionAnswering(SpanExtractor):
    """BERT's span extractor (``qa_outputs``)."""

    hf_architecture = "BertForQuestionAnswering"


class ChoiceScorer(TaskModel):
    """Each choice is encoded as its own (context, choice) pair; one score per choice.

    The score is dropout + ``classifier`` (H -> 1) on :meth:`choice_vector`, the pooled first
    token by default; a family overrides either (DistilBERT scores the first token's state).
    """

    needs_pooler = True

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.dropout = nn.Dropout(self.dropout_p(config))
        self.classifier = _linear(config, 1)

    def choice_vector(self, out: BertOutput) -> Tensor:
        """The encoder's output for (B*K, T) rows -> one (B*K, H) vector per choice."""
        assert out.pooler_output is not None
        return out.pooler_output

    def score(self, vector: Tensor) -> Tensor:
        """(B*K, H) -> (B*K, 1) choice scores."""
        return self.classifier(self.dropout(vector))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """(B, K, T) inputs -> (B, K) choice logits."""
        b, k, t = input_ids.shape

        def flat(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.reshape(b * k, t)

        out = self.encode(flat(input_ids), flat(attention_mask),  # type: ignore[arg-type]
                          flat(token_type_ids))
        return self.score(self.choice_vector(out)).reshape(b, k)


class BertForMultipleChoice(ChoiceScorer):
    """BERT's multiple-choice scorer (pooled first token -> dropout -> ``classifier``)."""

    hf_architecture = "BertForMultipleChoice"


ARCHITECTURES: dict[str, type[nn.Module]] = {
    cls.hf_architecture: cls for cls in (BertForSequenceClassification, BertForTokenClassification,
                                         BertForQuestionAnswering, BertForMultipleChoice)}


def task_architectures() -> dict[str, type[nn.Module]]:
    """{HF architecture name: class} of every family's fine-tuned heads (BERT's and the others')."""
    from bertkit.models.auto import TASK_ARCHITECTURES

    return TASK_ARCHITECTURES


def check_model_dir(path: Any, flag: str = "--model", fine_tuned: bool = True) -> None:
    """Raise ``ValueError`` naming ``flag`` and ``path`` unless ``path`` is a model directory in
    Hugging Face layout (``config.json``); with ``fine_tuned``, one whose ``architectures`` name a
    fine-tuned head. A pre-training run directory (checkpoints, no ``config.json``) is named as
    such, with the command that exports it."""
    from pathlib import Path

    d = Path(path)
    if not d.exists():
        raise ValueError(f"{flag} {d}: no such directory")
    if not d.is_dir():
        raise ValueError(f"{flag} {d}: is a file, expected a model directory")
    if not (d / "config.json").is_file():
        if any(p.name.startswith("checkpoint-") for p in d.iterdir()):
            raise ValueError(f"{flag} {d} is a pre-training run, not a model directory: export "
                             f"it first (bertkit export {d} --out MODEL)"
                             + (", then fine-tune MODEL with bertkit finetune" if fine_tuned
                                else ""))
        raise ValueError(f"{flag} {d}: no config.json (not a model directory in Hugging Face "
                         "layout)")
    if not fine_tuned:
        return
    from bertkit.config import AutoConfig

    names = AutoConfig.from_json_file(d / "config.json").extra.get("architectures") or []
    known = task_architectures()
    if not any(n in known for n in names):
        raise ValueError(f"{flag} {d}: not a fine-tuned model (config.json architectures "
                         f"{names}, none of {sorted(known)}); fine-tune it with bertkit "
                         "finetune first")


def load_task_model(path: Any) -> nn.Module:
    """Load a fine-tuned HF directory with the head its config's ``architectures`` names.

    A missing directory, a pre-training run or a model without a fine-tuned head raises
    ``ValueError`` naming ``path`` (:func:`check_model_dir`)."""
    from pathlib import Path

    from bertkit.config import AutoConfig

    check_model_dir(path, "model")
    config = AutoConfig.from_json_file(Path(path) / "config.json")
    names = config.extra.get("architectures") or []
    known = task_architectures()
    found = [known[n] for n in names if n in known]
    return found[0].from_pretrained(path)  # type: ignore[attr-defined]


# -- losses -----------------------------------------------------------------------------------

def classification_loss(logits: Tensor, labels: Tensor, regression: bool,
                        reduction: str = "mean") -> Tensor:
    """Cross-entropy on (B, C) logits and (B,) ids, or MSE on (B, 1) values and (B,) floats."""
    if regression:
        return F.mse_loss(logits.float().reshape(-1), labels.float().reshape(-1), reduction=reduction)
    return F.cross_entropy(logits.float(), labels.long(), reduction=reduction)


def token_classification_loss(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy over tokens whose label is not ``IGNORE_INDEX``. (B, T, C), (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten().long(),
                           ignore_index=IGNORE_INDEX, reduction=reduction)


def qa_loss(start_logits: Tensor, end_logits: Tensor, start_positions: Tensor,
            end_positions: Tensor, reduction: str = "mean") -> Tensor:
    """Mean of the start and end cross-entropies (Google's ``run_squad`` loss). (B, T), (B,).

    A position outside the sequence (>= T) carries no loss, as in ``transformers``.
    """
    t = start_logits.shape[1]
    starts = start_positions.long().clamp(0, t)
    ends = end_positions.long().clamp(0, t)
    loss = (F.cross_entropy(start_logits.float(), starts, ignore_index=t, reduction=reduction)
            + F.cross_entropy(end_logits.float(), ends, ignore_index=t, reduction=reduction))
    return loss / 2

