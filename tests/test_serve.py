"""``bertkit serve`` over real HTTP with all-MiniLM-L6-v2: results, bad requests, limits, SIGTERM.

One server runs in-process (uvicorn in a thread on a free port); one runs as a subprocess with a
tiny ``--max-concurrent-requests`` and an ``--api-key`` for the 429, 401 and SIGTERM tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serve_client import call  # noqa: E402

from bertkit.serve.cli import ServeError, bind, serve_in_thread  # noqa: E402

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def server(minilm_dir: Path):
    """An in-process server on a free port; yields (port, service)."""
    from bertkit.serve.app import create_app
    from bertkit.serve.service import Limits, Service

    service = Service(minilm_dir, limits=Limits(max_batch_tokens=4096))
    with serve_in_thread(create_app(service)) as port:
        yield port, service
    assert service.queue.closed


def _offline(minilm_dir: Path, texts: list[str]) -> torch.Tensor:
    from bertkit import BertModel, BertTokenizer, encode

    model = BertModel.from_pretrained(minilm_dir).eval()
    return encode(model, BertTokenizer.from_pretrained(minilm_dir), texts, pooling="mean",
                  normalize=True)


def test_embed_from_concurrent_clients_equals_offline_encode(server, minilm_dir,
                                                             real_sentences):
    port, service = server
    requests = [real_sentences[i:i + 3] for i in range(0, len(real_sentences), 3)]
    requests += [[s] for s in real_sentences[:8]]
    ran_before = service.metrics.batch_inputs.sum
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda r: call(port, "POST", "/embed", {"inputs": r}), requests))
    ref = _offline(minilm_dir, real_sentences)
    index = {s: i for i, s in enumerate(real_sentences)}
    for texts, (status, _, vecs) in zip(requests, answers, strict=True):
        assert status == 200, vecs
        got = torch.tensor(vecs)
        want = ref[[index[t] for t in texts]]
        cos = torch.nn.functional.cosine_similarity(got, want, dim=-1)
        assert cos.min() >= 0.9999, cos
    assert service.metrics.batch_inputs.sum - ran_before == sum(map(len, requests))


def test_openai_embeddings_rerank_tokenize_info_metrics(server, real_sentences):
    port, _ = server
    status, _, out = call(port, "POST", "/v1/embeddings",
                          {"input": real_sentences[:2], "model": "minilm"})
    assert status == 200 and out["object"] == "list" and out["model"] == "minilm"
    assert [d["index"] for d in out["data"]] == [0, 1] and out["usage"]["prompt_tokens"] > 4
    assert abs(sum(x * x for x in out["data"][0]["embedding"]) - 1) < 1e-4
    status, _, ranked = call(port, "POST", "/rerank", {
        "query": "What is the capital of France?",
        "texts": ["Stock prices fell on Monday.", "Paris is the capital of France."]})
    assert status == 200 and ranked[0]["index"] == 1 and ranked[0]["score"] > ranked[1]["score"]
    status, _, toks = call(port, "POST", "/tokenize", {"inputs": "Hello world"})
    assert status == 200 and [t["text"] for t in toks[0]] == ["[CLS]", "hello", "world", "[SEP]"]
    status, _, states = call(port, "POST", "/embed_all", {"inputs": "Hello world"})
    assert status == 200 and len(states[0]) == 4 and len(states[0][0]) == 384
    status, _, info = call(port, "GET", "/info")
    assert info["task"] == "feature-extraction" and info["max_input_length"] == 512
    status, hdrs, text = call(port, "GET", "/metrics")
    assert status == 200 and hdrs["content-type"].startswith("text/plain")
    assert re.search(r'bertkit_requests_total\{endpoint="/embed",status="200"\} \d+', text)
    assert "bertkit_batch_inputs_bucket" in text and "bertkit_request_duration_seconds_count" in text
    assert call(port, "POST", "/embed", {"inputs": "x " * 600, "truncate": True})[0] == 200


def test_more_concurrent_requests_than_anyio_threads_all_reach_the_batch_queue(
        minilm_dir, real_sentences):
    """56 concurrent requests (anyio's default pool has 40 threads) are all in the batch queue
    while the model runs the first batch, so they share the next one; every answer is still its
    own text's vector. Before, 16 of them waited for a thread outside the queue."""
    from bertkit.serve.app import create_app
    from bertkit.serve.service import Limits, Service

    n = 56
    service = Service(minilm_dir, limits=Limits(max_concurrent_requests=64))
    queue, run_model, submit = service.queue, service.queue.backend, service.queue.submit
    submitted, held, all_in = [], [], threading.Event()

    def counted_submit(items):
        submitted.append(len(items))
        if len(submitted) == n:
            all_in.set()
        return submit(items)

    def held_model(batch):  # the first batch waits until every request is queued (or 60 s)
        if not held:
            held.append(all_in.wait(60))
        return run_model(batch)

    queue.submit, queue.backend = counted_submit, held_model
    texts = [real_sentences[i % len(real_sentences)] for i in range(n)]
    with serve_in_thread(create_app(service)) as port, ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(lambda t: call(port, "POST", "/embed", {"inputs": t},
                                               timeout=300), texts))
    assert held == [True] and len(submitted) == n
    assert [a[0] for a in answers] == [200] * n
    cos = torch.nn.functional.cosine_similarity(torch.tensor([a[2][0] for a in answers]),
                                                _offline(minilm_dir, texts), dim=-1)
    assert cos.min() >= 0.9999, cos


