"""``bertkit serve`` throughput: requests that share batches vs one model call per request.

A ``bertkit serve`` subprocess on the real all-MiniLM-L6-v2 answers ``/embed`` for C concurrent
client threads (in this process, so they do not share the server's GIL), each sending one real sentence per request (the Apache-2.0 licence text
shipped with the model). Two servers: the default ``--max-batch-tokens 16384`` (concurrent
requests share model batches) and ``--max-batch-tokens 1`` (every input runs alone: what a server
without a shared queue does). Reports requests/s, p50 and p95 latency and the mean inputs per
model batch. One JSON line per result; ``--out`` writes them all.

    python benchmarks/bench_serve.py [--clients 1 8 32] [--requests 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def sentences(model_dir: Path) -> list[str]:
    text = re.sub(r"\s+", " ", (model_dir / "LICENSE").read_text(encoding="utf-8"))
    return [s.strip() for s in re.split(r"(?<=[.;:])\s+", text) if len(s.split()) >= 3]


def embed(port: int, text: str) -> float:
    """Seconds for one /embed request (fresh connection, as many clients do)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/embed", json.dumps({"inputs": text}),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"/embed answered {resp.status}")
    return time.perf_counter() - start


def run(port: int, texts: list[str], clients: int, n: int) -> dict:
    work = [texts[i % len(texts)] for i in range(n)]
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda t: embed(port, t), work[:clients]))   # warm-up
        start = time.perf_counter()
        lat = sorted(pool.map(lambda t: embed(port, t), work))
        wall = time.perf_counter() - start
    return {"clients": clients, "requests": n, "req_per_s": round(n / wall, 2),
            "p50_ms": round(1000 * statistics.median(lat), 1),
            "p95_ms": round(1000 * lat[int(0.95 * (len(lat) - 1))], 1)}


def start_server(model_dir: Path, budget: int, threads: int) -> tuple[subprocess.Popen, int]:
    """``bertkit serve`` on a free port; (process, port) once /health answers."""
    proc = subprocess.Popen([sys.executable, "-m", "bertkit.cli", "serve", "--model",
                             str(model_dir), "--port", "0", "--max-batch-tokens", str(budget),
                             "--threads", str(threads)], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(m.group(1))
    raise RuntimeError(f"bertkit serve exited with {proc.wait()}")


def batch_stats(port: int) -> tuple[float, float]:
    """(model batches, inputs in them) from /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    count = re.search(r"^bertkit_batch_inputs_count (\S+)", text, re.M)
    total = re.search(r"^bertkit_batch_inputs_sum (\S+)", text, re.M)
    return float(count.group(1)), float(total.group(1))  # type: ignore[union-attr]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=256)
    p.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    from bertkit import artifacts

    model_dir = artifacts.minilm_dir()
    texts = sentences(model_dir)
    results = []
    for budget in (16384, 1):
        proc, port = start_server(model_dir, budget, args.threads)
        try:
            for c in args.clients:
                before = batch_stats(port)
                r = run(port, texts, c, args.requests)
                after = batch_stats(port)
                r.update(max_batch_tokens=budget, threads=args.threads,
                         inputs_per_batch=round((after[1] - before[1]) /
                                                max(after[0] - before[0], 1), 2))
                print(json.dumps(r), flush=True)
                results.append(r)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    if args.out is not None:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
