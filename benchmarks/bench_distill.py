"""General-distillation step throughput: bertkit vs the same three losses on transformers models.

One step = teacher forward (no gradients), student forward, DistilBERT's loss (5 x T^2 KL at
the masked positions, 2 x MLM cross-entropy, 1 x (1 - cosine) of the last hidden states over the
real tokens, T = 2), backward, AdamW update. Both sides hold the same weights and inputs and run
in the same process, interleaved, so machine noise hits both alike; medians are reported.

* bertkit: :func:`bertkit.distill.general.general_loss`; both models compute vocabulary logits
  only at the P masked positions (B x P x V).
* transformers: ``BertForMaskedLM`` teacher and student loaded from bertkit's ``save_pretrained``
  directories, the loss written the way the reference distiller (DistilBERT's ``distiller.py``)
  does: vocabulary logits at every position (B x T x V), then the masked tokens selected for the
  KL and the cross-entropy (labels -100 elsewhere), hidden states selected by the attention mask
  for the cosine.

Teacher: all-MiniLM-L6-v2's shape (6 layers, hidden 384, vocab 30522; its real weights when the
artifact cache has them, else random: speed does not depend on the values); student: its layers
0, 2, 4 (DistilBERT's rule). Inputs: batch 32 x 128 tokens, 20 masked positions per sequence.
Peak memory: as ``bench_pretrain.py`` (VmHWM growth over one step on CPU, CUDA max allocated on
GPU). ``--precision bf16`` runs both under bf16 autocast with a bf16 teacher on CUDA.

Prints one JSON line. Usage:
    python benchmarks/bench_distill.py [--threads 2] [--repeats 5]
    python benchmarks/bench_distill.py --device cuda --precision bf16 --repeats 20

Not measured here yet (issue 21's other acceptance runs): task distillation on Rotten Tomatoes,
token-level distillation on WNUT-16, and the 20-minute general-distillation comparison on SOTU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import torch
import torch.nn.functional as F
from benchutil import peak_step, time_steps

T_SOFT = 2.0
ALPHA = {"ce": 5.0, "mlm": 2.0, "cos": 1.0}


def _teacher() -> tuple[torch.nn.Module, str]:
    """A BertForPreTraining of MiniLM-L6's shape: real weights when cached, else random."""
    from bertkit.config import BertConfig
    from bertkit.models.bert import BertForPreTraining

    try:
        from bertkit import artifacts

        d = artifacts.minilm_dir()
        return BertForPreTraining.from_pretrained(d), f"all-MiniLM-L6-v2 ({d})"
    except Exception:  # noqa: BLE001 - no cache, no network: random weights of the same shape
        cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                         num_attention_heads=12, intermediate_size=1536)
        return BertForPreTraining(cfg), "random weights, all-MiniLM-L6-v2's shape"


