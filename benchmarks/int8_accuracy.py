"""int8's accuracy cost against fp32, as issue 20's acceptance asks; one JSON line per result.

1. ``rt_dev_accuracy``: Rotten Tomatoes dev accuracy of a model fine-tuned by ``bertkit finetune
   --task classification``, through ``bertkit.pipeline("text-classification")`` on torch fp32,
   ONNX fp32 and ONNX int8 (``bertkit export --format onnx [--int8]``'s graphs); the int8 - fp32
   difference in points and the snippets whose label flips.
2. ``embedding_cosine``: all-MiniLM-L6-v2's mean-pooled embeddings, int8 vs fp32 ONNX, through
   the feature-extraction pipeline, on N real Wikipedia sentences: min, 1st percentile, mean,
   and how many sentences fall below 0.99.

``--fp32-layers`` sets how many first layers keep their FFN output projection in float32
(:func:`bertkit.inference.onnx.sensitive_nodes`; bertkit's default 2, 1 was the earlier
setting), so that settings can be compared on the same model. Usage:

    python benchmarks/int8_accuracy.py --model RUN/best          # a fine-tuned RT model
    python benchmarks/int8_accuracy.py --train-examples 2000     # fine-tune MiniLM on RT first
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

OUT = Path(__file__).parent / "results" / "2026-12-07-cpu-int8-accuracy.jsonl"


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


def rt_accuracy(model: Path, dev: Path, tmp: Path, fp32_layers: int, threads: int) -> dict:
    """Accuracy (percent) of ``model`` on ``dev`` per backend, and the labels int8 flips."""
    from bertkit.inference.onnx import export_onnx, quantize_onnx, sensitive_nodes
    from bertkit.inference.pipelines import pipeline

    texts, gold = _read_rt(dev)
    fp32 = export_onnx(model, tmp / "rt-fp32.onnx")
    int8 = quantize_onnx(fp32, tmp / "rt-int8.onnx", keep_fp32=sensitive_nodes(fp32, fp32_layers))
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
            "dev_snippets": len(gold), "fp32_fc2_layers": fp32_layers,
            "accuracy_percent": acc,
            "int8_minus_fp32_points": round(acc["onnx_int8"] - acc["onnx_fp32"], 3),
            "within_half_point": abs(acc["onnx_int8"] - acc["onnx_fp32"]) <= 0.5,
            "labels_flipped_by_int8": len(flips), "seconds": seconds}


def embedding_cosine(n: int, tmp: Path, fp32_layers: int, threads: int) -> dict:
    """Per-sentence cosine of int8 to fp32 mean-pooled MiniLM embeddings on ``n`` sentences."""
    from bertkit import artifacts
    from bertkit.data.corpora import fetch_corpus, spread_sentences
    from bertkit.inference.onnx import export_onnx, quantize_onnx, sensitive_nodes
    from bertkit.inference.pipelines import pipeline

    mini = artifacts.minilm_dir()
    fp32 = tmp / "minilm-fp32.onnx"
    if not fp32.exists():
        export_onnx(mini, fp32)
    int8 = quantize_onnx(fp32, tmp / "minilm-int8.onnx",
                         keep_fp32=sensitive_nodes(fp32, fp32_layers))
    sentences = spread_sentences(fetch_corpus("wikipedia-en"), n)
    e32, e8 = (pipeline("feature-extraction", model=mini, backend="onnx", onnx_file=f,
                        threads=threads)(sentences, normalize=True) for f in (fp32, int8))
    cos = (e32 * e8).sum(-1)                                                     # (N,)
    return {"bench": "embedding_cosine", "model": "all-MiniLM-L6-v2 (real weights)",
            "sentences": len(sentences), "fp32_fc2_layers": fp32_layers,
            "cosine_int8_vs_fp32": {"min": round(float(cos.min()), 5),
                                    "p01": round(float(cos.quantile(0.01)), 5),
                                    "mean": round(float(cos.mean()), 5)},
            "sentences_below_0.99": int((cos < 0.99).sum())}


def main() -> None:
    from bertkit.data.labelled import fetch_labelled
    from bertkit.inference.onnx import FP32_FC2_LAYERS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="a fine-tuned RT model directory (RUN/best)")
    p.add_argument("--train-examples", type=int, default=2000,
                   help="without --model: RT training snippets to fine-tune MiniLM on")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dev", type=Path, help="RT dev JSONL (default: the whole dev split)")
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--fp32-layers", type=int, nargs="+", default=[FP32_FC2_LAYERS],
                   help="settings to compare: first layers whose fc2 stays float32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parts", default="rt,cosine")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    parts = set(a.parts.split(","))
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if "rt" in parts:
            model = a.model or finetune_rt(tmp / "rt-run", a.train_examples, a.epochs, a.seed)
            dev = a.dev or fetch_labelled("rotten-tomatoes")["dev"]
            for k in a.fp32_layers:
                _emit(rt_accuracy(model, dev, tmp, k, a.threads), a.out)
        if "cosine" in parts:
            for k in a.fp32_layers:
                _emit(embedding_cosine(a.sentences, tmp, k, a.threads), a.out)


if __name__ == "__main__":
    main()
