"""Speed and load of ``bertkit serve`` against Infinity and a plain FastAPI + transformers server.

One invocation, all servers on 127.0.0.1 in turn, the same model (the real all-MiniLM-L6-v2 from
its local directory, DATA.md), the same torch threads, fp32:

- ``bertkit serve`` (``POST /v1/embeddings``) on the torch backend, and on the onnx backend
  (``bertkit export``'s graph: fused attention, onnxruntime's transformer optimizer, fp32),
- Infinity (``infinity_emb v2``, ``POST /embeddings``) for each ``--infinity BIN:ENGINE`` (each
  executable in a venv of its own; engine torch, or optimum = ONNX Runtime on a ``model.onnx``
  exported by that venv's ``optimum-cli``), mean pooling, ``--batch-size`` its default,
- ``benchmarks/plain_server.py`` (transformers ``AutoModel``, one model call per request).

Every server gets the same OpenAI-style body, ``{"input": TEXT}``, from ``--clients`` closed-loop
clients (asyncio + aiohttp in this process) for ``--warmup`` s (discarded) then ``--seconds`` s:
requests/s, texts/s, real tokens/s, latency p50/p90/p99 and status counts. The texts are real
English Wikipedia lead sections cut at sentence ends into texts of 8-256 tokens (log-uniform
target length). Every 200 answer is checked against offline ``bertkit.encode`` (cosine).

Then the overload phase against the faster bertkit backend, on a fresh server: an open-loop
request rate ``--overload`` x its measured requests/s (or ``--overload-mode clients``: that
many x the clients), checking only 200s and 429s (with Retry-After), no 5xx, no request lost (every request sent has an answer, and the
server's /metrics counts agree), every returned embedding with cosine >= 0.9999 to its own text's
offline embedding, and the server's RSS (process tree, /proc, sampled every 0.5 s after the
overload's own warm-up) growing < 10% (median of the last third of the samples over the median of
the first third, so a batch's transient activations do not count as growth; peaks reported).

Where the machine has more CPUs than ``--threads``, the servers are pinned to ``--threads`` CPUs
and the client to the others; otherwise all share them (stated in the JSON). Prints one JSON
object and writes it to ``--out``.

    python benchmarks/bench_serve.py --seconds 60 --out serve.json
    python benchmarks/bench_serve.py --seconds 10 --warmup 3 --texts 512   # a dry run

The peers live in venvs of their own (see ``INFINITY_DEFAULT``); aiohttp is in the ``bench``
extra. The client shares the CPUs with the servers on a small machine, so ``req_per_server_cpu_s``
(answers per CPU second the server used) is reported beside the throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import logging
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger("bench_serve")

HERE = Path(__file__).resolve().parent
COSINE_MIN = 0.9999
RSS_GROWTH_MAX = 0.10
# /work/infvenv: pip install torch==2.13.0 "infinity-emb[server,torch,optimum]" (optimum 2.x: no
# BetterTransformer, and its ORT optimizer rejects Infinity's arguments, so the ONNX graph runs
# unoptimized). /work/infvenv-opt1: infinity-emb[server,torch]==0.0.78 with optimum 1.27,
# transformers<4.49 and datasets<3, where Infinity's torch engine gets BetterTransformer (its CPU
# fast path; optimum 1.27's ONNX side does not import with torch 2.13).
INFINITY_DEFAULT = ["/work/infvenv/bin/infinity_emb:torch", "/work/infvenv/bin/infinity_emb:optimum",
                    "/work/infvenv-opt1/bin/infinity_emb:torch"]


# -- texts and the offline reference --------------------------------------------------------------

def real_texts(tokenizer, n: int, lo: int = 8, hi: int = 256, seed: int = 0
               ) -> tuple[list[str], list[int]]:
    """``n`` texts of consecutive Wikipedia sentences, each ``lo``..``hi`` tokens ([CLS] and [SEP]
    included) around a log-uniform target length; (texts, token counts)."""
    from bertkit.data.corpora import wikipedia_articles
    from bertkit.data.sentences import split_sentences

    rng = random.Random(seed)
    articles = [split_sentences(lead) for _, lead in wikipedia_articles("en")]
    articles = [a for a in articles if a]
    texts: list[str] = []
    counts: list[int] = []
    while len(texts) < n:
        sents = rng.choice(articles)
        target = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        i = rng.randrange(len(sents))
        text, count = "", 0
        for s in sents[i:]:
            longer = f"{text} {s}".strip()
            c = len(tokenizer.encode(longer)) + 2
            if c > hi:
                break
            text, count = longer, c
            if count >= target:
                break
        if count >= lo:
            texts.append(text)
            counts.append(count)
    return texts, counts


def reference_vectors(model_dir: Path, texts: list[str], threads: int) -> np.ndarray:
    """(N, H) unit vectors of ``texts`` by offline ``bertkit.encode`` (mean pooling)."""
    import torch

    from bertkit import BertModel, BertTokenizer, encode

    torch.set_num_threads(threads)
    model = BertModel.from_pretrained(model_dir)
    tok = BertTokenizer.from_pretrained(model_dir)
    vecs = encode(model, tok, texts, batch_size=32, pooling="mean", normalize=True)
    return vecs.float().numpy()


# -- servers --------------------------------------------------------------------------------------

@dataclass
class Server:
    """How to start one server and where it answers."""

    name: str
    argv: list[str]
    path: str                      # the embeddings endpoint
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    port: int = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bertkit_name(backend: str, model_batch_tokens: int = 0) -> str:
    """bertkit, bertkit[onnx], bertkit[onnx,mbt=512]: the backend and any forward-pass budget."""
    tags = [t for t in (backend != "torch" and backend,
                        model_batch_tokens and f"mbt={model_batch_tokens}") if t]
    return f"bertkit[{','.join(tags)}]" if tags else "bertkit"


def bertkit_server(model_dir: Path, threads: int, port: int, backend: str = "torch",
                   model_batch_tokens: int = 0) -> Server:
    """``bertkit serve``; ``model_batch_tokens`` > 0 sets ``--model-batch-tokens``."""
    extra = ["--model-batch-tokens", str(model_batch_tokens)] if model_batch_tokens else []
    return Server(bertkit_name(backend, model_batch_tokens),
                  [sys.executable, "-m", "bertkit.cli", "serve", "--model", str(model_dir),
                   "--port", str(port), "--threads", str(threads), "--backend", backend, *extra],
                  "/v1/embeddings", port=port)


def bertkit_onnx_dir(model_dir: Path, out: Path) -> Path:
    """``model_dir``'s files (linked) and its ``bertkit export`` ONNX graph (fused attention,
    onnxruntime's transformer optimizer, fp32), made once under ``out``."""
    from bertkit.inference.onnx_export import export_onnx

    if not (out / "model.onnx").exists():
        out.mkdir(parents=True, exist_ok=True)
        for f in model_dir.iterdir():
            if f.is_file() and not (out / f.name).exists():
                (out / f.name).symlink_to(f)
        logger.info("exporting %s to ONNX (bertkit export)", model_dir)
        export_onnx(out, out / "model.onnx")
    return out


