"""What each endpoint does, apart from HTTP: a loaded model, its pipelines and the batch queue.

:class:`Service` loads one model directory for one task, attaches every pipeline to a shared
:class:`~bertkit.serve.queue.BatchQueue` (the pipelines tokenize and post-process in the request's
thread; the model runs in the queue's worker) and answers parsed JSON bodies with JSON-able values.
Its methods raise :class:`~bertkit.serve.validate.RequestError` for bad requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bertkit.serve.metrics import Metrics
from bertkit.serve.queue import BatchQueue
from bertkit.serve.validate import (
    RequestError,
    check_fields,
    get_bool,
    get_int,
    get_str,
    get_texts,
)

logger = logging.getLogger(__name__)

__all__ = ["ENDPOINTS", "Limits", "Service"]

EMBEDDING_TASKS = ("feature-extraction", "sentence-similarity")
CLASSIFIER_TASKS = ("text-classification", "rerank")

# endpoint path -> (Service method, tasks serving it; () = every task)
ENDPOINTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "/embed": ("embed", EMBEDDING_TASKS),
    "/embed_all": ("embed_all", EMBEDDING_TASKS),
    "/v1/embeddings": ("openai_embeddings", EMBEDDING_TASKS),
    "/rerank": ("rerank", EMBEDDING_TASKS + CLASSIFIER_TASKS),
    "/predict": ("predict", CLASSIFIER_TASKS),
    "/fill-mask": ("fill_mask", ("fill-mask",)),
    "/ner": ("ner", ("token-classification",)),
    "/qa": ("qa", ("question-answering",)),
    "/tokenize": ("tokenize", ()),
}


@dataclass
class Limits:
    """The server's limits (``bertkit serve`` flags, TEI's defaults)."""

    max_batch_tokens: int = 16384
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 32
    payload_limit: int = 2_000_000
    model_batch_tokens: int = 0  # per forward pass; 0: the device's default (2,048 on a CPU)


class Service:
    """One model serving one task through a shared batch queue."""

    def __init__(self, model: str | Path, task: str = "auto", backend: str = "torch",
                 limits: Limits | None = None, pooling: str = "mean") -> None:
        from bertkit.config import AutoConfig
        from bertkit.inference.pipelines import pipeline
        from bertkit.inference.tasks import task_of_model, task_spec
        from bertkit.models.heads import check_model_dir

        self.limits = limits or Limits()
        self.model_dir, self.backend_name, self.pooling = Path(model), backend, pooling
        check_model_dir(model, "--model", fine_tuned=False)
        config = AutoConfig.from_pretrained(model)
        spec = task_of_model(config)[0] if task == "auto" else task_spec(task)
        self.task = spec.name
        max_length = config.max_position_embeddings
        if spec.name == "question-answering":  # doc-stride windows: the fine-tuning length
            max_length = min(spec.max_length, max_length)
        # a server sees batches of every shape for hours: onnxruntime's arena would only grow
        extra = {"memory_arena": False} if backend == "onnx" else {}
        main = pipeline(spec.name, model, backend=backend, max_length=max_length,
                        max_batch_tokens=self.limits.model_batch_tokens or None, **extra)
        self.main, self.max_length = main, max_length
        self.tokenizer, self.config = main.tokenizer, main.config
        self.metrics = Metrics()
        self.queue = BatchQueue(main.backend, main.tokenizer.pad_token_id,
                                "token_type_ids" in main.backend.input_names,
                                self.limits.max_batch_tokens, self.metrics,
                                model_batch_tokens=self.limits.model_batch_tokens
                                or main.max_batch_tokens)
        self._pipes: dict[tuple[str, bool], Any] = {}
        self._reranker = self._rerank_class()
        logger.info("serving %s as %s on the %s backend (max length %d)", model, self.task,
                    backend, max_length)

    # -- pipelines ---------------------------------------------------------------------------

    def _rerank_class(self) -> type | None:
        from bertkit.inference import pipelines as p

        if self.task in EMBEDDING_TASKS:
            return p.BiEncoderRerankPipeline
        if self.task in CLASSIFIER_TASKS:
            return p.RerankPipeline
        return None

    def pipe(self, kind: str = "main", truncate: bool = False) -> Any:
        """The pipeline ``kind`` (main, rerank) with ``truncate``, running on the queue."""
        key = (kind, truncate)
        if key not in self._pipes:
            cls = type(self.main) if kind == "main" else self._reranker
            assert cls is not None
            options = {**self.main.options, "truncate": truncate}
            pipe = cls(self.main.backend, self.tokenizer, self.config, **options)
            pipe.options = options
            pipe.run = self.queue.run
            self._pipes[key] = pipe
        return self._pipes[key]

    def close(self) -> None:
        """Finish the queued requests and stop the worker."""
        self.queue.close()

    def endpoints(self) -> list[str]:
        """The paths this model serves."""
        return [p for p, (_, tasks) in ENDPOINTS.items() if not tasks or self.task in tasks]

    def info(self) -> dict[str, Any]:
        from bertkit import __version__

        return {"model_id": self.model_dir.name, "model_dir": str(self.model_dir),
                "task": self.task, "backend": self.backend_name, "version": __version__,
                "pooling": self.pooling, "max_input_length": self.max_length,
                "max_batch_tokens": self.limits.max_batch_tokens,
                "model_batch_tokens": self.queue.model_batch_tokens,
                "max_concurrent_requests": self.limits.max_concurrent_requests,
                "max_client_batch_size": self.limits.max_client_batch_size,
                "payload_limit": self.limits.payload_limit,
                "hidden_size": self.config.hidden_size, "endpoints": self.endpoints()}

    def handler(self, path: str) -> Callable[[dict[str, Any]], Any]:
        """The method answering ``path``; 424 when this model's task does not serve it."""
        method, tasks = ENDPOINTS[path]
        if tasks and self.task not in tasks:
            raise RequestError(424, f"{path}: this server's model serves {self.task}; {path} "
                                    f"needs one of {', '.join(tasks)}", "Unsupported")
        return getattr(self, method)

    # -- checks --------------------------------------------------------------------------------

    def _check_lengths(self, texts: Sequence[Any], field: str) -> int:
        """Tokens of the inputs (specials included); 413 naming the input and the model's limit
        when one is longer (the caller passes only ``truncate=false`` inputs)."""
        flat = [x for t in texts for x in ((t,) if isinstance(t, str) else t)]
        counts = iter(len(ids) for ids in self.tokenizer.encode_batch(flat))
        total = 0
        for i, t in enumerate(texts):
            pair = not isinstance(t, str)
            n = next(counts) + (next(counts) if pair else 0) + self.tokenizer.n_special(pair)
            if n > self.max_length:
                raise RequestError(413, f"{field}[{i}]: {n} tokens, more than the model's "
                                        f"max input length {self.max_length}; send "
                                        "\"truncate\": true to cut it")
            total += n
        return total

    def _texts(self, body: dict[str, Any], field: str, allowed: tuple[str, ...],
               pairs: bool = False) -> tuple[list[Any], bool, bool, int]:
        """Inputs, one-or-many, truncate, tokens."""
        check_fields(body, allowed, (field,))
        texts, one = get_texts(body, field, self.limits.max_client_batch_size, pairs)
        truncate = get_bool(body, "truncate", False)
        tokens = self._check_lengths(texts, field) if not truncate else 0
        return texts, one, truncate, tokens

    # -- endpoints -----------------------------------------------------------------------------

    def embed(self, body: dict[str, Any]) -> Any:
        """TEI ``/embed``: ``{"inputs", "normalize": true, "truncate": false}`` -> vectors."""
        texts, _, truncate, _ = self._texts(body, "inputs", ("inputs", "normalize", "truncate",
                                                             "truncation_direction",
                                                             "prompt_name"))
        if body.get("truncation_direction", "Right") != "Right":
            raise RequestError(422, "truncation_direction: only \"Right\" is supported")
        if body.get("prompt_name") is not None:
            raise RequestError(422, "prompt_name: this server has no prompts")
        normalize = get_bool(body, "normalize", True)
        vecs = self.pipe("main", truncate)(texts, pooling=self.pooling, normalize=normalize)
        return vecs.tolist()

    def embed_all(self, body: dict[str, Any]) -> Any:
        """TEI ``/embed_all``: per-token states of the last layer, the special tokens included."""
        texts, _, truncate, _ = self._texts(body, "inputs", ("inputs", "truncate"))
        states = self.pipe("main", truncate)(texts, pooling=None)
        return [s.tolist() for s in states]

    def openai_embeddings(self, body: dict[str, Any]) -> Any:
        """OpenAI ``/v1/embeddings``: ``{"input", "model"}`` -> a list object of unit vectors."""
        check_fields(body, ("input", "model", "encoding_format", "user", "dimensions"), ("input",))
        texts, _ = get_texts(body, "input", self.limits.max_client_batch_size)
        if "model" in body:
            get_str(body, "model")
        if body.get("encoding_format", "float") != "float":
            raise RequestError(422, "encoding_format: only \"float\" is supported")
        if body.get("dimensions") is not None:
            raise RequestError(422, f"dimensions: this model gives {self.config.hidden_size}; "
                                    "leave dimensions out")
        tokens = self._check_lengths(texts, "input")
        vecs = self.pipe("main", False)(texts, pooling=self.pooling, normalize=True)
        data = [{"object": "embedding", "index": i, "embedding": v}
                for i, v in enumerate(vecs.tolist())]
        return {"object": "list", "data": data,
                "model": body.get("model") or self.model_dir.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def rerank(self, body: dict[str, Any]) -> Any:
        """TEI ``/rerank``: ``{"query", "texts"}`` -> ``[{"index", "score"}]`` best first."""
        check_fields(body, ("query", "texts", "truncate", "return_text", "raw_scores"),
                     ("query", "texts"))
        query = get_str(body, "query")
        texts, _ = get_texts(body, "texts", self.limits.max_client_batch_size, single=False)
        truncate = get_bool(body, "truncate", False)
        return_text = get_bool(body, "return_text", False)
        if get_bool(body, "raw_scores", False):
            raise RequestError(422, "raw_scores: not supported; scores are probabilities "
                                    "(cross-encoder) or cosines (bi-encoder)")
        if not truncate:
            if self.task in EMBEDDING_TASKS:
                self._check_lengths([query], "query")
                self._check_lengths(texts, "texts")
            else:
                self._check_lengths([(query, t) for t in texts], "texts")
        ranked = self.pipe("rerank", truncate)(query, texts)
        if return_text:
            ranked = [{**r, "text": texts[r["index"]]} for r in ranked]
        return ranked

    def predict(self, body: dict[str, Any]) -> Any:
        """TEI ``/predict``: every label's score, best first, per input (a str, a [text, pair])."""
        texts, one, truncate, _ = self._texts(body, "inputs", ("inputs", "truncate",
                                                               "raw_scores"), pairs=True)
        pipe = self.pipe("main", truncate)
        if get_bool(body, "raw_scores", False):
            pairs = [(t, None) if isinstance(t, str) else t for t in texts]
            names = pipe.labels()
            out = [sorted(({"label": names[c], "score": float(row[c])} for c in range(len(row))),
                          key=lambda x: -x["score"]) for row in pipe.logits(pairs)]
        else:
            out = pipe(texts, top_k=None)
        return out[0] if one else out

    def fill_mask(self, body: dict[str, Any]) -> Any:
        """``/fill-mask``: ``{"inputs", "top_k": 5}`` -> transformers' fill-mask answers."""
        check_fields(body, ("inputs", "top_k", "truncate"), ("inputs",))
        texts, one = get_texts(body, "inputs", self.limits.max_client_batch_size)
        top_k = get_int(body, "top_k", 5, 1, 100)
        out = self._pipeline_call(self.pipe("main", get_bool(body, "truncate", False)),
                                  texts, top_k=top_k)
        return out[0] if one else out

    def ner(self, body: dict[str, Any]) -> Any:
        """``/ner``: ``{"inputs", "aggregation_strategy": "simple"}`` -> entities per input."""
        texts, one, truncate, _ = self._texts(body, "inputs", ("inputs", "truncate",
                                                               "aggregation_strategy"))
        strategy = body.get("aggregation_strategy", "simple")
        if strategy not in ("simple", "none"):
            raise RequestError(422, "aggregation_strategy: expected \"simple\" or \"none\"")
        out = self.pipe("main", truncate)(texts, aggregation_strategy=strategy)
        return out[0] if one else out

    def qa(self, body: dict[str, Any]) -> Any:
        """``/qa``: ``{"question", "context", "top_k": 5}`` -> answer, score, n-best (long
        contexts run in doc-stride windows)."""
        check_fields(body, ("question", "context", "top_k"), ("question", "context"))
        qs, one = get_texts(body, "question", self.limits.max_client_batch_size)
        cs, _ = get_texts(body, "context", self.limits.max_client_batch_size)
        if len(cs) not in (1, len(qs)):
            raise RequestError(422, f"context: {len(cs)} contexts for {len(qs)} questions")
        top_k = get_int(body, "top_k", 5, 1, 100)
        out = self._pipeline_call(self.pipe("main"), qs, cs, top_k=top_k)
        return out[0] if one else out

    def tokenize(self, body: dict[str, Any]) -> Any:
        """TEI ``/tokenize``: per input, ``[{"id", "text", "special", "start", "stop"}]``."""
        check_fields(body, ("inputs", "add_special_tokens"), ("inputs",))
        texts, _ = get_texts(body, "inputs", self.limits.max_client_batch_size)
        special = get_bool(body, "add_special_tokens", True)
        out = []
        for ids, spans in self.tokenizer.encode_batch_with_offsets(texts):
            pieces = self.tokenizer.convert_ids_to_tokens(ids)
            toks = [{"id": i, "text": p, "special": False, "start": s, "stop": e}
                    for i, p, (s, e) in zip(ids, pieces, spans, strict=True)]
            if special:
                cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
                cls, sep = self.tokenizer.convert_ids_to_tokens([cls_id, sep_id])
                toks = [{"id": cls_id, "text": cls, "special": True, "start": None, "stop": None},
                        *toks,
                        {"id": sep_id, "text": sep, "special": True, "start": None, "stop": None}]
            out.append(toks)
        return out

    @staticmethod
    def _pipeline_call(pipe: Any, *args: Any, **kw: Any) -> Any:
        """A pipeline's ValueError/TypeError about an input (no mask, too long) -> 422."""
        try:
            return pipe(*args, **kw)
        except (ValueError, TypeError) as e:
            raise RequestError(422, str(e)) from None


def as_json(value: Any) -> Any:
    """Tensors in ``value`` as lists (pipelines hand back tensors in places)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value
