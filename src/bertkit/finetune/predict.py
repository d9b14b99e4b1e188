"""``bertkit predict``: run a fine-tuned model on inputs from a file or stdin, JSON lines out.

The task comes from the model's config (``architectures``). Inputs are JSON lines, or plain lines:

- classification / regression: ``{"text": ..., "text_b": ...}`` or a line ``text`` or
  ``text<TAB>text_b``; out: ``{"label", "probabilities"}`` (regression: ``{"value"}``).
- ner: ``{"tokens": [...]}`` or a line of whitespace-separated tokens; out: ``{"tokens", "tags"}``.
- qa: ``{"question": ..., "context": ...}``; out: ``{"answer", "nbest"}`` (best few). When no
  span of the context can be an answer (a context of characters the tokenizer drops, such as a
  zero-width space, or a v1 model whose best starts and ends pair into no valid span), the
  output is ``{"answer": "", "nbest": [], "no_span": true}``: Google's post-processing puts a
  placeholder answer ``"empty"`` there, which bertkit never shows as an answer.
- multiple-choice: ``{"context": ..., "choices": [...]}``; out: ``{"choice", "scores"}``.

Input must be UTF-8: a line that is not names its number. A field (or plain line) longer than
``--max-input-chars`` is an error naming the line, as a 20 MB line would otherwise be cut into
tens of thousands of windows and run for many minutes; a chunk of inputs with many windows is
logged, and a progress bar on stderr (when it is a terminal) counts the batches. A model whose
outputs are NaN or infinite (a diverged training run) is an error naming the input line, never
a line of ``NaN`` probabilities (which is not JSON).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import torch

from bertkit.data.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["PredictArgs", "Predictor", "predict_records", "run_predict"]


@dataclass
class PredictArgs:
    """Predict with a fine-tuned model (from ``bertkit finetune``'s RUN/best, or any Hugging Face
    head of BERT, RoBERTa, ALBERT or DistilBERT)."""

    model: str = field(metadata={"help": "fine-tuned model directory"})
    input: str = field(default="-", metadata={"help": "input file of JSON or plain lines (- = stdin)"})
    output: str = field(default="-", metadata={"help": "output JSON-lines file (- = stdout)"})
    max_seq_length: int | None = field(default=None, metadata={"min": 8,
        "help": "tokens per input (default 128; qa 384)"})
    long_inputs: Literal["truncate", "window"] = field(default="window", metadata={
        "help": "inputs longer than max-seq-length: truncate, or windows (see finetune --help)"})
    batch_size: int = field(default=32, metadata={"min": 1, "help": "inputs per batch"})
    chunk: int = field(default=1024, metadata={"min": 1,
        "help": "records read, predicted and written at a time (bounds memory on large inputs)"})
    max_input_chars: int = field(default=1_000_000, metadata={"min": 1,
        "help": "longest text field (or plain line) accepted, in characters; a longer one is an "
                "error naming its line"})
    progress: bool | None = field(default=None, metadata={
        "help": "progress bar of the batches (default: when stderr is a terminal)"})
    threads: int = field(default=0, metadata={"min": 0,
        "help": "torch CPU threads (0: torch's default)"})
    backend: Literal["torch", "onnx"] = field(default="torch", metadata={
        "help": "model runner: torch, or onnx (MODEL/model.onnx from bertkit export --format "
                "onnx)"})
    device: str = field(default="cpu", metadata={"help": "torch device: cpu, cuda, cuda:1 ..."})


def _records(stream: IO[str] | IO[bytes], source: str
             ) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, JSON object or plain line) of each non-blank line; bytes that are not UTF-8
    are an error naming the line (:func:`bertkit.fileio.utf8_lines`)."""
    from bertkit.data.glue import UTF8_HINT
    from bertkit.fileio import utf8_lines

    for n, line in enumerate(utf8_lines(stream, source, UTF8_HINT), 1):
        line = line.rstrip("\n").rstrip("\r")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(source, n, f"not valid JSON ({e})") from e
        else:
            yield n, line


