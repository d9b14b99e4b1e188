"""Token-classification entities of ``bertkit.pipeline`` against transformers' pipeline
(``aggregation_strategy="simple"``) on a WNUT-16 model that really tags entities (issue 20).

The suite's session model (160 tweets, 1 epoch) tags no entities yet, so the suite compares O
groups and pieces there and entities on a seeded head; this script takes a model trained long
enough to tag entities: ``--model DIR`` (a ``bertkit finetune --task ner`` best/), or by default
it fine-tunes all-MiniLM-L6-v2 on the whole WNUT-16 training split (``--epochs``, ``--lr``) into
``--work``. On every dev tweet it compares, and names every difference:

- entities (group, word, start, end; max |score difference|),
- every group including ``O`` runs (``ignore_labels=()``),
- every word piece (label, index, word, offsets; max |probability difference|),

and the entity F1 of the model on dev from the fine-tuning run. Prints one JSON object (and
appends it to ``--json``).

Usage:
    python benchmarks/ner_pipeline_equality.py --work /tmp/ner-eq \\
        --json benchmarks/results/2026-12-07-cpu-ner-pipeline-equality.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from bertkit import pipeline

KEYS = ("entity_group", "word", "start", "end")
PIECE_KEYS = ("entity", "index", "word", "start", "end")


def finetuned(a: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """(model dir, fine-tuning results) of MiniLM on all WNUT-16 training tweets (reused)."""
    from bertkit import artifacts
    from bertkit.data.labelled import fetch_labelled
    from bertkit.finetune.run import FinetuneArgs, finetune

    run = a.work / "run"
    if not (run / "results.json").is_file():
        src = fetch_labelled("wnut16")
        finetune(FinetuneArgs(task="ner", model=str(artifacts.minilm_dir()), train=str(src["train"]),
                              dev=str(src["dev"]), out=str(run), epochs=a.epochs, lr=a.lr,
                              threads=a.threads, progress=False), run, seed=1)
    return run / "best", json.loads((run / "results.json").read_text(encoding="utf-8"))


def compare(ours: list[list[dict]], ref: list[list[dict]], keys: tuple[str, ...]
            ) -> dict[str, Any]:
    """Items compared, max |score diff| over equal texts, and each differing text's items."""
    n, worst, differ = 0, 0.0, []
    for i, (got, want) in enumerate(zip(ours, ref, strict=True)):
        g = [tuple(e[k] for k in keys) for e in got]
        w = [tuple(e[k] for k in keys) for e in want]
        if g != w:
            differ.append({"text": i, "bertkit": g, "transformers": w})
            continue
        worst = max([worst, *(abs(x["score"] - float(y["score"]))
                              for x, y in zip(got, want, strict=True))])
        n += len(got)
    return {"equal_items": n, "max_abs_score_diff": worst, "texts_that_differ": len(differ),
            "differences": differ}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="a fine-tuned NER model directory (default: train)")
    p.add_argument("--work", type=Path, default=Path("/tmp/ner-eq"))
    p.add_argument("--epochs", type=float, default=5.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="append the JSON line here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from bertkit.data.labelled import fetch_labelled
    from bertkit.data.ner import read_conll

    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    if a.model is None:
        a.model, results = finetuned(a)
    elif (a.model.parent / "results.json").is_file():  # a bertkit finetune run's best/
        results = json.loads((a.model.parent / "results.json").read_text(encoding="utf-8"))
    texts = [" ".join(s.tokens) for s in read_conll(fetch_labelled("wnut16")["dev"])]
    ours = pipeline("token-classification", model=a.model)
    ref = transformers.pipeline("token-classification", model=str(a.model),
                                aggregation_strategy="simple")
    entities = compare(ours(texts), ref(texts), KEYS)
    groups = compare(ours(texts, ignore_labels=()), ref(texts, ignore_labels=[]), KEYS)
    pieces = compare(ours(texts, aggregation_strategy="none", ignore_labels=()),
                     ref(texts, aggregation_strategy="none", ignore_labels=[]), PIECE_KEYS)
    out = {"bench": "ner_pipeline_equality", "model": str(a.model), "dev_tweets": len(texts),
           "finetune_dev_f1": results.get("dev", {}).get("f1") if results else None,
           "entities": entities, "groups_with_O": groups, "pieces": pieces,
           "transformers": transformers.__version__, "torch": torch.__version__,
           "seconds": round(time.perf_counter() - t0, 1)}
    line = json.dumps(out)
    print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "differences"}
                          if isinstance(v, dict) else v) for k, v in out.items()}, indent=1))
    for name in ("entities", "groups_with_O", "pieces"):
        for d in out[name]["differences"][:20]:
            print(f"{name}: tweet {d['text']}: bertkit {d['bertkit']} | transformers "
                  f"{d['transformers']}")
    if a.json:
        with open(a.json, "a", encoding="utf-8") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