def test_onnx_backend_serves_the_same_vectors(minilm_dir, real_sentences, tmp_path):
    pytest.importorskip("onnxruntime")
    from bertkit.inference.onnx_export import export_onnx
    from bertkit.serve.app import create_app
    from bertkit.serve.service import Service

    d = tmp_path / "minilm"
    d.mkdir()
    for f in ("config.json", "vocab.txt", "tokenizer_config.json", "model.safetensors"):
        (d / f).symlink_to(minilm_dir / f)
    export_onnx(d, d / "model.onnx")
    service = Service(d, backend="onnx")
    # a long-running server keeps no onnxruntime arena (it only grows under changing shapes)
    options = service.main.backend.session.get_session_options()
    assert options.enable_cpu_mem_arena is False
    with serve_in_thread(create_app(service)) as port:
        status, _, vecs = call(port, "POST", "/embed", {"inputs": real_sentences[:8]})
        assert call(port, "GET", "/info")[2]["backend"] == "onnx"
    assert status == 200
    cos = torch.nn.functional.cosine_similarity(torch.tensor(vecs),
                                                _offline(minilm_dir, real_sentences[:8]), dim=-1)
    assert cos.min() >= 0.9999, cos


def _bad_requests() -> list[tuple[str, bytes, str]]:
    """(path, body, a word the error must name): over 200 bad requests."""
    j = json.dumps
    long_text = "word " * 600
    cases: list[tuple[str, bytes | str, str]] = [
        ("/embed", "{", "JSON"), ("/embed", "", "body"), ("/embed", "[1, 2]", "object"),
        ("/embed", "null", "object"), ("/embed", '"text"', "object"),
        ("/embed", b"\xff\xfe{\"inputs\": \"a\"}", "UTF-8"),
        ("/embed", b'{"inputs": "caf\xe9"}', "UTF-8"),
        ("/embed", j({}), "inputs"), ("/embed", j({"inputs": []}), "inputs"),
        ("/embed", j({"inputs": ""}), "inputs"), ("/embed", j({"inputs": "   "}), "inputs"),
        ("/embed", j({"inputs": ["ok", ""]}), "inputs[1]"),
        ("/embed", j({"inputs": 5}), "inputs"), ("/embed", j({"inputs": None}), "inputs"),
        ("/embed", j({"inputs": {"a": 1}}), "inputs"), ("/embed", j({"inputs": [1]}), "inputs[0]"),
        ("/embed", j({"inputs": [["a", "b"]]}), "inputs[0]"),
        ("/embed", j({"inputs": "a", "normalize": "yes"}), "normalize"),
        ("/embed", j({"inputs": "a", "truncate": 1}), "truncate"),
        ("/embed", j({"inputs": "a", "bogus": 1}), "bogus"),
        ("/embed", j({"inputs": ["a"] * 33}), "max-client-batch-size"),
        ("/embed", j({"inputs": long_text}), "truncate"),
        ("/embed", j({"inputs": ["ok", long_text]}), "inputs[1]"),
        ("/embed", j({"inputs": "x" * 10_000_000}), "payload-limit"),
        ("/embed", '{"inputs": "\\ud800"}', "Unicode"),
        ("/embed", "[" * 100_000, "JSON"),
        ("/embed_all", j({"inputs": "a", "normalize": True}), "normalize"),
        ("/v1/embeddings", j({"inputs": "a"}), "inputs"),
        ("/v1/embeddings", j({"input": []}), "input"),
        ("/v1/embeddings", j({"input": "a", "model": 3}), "model"),
        ("/v1/embeddings", j({"input": "a", "encoding_format": "base64"}), "encoding_format"),
        ("/v1/embeddings", j({"input": long_text}), "input[0]"),
        ("/rerank", j({"query": "q"}), "texts"), ("/rerank", j({"texts": ["a"]}), "query"),
        ("/rerank", j({"query": "", "texts": ["a"]}), "query"),
        ("/rerank", j({"query": "q", "texts": "a"}), "texts"),
        ("/rerank", j({"query": "q", "texts": [2]}), "texts[0]"),
        ("/rerank", j({"query": "q", "texts": ["a"], "return_text": "no"}), "return_text"),
        ("/tokenize", j({"inputs": "a", "add_special_tokens": 0}), "add_special_tokens"),
        ("/predict", j({"inputs": "a"}), "text-classification"),
        ("/fill-mask", j({"inputs": "a [MASK]"}), "fill-mask"),
        ("/qa", j({"question": "q", "context": "c"}), "question-answering"),
        ("/nope", j({"inputs": "a"}), "no such endpoint"),
        ("/v2/embed", "{}", "no such endpoint"),
    ]
    out = [(p, b.encode() if isinstance(b, str) else b, w) for p, b, w in cases]
    for i in range(60):   # wrong types at many positions, and unknown fields
        k = i % 32
        out.append(("/embed", j({"inputs": ["ok"] * k + [i]}), f"inputs[{k}]"))
        out.append(("/embed", j({"inputs": "a", f"field_{i}": i}), f"field_{i}"))
        out.append(("/rerank", j({"query": "q", "texts": ["a"] * (33 + i)}),
                    "max-client-batch-size"))
    return out