def plain_server(model_dir: Path, threads: int, port: int) -> Server:
    return Server("plain-fastapi-transformers",
                  [sys.executable, str(HERE / "plain_server.py"), "--model", str(model_dir),
                   "--port", str(port), "--threads", str(threads)], "/v1/embeddings", port=port)


def onnx_export(optimum_cli: Path, model_dir: Path, out: Path) -> Path:
    """``model.onnx`` (+ tokenizer files) of ``model_dir`` by ``optimum-cli export onnx``
    (what Infinity's optimum engine loads), made once under ``out``."""
    if (out / "model.onnx").exists():
        return out
    logger.info("exporting %s to ONNX with %s", model_dir, optimum_cli)
    tmp = out.with_name(out.name + ".tmp")
    subprocess.run([str(optimum_cli), "export", "onnx", "--model", str(model_dir), "--task",
                    "feature-extraction", str(tmp)], check=True, env={**os.environ,
                   "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL)
    tmp.rename(out)
    return out


def infinity_server(binary: Path, engine: str, model_dir: Path, threads: int, port: int,
                    work: Path) -> Server:
    """Infinity on ``model_dir`` (torch) or on its ONNX export (optimum). The optimum engine is
    started in the export's directory with ``--model-id .``: infinity-emb 0.0.78 hands optimum
    2.x an absolute ``file_name`` that it cannot find, a relative one works."""
    venv = binary.parent.parent.name
    argv = [str(binary), "v2", "--engine", engine, "--device", "cpu", "--host", "127.0.0.1",
            "--port", str(port), "--pooling-method", "mean", "--dtype", "float32",
            "--no-vector-disk-cache"]
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
           "HF_HOME": str(work / f"hf-{venv}")}
    cwd = None
    if engine == "optimum":
        cwd = onnx_export(binary.parent / "optimum-cli", model_dir, work / "minilm-onnx")
        argv += ["--model-id", ".", "--onnx-do-not-prefer-quantized"]
    else:
        argv += ["--model-id", str(model_dir)]
    return Server(f"infinity[{engine}]@{venv}", argv, "/embeddings", env, cwd, port)


def _children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    return out


def _tree_sum(pid: int, read: Callable[[int], float]) -> float:
    """``read(p)`` summed over ``pid`` and its descendants (processes that are gone count 0)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            total += read(p)
            todo += _children(p)
    return total


def _rss_kb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next((float(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0.0)


def _cpu_ticks(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return float(int(fields[11]) + int(fields[12]))    # utime, stime (fields 14, 15)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, MiB (0 when it is gone)."""
    return _tree_sum(pid, _rss_kb) / 1024


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants."""
    return _tree_sum(pid, _cpu_ticks) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples a process tree's RSS every ``period`` seconds in a thread."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), tree_rss_mb(self.pid)))
            self._stop.wait(self.period)

    def now(self) -> float:
        return tree_rss_mb(self.pid)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> list[float]:
        return [mb for t, mb in self.samples if t0 <= t <= t1]


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


@contextlib.contextmanager
def running(server: Server, logdir: Path, cpus: set[int] | None, timeout: float
            ) -> Iterator[tuple[subprocess.Popen, float]]:
    """The server started (pinned to ``cpus``), (process, seconds to a healthy /health); on
    exit SIGTERM, then SIGKILL after 60 s, and the port is free again."""
    log = logdir / (server.name.replace("/", "_") + ".log")
    start = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(server.argv, cwd=server.cwd, env={**os.environ, **server.env},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus
                                else None)
    try:
        while _get(server.port, "/health")[0] != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {proc.returncode} before it was "
                                   f"healthy; log {log}:\n{log.read_text()[-2000:]}")
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{server.name} not healthy after {timeout:.0f} s; log {log}")
            time.sleep(0.5)
        yield proc, time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                logger.warning("%s ignored SIGTERM for 60 s; killing it", server.name)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        logger.info("%s stopped (exit %s)", server.name, proc.returncode)


# -- the clients ----------------------------------------------------------------------------------

@dataclass
class Record:
    text: int          # index of the request's text
    status: int        # HTTP status; 0: no answer (connection error, timeout)
    seconds: float
    body: bytes        # the answer (non-200: its first 300 bytes; status 0: the error)
    retry_after: bool
    end: float = 0.0   # time.perf_counter() at the answer


async def _one(session, url: str, k: int, payloads: list[bytes]) -> Record:
    import aiohttp

    i = k % len(payloads)
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=payloads[i],
                                headers={"Content-Type": "application/json"}) as r:
            body = await r.read()
            rec = Record(i, r.status, 0.0, body if r.status == 200 else body[:300],
                         "Retry-After" in r.headers)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        rec = Record(i, 0, 0.0, repr(e).encode()[:300], False)
    rec.end = time.perf_counter()
    rec.seconds = rec.end - t0
    return rec


def _session(timeout: float):
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                 timeout=aiohttp.ClientTimeout(total=timeout))


async def closed_loop(url: str, payloads: list[bytes], clients: int, seconds: float,
                      first: int = 0, timeout: float = 300) -> tuple[list[Record], float]:
    """``clients`` clients each sending its next request as soon as its last is answered, for
    ``seconds``; (records, wall seconds until the last answer)."""
    counter = itertools.count(first)
    records: list[Record] = []
    async with _session(timeout) as session:
        start = time.perf_counter()
        deadline = start + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                records.append(await _one(session, url, next(counter), payloads))

        await asyncio.gather(*(client() for _ in range(clients)))
        return records, time.perf_counter() - start


async def open_loop(url: str, payloads: list[bytes], rate: float, seconds: float,
                    first: int = 0, max_outstanding: int = 8192, timeout: float = 300
                    ) -> tuple[list[Record], float, int, int]:
    """Requests sent at ``rate`` per second for ``seconds`` whatever the answers (at most
    ``max_outstanding`` unanswered); (records, (start, end) of the sending, sent, not sent at
    the cap). Answers still pending at the end are awaited."""
    records: list[Record] = []
    pending: set[asyncio.Task] = set()
    sent = capped = 0
    async with _session(timeout) as session:
        start = time.perf_counter()
        for n in itertools.count():
            due = start + n / rate
            if due >= start + seconds:
                break
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            if len(pending) >= max_outstanding:
                capped += 1
                continue
            task = asyncio.create_task(_one(session, url, first + n, payloads))
            pending.add(task)
            task.add_done_callback(lambda t: (pending.discard(t), records.append(t.result())))
            sent += 1
        sending = (start, time.perf_counter())
        while pending:
            await asyncio.gather(*list(pending))
        return records, sending, sent, capped


# -- checks and summaries -------------------------------------------------------------------------

def embeddings_of(body: bytes) -> list[list[float]]:
    """The vectors of an OpenAI-style answer, in input order."""
    data = json.loads(body)["data"]
    return [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]


def check_answers(records: list[Record], reference: np.ndarray) -> dict:
    """Cosine of every 200 answer to its own text's offline vector."""
    ok = [r for r in records if r.status == 200]
    cos, malformed = [], 0
    for r in ok:
        try:
            (vec,) = embeddings_of(r.body)
        except (ValueError, KeyError, TypeError):
            malformed += 1
            continue
        v = np.asarray(vec, dtype=np.float64)
        cos.append(float(v @ reference[r.text] / max(np.linalg.norm(v), 1e-12)))
    wrong = sum(c < COSINE_MIN for c in cos) + malformed
    return {"answers_checked": len(ok), "min_cosine": round(min(cos), 6) if cos else None,
            "wrong_answers": wrong, "malformed_answers": malformed}


def latency_ms(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    s = sorted(seconds)

    def q(p: float) -> float:
        return round(1000 * s[min(len(s) - 1, int(p * len(s)))], 1)

    return {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "max": round(1000 * s[-1], 1),
            "mean": round(1000 * statistics.fmean(s), 1)}


def statuses(records: list[Record]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(r.status for r in records).items())}


def first_errors(records: list[Record], limit: int = 3) -> list[str]:
    seen: dict[int, str] = {}
    for r in records:
        if r.status not in (200, 429) and r.status not in seen:
            seen[r.status] = r.body.decode("utf-8", "replace")
    return [f"{k}: {v}" for k, v in list(seen.items())[:limit]]


def throughput(records: list[Record], wall: float, counts: list[int]) -> dict:
    ok = [r for r in records if r.status == 200]
    return {"requests": len(records), "req_per_s": round(len(ok) / wall, 2),
            "texts_per_s": round(len(ok) / wall, 2),
            "tokens_per_s": round(sum(counts[r.text] for r in ok) / wall, 1),
            "latency_ms": latency_ms([r.seconds for r in ok]), "status": statuses(records),
            "errors": first_errors(records), "wall_s": round(wall, 2)}


def rss_growth(samples: list[float]) -> float | None:
    """Growth of the last third's median RSS over the first third's: a leak's trend, not the
    swings of a batch's transient activations (None: too few samples)."""
    k = len(samples) // 3
    if k < 1:
        return None
    first, last = statistics.median(samples[:k]), statistics.median(samples[-k:])
    return (last - first) / first


def server_counts(port: int, path: str) -> Counter:
    """bertkit's /metrics requests_total for ``path``, by status."""
    _, text = _get(port, "/metrics")
    out: Counter = Counter()
    for line in text.decode().splitlines():
        if line.startswith(f'bertkit_requests_total{{endpoint="{path}",'):
            status = line.split('status="')[1].split('"')[0]
            out[status] += int(float(line.rsplit(" ", 1)[1]))
    return out


# -- phases ---------------------------------------------------------------------------------------

@dataclass
class Setup:
    texts: list[str]
    counts: list[int]
    reference: np.ndarray
    args: argparse.Namespace
    logdir: Path
    server_cpus: set[int] | None

    @property
    def payloads(self) -> list[bytes]:
        return [json.dumps({"input": t}).encode() for t in self.texts]


def measure(server: Server, setup: Setup) -> tuple[dict, float]:
    """One server under ``--clients`` closed-loop clients; (its JSON, requests/s)."""
    a = setup.args
    url = f"http://127.0.0.1:{server.port}{server.path}"
    payloads = setup.payloads
    with running(server, setup.logdir, setup.server_cpus, a.start_timeout) as (proc, up):
        rss = RssSampler(proc.pid)
        try:
            logger.info("%s: healthy after %.0f s; warm-up %s s", server.name, up, a.warmup)
            asyncio.run(closed_loop(url, payloads, a.clients, a.warmup))
            t0, cpu0 = time.monotonic(), tree_cpu_s(proc.pid)
            records, wall = asyncio.run(closed_loop(url, payloads, a.clients, a.seconds,
                                                    first=7919))
            cpu = tree_cpu_s(proc.pid) - cpu0
            mem = rss.between(t0, time.monotonic())
        finally:
            rss.stop()
    out = {"server": server.name, "endpoint": server.path, "clients": a.clients,
           "seconds": a.seconds, "startup_s": round(up, 1), **throughput(records, wall,
                                                                         setup.counts),
           "server_cpu_s": round(cpu, 1),
           "req_per_server_cpu_s": round(sum(r.status == 200 for r in records) / cpu, 2)
           if cpu else None,
           **check_answers(records, setup.reference),
           "rss_mb": {"start": round(mem[0], 1), "end": round(mem[-1], 1),
                      "max": round(max(mem), 1)} if mem else {}}
    logger.info("%s: %s req/s, p50 %s ms, p99 %s ms, status %s", server.name, out["req_per_s"],
                out["latency_ms"].get("p50"), out["latency_ms"].get("p99"), out["status"])
    return out, out["req_per_s"]


def overload(server: Server, setup: Setup, capacity: float) -> dict:
    """bertkit under ``--overload`` x its capacity: statuses, lost requests, answers, RSS."""
    a = setup.args
    url = f"http://127.0.0.1:{server.port}{server.path}"
    payloads = setup.payloads
    rate = a.overload * capacity
    clients = int(a.overload * a.clients)

    def phase(seconds: float, first: int) -> tuple[list[Record], tuple[float, float], int, int]:
        if a.overload_mode == "rate":
            return asyncio.run(open_loop(url, payloads, rate, seconds, first))
        t0 = time.perf_counter()
        recs, _ = asyncio.run(closed_loop(url, payloads, clients, seconds, first))
        return recs, (t0, t0 + seconds), len(recs), 0

    with running(server, setup.logdir, setup.server_cpus, a.start_timeout) as (proc, _):
        rss = RssSampler(proc.pid)
        try:
            before = server_counts(server.port, server.path)
            logger.info("overload (%s): warm-up %s s", a.overload_mode, a.warmup)
            warm, _, warm_sent, warm_capped = phase(a.warmup, 104729)
            t0 = time.monotonic()
            baseline = rss.now()
            records, sending, sent, capped = phase(a.overload_seconds or a.seconds, 1299709)
            end = rss.now()
            mem = rss.between(t0, time.monotonic())
            after = server_counts(server.port, server.path)
        finally:
            rss.stop()
    every = warm + records
    got = Counter(r.status for r in every)
    client = Counter({str(k): v for k, v in got.items() if k})
    server_seen = after - before
    growth = rss_growth(mem)
    peak = (max(mem) - baseline) / baseline if baseline and mem else None
    checks = check_answers(every, setup.reference)
    lost = (warm_sent + sent) - sum(v for k, v in got.items() if k)
    span = sending[1] - sending[0]
    in_window = [r for r in records if r.end <= sending[1]]
    out = {
        "server": server.name, "mode": a.overload_mode, "factor": a.overload,
        "seconds": a.overload_seconds or a.seconds,
        "offered_req_per_s": round(rate, 1) if a.overload_mode == "rate" else None,
        "clients": clients if a.overload_mode == "clients" else None,
        "sent_req_per_s": round(sent / span, 1), "sent": warm_sent + sent,
        "not_sent_client_cap": warm_capped + capped, "status": statuses(every),
        "ok_req_per_s": round(sum(r.status == 200 for r in in_window) / span, 2),
        "latency_ms_200": latency_ms([r.seconds for r in records if r.status == 200]),
        "latency_ms_429": latency_ms([r.seconds for r in records if r.status == 429]),
        "lost": lost, "no_answer": got.get(0, 0),
        "status_5xx": sum(v for k, v in got.items() if k >= 500),
        "status_other": sum(v for k, v in got.items() if k not in (200, 429)),
        "429_without_retry_after": sum(r.status == 429 and not r.retry_after for r in every),
        "server_counts": dict(server_seen), "server_counts_match": server_seen == client,
        **checks, "errors": first_errors(every),
        "rss_mb": {"baseline": round(baseline, 1), "end": round(end, 1),
                   "max": round(max(mem), 1) if mem else None,
                   "growth_pct": round(100 * growth, 2) if growth is not None else None,
                   "end_vs_baseline_pct": round(100 * (end - baseline) / baseline, 2),
                   "max_growth_pct": round(100 * peak, 2) if peak is not None else None,
                   "series": [round(x, 1) for x in mem[::max(1, len(mem) // 12)]]}}
    out["pass"] = {
        "only_200_429": out["status_other"] == 0,
        "saw_429": got.get(429, 0) > 0,
        "no_5xx": out["status_5xx"] == 0,
        "none_lost": lost == 0 and out["server_counts_match"],
        "answers_match": checks["wrong_answers"] == 0 and checks["answers_checked"] > 0,
        "rss_growth_below_10pct": growth is not None and growth < RSS_GROWTH_MAX}
    logger.info("overload: status %s, lost %d, wrong %d, RSS %s", out["status"], lost,
                checks["wrong_answers"], out["rss_mb"])
    return out


# -- main -----------------------------------------------------------------------------------------

def pin_cpus(threads: int) -> tuple[set[int] | None, set[int]]:
    """(server CPUs, client CPUs): apart where there are enough, else (None: no pinning)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) <= threads:
        return None, set(cpus)
    server, client = set(cpus[:threads]), set(cpus[threads:])
    os.sched_setaffinity(0, client)
    return server, client


def median_rounds(rounds: list[list[dict]]) -> list[dict]:
    """Per server, the median over rounds of req/s, tokens/s and each latency percentile; the
    other fields (statuses, answer checks, RSS) from the round nearest that median."""
    by: dict[str, list[dict]] = {}
    for results in rounds:
        for r in results:
            if "req_per_s" in r:
                by.setdefault(r["server"], []).append(r)
    out = []
    for rs in by.values():
        mid = statistics.median(r["req_per_s"] for r in rs)
        row = dict(min(rs, key=lambda r: abs(r["req_per_s"] - mid)))
        row["req_per_s"] = round(mid, 2)
        row["texts_per_s"] = row["req_per_s"]
        row["tokens_per_s"] = round(statistics.median(r["tokens_per_s"] for r in rs), 1)
        row["latency_ms"] = {q: round(statistics.median(r["latency_ms"][q] for r in rs), 1)
                             for q in rs[0]["latency_ms"]}
        row["req_per_s_rounds"] = [r["req_per_s"] for r in rs]
        row.pop("round", None)
        out.append(row)
    return out


def summary(results: list[dict], over: dict | None) -> dict:
    by = {r["server"]: r for r in results if "req_per_s" in r}
    out: dict = {}
    bertkit = [r for name, r in by.items() if name.startswith("bertkit")]
    bk = max(bertkit, key=lambda r: r["req_per_s"]) if bertkit else None
    if bk:
        out["best_bertkit"] = bk["server"]
    infinity = [r for name, r in by.items() if name.startswith("infinity")]
    if bk and infinity:
        best = max(infinity, key=lambda r: r["req_per_s"])
        out["best_infinity"] = best["server"]
        out["bertkit_vs_best_infinity"] = round(bk["req_per_s"] / best["req_per_s"], 3)
        out["bertkit_p99_le_infinity"] = bk["latency_ms"]["p99"] <= best["latency_ms"]["p99"]
        out["throughput_ge_1.3x_infinity"] = out["bertkit_vs_best_infinity"] >= 1.3
    plain = by.get("plain-fastapi-transformers")
    if bk and plain:
        out["bertkit_vs_plain"] = round(bk["req_per_s"] / plain["req_per_s"], 3)
    if over:
        out["overload_pass"] = all(over["pass"].values())
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60, help="measured seconds per server")
    p.add_argument("--warmup", type=float, default=10, help="discarded seconds per server")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="every server's torch threads")
    p.add_argument("--texts", type=int, default=2048, help="distinct real texts")
    p.add_argument("--servers", nargs="+", default=["bertkit", "bertkit-onnx", "infinity",
                                                    "plain"],
                   choices=["bertkit", "bertkit-onnx", "infinity", "plain"])
    p.add_argument("--infinity", nargs="+", default=INFINITY_DEFAULT, metavar="BIN:ENGINE",
                   help="Infinity runs: an infinity_emb executable (each in a venv of its own) "
                        "and an engine, torch or optimum; a missing executable is skipped")
    p.add_argument("--onnx-model-batch-tokens", type=int, nargs="+", default=[0], metavar="N",
                   help="one bertkit-onnx server per value, run with --model-batch-tokens N "
                        "(0: serve's default)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every server this many times, the order reversed in odd "
                        "rounds; results then hold each server's median req/s and latencies")
    p.add_argument("--overload", type=float, default=4.0, help="overload factor (0: skip)")
    p.add_argument("--overload-seconds", type=float, default=None,
                   help="measured seconds of the overload phase (default --seconds); longer "
                        "runs tell a leak from RSS that is still settling")
    p.add_argument("--overload-mode", choices=["rate", "clients"], default="rate",
                   help="rate: open-loop at factor x bertkit's measured req/s; clients: "
                        "factor x --clients closed-loop clients")
    p.add_argument("--start-timeout", type=float, default=900, help="seconds to /health")
    p.add_argument("--work", type=Path, default=None,
                   help="ONNX export and Infinity's caches (default ~/.cache/bertkit/bench-serve)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.rounds < 1:
        p.error(f"--rounds {a.rounds}: expected 1 or more")
    if any(n < 0 for n in a.onnx_model_batch_tokens):
        p.error("--onnx-model-batch-tokens: expected 0 (serve's default) or a positive count")
    return a


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)
    a = parse_args()
    load = os.getloadavg()[0]
    from bertkit import BertTokenizer, artifacts

    model_dir = artifacts.minilm_dir()
    work = a.work or artifacts.cache_dir() / "bench-serve"
    work.mkdir(parents=True, exist_ok=True)
    texts, counts = real_texts(BertTokenizer.from_pretrained(model_dir), a.texts)
    logger.info("%d texts, %d-%d tokens (median %d); offline reference vectors", len(texts),
                min(counts), max(counts), statistics.median(counts))
    reference = reference_vectors(model_dir, texts, a.threads)
    server_cpus, client_cpus = pin_cpus(a.threads)
    logdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    setup = Setup(texts, counts, reference, a, logdir, server_cpus)
    bertkits: dict[str, Callable[[int], Server]] = {}  # name -> its server on a given port
    if "bertkit" in a.servers:
        bertkits["bertkit"] = functools.partial(bertkit_server, model_dir, a.threads)
    if "bertkit-onnx" in a.servers:
        onnx_dir = bertkit_onnx_dir(model_dir, work / "bertkit-onnx")
        for mbt in a.onnx_model_batch_tokens:
            bertkits[bertkit_name("onnx", mbt)] = functools.partial(
                bertkit_server, onnx_dir, a.threads, backend="onnx", model_batch_tokens=mbt)
    makers: list[Callable[[int], Server]] = list(bertkits.values())
    skipped = []
    if "infinity" in a.servers:
        for spec in a.infinity:
            binary, _, engine = spec.rpartition(":")
            if engine not in ("torch", "optimum"):
                raise SystemExit(f"--infinity {spec}: expected BIN:torch or BIN:optimum")
            if not Path(binary).exists():
                logger.warning("--infinity %s: %s is not installed; skipped", spec, binary)
                skipped.append(spec)
                continue
            makers.append(functools.partial(infinity_server, Path(binary), engine, model_dir,
                                            a.threads, work=work))
    if "plain" in a.servers:
        makers.append(functools.partial(plain_server, model_dir, a.threads))
    rounds, capacity = [], {}
    for k in range(a.rounds):  # odd rounds run the servers in reverse order
        results = []
        for make in (makers if k % 2 == 0 else makers[::-1]):
            server = make(free_port())
            try:
                r, rps = measure(server, setup)
            except (RuntimeError, subprocess.CalledProcessError, FileNotFoundError) as e:
                logger.error("%s: %s", server.name, e)
                r, rps = {"server": server.name, "failed": str(e)[:2000]}, None
            r["round"] = k
            results.append(r)
            if server.name in bertkits and rps:
                capacity[server.name] = max(capacity.get(server.name, 0.0), rps)
        rounds.append(results)
    results = rounds[0] if a.rounds == 1 else median_rounds(rounds)
    over = None
    if a.overload > 0 and capacity:  # the faster bertkit backend, on a fresh server
        fastest = max(capacity, key=capacity.__getitem__)
        over = overload(bertkits[fastest](free_port()), setup, capacity[fastest])
    report = {
        "bench": "serve", "model": model_dir.name, "threads": a.threads, "dtype": "float32",
        "clients": a.clients, "seconds": a.seconds, "warmup_s": a.warmup,
        "cpus": os.cpu_count(), "loadavg_1m_at_start": round(load, 2), "server_cpus": sorted(server_cpus) if server_cpus else "shared",
        "client_cpus": sorted(client_cpus),
        "texts": {"n": len(texts), "source": "English Wikipedia lead sections (Vital Articles)",
                  "tokens_min": min(counts), "tokens_median": statistics.median(counts),
                  "tokens_mean": round(statistics.fmean(counts), 1), "tokens_max": max(counts)},
        "rounds": a.rounds, "results": results, "per_round": rounds if a.rounds > 1 else None,
        "skipped": skipped, "overload": over, "summary": summary(results, over),
        "logs": str(logdir)}
    text = json.dumps(report, indent=1)
    print(text, flush=True)
    if a.out is not None:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
