"""One registry: task -> model head -> post-processing.

:data:`TASKS` maps each pipeline task to the head that serves it (see
:mod:`bertkit.inference.torch_backend`), its post-processing (the pipeline class in
:mod:`bertkit.inference.pipelines`) and its default window length. :func:`task_of_model` reads a
fine-tuned directory's ``architectures`` (and ``problem_type``) and gives the task and the kind of
``bertkit predict`` (the fine-tuning task kinds of :mod:`bertkit.finetune.tasks`).

>>> TASKS["question-answering"].head
'question-answering'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TASKS", "TaskSpec", "task_of_model"]


@dataclass(frozen=True)
class TaskSpec:
    """A task: the head it runs, the pipeline class doing its pre/post-processing, the tokens per
    window by default, and the ``bertkit predict`` kind of a fine-tuned model of that head."""

    name: str
    head: str
    pipeline: str
    max_length: int = 512
    predict_kind: str | None = None


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("feature-extraction", "base", "FeatureExtractionPipeline"),
    TaskSpec("sentence-similarity", "base", "SentenceSimilarityPipeline"),
    TaskSpec("fill-mask", "masked-lm", "FillMaskPipeline"),
    TaskSpec("text-classification", "sequence-classification", "TextClassificationPipeline",
             128, "classification"),
    TaskSpec("rerank", "sequence-classification", "RerankPipeline", 512, "classification"),
    TaskSpec("token-classification", "token-classification", "TokenClassificationPipeline",
             128, "ner"),
    TaskSpec("question-answering", "question-answering", "QuestionAnsweringPipeline", 384, "qa"),
    TaskSpec("multiple-choice", "multiple-choice", "MultipleChoicePipeline", 128,
             "multiple-choice"),
)}

ALIASES = {"ner": "token-classification", "sentiment-analysis": "text-classification",
           "embeddings": "feature-extraction", "qa": "question-answering"}

# The end of a head's HF class name (BertForTokenClassification, ...) -> the task it serves.
_ARCHITECTURE_TASK = {
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "ForQuestionAnswering": "question-answering",
    "ForMultipleChoice": "multiple-choice",
    "ForMaskedLM": "fill-mask", "ForPreTraining": "fill-mask",
}


def _architecture_task(name: str) -> str | None:
    return next((t for suffix, t in _ARCHITECTURE_TASK.items() if name.endswith(suffix)), None)


def task_spec(name: str) -> TaskSpec:
    """The spec of task ``name`` (or an alias); ValueError naming ``task`` when unknown."""
    name = ALIASES.get(name, name)
    if name not in TASKS:
        raise ValueError(f"task {name!r}: unknown; use one of {', '.join(TASKS)} "
                         f"(aliases: {', '.join(ALIASES)})")
    return TASKS[name]


def task_of_model(config: Any, fine_tuned: bool = False) -> tuple[TaskSpec, str | None]:
    """The task a model directory's config serves, and its ``bertkit predict`` kind.

    Reads ``architectures`` (the first one bertkit knows); a sequence classifier with
    ``problem_type == "regression"`` has predict kind ``regression``. A directory naming no head
    is ``feature-extraction`` unless ``fine_tuned`` (then ValueError naming ``architectures``).
    """
    from bertkit.models.heads import is_regression

    names = config.extra.get("architectures") or []
    for n in names:
        task = _architecture_task(n)
        if task is not None:
            spec = TASKS[task]
            if fine_tuned and spec.predict_kind is None:
                continue
            kind = spec.predict_kind
            if kind == "classification" and is_regression(config):
                kind = "regression"
            return spec, kind
    if fine_tuned:
        raise ValueError(f"config architectures {names} name no fine-tuned head")
    return TASKS["feature-extraction"], None
