"""Pre-training data creation: bertkit vs Google's ``create_training_instances``, same run.

Prints JSON lines:
* ``speed``: MB/min of bertkit (``--workers``, default 2) on the 10.8 MB SOTU corpus with Google's
  defaults (dupe_factor 10), and of Google's instance creation (tokenization + instances, no
  TFRecord writing) on the first ``--google-mb`` MB of it (the full run takes minutes; the JSON says
  which input each side used), plus bertkit on that same subset; ratios against Google, and CPU
  seconds per MB of each (bertkit's include its worker processes). bertkit loads its built
  tokenizer from the cache; the first run after an install or upgrade builds it (about 1 s more).
* ``parity``: two-sample KS p-values (sequence length, A length, B length, masked count) between
  bertkit and Google on the subset, same vocab and settings.
* ``memory``: peak summed RSS of all bertkit processes for a ``--big-mb`` MB input (SOTU repeated).

Google's code is used only when ``BERTKIT_GOOGLE_BERT`` points at it (see google_reference.py);
without it the Google lines are skipped. Run: ``python benchmarks/bench_pretraining_data.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bertkit.artifacts import uncased_vocab
from bertkit.data import pretraining as P
from bertkit.data.corpora import fetch_corpus, head_documents


def _cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the finished worker pools)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _bertkit(inp: Path, out: Path, workers: int, **kw) -> tuple[float, float, dict]:
    t, c = time.perf_counter(), _cpu_s()
    index = P.create_pretraining_data([str(inp)], uncased_vocab(), out,
                                      P.InstanceSettings(**kw), workers=workers, progress=False)
    return time.perf_counter() - t, _cpu_s() - c, index


def _rows(d: Path) -> np.ndarray:
    index = json.loads((d / "index.json").read_text())
    return np.concatenate([np.load(d / s["file"]) for s in index["shards"]])


def _tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _peak_rss(cmd: list[str]) -> tuple[int, float, int]:
    proc = subprocess.Popen(cmd)
    peak, t0 = 0, time.perf_counter()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    stop.set()
    th.join()
    return peak, time.perf_counter() - t0, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--google-mb", type=float, default=2.0)
    ap.add_argument("--big-mb", type=float, default=100.0)
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from google_reference import load_google

    tmp = Path(tempfile.mkdtemp(prefix="bench-ptd-"))
    corpus = fetch_corpus("sotu")
    mb = corpus.stat().st_size / 1e6
    google = load_google()
    sub = head_documents(corpus, int(args.google_mb * 1e6), tmp / "subset.txt")
    sub_mb = sub.stat().st_size / 1e6

    # bertkit on the full corpus and on the subset (Google's defaults)
    full_s, full_cpu, full_idx = _bertkit(corpus, tmp / "full", args.workers)
    sub_s, sub_cpu, _ = _bertkit(sub, tmp / "sub", args.workers)
    speed = {"bench": "speed", "corpus": "sotu", "settings": "Google defaults, dupe_factor 10",
             "machine_cores": os.cpu_count(), "bertkit_workers": args.workers,
             "bertkit_full_mb": round(mb, 2), "bertkit_full_s": round(full_s, 2),
             "bertkit_full_mb_per_min": round(mb / full_s * 60, 1),
             "bertkit_full_instances": full_idx["counts"]["instances"],
             "bertkit_full_cpu_s": round(full_cpu, 2),
             "bertkit_full_cpu_s_per_mb": round(full_cpu / mb, 3),
             "load_average_1min": round(os.getloadavg()[0], 2),
             "subset_mb": round(sub_mb, 2), "bertkit_subset_s": round(sub_s, 2),
             "bertkit_subset_mb_per_min": round(sub_mb / sub_s * 60, 1)}
    if google is None:
        speed["google"] = "skipped: set BERTKIT_GOOGLE_BERT to Google's bert checkout"
        print(json.dumps(speed), flush=True)
    else:
        tok = google.tokenization.FullTokenizer(str(uncased_vocab()), do_lower_case=True)
        t, c = time.perf_counter(), _cpu_s()
        inst = google.create_training_instances([str(sub)], tok, 128, 10, 0.1, 0.15, 20,
                                                random.Random(12345))
        g_s, g_cpu = time.perf_counter() - t, _cpu_s() - c
        g_rate = sub_mb / g_s * 60
        speed.update({"google_input": f"first {sub_mb:.2f} MB of the corpus (subset; the full "
                      "10.8 MB run takes minutes)", "google_s": round(g_s, 2),
                      "google_mb_per_min": round(g_rate, 2), "google_instances": len(inst),
                      "google_cpu_s": round(g_cpu, 2),
                      "google_cpu_s_per_mb": round(g_cpu / sub_mb, 3),
                      "cpu_ratio_full_vs_google": round((g_cpu / sub_mb) / (full_cpu / mb), 1),
                      "ratio_full_vs_google": round(speed["bertkit_full_mb_per_min"] / g_rate, 1),
                      "ratio_same_subset": round(speed["bertkit_subset_mb_per_min"] / g_rate, 1)})
        print(json.dumps(speed), flush=True)

        from scipy.stats import ks_2samp

        g_len = np.array([len(i.tokens) for i in inst])
        g_a = np.array([i.segment_ids.count(0) - 2 for i in inst])
        g_b = g_len - g_a - 3
        g_m = np.array([len(i.masked_lm_positions) for i in inst])
        r = _rows(tmp / "sub")
        b_len = r["length"].astype(int)
        b_a = r["a_length"].astype(int) - 2
        b_b = b_len - b_a - 3
        b_m = r["num_masked"].astype(int)
        parity = {"bench": "parity", "input": f"SOTU first {sub_mb:.2f} MB, Google defaults",
                  "instances_bertkit": len(r), "instances_google": len(inst),
                  "random_next_bertkit": round(float(r["next_sentence_label"].mean()), 4),
                  "random_next_google": round(float(np.mean([i.is_random_next for i in inst])), 4)}
        for name, a, b in [("seq_length", b_len, g_len), ("a_length", b_a, g_a),
                           ("b_length", b_b, g_b), ("masked_count", b_m, g_m)]:
            parity[f"ks_p_{name}"] = float(f"{ks_2samp(a, b).pvalue:.4g}")
            parity[f"mean_{name}"] = [round(float(a.mean()), 3), round(float(b.mean()), 3)]
        print(json.dumps(parity), flush=True)

    if not args.skip_memory:
        big = tmp / "big.txt"
        text = corpus.read_text(encoding="utf-8")
        with open(big, "w", encoding="utf-8") as f:
            while f.tell() < args.big_mb * 1e6:
                f.write(text.rstrip("\n") + "\n\n")
        big_mb = big.stat().st_size / 1e6
        code = ("from bertkit.data import pretraining as P\nfrom bertkit.artifacts import "
                "uncased_vocab\nif __name__ == '__main__':\n    P.create_pretraining_data("
                f"[{str(big)!r}], uncased_vocab(), {str(tmp / 'big')!r}, P.InstanceSettings(), "
                f"workers={args.workers}, progress=False)\n")
        script = tmp / "big_run.py"
        script.write_text(code)
        peak, secs, rc = _peak_rss([sys.executable, str(script)])
        print(json.dumps({"bench": "memory", "input_mb": round(big_mb, 1),
                          "settings": "Google defaults, dupe_factor 10",
                          "workers": args.workers, "returncode": rc,
                          "peak_rss_all_processes_mb": round(peak / 2**20, 1),
                          "seconds": round(secs, 1),
                          "mb_per_min": round(big_mb / secs * 60, 1)}), flush=True)


if __name__ == "__main__":
    main()
