"""int8's accuracy cost against fp32, as issue 20's acceptance asks; one JSON line per result.

1. ``rt_dev_accuracy``: Rotten Tomatoes dev accuracy of a model fine-tuned by ``bertkit finetune
   --task classification``, through ``bertkit.pipeline("text-classification")`` on torch fp32,
   ONNX fp32 and ONNX int8 (``bertkit export --format onnx [--int8]``'s graphs); the int8 - fp32
   difference in points and the snippets whose label flips.
2. ``embedding_cosine``: all-MiniLM-L6-v2's mean-pooled embeddings, int8 vs fp32 ONNX, through
   the feature-extraction pipeline at its default batching (2,048 padded tokens per forward pass
   on a CPU; ``--batch-tokens`` to change), on N real Wikipedia sentences and on the Rotten
   Tomatoes dev snippets: min, 1st percentile, mean, and how many texts fall below 0.99.

``--recipes`` compares int8 recipes on the same model: ``split`` (bertkit's default: the FFN
MatMuls' outlier input channels stay float32), ``fc2x2`` (the earlier default: the first two
layers' fc2 wholly float32, no split), ``none`` (everything int8). Usage:

    python benchmarks/int8_accuracy.py --model RUN/best          # a fine-tuned RT model
    python benchmarks/int8_accuracy.py --train-examples 2000     # fine-tune MiniLM on RT first
    python benchmarks/int8_accuracy.py --parts cosine --recipes split fc2x2 none
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

OUT = Path(tempfile.gettempdir()) / "bertkit-int8-accuracy.jsonl"  # not benchmarks/results/


def _int8(src: Path, dst: Path, recipe: str) -> Path:
    """``src`` quantized by the named recipe (see the module docstring)."""
    from bertkit.inference.onnx import quantize_onnx, sensitive_nodes

    if recipe == "split":
        return quantize_onnx(src, dst)
    if recipe == "fc2x2":
        return quantize_onnx(src, dst, keep_fp32=sensitive_nodes(src, 2), outlier_ratio=None)
    if recipe == "none":
        return quantize_onnx(src, dst, keep_fp32=[], outlier_ratio=None)
    raise ValueError(f"--recipes: unknown recipe {recipe!r}; use split, fc2x2 or none")


def _emit(record: dict, out: Path) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with open(out, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _read_rt(path: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def finetune_rt(out: Path, n_train: int, epochs: float, seed: int) -> Path:
    """``bertkit finetune --task classification`` of all-MiniLM-L6-v2 on ``n_train`` seeded
    Rotten Tomatoes training snippets (dev: the whole dev split); returns ``out/best``."""
    from bertkit import artifacts
    from bertkit.data.labelled import fetch_labelled, sample_split
    from bertkit.finetune.run import FinetuneArgs, finetune

    src = fetch_labelled("rotten-tomatoes")
    train = sample_split(src["train"], out.parent / "rt-train.jsonl", n_train, seed=seed)
    args = FinetuneArgs(task="classification", model=str(artifacts.minilm_dir()),
                        train=str(train), dev=str(src["dev"]), out=str(out), epochs=epochs,
                        progress=False)
    finetune(args, out, seed=seed)
    return out / "best"


def rt_accuracy(model: Path, dev: Path, tmp: Path, recipe: str, threads: int) -> dict:
    """Accuracy (percent) of ``model`` on ``dev`` per backend, and the labels int8 flips."""
    from bertkit.inference.onnx import export_onnx
    from bertkit.inference.pipelines import pipeline

    texts, gold = _read_rt(dev)
    fp32 = tmp / "rt-fp32.onnx"
    if not fp32.exists():
        export_onnx(model, fp32)
    int8 = _int8(fp32, tmp / f"rt-int8-{recipe}.onnx", recipe)
    labels: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for name, options in (("torch_fp32", {"backend": "torch"}),
                          ("onnx_fp32", {"backend": "onnx", "onnx_file": fp32, "threads": threads}),
                          ("onnx_int8", {"backend": "onnx", "onnx_file": int8, "threads": threads})):
        pipe = pipeline("text-classification", model=model, **options)
        t0 = time.perf_counter()
        labels[name] = [r["label"] for r in pipe(texts)]
        seconds[name] = round(time.perf_counter() - t0, 2)
    acc = {k: round(100 * sum(p == g for p, g in zip(v, gold, strict=True)) / len(gold), 3)
           for k, v in labels.items()}
    flips = [i for i, (a, b) in enumerate(zip(labels["onnx_fp32"], labels["onnx_int8"],
                                              strict=True)) if a != b]
    return {"bench": "rt_dev_accuracy", "model": str(model), "dev": str(dev),
            "dev_snippets": len(gold), "int8_recipe": recipe,
            "accuracy_percent": acc,
            "int8_minus_fp32_points": round(acc["onnx_int8"] - acc["onnx_fp32"], 3),
            "within_half_point": abs(acc["onnx_int8"] - acc["onnx_fp32"]) <= 0.5,
            "labels_flipped_by_int8": len(flips), "seconds": seconds}


def _cosine_stats(cos: torch.Tensor) -> dict:
    """min / 1st percentile / mean of (N,) cosines, and how many fall below 0.99."""
    return {"cosine_int8_vs_fp32": {"min": round(float(cos.min()), 5),
                                    "p01": round(float(cos.quantile(0.01)), 5),
                                    "mean": round(float(cos.mean()), 5)},
            "texts": len(cos), "texts_below_0.99": int((cos < 0.99).sum())}


def embedding_cosine(corpora: dict[str, list[str]], tmp: Path, recipe: str, threads: int,
                     batch_tokens: int | None) -> list[dict]:
    """Per-text cosine of int8 to fp32 mean-pooled MiniLM embeddings, one record per corpus."""
    from bertkit import artifacts
    from bertkit.inference.batcher import CPU_BATCH_TOKENS
    from bertkit.inference.onnx import export_onnx
    from bertkit.inference.pipelines import pipeline

    mini = artifacts.minilm_dir()
    fp32 = tmp / "minilm-fp32.onnx"
    if not fp32.exists():
        export_onnx(mini, fp32)
    int8 = _int8(fp32, tmp / f"minilm-int8-{recipe}.onnx", recipe)
    pipes = [pipeline("feature-extraction", model=mini, backend="onnx", onnx_file=f,
                      threads=threads, max_batch_tokens=batch_tokens) for f in (fp32, int8)]
    out = []
    for name, texts in corpora.items():
        e32, e8 = (p(texts, normalize=True) for p in pipes)
        out.append({"bench": "embedding_cosine", "model": "all-MiniLM-L6-v2 (real weights)",
                    "corpus": name, "int8_recipe": recipe,
                    "max_batch_tokens": batch_tokens or CPU_BATCH_TOKENS,
                    **_cosine_stats((e32 * e8).sum(-1))})                        # (N,)
    return out


def main() -> None:
    from bertkit.data.corpora import fetch_corpus, spread_sentences
    from bertkit.data.labelled import fetch_labelled

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="a fine-tuned RT model directory (RUN/best)")
    p.add_argument("--train-examples", type=int, default=2000,
                   help="without --model: RT training snippets to fine-tune MiniLM on")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dev", type=Path, help="RT dev JSONL (default: the whole dev split)")
    p.add_argument("--sentences", type=int, default=1000, help="Wikipedia sentences")
    p.add_argument("--recipes", nargs="+", default=["split"], choices=["split", "fc2x2", "none"],
                   help="int8 recipes to compare (default: bertkit's)")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="padded tokens per forward pass (default: the pipeline's, 2,048 on a CPU)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parts", default="rt,cosine")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    parts = set(a.parts.split(","))
    dev = a.dev or fetch_labelled("rotten-tomatoes")["dev"]
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if "rt" in parts:
            model = a.model or finetune_rt(tmp / "rt-run", a.train_examples, a.epochs, a.seed)
            for r in a.recipes:
                _emit(rt_accuracy(model, dev, tmp, r, a.threads), a.out)
        if "cosine" in parts:
            corpora = {"wikipedia-en": spread_sentences(fetch_corpus("wikipedia-en"),
                                                        a.sentences),
                       "rotten-tomatoes-dev": _read_rt(dev)[0]}
            for r in a.recipes:
                for record in embedding_cosine(corpora, tmp, r, a.threads, a.batch_tokens):
                    _emit(record, a.out)


if __name__ == "__main__":
    main()
