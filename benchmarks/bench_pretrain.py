"""Pre-training step throughput: bertkit vs ``transformers.BertForPreTraining`` (sdpa), CPU or CUDA.

A full training step = forward, MLM + NSP loss, backward, AdamW update. Both models hold the same
weights (random init, dropout 0.1 as in training) and run in the same process, interleaved, so
machine noise hits both alike; medians are reported and the ratio bertkit / transformers
(tokens/s, higher is better for bertkit). Inputs: batch 32 x 128 tokens (no padding), 20 masked
positions per sequence, NSP labels.

* bertkit: vocabulary logits only at the 20 masked positions (Google's), ``bertkit.train.optim.AdamW``
  (foreach over the group).
* transformers: vocabulary logits at all 128 positions with labels -100 elsewhere (its API),
  ``torch.optim.AdamW`` with ``foreach=True`` (the same update kernels; HF's Trainer default
  would be the slower for-loop on CPU).

Peak memory: the process's peak resident set (``VmHWM``) during one step minus the resident set
before it, reset through ``/proc/self/clear_refs`` before each measured step (Linux only);
model weights and optimizer state allocated before are not counted, activations, gradients and
temporaries are.

On CUDA (``--device cuda``) peak memory is ``torch.cuda.max_memory_allocated`` over one step
minus the memory allocated before it, and ``--precision bf16`` runs both under bf16 autocast.

Prints one JSON line per model size. Usage:
    python benchmarks/bench_pretrain.py [--sizes mini base] [--threads 2] [--repeats 5]
    python benchmarks/bench_pretrain.py --device cuda --precision bf16 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


def _peak_step_mb(fn: Callable[[], object]) -> float:
    """Peak RSS growth (MB) while ``fn`` runs (VmHWM after a reset, minus VmRSS before)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return float("nan")
    before = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - before) / 1024


def _peak_step_cuda_mb(fn: Callable[[], object]) -> float:
    """Peak CUDA memory growth (MB) while ``fn`` runs."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _inputs(B: int, T: int, P: int, V: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, V, (B, T), generator=g)
    pos = torch.stack([torch.randperm(T - 1, generator=g)[:P].sort().values + 1 for _ in range(B)])
    labels = ids.gather(1, pos)
    return {"input_ids": ids, "attention_mask": torch.ones(B, T, dtype=torch.long),
            "token_type_ids": (torch.arange(T) >= T // 2).long().expand(B, T).contiguous(),
            "positions": pos, "mlm_ids": labels, "weights": torch.ones(B, P),
            "nsp": torch.randint(0, 2, (B,), generator=g)}


def bench(size: str, threads: int, repeats: int, B: int = 32, T: int = 128, P: int = 20,
          device: str = "cpu", precision: str = "fp32") -> dict[str, object]:
    import transformers

    from bertkit.config import BertConfig
    from bertkit.models.bert import BertForPreTraining
    from bertkit.train.optim import AdamW, param_groups

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ours = BertForPreTraining(BertConfig.from_preset(size)).train()
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        ref = transformers.BertForPreTraining.from_pretrained(d, attn_implementation="sdpa")
    dev = torch.device(device)
    ours.to(dev)
    ref.to(dev).train()
    x = _inputs(B, T, P, ours.config.vocab_size)
    labels = torch.full((B, T), -100, dtype=torch.long)
    labels.scatter_(1, x["positions"], x["mlm_ids"])
    x = {k: v.to(dev) for k, v in x.items()}
    labels = labels.to(dev)
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]

    def amp():  # noqa: ANN202
        return torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None)
    opt_ours = AdamW(param_groups(ours, 0.01), lr=1e-4, bias_correction=True)
    opt_ref = torch.optim.AdamW(param_groups(ref, 0.01), lr=1e-4, eps=1e-6, foreach=True)

    def step_ours() -> float:
        with amp():
            out = ours(x["input_ids"], x["attention_mask"], x["token_type_ids"],
                       masked_lm_positions=x["positions"], masked_lm_ids=x["mlm_ids"],
                       masked_lm_weights=x["weights"], next_sentence_labels=x["nsp"])
        out.loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)
        return out.loss.item()

    def step_ref() -> float:
        with amp():
            out = ref(input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                      token_type_ids=x["token_type_ids"], labels=labels,
                      next_sentence_label=x["nsp"])
        out.loss.backward()
        opt_ref.step()
        opt_ref.zero_grad(set_to_none=True)
        return out.loss.item()

    fns = {"bertkit": step_ours, "transformers": step_ref}
    if dev.type == "cuda":  # warm-up first (kernels, allocator); on CPU the measured step is it
        for fn in fns.values():
            fn()
    peak = _peak_step_cuda_mb if dev.type == "cuda" else _peak_step_mb
    mem = {k: peak(fn) for k, fn in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    tps = {k: B * T / v for k, v in med.items()}
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{threads} threads"
    return {"benchmark": "pretrain_step", "model": size, "device": where, "batch": B,
            "seq": T, "masked": P, "dtype": precision, "repeats": repeats,
            "bertkit_tokens_per_s": round(tps["bertkit"], 1),
            "transformers_tokens_per_s": round(tps["transformers"], 1),
            "ratio": round(tps["bertkit"] / tps["transformers"], 3),
            "bertkit_step_s": round(med["bertkit"], 4),
            "transformers_step_s": round(med["transformers"], 4),
            "bertkit_peak_step_mb": round(mem["bertkit"], 1),
            "transformers_peak_step_mb": round(mem["transformers"], 1),
            "memory_method": ("cuda max_memory_allocated growth over one step" if dev.type == "cuda"
                              else "VmHWM-VmRSS over one step after clear_refs"),
            "torch": torch.__version__, "transformers_version": transformers.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["mini", "base"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()
    for size in args.sizes:
        print(json.dumps(bench(size, args.threads, args.repeats, device=args.device,
                               precision=args.precision)), flush=True)


if __name__ == "__main__":
    main()
