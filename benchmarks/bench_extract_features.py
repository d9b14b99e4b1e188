"""Peak memory and throughput of ``bertkit extract-features`` on 1k vs 10k real lines.

Real sentences of the State of the Union corpus (one per line, in corpus order) and the real
all-MiniLM-L6-v2. Each run is its own subprocess; its peak RSS comes from ``os.wait4`` (that
child alone) and lines/s from its wall time, start-up (imports + model load) included; an
empty-input run measures that start-up, and ``lines_per_s_after_startup`` leaves it out.
CPU seconds (user + sys, from the same rusage) are reported too: on a shared machine they vary
far less than wall time.

The peer: transformers' ``BertModel`` (sdpa, ``output_hidden_states=True``) with its fast
tokenizer on the same lines, batches of the same size in input order, the same layers copied to
float32 and written to a raw file (the work of ``--format npy``), also in its own subprocess.

Prints one JSON object. Usage:
    python benchmarks/bench_extract_features.py [--threads 2] [--max-seq-length 16] [--layers=-1]
        [--out benchmarks/results/2026-12-07-cpu-extract-features.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _lines(n: int) -> list[str]:
    """The first ``n`` non-empty lines (sentences) of the real SOTU corpus."""
    from bertkit.data.corpora import fetch_corpus

    out: list[str] = []
    with open(fetch_corpus("sotu"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(line.rstrip("\n"))
                if len(out) == n:
                    break
    return out


def _measure(cmd: list[str]) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS MiB of that child alone, its stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)   # reaps the child: its own rusage
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd} failed: {err.read().decode()[-2000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        return wall, cpu, usage.ru_maxrss / 1024, out.read().decode()


def _bertkit(inp: Path, out: Path, fmt: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "bertkit.cli", "extract-features", "--input-file", str(inp),
            "--model", str(args.model), "--out", str(out), "--format", fmt,
            f"--layers={args.layers}", "--max-seq-length", str(args.max_seq_length),
            "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--no-progress"]


def peer(inp: Path, out: Path, model_dir: Path, layers: list[int], max_len: int,
         batch_size: int, threads: int) -> dict[str, float]:
    """transformers on ``inp``: the chosen layers of each line, float32, to a raw file."""
    import torch
    import transformers

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    tok = transformers.BertTokenizerFast.from_pretrained(model_dir)
    model = transformers.BertModel.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    t1, c1 = time.perf_counter(), time.process_time()
    lines = inp.read_text(encoding="utf-8").splitlines()
    with open(out, "wb") as f, torch.inference_mode():
        for i in range(0, len(lines), batch_size):
            enc = tok(lines[i:i + batch_size], max_length=max_len, truncation=True,
                      padding=True, return_tensors="pt")
            hs = model(**enc, output_hidden_states=True).hidden_states[1:]
            h = torch.stack([hs[k] for k in layers], 2).float().numpy()   # (B, T, n, H)
            for row, n in enumerate(enc["attention_mask"].sum(1).tolist()):
                f.write(h[row, :n].tobytes())
    return {"startup_s": t1 - t0, "run_s": time.perf_counter() - t1,
            "run_cpu_s": time.process_time() - c1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-seq-length", type=int, default=16)
    p.add_argument("--layers", default="-1", help="as --layers=-1,-2 (default: the last layer)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--formats", default="npy,jsonl")
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--peer", type=Path, default=None, help=argparse.SUPPRESS)  # child mode
    args = p.parse_args()
    if args.model is None:
        from bertkit.artifacts import minilm_dir

        args.model = minilm_dir()
    if args.peer is not None:
        res = peer(args.peer, args.peer.with_suffix(".bin"), args.model,
                   [int(x) for x in args.layers.split(",")], args.max_seq_length,
                   args.batch_size, args.threads)
        print(json.dumps(res))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    lines = _lines(max(sizes))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        empty = tmp / "empty.txt"
        empty.write_text("", encoding="utf-8")
        wall0, cpu0, rss0, _ = _measure(_bertkit(empty, tmp / "empty.npy", "npy", args))
        rows.append({"tool": "bertkit", "format": "npy", "lines": 0, "wall_s": round(wall0, 2),
                     "cpu_s": round(cpu0, 2), "peak_rss_mib": round(rss0, 1)})
        for n in sizes:
            inp = tmp / f"in{n}.txt"
            inp.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
            for fmt in args.formats.split(","):
                out = tmp / f"out{n}.{fmt}"
                wall, cpu, rss, _ = _measure(_bertkit(inp, out, fmt, args))
                rows.append({"tool": "bertkit", "format": fmt, "lines": n,
                             "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                             "peak_rss_mib": round(rss, 1), "lines_per_s": round(n / wall, 1),
                             "lines_per_s_after_startup": round(n / max(wall - wall0, 1e-9), 1),
                             "lines_per_cpu_s_after_startup": round(n / max(cpu - cpu0, 1e-9), 1),
                             "output_mib": round(out.stat().st_size / 2**20, 1)})
                out.unlink()
                print(json.dumps(rows[-1]), file=sys.stderr)
            cmd = [sys.executable, __file__, "--peer", str(inp), "--model", str(args.model),
                   f"--layers={args.layers}",
                   "--max-seq-length", str(args.max_seq_length), "--batch-size",
                   str(args.batch_size), "--threads", str(args.threads)]
            wall, cpu, rss, out_text = _measure(cmd)
            inner = json.loads(out_text.strip().splitlines()[-1])
            rows.append({"tool": "transformers", "format": "raw float32", "lines": n,
                         "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "peak_rss_mib": round(rss, 1), "lines_per_s": round(n / wall, 1),
                         "lines_per_s_after_startup": round(n / inner["run_s"], 1),
                         "lines_per_cpu_s_after_startup": round(n / inner["run_cpu_s"], 1)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    import torch
    import transformers

    result = {
        "benchmark": "extract-features", "model": "sentence-transformers/all-MiniLM-L6-v2",
        "data": "State of the Union sentences, first N non-empty lines", "layers": args.layers,
        "max_seq_length": args.max_seq_length, "batch_size": args.batch_size,
        "threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "transformers": transformers.__version__, "runs": rows,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