def test_bad_requests_get_4xx_naming_the_field_and_the_server_stays_up(server):
    port, _ = server
    cases = _bad_requests()
    assert len(cases) >= 200
    statuses: dict[int, int] = {}
    for path, body, word in cases:
        status, _, out = call(port, "POST", path, body)
        statuses[status] = statuses.get(status, 0) + 1
        assert 400 <= status < 500, (path, body[:80], status, out)
        assert word.lower() in out["error"].lower(), (path, body[:80], out)
    assert call(port, "GET", "/embed")[0] == 405
    assert call(port, "DELETE", "/health")[0] == 405
    status, _, vec = call(port, "POST", "/embed", {"inputs": "still here"})
    assert status == 200 and len(vec[0]) == 384
    print(f"{len(cases)} bad requests: {dict(sorted(statuses.items()))}")


# ----------------------------------------------------------------------------- subprocess


def _start(minilm_dir: Path, *flags: str) -> tuple[subprocess.Popen, int, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "bertkit.cli", "serve", "--model",
                             str(minilm_dir), "--port", "0", *flags],
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    port = None
    deadline = time.monotonic() + 90
    while port is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        port = int(m.group(1)) if m else None
    assert port is not None, "".join(lines)
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    for _ in range(200):
        try:
            if call(port, "GET", "/health", timeout=5)[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    return proc, port, lines


@pytest.fixture(scope="module")
def limited(minilm_dir):
    proc, port, lines = _start(minilm_dir, "--max-concurrent-requests", "1", "--api-key", "s3cret",
                               "--threads", "1")
    yield proc, port, lines
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


AUTH = {"Authorization": "Bearer s3cret"}
SLOW = {"inputs": [("many words here " * 200)] * 16, "truncate": True}


def _wait_in_flight(port: int) -> None:
    """Until the server reports one request being served."""
    for _ in range(1000):
        if "bertkit_in_flight_requests 1" in call(port, "GET", "/metrics", headers=AUTH)[2]:
            return
        time.sleep(0.005)
    raise AssertionError("the slow request never got in flight")


def test_api_key_is_required(limited):
    _, port, _ = limited
    assert call(port, "GET", "/health")[0] == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        status, _, out = call(port, "POST", "/embed", {"inputs": "a"}, headers)
        assert status == 401 and "API key" in out["error"]
    assert call(port, "POST", "/embed", {"inputs": "a"}, AUTH)[0] == 200


def test_over_max_concurrent_requests_is_429_with_retry_after(limited):
    _, port, _ = limited
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(call, port, "POST", "/embed", SLOW, AUTH)
        _wait_in_flight(port)
        seen = []
        while not slow.done():
            status, hdrs, out = call(port, "POST", "/embed", {"inputs": "a"}, AUTH, timeout=10)
            seen.append(status)
            if status == 429:
                assert hdrs["retry-after"] == "1" and "max-concurrent-requests" in out["error"]
            time.sleep(0.02)
        assert slow.result()[0] == 200
    assert 429 in seen and set(seen) <= {200, 429}
    assert call(port, "POST", "/embed", {"inputs": "a"}, AUTH)[0] == 200


def test_sigterm_finishes_the_request_in_flight_and_exits_0(limited):
    proc, port, lines = limited
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(call, port, "POST", "/embed", SLOW, AUTH)
        _wait_in_flight(port)
        proc.send_signal(signal.SIGTERM)
        status, _, vecs = slow.result(60)
    assert status == 200 and len(vecs) == 16
    assert proc.wait(60) == 0, "".join(lines)
    with pytest.raises(OSError):
        call(port, "GET", "/health", timeout=2)


# ----------------------------------------------------------------------------- CLI errors


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertkit.cli", "serve", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_without_the_extra_serve_is_a_one_line_error(tmp_path):
    code = ("import sys; sys.modules['fastapi'] = None; import bertkit; "
            "from bertkit.cli import main; sys.exit(main(['serve', '--model', sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    _one_line_error(proc, "pip install \"bertkit[serve]\"")
    proc = subprocess.run([sys.executable, "-c", "import sys, bertkit, bertkit.cli, "
                           "bertkit.serve; print('fastapi' in sys.modules)"],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False"


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1, proc.stderr
    for w in words:
        assert w in errors[0], errors[0]


def test_cli_errors_are_one_line(minilm_dir, tmp_path):
    empty = tmp_path / "no_weights"
    empty.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        (empty / name).write_bytes((minilm_dir / name).read_bytes())
    _one_line_error(_cli("--model", str(empty), "--port", "0"), "model")
    _one_line_error(_cli("--model", str(minilm_dir), "--task", "summarize", "--port", "0"),
                    "summarize")
    _one_line_error(_cli("--model", str(tmp_path / "missing"), "--port", "0"), "missing")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        _one_line_error(_cli("--model", str(minilm_dir), "--port", str(port)), str(port))
        with pytest.raises(ServeError, match=str(port)):
            bind("127.0.0.1", port)