def _inputs(B: int, T: int, P: int, V: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A shard-like batch: ids (B, T), positions/ids/weights of P masked tokens (B, P)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, V, (B, T), generator=g)
    pos = torch.stack([torch.randperm(T - 1, generator=g)[:P].sort().values + 1 for _ in range(B)])
    return {"input_ids": ids, "input_mask": torch.ones(B, T, dtype=torch.long),
            "segment_ids": (torch.arange(T) >= T // 2).long().expand(B, T).contiguous(),
            "masked_lm_positions": pos, "masked_lm_ids": ids.gather(1, pos),
            "masked_lm_weights": torch.ones(B, P)}


def reference_loss(student: torch.nn.Module, teacher: torch.nn.Module,
                   x: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """The three losses the reference distiller's way, on transformers models: full-vocabulary
    logits (B, T, V), masked tokens selected (labels (B, T), -100 = not masked)."""
    kw = {"input_ids": x["input_ids"], "attention_mask": x["input_mask"],
          "token_type_ids": x["segment_ids"], "output_hidden_states": True}
    s = student(**kw)
    with torch.no_grad():
        t = teacher(**kw)
    sel = labels.ne(-100).unsqueeze(-1).expand_as(s.logits)                 # (B, T, V)
    V = s.logits.shape[-1]
    s_sel = torch.masked_select(s.logits, sel).view(-1, V)                  # (N, V)
    t_sel = torch.masked_select(t.logits, sel).view(-1, V)
    ce = F.kl_div(F.log_softmax(s_sel.float() / T_SOFT, -1),
                  F.softmax(t_sel.float() / T_SOFT, -1), reduction="batchmean") * T_SOFT ** 2
    mlm = F.cross_entropy(s.logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
    real = x["input_mask"].bool().unsqueeze(-1).expand_as(s.hidden_states[-1])  # (B, T, H)
    H = s.hidden_states[-1].shape[-1]
    s_h = torch.masked_select(s.hidden_states[-1], real).view(-1, H).float()
    t_h = torch.masked_select(t.hidden_states[-1], real).view(-1, H).float()
    cos = F.cosine_embedding_loss(s_h, t_h, s_h.new_ones(len(s_h)))
    return ALPHA["ce"] * ce + ALPHA["mlm"] * mlm + ALPHA["cos"] * cos


def bench(threads: int, repeats: int, B: int = 32, T: int = 128, P: int = 20,
          device: str = "cpu", precision: str = "fp32") -> dict[str, object]:
    import transformers

    from bertkit.distill.general import distill_counts, general_loss
    from bertkit.distill.losses import LossWeights
    from bertkit.distill.student import build_student
    from bertkit.train.optim import AdamW, param_groups

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    teacher, source = _teacher()
    student = build_student(teacher, (0, 2, 4)).train()
    teacher.eval().requires_grad_(False)
    with tempfile.TemporaryDirectory() as d:
        teacher.save_pretrained(f"{d}/t")
        student.save_pretrained(f"{d}/s")
        ref_t = transformers.BertForMaskedLM.from_pretrained(f"{d}/t", attn_implementation="sdpa")
        ref_s = transformers.BertForMaskedLM.from_pretrained(f"{d}/s", attn_implementation="sdpa")
    ref_t.eval().requires_grad_(False)
    ref_s.train()
    dev = torch.device(device)
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    for m in (teacher, student, ref_t, ref_s):
        m.to(dev)
    if dev.type == "cuda" and dtype is not None:
        teacher.to(dtype)
        ref_t.to(dtype)
    x = {k: v.to(dev) for k, v in _inputs(B, T, P, teacher.config.vocab_size).items()}
    labels = torch.full((B, T), -100, dtype=torch.long, device=dev)
    labels.scatter_(1, x["masked_lm_positions"], x["masked_lm_ids"])
    counts = {k: v.to(dev, torch.float32) for k, v in distill_counts(x).items()}
    weights = LossWeights(ALPHA["ce"], ALPHA["mlm"], ALPHA["cos"], T_SOFT)
    opt_ours = AdamW(param_groups(student, 0.01), lr=1e-4, bias_correction=True)
    opt_ref = torch.optim.AdamW(param_groups(ref_s, 0.01), lr=1e-4, eps=1e-6, foreach=True)

    def amp():  # noqa: ANN202
        return torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None)

    def step_ours() -> float:
        with amp():
            loss = general_loss(student, teacher, x, counts, weights)["loss"]
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)
        return loss.item()

    def step_ref() -> float:
        with amp():
            loss = reference_loss(ref_s, ref_t, x, labels)
        loss.backward()
        opt_ref.step()
        opt_ref.zero_grad(set_to_none=True)
        return loss.item()

    student.eval()
    ref_s.eval()
    with torch.no_grad(), amp():  # same weights, no dropout: the same loss
        check = {"bertkit": general_loss(student, teacher, x, counts, weights)["loss"].item(),
                 "transformers": reference_loss(ref_s, ref_t, x, labels).item()}
    student.train()
    ref_s.train()
    fns = {"bertkit": step_ours, "transformers": step_ref}
    for fn in fns.values():  # warm-up
        fn()
    peak = peak_step(dev)
    mem = {k: peak(fn) for k, fn in fns.items()}
    times = time_steps(fns, repeats, dev)
    med = {k: statistics.median(v) for k, v in times.items()}
    tps = {k: B * T / v for k, v in med.items()}
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{threads} threads"
    return {"benchmark": "distill_step", "teacher": source, "student_layers": [0, 2, 4],
            "device": where, "batch": B, "seq": T, "masked": P, "dtype": precision,
            "repeats": repeats, "loss_check_bertkit": round(check["bertkit"], 5),
            "loss_check_transformers": round(check["transformers"], 5),
            "bertkit_tokens_per_s": round(tps["bertkit"], 1),
            "transformers_tokens_per_s": round(tps["transformers"], 1),
            "ratio": round(tps["bertkit"] / tps["transformers"], 3),
            "bertkit_peak_step_mb": round(mem["bertkit"], 1),
            "transformers_peak_step_mb": round(mem["transformers"], 1),
            "memory_method": ("cuda max_memory_allocated growth over one step" if dev.type == "cuda"
                              else "VmHWM-VmRSS over one step after clear_refs"),
            "torch": torch.__version__, "transformers_version": transformers.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--masked", type=int, default=20)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    a = p.parse_args()
    print(json.dumps(bench(a.threads, a.repeats, a.batch, a.seq, a.masked, a.device,
                           a.precision)), flush=True)


if __name__ == "__main__":
    main()
