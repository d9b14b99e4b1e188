"""Forward throughput of bertkit vs transformers (sdpa), BERT-Base with random weights, fp32.

Both models hold the same weights and run in the same process, interleaved, so machine noise hits
both alike; we report medians and the ratio bertkit / transformers (higher is better for bertkit).

(a) model alone: a batch of 32 x 128 real tokens (State of the Union text).
(b) end to end: 256 real texts with token lengths uniform in 8..128, through ``bertkit.encode``
    (length-sorted batches of 32) versus transformers' fast tokenizer + model on padded batches of
    32 in the given order; both mean-pool, and both include tokenization.

Prints one JSON line per result. Usage: python benchmarks/bench_encoder.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable

import torch


def _median_time(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Run each function once to warm up, then alternate them; median seconds per call."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            samples[k] += _median_time(fn, 1)
    return {k: statistics.median(v) for k, v in samples.items()}


def _sentences() -> list[str]:
    from bertkit.data.corpora import fetch_corpus, read_documents

    out: list[str] = []
    for doc in read_documents(fetch_corpus("sotu")):
        out.extend(doc)
        if len(out) > 20000:
            break
    return out


def _texts_of_lengths(tok, words: list[str], n: int, rng: random.Random) -> list[str]:
    """n real word windows whose token count (with [CLS]/[SEP]) is uniform in 8..128."""
    texts = []
    while len(texts) < n:
        target = rng.randint(8, 128)
        start = rng.randrange(len(words) - 200)
        k = max(1, int(target * 0.7))
        while len(tok.encode(" ".join(words[start:start + k]))) < target:
            k += 1
        while k > 1 and len(tok.encode(" ".join(words[start:start + k]))) > target:
            k -= 1
        texts.append(" ".join(words[start:start + k]))
    return texts


def main() -> None:
    import transformers

    from bertkit import artifacts
    from bertkit.config import BertConfig
    from bertkit.inference import encode
    from bertkit.models.bert import BertModel
    from bertkit.tokenization import BertTokenizer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--texts", type=int, default=256)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    vocab = artifacts.uncased_vocab()
    ours = BertModel(BertConfig.from_preset("base")).eval()
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        ref = transformers.BertModel.from_pretrained(d, attn_implementation="sdpa").eval()
        tok = BertTokenizer(vocab)
        tok.save_pretrained(d)
        hf_tok = transformers.BertTokenizerFast.from_pretrained(d)

    sentences = _sentences()
    ids = [i for s in sentences for i in tok.encode(s)[1:-1]]
    batch = torch.tensor(ids[: 32 * 126]).view(32, 126)
    cls_col = torch.full((32, 1), tok.cls_token_id)
    sep_col = torch.full((32, 1), tok.sep_token_id)
    batch = torch.cat([cls_col, batch, sep_col], 1)                    # (32, 128)
    mask = torch.ones_like(batch)
    with torch.inference_mode():
        t = _interleaved({"bertkit": lambda: ours(batch, attention_mask=mask),
                          "transformers": lambda: ref(input_ids=batch, attention_mask=mask)},
                         a.repeats)
    n_tok = batch.numel()
    print(json.dumps({"bench": "encoder_forward_32x128", "model": "bert-base (random weights)",
                      "threads": a.threads, "dtype": "fp32", "repeats": a.repeats,
                      "bertkit_tokens_per_s": round(n_tok / t["bertkit"], 1),
                      "transformers_tokens_per_s": round(n_tok / t["transformers"], 1),
                      "ratio": round(t["transformers"] / t["bertkit"], 3)}), flush=True)

    rng = random.Random(0)
    words = " ".join(sentences).split()
    texts = _texts_of_lengths(tok, words, a.texts, rng)
    n_tokens = sum(len(tok.encode(x)) for x in texts)

    def run_ours() -> torch.Tensor:
        return encode(ours, tok, texts, batch_size=32, max_length=512, pooling="mean")

    def run_ref() -> torch.Tensor:
        outs = []
        with torch.inference_mode():
            for i in range(0, len(texts), 32):
                enc = hf_tok(texts[i:i + 32], padding=True, truncation=True, max_length=512,
                             return_tensors="pt")
                h = ref(**enc).last_hidden_state
                m = enc["attention_mask"][..., None].float()
                outs.append((h * m).sum(1) / m.sum(1))
        return torch.cat(outs)

    diff = (run_ours() - run_ref()).abs().max().item()
    t = _interleaved({"bertkit": run_ours, "transformers": run_ref}, max(3, a.repeats - 2))
    print(json.dumps({"bench": "encode_256_mixed_lengths", "model": "bert-base (random weights)",
                      "threads": a.threads, "dtype": "fp32", "texts": len(texts),
                      "real_tokens": n_tokens, "max_abs_diff_embeddings": diff,
                      "bertkit_tokens_per_s": round(n_tokens / t["bertkit"], 1),
                      "transformers_tokens_per_s": round(n_tokens / t["transformers"], 1),
                      "ratio": round(t["transformers"] / t["bertkit"], 3)}), flush=True)


if __name__ == "__main__":
    main()
