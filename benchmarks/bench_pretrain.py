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

With ``--families`` it measures the BERT family at Mini size instead: bertkit's presets
``roberta-mini``, ``albert-mini`` and ``distilbert-mini`` against transformers'
``RobertaForMaskedLM``, ``AlbertForPreTraining`` (MLM + SOP) and ``DistilBertForMaskedLM`` loaded
from bertkit's ``save_pretrained`` directory (the same config and weights). Both MLM sides use the
same inputs (RoBERTa: token types all 0; DistilBERT: none); the three models run interleaved in
every repetition (bertkit first in even repetitions, transformers first in odd ones). ``ratio`` is
the ratio of median tokens/s; ``ratio_paired_median`` the median over repetitions of the ratio of
the two adjacent steps (both see the same machine load); ``ratio_best`` that of the fastest
steps. The records also go to ``--out``.

Prints one JSON line per model size (or family). Usage:
    python benchmarks/bench_pretrain.py [--sizes mini base] [--threads 2] [--repeats 5]
    python benchmarks/bench_pretrain.py --device cuda --precision bf16 --repeats 20
    python benchmarks/bench_pretrain.py --families [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from benchutil import peak_step, peak_step_mb, time_steps

FAMILIES = {"roberta-mini": "RobertaForMaskedLM", "albert-mini": "AlbertForPreTraining",
            "distilbert-mini": "DistilBertForMaskedLM"}
FAMILIES_OUT = Path(__file__).parent / "results" / "2026-12-07-cpu-pretrain-families.json"


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
    peak = peak_step(dev)
    mem = {k: peak(fn) for k, fn in fns.items()}
    times = time_steps(fns, repeats, dev, alternate=False)
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


def _family_pair(preset: str, threads: int, B: int, T: int, P: int
                 ) -> dict[str, Callable[[], float]]:
    """bertkit's and transformers' training steps for one family preset (same weights, inputs)."""
    import transformers

    from bertkit.config import AutoConfig
    from bertkit.models import albert, distilbert, roberta
    from bertkit.train.optim import AdamW, param_groups

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    arch = FAMILIES[preset]
    module = {"roberta": roberta, "albert": albert, "distilbert": distilbert}[preset.split("-")[0]]
    ours = getattr(module, arch)(AutoConfig.from_preset(preset)).train()
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        ref = getattr(transformers, arch).from_pretrained(d, attn_implementation="sdpa").train()
    x = _inputs(B, T, P, ours.config.vocab_size)
    labels = torch.full((B, T), -100, dtype=torch.long)
    labels.scatter_(1, x["positions"], x["mlm_ids"])
    types = {"roberta-mini": torch.zeros_like(x["input_ids"]), "distilbert-mini": None}.get(
        preset, x["token_type_ids"])
    sop = x["nsp"] if preset == "albert-mini" else None
    opt_ours = AdamW(param_groups(ours, 0.01), lr=1e-4, bias_correction=True)
    opt_ref = torch.optim.AdamW(param_groups(ref, 0.01), lr=1e-4, eps=1e-6, foreach=True)
    ref_kw: dict[str, torch.Tensor] = {"input_ids": x["input_ids"],
                                       "attention_mask": x["attention_mask"], "labels": labels}
    if types is not None:
        ref_kw["token_type_ids"] = types
    if sop is not None:
        ref_kw["sentence_order_label"] = sop
    ours_kw = {"next_sentence_labels": sop} if sop is not None else {}

    def step_ours() -> float:
        out = ours(x["input_ids"], x["attention_mask"], types, masked_lm_positions=x["positions"],
                   masked_lm_ids=x["mlm_ids"], masked_lm_weights=x["weights"], **ours_kw)
        out.loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)
        return out.loss.item()

    def step_ref() -> float:
        out = ref(**ref_kw)
        out.loss.backward()
        opt_ref.step()
        opt_ref.zero_grad(set_to_none=True)
        return out.loss.item()

    return {"bertkit": step_ours, "transformers": step_ref}


def bench_families(threads: int, repeats: int, B: int = 32, T: int = 128, P: int = 20
                   ) -> list[dict[str, object]]:
    """One record per family: interleaved steps (every family, both sides, per repetition)."""
    import transformers

    steps = {f: _family_pair(f, threads, B, T, P) for f in FAMILIES}
    mem = {(f, k): peak_step_mb(fn) for f, pair in steps.items() for k, fn in pair.items()}
    times: dict[tuple[str, str], list[float]] = {key: [] for key in mem}
    for r in range(repeats):
        for f, pair in steps.items():
            order = list(pair.items()) if r % 2 == 0 else list(pair.items())[::-1]
            for k, fn in order:
                t0 = time.perf_counter()
                fn()
                times[(f, k)].append(time.perf_counter() - t0)
    records = []
    for f in FAMILIES:
        med = {k: statistics.median(times[(f, k)]) for k in ("bertkit", "transformers")}
        tps = {k: B * T / v for k, v in med.items()}
        records.append({
            "benchmark": "pretrain_step_families", "model": f,
            "transformers_class": FAMILIES[f], "device": f"cpu x{threads} threads",
            "batch": B, "seq": T, "masked": P, "dtype": "fp32", "repeats": repeats,
            "bertkit_tokens_per_s": round(tps["bertkit"], 1),
            "transformers_tokens_per_s": round(tps["transformers"], 1),
            "ratio": round(tps["bertkit"] / tps["transformers"], 3),
            "ratio_paired_median": round(statistics.median(
                r / o for o, r in zip(times[(f, "bertkit")], times[(f, "transformers")],
                                      strict=True)), 3),
            "ratio_best": round(min(times[(f, "transformers")]) / min(times[(f, "bertkit")]), 3),
            "bertkit_step_s": round(med["bertkit"], 4),
            "transformers_step_s": round(med["transformers"], 4),
            "bertkit_step_s_all": [round(t, 4) for t in times[(f, "bertkit")]],
            "transformers_step_s_all": [round(t, 4) for t in times[(f, "transformers")]],
            "bertkit_peak_step_mb": round(mem[(f, "bertkit")], 1),
            "transformers_peak_step_mb": round(mem[(f, "transformers")], 1),
            "memory_method": "VmHWM-VmRSS over one step after clear_refs",
            "torch": torch.__version__, "transformers_version": transformers.__version__})
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["mini", "base"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--families", action="store_true",
                    help="RoBERTa/ALBERT/DistilBERT Mini against transformers (CPU, fp32)")
    ap.add_argument("--out", type=Path, default=FAMILIES_OUT,
                    help="JSON file of the --families records")
    args = ap.parse_args()
    if args.families:
        records = bench_families(args.threads, args.repeats)
        for rec in records:
            print(json.dumps(rec), flush=True)
        args.out.write_text(json.dumps(records, indent=1) + "\n")
        return
    for size in args.sizes:
        print(json.dumps(bench(size, args.threads, args.repeats, device=args.device,
                               precision=args.precision)), flush=True)


if __name__ == "__main__":
    main()