def _text(rec: dict[str, Any], name: str, source: str, n: int, optional: bool = False
          ) -> str | None:
    """Field ``name`` of a JSON record: a non-empty string (or absent/null when ``optional``)."""
    value = rec.get(name)
    if value is None and optional:
        return None
    if name not in rec:
        raise DataError(source, n, f"missing field {name!r} (have {sorted(rec)})")
    if not isinstance(value, str) or not value.strip():
        raise DataError(source, n, f"field {name!r} must be a non-empty string, got {value!r:.60}")
    return value


def _strings(rec: dict[str, Any], name: str, source: str, n: int) -> list[str]:
    """Field ``name`` of a JSON record: a non-empty list of non-empty strings."""
    if name not in rec:
        raise DataError(source, n, f"missing field {name!r} (have {sorted(rec)})")
    value = rec[name]
    if not isinstance(value, list) or not value \
            or not all(isinstance(v, str) and v.strip() for v in value):
        raise DataError(source, n, f"field {name!r} must be a list of non-empty strings, "
                                   f"got {value!r:.60}")
    return value


def _check_size(rec: dict[str, Any] | str, source: str, n: int, limit: int | None) -> None:
    """A record's text fields (or plain line) of at most ``limit`` characters each."""
    if limit is None:
        return
    fields = {"the line": rec} if isinstance(rec, str) else {f"field {k!r}": v
                                                             for k, v in rec.items()}
    for name, value in fields.items():
        size = (len(value) if isinstance(value, str) else
                sum(len(v) for v in value if isinstance(v, str)) if isinstance(value, list) else 0)
        if size > limit:
            raise DataError(source, n, f"{name} has {size:,} characters, more than "
                                       f"--max-input-chars {limit:,}: split the text, or raise "
                                       "the limit")


def _classification_example(rec: dict[str, Any] | str, source: str, n: int, guid: str) -> Any:
    from bertkit.data.glue import Example

    if isinstance(rec, str):
        a, _, b = rec.partition("\t")
        return Example(a, b or None, None, guid)
    return Example(_text(rec, "text", source, n), _text(rec, "text_b", source, n, optional=True),
                   None, guid)


def _ner_example(rec: dict[str, Any] | str, source: str, n: int, guid: str) -> Any:
    from bertkit.data.ner import NerSentence

    tokens = rec.split() if isinstance(rec, str) else _strings(rec, "tokens", source, n)
    if any(len(t.split()) != 1 for t in tokens):
        raise DataError(source, n, "a token holds whitespace")
    return NerSentence(tuple(tokens), ("O",) * len(tokens), guid)


def _qa_example(rec: dict[str, Any] | str, source: str, n: int, guid: str) -> Any:
    from bertkit.data.squad import make_example

    if isinstance(rec, str):
        raise ValueError(f"{source}:{n}: qa needs JSON lines with question and context")
    return make_example(guid, _text(rec, "question", source, n), _text(rec, "context", source, n),
                        [])


def _choice_example(rec: dict[str, Any] | str, source: str, n: int, guid: str) -> Any:
    from bertkit.data.multiple_choice import MultipleChoiceExample

    if isinstance(rec, str):
        raise ValueError(f"{source}:{n}: multiple-choice needs JSON with context and choices")
    choices = tuple(_strings(rec, "choices", source, n))
    return MultipleChoiceExample(guid, _text(rec, "context", source, n), "", choices, None)


def _format_classification(task: Any, split: Any, outputs: list[Any], names: list[str]
                           ) -> list[dict[str, Any]]:
    logits = task.example_logits(split, outputs)
    probs = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
    return [{"label": names[int(p.argmax())],
             "probabilities": {n: round(float(x), 6) for n, x in zip(names, p, strict=True)}}
            for p in probs]


