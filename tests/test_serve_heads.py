"""``bertkit serve`` for models with heads: /predict, /rerank (cross-encoder), /ner, /qa and
/fill-mask over real HTTP (batched through the queue) give what the offline pipelines give.

The heads are the real all-MiniLM-L6-v2 encoder with seeded random heads (as in
``test_pipelines.py``); fill-mask uses the real BERT-tiny masked-LM checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from realdata import fetch_or_skip
from seeded_heads import head_dir

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serve_client import call  # noqa: E402

from bertkit import artifacts  # noqa: E402
from bertkit.inference.pipelines import RerankPipeline, pipeline  # noqa: E402
from bertkit.serve.app import create_app  # noqa: E402
from bertkit.serve.cli import serve_in_thread  # noqa: E402
from bertkit.serve.service import Service  # noqa: E402

pytestmark = pytest.mark.real


@contextmanager
def served(model_dir: Path) -> Iterator[tuple[int, Service]]:
    service = Service(model_dir)
    with serve_in_thread(create_app(service)) as port:
        yield port, service


def _close(a, b, tol: float = 1e-5) -> None:
    """Nested JSON values equal, floats within ``tol``."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k], tol)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _close(x, y, tol)
    elif isinstance(a, float):
        assert abs(a - b) <= tol, (a, b)
    else:
        assert a == b


def test_classifier_predict_and_cross_encoder_rerank(minilm_dir, real_sentences, tmp_path):
    d = head_dir(minilm_dir, tmp_path / "cls", "BertForSequenceClassification",
                  ["negative", "neutral", "positive"])
    texts = real_sentences[:5]
    with served(d) as (port, service):
        assert service.task == "text-classification"
        status, _, got = call(port, "POST", "/predict", {"inputs": texts})
        assert status == 200
        _close(got, service.main(texts, top_k=None))   # the same model, offline, unqueued
        status, _, one = call(port, "POST", "/predict",
                              {"inputs": [[texts[0], texts[1]]], "raw_scores": True})
        assert status == 200 and len(one[0]) == 3 and one[0][0]["label"] in (
            "negative", "neutral", "positive")
        status, _, ranked = call(port, "POST", "/rerank", {"query": texts[0], "texts": texts[1:]})
        assert status == 200
        offline = RerankPipeline(service.main.backend, service.tokenizer, service.config,
                                 **service.main.options)
        _close(ranked, offline(texts[0], texts[1:]))
        status, _, out = call(port, "POST", "/embed", {"inputs": "a"})
        assert status == 424 and "/embed" in out["error"]


def test_ner_and_qa(minilm_dir, real_sentences, tmp_path):
    ner = head_dir(minilm_dir, tmp_path / "ner", "BertForTokenClassification",
                    ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    texts = real_sentences[:3]
    with served(ner) as (port, service):
        assert service.task == "token-classification"
        status, _, got = call(port, "POST", "/ner", {"inputs": texts})
        assert status == 200
        _close(got, service.main(texts))
    qa = head_dir(minilm_dir, tmp_path / "qa", "BertForQuestionAnswering", None)
    context = " ".join(real_sentences[-4:])
    with served(qa) as (port, service):
        assert service.task == "question-answering"
        status, _, got = call(port, "POST", "/qa", {"question": "Who is a contributor?",
                                                    "context": context, "top_k": 3})
        assert status == 200 and got["answer"] in context and len(got["nbest"]) <= 3
        _close(got, service.main("Who is a contributor?", context, top_k=3))
        status, _, out = call(port, "POST", "/qa", {"question": ["a", "b"],
                                                    "context": ["c", "d", "e"]})
        assert status == 422 and "context" in out["error"]


def test_fill_mask(real_sentences):
    d = fetch_or_skip(artifacts.bert_tiny_mlm_dir)
    with served(d) as (port, service):
        assert service.task == "fill-mask"
        texts = ["Paris is the [MASK] of France.", "The [MASK] sat on the [MASK]."]
        status, _, got = call(port, "POST", "/fill-mask", {"inputs": texts, "top_k": 3})
        assert status == 200
        _close(got, pipeline("fill-mask", model=d)(texts, top_k=3))   # a fresh load
        status, _, out = call(port, "POST", "/fill-mask", {"inputs": "no mask here"})
        assert status == 422 and "inputs[0]" in out["error"] and "[MASK]" in out["error"]
        status, _, out = call(port, "POST", "/fill-mask", {"inputs": "a [MASK]", "top_k": 0})
        assert status == 422 and "top_k" in out["error"]
