"""What differs between fine-tuning tasks: reading, encoding, model head, loss, metrics, outputs.

A :class:`Task` turns files into features, features into batches and model outputs into metrics and
prediction files; :mod:`bertkit.finetune.run` does the rest (training, evaluation each epoch, the
best checkpoint, seeds) the same way for every task. Kinds:

- ``classification`` / ``glue:NAME``: single texts or pairs (CSV/TSV/JSONL or a GLUE TSV layout),
  cross-entropy on the pooled output; metric accuracy (GLUE tasks: GLUE's metrics).
- ``regression``: one float per example (STS-B style), MSE; Pearson and Spearman.
- ``ner``: CoNLL token-per-line files, token classification on the first word piece of each word;
  entity-level precision/recall/F1.
- ``qa``: SQuAD v1.1/v2.0 JSON, start/end span logits over doc-stride windows; EM and F1 (v2: with
  the has-answer/no-answer split and the best null threshold).
- ``multiple-choice``: SWAG-layout CSV, one score per choice; accuracy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bertkit.fileio import atomic_write_text
from bertkit.models import heads

logger = logging.getLogger(__name__)

KINDS = ("classification", "regression", "ner", "qa", "multiple-choice")


@dataclass
class Settings:
    """Reading and encoding options shared by every task (from the command's arguments)."""

    max_seq_length: int = 128
    long_inputs: str = "truncate"
    stride: int | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    labels: list[str] | None = None
    skip_bad_rows: bool = False
    doc_stride: int = 128
    max_query_length: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0
    head_init: str = "normal"


@dataclass
class Split:
    """One file's examples and their features."""

    name: str
    path: Path | None
    examples: list[Any]
    features: list[Any]

    def lengths(self) -> list[int]:
        from bertkit.finetune.features import feature_lengths

        return feature_lengths(self.features)


def _tsv_cell(x: Any) -> str:
    return str(x).replace("\t", " ").replace("\n", " ")


class Task:
    """Base class: subclasses fill in the task-specific pieces."""

    kind: str = ""
    head: str = ""  # the head's HF suffix: SequenceClassification, TokenClassification, ...
    main_metric: str = "accuracy"

    def __init__(self, settings: Settings, tokenizer: Any, glue: str | None = None) -> None:
        self.s = settings
        self.tokenizer = tokenizer
        self.glue = glue
        self.labels: list[str] | None = settings.labels

    # -- data ------------------------------------------------------------------------------
    def read(self, path: Path, optional_labels: bool = False) -> list[Any]:
        """Examples of ``path``; ``optional_labels`` (the test split) accepts unlabelled rows."""
        raise NotImplementedError

    def labelled(self, examples: Sequence[Any]) -> bool:
        """Whether every example has a gold label, so that metrics can be computed."""
        return all(getattr(e, "label", None) is not None for e in examples)

    def fit_labels(self, train_examples: Sequence[Any], other_examples: Sequence[Any] = ()) -> None:
        """Fix the label list from the data when none was given (training data first)."""

    def check_train(self, path: Path, examples: Sequence[Any]) -> None:
        """Refuse training data this task cannot learn from (one class only)."""

    def encode(self, examples: Sequence[Any], training: bool) -> list[Any]:
        raise NotImplementedError

    def load_all(self, paths: dict[str, Path | None]) -> dict[str, Split]:
        """Read every split, fix the labels (from ``train``, plus any only in the others), encode."""
        examples = {name: self.read(p, optional_labels=name == "test") if p is not None else []
                    for name, p in paths.items()}
        if paths.get("train") is not None and examples["train"]:
            self.check_train(Path(paths["train"]), examples["train"])  # type: ignore[arg-type]
        others = [e for name, ex in examples.items() if name != "train" for e in ex]
        self.fit_labels(examples.get("train", []), others)
        return {name: Split(name, paths[name], ex, self.encode(ex, training=name == "train"))
                for name, ex in examples.items()}

    def collate(self, features: Sequence[Any]) -> dict[str, Tensor]:
        from bertkit.finetune.features import collate

        return collate(features, self.tokenizer.pad_token_id)

    # -- model -----------------------------------------------------------------------------
    def config_overrides(self) -> dict[str, Any]:
        """Config entries (labels) the head needs when built from a base checkpoint."""
        return {}

    def model_class(self, model_dir: Path) -> type[nn.Module]:
        """This task's head class for the family of ``model_dir`` (its config's ``model_type``)."""
        from bertkit.config import AutoConfig
        from bertkit.models import auto

        family = AutoConfig.from_pretrained(model_dir).model_type
        return getattr(auto, f"AutoModelFor{self.head}").class_for(family)

    def build_model(self, model_dir: Path) -> nn.Module:
        """The encoder of ``model_dir`` with this task's head (new heads per ``head_init``)."""
        cls = self.model_class(model_dir)
        with heads.head_init(self.s.head_init):
            return cls.from_pretrained(model_dir, **self.config_overrides())  # type: ignore[attr-defined]

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> Any:
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def loss_sum(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Summed loss of a micro-batch (divided by :meth:`count` over the global batch)."""
        logits = self.forward(model, batch)
        return heads.classification_loss(logits, batch["labels"], regression=False,
                                         reduction="sum")

    def count(self, batch: dict[str, Tensor]) -> Tensor:
        return torch.tensor(float(batch["input_ids"].shape[0]))

    def fit_loss_scale(self, train: Split) -> None:
        """Fix what :meth:`count` divides by from the training split (per-row tasks: nothing)."""

    # -- outputs (per feature: see bertkit.finetune.predict.feature_outputs) --------------
    def evaluate(self, split: Split, outputs: list[Any]) -> dict[str, float]:
        raise NotImplementedError

    def write_predictions(self, split: Split, outputs: list[Any], out_dir: Path) -> list[Path]:
        raise NotImplementedError


def _all_or_none_labelled(path: Path, examples: list[Any], field: str, empty: Any) -> list[Any]:
    """``examples``, or all of them without labels when only some have one: the file is then
    predicted and not scored (a subset's metric would mislead). ``empty`` marks a missing label."""
    missing = sum(getattr(e, field) == empty for e in examples)
    if 0 < missing < len(examples):
        logger.warning("%s: %d of %d examples have no %s; the file is predicted, not scored",
                       path, missing, len(examples), field)
        return [replace(e, **{field: empty}) for e in examples]
    return examples


def _with_unseen(from_train: list[str], from_all: list[str], what: str) -> list[str]:
    """The label list of all splits (in ``from_all``'s order); warn about those not in train."""
    unseen = [x for x in from_all if x not in from_train]
    if unseen:
        logger.warning("%s only in the dev/test data (never trained on): %s", what,
                       ", ".join(unseen))
    logger.info("%s: %s", what, ", ".join(from_all))
    return from_all


# ----------------------------------------------------------------------------- sequence tasks


class ClassificationTask(Task):
    kind = "classification"
    head = "SequenceClassification"
    regression = False

    def __init__(self, settings: Settings, tokenizer: Any, glue: str | None = None) -> None:
        super().__init__(settings, tokenizer, glue)
        if glue is not None:
            from bertkit.data.glue import GLUE_TASKS, glue_task

            try:
                task = glue_task(glue)
            except KeyError:
                raise ValueError(f"unknown task 'glue:{glue}'; the GLUE tasks are "
                                 + ", ".join(f"glue:{n}" for n in GLUE_TASKS)) from None
            self.regression = task.labels is None
            self.labels = None if task.labels is None else list(task.labels)
            self.main_metric = task.metrics[0]

    def read(self, path: Path, optional_labels: bool = False) -> list[Any]:
        from bertkit.data.glue import read_glue, read_table

        if self.glue is not None:  # a GLUE test file is known by its name and layout
            return read_glue(self.glue, path, skip_bad_rows=self.s.skip_bad_rows)
        examples = read_table(path, self.s.text_column, self.s.text_pair_column,
                              self.s.label_column, labels=self.labels, regression=self.regression,
                              skip_bad_rows=self.s.skip_bad_rows, label_optional=optional_labels)
        return _all_or_none_labelled(path, examples, "label", None)

    def check_train(self, path: Path, examples: Sequence[Any]) -> None:
        from bertkit.data.errors import DataError
        from bertkit.data.glue import label_list

        found = [] if self.regression else label_list(examples)
        if len(found) == 1:
            raise DataError(path, None, f"every example has label {found[0]!r}; classification "
                                        "needs at least two labels")

    def fit_labels(self, train_examples: Sequence[Any], other_examples: Sequence[Any] = ()) -> None:
        if self.regression or self.labels is not None:
            return
        from bertkit.data.glue import label_list

        self.labels = _with_unseen(label_list(train_examples),
                                   label_list([*train_examples, *other_examples]), "labels")

    def label_to_id(self) -> dict[str, int] | None:
        return None if self.regression else {x: i for i, x in enumerate(self.labels or [])}

    def encode(self, examples: Sequence[Any], training: bool) -> list[Any]:
        from bertkit.finetune.features import encode_classification

        return encode_classification(examples, self.tokenizer, self.label_to_id(),
                                     self.s.max_seq_length, self.s.long_inputs, self.s.stride)

    def config_overrides(self) -> dict[str, Any]:
        return heads.label_entries(None if self.regression else self.labels)

    def loss_sum(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return heads.classification_loss(self.forward(model, batch), batch["labels"],
                                         self.regression, reduction="sum")

    def example_logits(self, split: Split, outputs: list[Any]) -> np.ndarray:
        from bertkit.finetune.features import aggregate_classification

        return aggregate_classification(split.features, np.stack(outputs), len(split.examples))

    def evaluate(self, split: Split, outputs: list[Any]) -> dict[str, float]:
        from bertkit import metrics

        logits = self.example_logits(split, outputs)
        if self.regression:
            preds = logits[:, 0]
            gold = np.array([float(e.label) for e in split.examples])
            if self.glue is not None:
                return metrics.glue_metrics(self.glue, preds, gold)
            return {"pearson": metrics.pearson(preds, gold), "spearman": metrics.spearman(preds, gold),
                    "mse": float(np.mean((preds - gold) ** 2))}
        ids = logits.argmax(-1)
        l2i = self.label_to_id() or {}
        gold_ids = np.array([l2i[str(e.label)] for e in split.examples])
        if self.glue is not None:
            return metrics.glue_metrics(self.glue, ids, gold_ids)
        out = {"accuracy": metrics.accuracy(ids, gold_ids)}
        if len(l2i) > 2:
            out["macro_f1"] = metrics.f1_score(ids, gold_ids, average="macro")
        return out

    def write_predictions(self, split: Split, outputs: list[Any], out_dir: Path) -> list[Path]:
        """``<split>_results.tsv``: guid, prediction, then one probability per label (or the value)."""
        logits = self.example_logits(split, outputs)
        if self.regression:
            rows = ["guid\tprediction"] + [f"{_tsv_cell(e.guid)}\t{v:.6f}"
                                           for e, v in zip(split.examples, logits[:, 0], strict=True)]
        else:
            probs = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
            names = self.labels or []
            rows = ["\t".join(["guid", "prediction", *(f"p_{_tsv_cell(n)}" for n in names)])]
            for e, p in zip(split.examples, probs, strict=True):
                rows.append("\t".join([_tsv_cell(e.guid), _tsv_cell(names[int(p.argmax())]),
                                       *(f"{x:.6f}" for x in p)]))
        path = out_dir / f"{split.name}_results.tsv"
        atomic_write_text(path, "\n".join(rows) + "\n")
        return [path]


class RegressionTask(ClassificationTask):
    kind = "regression"
    regression = True
    main_metric = "pearson"


# ----------------------------------------------------------------------------- NER


class NerTask(Task):
    kind = "ner"
    head = "TokenClassification"
    main_metric = "f1"
    tokens_per_row: float | None = None  # set by fit_loss_scale

    def read(self, path: Path, optional_labels: bool = False) -> list[Any]:
        from bertkit.data.ner import read_conll  # a test file may hold tokens without tags

        examples = read_conll(path, skip_bad_rows=self.s.skip_bad_rows,
                              tags_optional=optional_labels)
        return _all_or_none_labelled(path, examples, "tags", ())

    def labelled(self, examples: Sequence[Any]) -> bool:
        return all(e.tags for e in examples)

    def check_train(self, path: Path, examples: Sequence[Any]) -> None:
        from bertkit.data.errors import DataError

        if all(t == "O" for e in examples for t in e.tags):
            raise DataError(path, None, "every token is tagged 'O'; NER needs at least one "
                                        "entity tag (B-TYPE, I-TYPE) to learn from")

    def fit_labels(self, train_examples: Sequence[Any], other_examples: Sequence[Any] = ()) -> None:
        if self.labels is None:
            from bertkit.data.ner import ner_label_list

            self.labels = _with_unseen(ner_label_list(train_examples),
                                       ner_label_list([*train_examples, *other_examples]), "tags")

    def encode(self, examples: Sequence[Any], training: bool) -> list[Any]:
        from bertkit.finetune.features import encode_ner

        l2i = {x: i for i, x in enumerate(self.labels or [])}
        unknown = sorted({t for e in examples for t in e.tags if t not in l2i})
        if unknown:
            raise ValueError(f"tags not in the label list {self.labels}: {unknown[:10]}; "
                             "pass the full tag list with --labels")
        return encode_ner(examples, self.tokenizer, l2i, self.s.max_seq_length,
                          self.s.long_inputs, self.s.stride)

    def config_overrides(self) -> dict[str, Any]:
        return heads.label_entries(self.labels)

    def loss_sum(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return heads.token_classification_loss(self.forward(model, batch), batch["labels"],
                                               reduction="sum")

    def fit_loss_scale(self, train: Split) -> None:
        """Mean labelled tokens per training feature (see :meth:`count`)."""
        labelled = sum(sum(1 for x in f.label if x != heads.IGNORE_INDEX) for f in train.features)
        self.tokens_per_row = labelled / max(1, len(train.features))

    def count(self, batch: dict[str, Tensor]) -> Tensor:
        """The loss's divisor: rows x mean labelled tokens per training row.

        Not the batch's own labelled tokens: length-grouped batches differ several-fold in that
        count, and dividing by it would weight each token of a short-sentence batch several
        times more than one of a long-sentence batch (on WNUT-16 that cost 1.3 F1 against random
        batches). Before :meth:`fit_loss_scale`, the batch's own count.
        """
        if self.tokens_per_row is None:
            return (batch["labels"] != heads.IGNORE_INDEX).sum().float()
        return torch.tensor(batch["labels"].shape[0] * self.tokens_per_row)

    def tags(self, split: Split, outputs: list[Any]) -> list[list[str]]:
        from bertkit.finetune.features import aggregate_ner

        return aggregate_ner(split.features, outputs, split.examples, self.labels or [])

    def evaluate(self, split: Split, outputs: list[Any]) -> dict[str, float]:
        from bertkit.data.ner import iob1_to_iob2
        from bertkit.metrics import ner_scores

        pred = self.tags(split, outputs)
        gold = [iob1_to_iob2(list(e.tags)) for e in split.examples]
        return ner_scores(gold, [iob1_to_iob2(p) for p in pred])

    def write_predictions(self, split: Split, outputs: list[Any], out_dir: Path) -> list[Path]:
        """``<split>_predictions.conll``: ``token gold predicted`` per line (``token predicted``
        for an untagged test file), a blank line between sentences."""
        lines: list[str] = []
        for e, tags in zip(split.examples, self.tags(split, outputs), strict=True):
            gold = e.tags or [None] * len(e.tokens)
            lines += ["\t".join(x for x in (tok, g, p) if x is not None)
                      for tok, g, p in zip(e.tokens, gold, tags, strict=True)]
            lines.append("")
        path = out_dir / f"{split.name}_predictions.conll"
        atomic_write_text(path, "\n".join(lines) + "\n")
        return [path]


# ----------------------------------------------------------------------------- QA


class QaTask(Task):
    kind = "qa"
    head = "QuestionAnswering"
    main_metric = "f1"
    version_2 = False

    def read(self, path: Path, optional_labels: bool = False) -> list[Any]:
        from bertkit.data.squad import read_squad  # a question without answers is unlabelled

        examples = read_squad(path, skip_bad_rows=self.s.skip_bad_rows,
                              answers_optional=optional_labels)
        if any(e.is_impossible for e in examples):
            self.version_2 = True
        return examples

    def labelled(self, examples: Sequence[Any]) -> bool:
        return all(e.answers or e.is_impossible for e in examples)

    def encode(self, examples: Sequence[Any], training: bool) -> list[Any]:
        from bertkit.finetune.qa import convert_examples

        return convert_examples(examples, self.tokenizer, self.s.max_seq_length,
                                self.s.doc_stride, self.s.max_query_length, is_training=training)

    def collate(self, features: Sequence[Any]) -> dict[str, Tensor]:
        from bertkit.finetune.qa import collate_qa

        return collate_qa(features, self.tokenizer.pad_token_id)

    def loss_sum(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        start, end = self.forward(model, batch)
        return heads.qa_loss(start, end, batch["start_positions"], batch["end_positions"],
                             reduction="sum")

    def predictions(self, split: Split, outputs: list[Any]) -> Any:
        from bertkit.finetune.qa import postprocess

        starts = [s[:len(f.input_ids)] for (s, _), f in zip(outputs, split.features, strict=True)]
        ends = [e[:len(f.input_ids)] for (_, e), f in zip(outputs, split.features, strict=True)]
        return postprocess(split.examples, split.features, starts, ends,
                           n_best_size=self.s.n_best_size, max_answer_length=self.s.max_answer_length,
                           version_2=self.version_2,
                           null_score_diff_threshold=self.s.null_score_diff_threshold,
                           do_lower_case=getattr(self.tokenizer, "do_lower_case", False))

    def evaluate(self, split: Split, outputs: list[Any]) -> dict[str, float]:
        from bertkit import metrics
        from bertkit.data.squad import gold_answers

        preds = self.predictions(split, outputs)
        gold = gold_answers(split.examples)
        if self.version_2:
            return metrics.squad_v2_scores(gold, preds.predictions, preds.null_odds)
        return metrics.squad_v1_scores(gold, preds.predictions)

    def write_predictions(self, split: Split, outputs: list[Any], out_dir: Path) -> list[Path]:
        from bertkit.finetune.qa import write_qa_predictions

        target = out_dir / split.name
        return write_qa_predictions(target, self.predictions(split, outputs), self.version_2)


# ----------------------------------------------------------------------------- multiple choice


class MultipleChoiceTask(Task):
    kind = "multiple-choice"
    head = "MultipleChoice"

    def read(self, path: Path, optional_labels: bool = False) -> list[Any]:
        from bertkit.data.multiple_choice import read_swag  # the label column is optional

        return read_swag(path, skip_bad_rows=self.s.skip_bad_rows)

    def encode(self, examples: Sequence[Any], training: bool) -> list[Any]:
        from bertkit.finetune.features import encode_multiple_choice

        return encode_multiple_choice(examples, self.tokenizer, self.s.max_seq_length)

    def evaluate(self, split: Split, outputs: list[Any]) -> dict[str, float]:
        from bertkit.metrics import accuracy

        pred = np.stack(outputs).argmax(-1)
        return {"accuracy": accuracy(pred, [e.label for e in split.examples])}

    def write_predictions(self, split: Split, outputs: list[Any], out_dir: Path) -> list[Path]:
        scores = np.stack(outputs)
        rows = ["guid\tprediction"] + [f"{_tsv_cell(e.guid)}\t{int(s.argmax())}"
                                       for e, s in zip(split.examples, scores, strict=True)]
        path = out_dir / f"{split.name}_results.tsv"
        atomic_write_text(path, "\n".join(rows) + "\n")
        return [path]


def make_task(name: str, settings: Settings, tokenizer: Any) -> Task:
    """``classification``, ``regression``, ``glue:NAME``, ``ner``, ``qa`` or ``multiple-choice``."""
    if name.startswith("glue:"):
        return ClassificationTask(settings, tokenizer, glue=name.split(":", 1)[1])
    table: dict[str, type[Task]] = {"classification": ClassificationTask,
                                    "regression": RegressionTask, "ner": NerTask, "qa": QaTask,
                                    "multiple-choice": MultipleChoiceTask}
    if name not in table:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(KINDS)} or glue:NAME")
    return table[name](settings, tokenizer)


def task_for_model(config: Any) -> str:
    """The task kind of a fine-tuned model directory's config (from ``architectures``)."""
    names = config.extra.get("architectures") or []
    kinds = {"SequenceClassification": "regression" if heads.is_regression(config)
             else "classification", "TokenClassification": "ner", "QuestionAnswering": "qa",
             "MultipleChoice": "multiple-choice"}
    for n in names:
        family, _, head = n.partition("For")
        if family in ("Bert", "Roberta", "DistilBert", "Albert") and head in kinds:
            return kinds[head]
    raise ValueError(f"config architectures {names} name no fine-tuned head")