def _format_regression(task: Any, split: Any, outputs: list[Any], names: list[str]
                       ) -> list[dict[str, Any]]:
    return [{"value": float(v)} for v in task.example_logits(split, outputs)[:, 0]]


def _format_ner(task: Any, split: Any, outputs: list[Any], names: list[str]
                ) -> list[dict[str, Any]]:
    return [{"tokens": list(e.tokens), "tags": tags}
            for e, tags in zip(split.examples, task.tags(split, outputs), strict=True)]


def _format_qa(task: Any, split: Any, outputs: list[Any], names: list[str]
               ) -> list[dict[str, Any]]:
    preds = task.predictions(split, outputs)
    return [{"answer": "", "nbest": [], "no_span": True} if e.qid in preds.no_span
            else {"answer": preds.predictions[e.qid], "nbest": preds.nbest[e.qid][:5]}
            for e in split.examples]


def _format_choice(task: Any, split: Any, outputs: list[Any], names: list[str]
                   ) -> list[dict[str, Any]]:
    import numpy as np

    scores = np.stack(outputs)
    return [{"choice": int(s.argmax()), "scores": [round(float(x), 6) for x in s]} for s in scores]


@dataclass(frozen=True)
class _Kind:
    """How ``bertkit predict`` reads a record and writes a prediction for one task kind."""

    example: Callable[[dict[str, Any] | str, str, int, str], Any]
    format: Callable[[Any, Any, list[Any], list[str]], list[dict[str, Any]]]


# predict kind (from the model's head: bertkit.inference.tasks.task_of_model) -> reading, output
KINDS: dict[str, _Kind] = {
    "classification": _Kind(_classification_example, _format_classification),
    "regression": _Kind(_classification_example, _format_regression),
    "ner": _Kind(_ner_example, _format_ner),
    "qa": _Kind(_qa_example, _format_qa),
    "multiple-choice": _Kind(_choice_example, _format_choice),
}


def _examples(kind: str, records: list[tuple[int, dict[str, Any] | str]], source: str,
              max_chars: int | None = None) -> list[Any]:
    """Records -> the task's example objects (labels unknown); ``max_chars`` bounds each text
    field (:func:`_check_size`)."""
    out: list[Any] = []
    for n, rec in records:
        _check_size(rec, source, n, max_chars)
        out.append(KINDS[kind].example(rec, source, n, f"{Path(source).stem}-{n}"))
    return out


def feature_outputs(kind: str, rows: list[dict[str, torch.Tensor]]) -> list[Any]:
    """Backend output rows -> the per-feature numpy outputs the fine-tuning tasks read."""
    if kind == "qa":
        return [(r["start_logits"].numpy(), r["end_logits"].numpy()) for r in rows]
    return [r["logits"].numpy() for r in rows]


class Predictor:
    """A fine-tuned model loaded once, predicting record lists (see the module doc)."""

    def __init__(self, model_dir: str | Path, max_seq_length: int | None = None,
                 long_inputs: str = "window", batch_size: int = 32,
                 max_input_chars: int | None = None, progress: bool = False,
                 backend: str = "torch", device: str = "cpu") -> None:
        from bertkit.config import AutoConfig
        from bertkit.finetune.tasks import Settings, make_task
        from bertkit.inference.backends import load_backend
        from bertkit.inference.tasks import task_of_model
        from bertkit.models.heads import check_model_dir, label_names
        from bertkit.tokenization import AutoTokenizer

        check_model_dir(model_dir, "model")
        config = AutoConfig.from_pretrained(model_dir)
        spec, kind = task_of_model(config, fine_tuned=True)
        assert kind is not None
        self.kind = kind
        self.names = label_names(config)
        settings = Settings(max_seq_length=max_seq_length or spec.max_length,
                            long_inputs=long_inputs, labels=self.names)
        self.task = make_task(self.kind, settings, AutoTokenizer.from_pretrained(model_dir))
        self.backend = load_backend(backend, model_dir, head=spec.head, device=device)
        self.batch_size = batch_size
        self.max_input_chars = max_input_chars
        self.progress = progress
        self.model_dir = model_dir

    def __call__(self, records: list[tuple[int, dict[str, Any] | str]], source: str = "<input>"
                 ) -> list[dict[str, Any]]:
        """One prediction dict per record, in order."""
        from bertkit.finetune.tasks import Split
        from bertkit.inference.batcher import Encoded, NonFiniteOutputError, run_features

        if not records:
            return []
        examples = _examples(self.kind, records, source, self.max_input_chars)
        split = Split("predict", None, examples, self.task.encode(examples, training=False))
        if len(split.features) >= _MANY_FEATURES:
            logger.info("%s, lines %d-%d: %d inputs make %d windows of up to %d tokens; predicting",
                        source, records[0][0], records[-1][0], len(examples),
                        len(split.features), self.task.s.max_seq_length)
        items = [Encoded(f.input_ids, f.token_type_ids) for f in split.features]
        try:
            rows = run_features(self.backend, items, self.task.tokenizer.pad_token_id,
                                max_batch_tokens=self.batch_size * self.task.s.max_seq_length,
                                max_batch_size=self.batch_size,
                                token_types="token_type_ids" in self.backend.input_names,
                                progress=self.progress, desc=split.name)
        except NonFiniteOutputError as e:
            line = records[split.features[e.features[0]].example_index][0]
            raise NonFiniteOutputError(
                f"{source}:{line}: the model's outputs are NaN or inf; {self.model_dir} is broken "
                "(its training diverged?), nothing more is predicted", e.features) from e
        outputs = feature_outputs(self.kind, rows)
        return KINDS[self.kind].format(self.task, split, outputs, self.names)


_MANY_FEATURES = 2048  # a chunk making this many windows is logged (it may take minutes)


def predict_records(model_dir: str | Path, records: list[tuple[int, dict[str, Any] | str]],
                    source: str = "<input>", max_seq_length: int | None = None,
                    long_inputs: str = "window", batch_size: int = 32) -> list[dict[str, Any]]:
    """Predictions (one dict per record) of the fine-tuned model in ``model_dir``."""
    return Predictor(model_dir, max_seq_length, long_inputs, batch_size)(records, source)


def _chunks(records: Iterator[tuple[int, dict[str, Any] | str]], size: int
            ) -> Iterator[list[tuple[int, dict[str, Any] | str]]]:
    chunk: list[tuple[int, dict[str, Any] | str]] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_predict(args: PredictArgs) -> int:
    """CLI entry point: reads, predicts and writes ``--chunk`` records at a time, so memory stays
    bounded whatever the input's size; a file output appears (atomically) once all is done."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.chunk < 1:
        raise ValueError(f"--chunk must be at least 1, got {args.chunk}")
    from bertkit.fileio import check_input_file, check_output_file
    from bertkit.models.heads import check_model_dir

    source = "<stdin>" if args.input == "-" else args.input
    if args.input != "-":
        check_input_file(args.input, "--input")
    if args.output != "-":
        check_output_file(args.output)  # before the model loads
    check_model_dir(args.model, "--model")
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    with contextlib.ExitStack() as stack:
        # bytes, decoded line by line by _records (a line that is not UTF-8 is named)
        stream = sys.stdin if args.input == "-" else stack.enter_context(open(args.input, "rb"))
        predictor = Predictor(args.model, args.max_seq_length, args.long_inputs, args.batch_size,
                              args.max_input_chars, progress, args.backend, args.device)
        if args.output == "-":
            out = sys.stdout
        else:
            from bertkit.fileio import atomic_path

            out = stack.enter_context(open(stack.enter_context(atomic_path(args.output)), "w",
                                           encoding="utf-8"))
        for chunk in _chunks(_records(stream, source), args.chunk):
            for r in predictor(chunk, source):
                out.write(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n")
            out.flush()
    return 0
