"""Learning on real data: BERT-Mini from scratch, bertkit vs transformers, same CPU time budget.

Both models start from the same random weights (bertkit's init, saved and loaded into
``transformers.BertForPreTraining`` with sdpa attention), read the same batches in the same order
from the same shards (State of the Union, Google's MLM + NSP data made by bertkit), and use the same
optimizer (bertkit's AdamW with bias correction, as ``bertkit pretrain``; ``--no-bias-correction``
gives Google's variant; decay 0.01 off LayerNorm/bias, eps 1e-6, clipping at 1.0, linear warmup
then constant lr). The difference is the model code: bertkit computes vocabulary
logits only at the masked positions, transformers at every position with labels -100 elsewhere.

Training alternates between the two in chunks of ``--chunk-seconds`` so machine noise hits both
alike; only training time counts against ``--minutes`` (evaluation is excluded). Held-out masked-LM
accuracy is measured on the most recent addresses (never trained on) every ``--eval-seconds`` of
training time, with the same code for both (weighted by ``masked_lm_weights``), and compared with
the unigram baseline (always predicting the most frequent masked token of the training data).

Prints one JSON object; ``--plot PNG`` also draws the curves.

    python benchmarks/learn_pretrain.py --minutes 20 --plot docs/pretrain_curve.png > learn.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger("learn_pretrain")


def make_data(work: Path, held_out_addresses: int, dupe_factor: int, max_seq_length: int = 128,
              max_predictions: int = 20) -> tuple[Path, Path]:
    from bertkit import artifacts
    from bertkit.data.corpora import fetch_corpus, read_documents, write_documents
    from bertkit.data.pretraining import InstanceSettings, create_pretraining_data

    docs = list(read_documents(fetch_corpus("sotu")))
    train_txt, held_txt = work / "train.txt", work / "held.txt"
    write_documents(docs[:-held_out_addresses], train_txt)
    write_documents(docs[-held_out_addresses:], held_txt)
    vocab = artifacts.uncased_vocab()
    train_dir, held_dir = work / "train", work / "held"
    shape = {"max_seq_length": max_seq_length, "max_predictions_per_seq": max_predictions}
    create_pretraining_data([str(train_txt)], vocab, train_dir,
                            InstanceSettings(dupe_factor=dupe_factor, **shape), progress=False)
    create_pretraining_data([str(held_txt)], vocab, held_dir,
                            InstanceSettings(dupe_factor=1, random_seed=7, **shape), progress=False)
    return train_dir, held_dir


class Side:
    """One model with its optimizer, schedule, data position, clock and curve."""

    def __init__(self, name: str, model: nn.Module, lr: float, warmup: int,
                 bias_correction: bool = True) -> None:
        from bertkit.train.optim import build_optimizer, build_scheduler

        self.name, self.model = name, model.train()
        self.opt = build_optimizer(model, "adamw", lr, 0.01, eps=1e-6,
                                   bias_correction=bias_correction)
        self.sched = build_scheduler(self.opt, warmup, 10**9, decay="constant")
        self.step, self.seconds, self.curve = 0, 0.0, []
        self.losses: list[float] = []

    def loss(self, b: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def mlm_logits(self, b: dict[str, Tensor]) -> Tensor:
        """(B, P, V) vocabulary logits at the masked positions."""
        raise NotImplementedError

    def train_step(self, b: dict[str, Tensor]) -> None:
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0, foreach=True)
        self.opt.step()
        self.sched.step()
        self.step += 1
        self.seconds += time.perf_counter() - t0
        self.losses.append(loss.item())

    @torch.no_grad()
    def evaluate(self, ds: Any, batches: int, bs: int = 64) -> dict[str, float]:
        self.model.eval()
        correct = total = ce_sum = 0.0
        for i in range(min(batches, len(ds) // bs)):
            b = ds.batch(list(range(i * bs, (i + 1) * bs)))
            logits = self.mlm_logits(b).float().flatten(0, 1)
            ids, w = b["masked_lm_ids"].flatten(), b["masked_lm_weights"].flatten().double()
            correct += float(((logits.argmax(-1) == ids).double() * w).sum())
            ce_sum += float((F.cross_entropy(logits, ids, reduction="none").double() * w).sum())
            total += float(w.sum())
        self.model.train()
        return {"masked_lm_accuracy": correct / total, "masked_lm_loss": ce_sum / total}


class Ours(Side):
    def loss(self, b: dict[str, Tensor]) -> Tensor:
        from bertkit.train.pretrain import pretraining_counts, pretraining_loss

        return pretraining_loss(self.model, b, pretraining_counts(b))["loss"]

    def mlm_logits(self, b: dict[str, Tensor]) -> Tensor:
        return self.model(input_ids=b["input_ids"], attention_mask=b["input_mask"],
                          token_type_ids=b["segment_ids"],
                          masked_lm_positions=b["masked_lm_positions"]).mlm_logits


class Theirs(Side):
    @staticmethod
    def labels(b: dict[str, Tensor]) -> Tensor:
        """Full-length MLM labels: the masked ids at their positions, -100 elsewhere."""
        labels = torch.full_like(b["input_ids"], -100)
        keep = b["masked_lm_weights"] > 0
        rows = torch.arange(labels.shape[0])[:, None].expand_as(keep)
        labels[rows[keep], b["masked_lm_positions"][keep]] = b["masked_lm_ids"][keep]
        return labels

    def loss(self, b: dict[str, Tensor]) -> Tensor:
        return self.model(input_ids=b["input_ids"], attention_mask=b["input_mask"],
                          token_type_ids=b["segment_ids"], labels=self.labels(b),
                          next_sentence_label=b["next_sentence_labels"].flatten()).loss

    def mlm_logits(self, b: dict[str, Tensor]) -> Tensor:
        logits = self.model(input_ids=b["input_ids"], attention_mask=b["input_mask"],
                            token_type_ids=b["segment_ids"]).prediction_logits
        pos = b["masked_lm_positions"].long()[..., None].expand(-1, -1, logits.shape[-1])
        return logits.gather(1, pos)


def run(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    import transformers

    from bertkit.config import BertConfig
    from bertkit.data.shards import PretrainingDataset
    from bertkit.models.bert import BertForPreTraining
    from bertkit.quickstart import unigram_baseline

    t0 = time.perf_counter()
    train_dir, held_dir = make_data(work, a.held_out, a.dupe_factor, a.max_seq_length,
                                   a.max_predictions)
    logger.info("data made in %.0f s", time.perf_counter() - t0)
    torch.manual_seed(0)
    ours = BertForPreTraining(BertConfig.from_preset(a.config))
    ours.save_pretrained(work / "init")
    ref = transformers.BertForPreTraining.from_pretrained(work / "init", attn_implementation="sdpa")
    sides = [Ours("bertkit", ours, a.lr, a.warmup, a.bias_correction),
             Theirs("transformers", ref, a.lr, a.warmup, a.bias_correction)]
    sides = [s for s in sides if s.name in a.sides.split(",")]
    train, held = PretrainingDataset(train_dir, seed=1), PretrainingDataset(held_dir)
    budget = a.minutes * 60
    rows = a.batch_size

    def batch(step: int) -> dict[str, Tensor]:
        per_epoch = len(train) // rows
        train.set_epoch(step // per_epoch)
        start = (step % per_epoch) * rows
        return train.batch(list(range(start, start + rows)))

    def record(side: Side) -> None:
        res = side.evaluate(held, a.eval_batches)
        recent = side.losses[-20:]
        side.curve.append({"seconds": round(side.seconds, 1), "step": side.step,
                           "train_loss": float(np.mean(recent)) if recent else None, **res})
        logger.info("%s %s", side.name, side.curve[-1])

    for s in sides:
        record(s)
    while any(s.seconds < budget for s in sides):
        for s in sides:  # alternate chunks: the same machine conditions for both
            chunk_end = min(budget, s.seconds + a.chunk_seconds)
            while s.seconds < chunk_end:
                s.train_step(batch(s.step))
                if s.seconds >= (len(s.curve)) * a.eval_seconds or s.seconds >= budget:
                    record(s)
    return {"config": a.config, "minutes": a.minutes, "batch_size": rows, "lr": a.lr,
            "warmup": a.warmup, "bias_correction": a.bias_correction,
            "threads": torch.get_num_threads(),
            "max_seq_length": a.max_seq_length, "max_predictions": a.max_predictions,
            "train_rows": train.total_rows, "held_out_rows": held.total_rows,
            "unigram_baseline": unigram_baseline(train_dir, held_dir),
            "sides": {s.name: {"steps": s.step, "tokens_per_s": s.step * rows * a.max_seq_length / s.seconds,
                               "final": s.curve[-1], "curve": s.curve} for s in sides}}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, side in result["sides"].items():
        xs = [p["seconds"] / 60 for p in side["curve"]]
        ax.plot(xs, [100 * p["masked_lm_accuracy"] for p in side["curve"]], marker="o", ms=3,
                label=f"{name} ({side['steps']} steps)")
    ax.axhline(100 * result["unigram_baseline"], color="grey", ls="--", label="unigram baseline")
    ax.set_xlabel("training time (minutes, 2 CPU threads)")
    ax.set_ylabel("held-out masked-LM accuracy (%)")
    ax.set_title(f"BERT-{result['config'].capitalize()} from scratch on State of the Union")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=20.0, help="training time per side")
    p.add_argument("--config", default="mini")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--bias-correction", action=argparse.BooleanOptionalAction, default=True,
                   help="Adam bias correction on both sides (off: Google's AdamWeightDecay)")
    p.add_argument("--chunk-seconds", type=float, default=60.0)
    p.add_argument("--eval-seconds", type=float, default=120.0)
    p.add_argument("--eval-batches", type=int, default=30, help="batches of 64 held-out rows")
    p.add_argument("--held-out", type=int, default=6, help="most recent addresses held out")
    p.add_argument("--dupe-factor", type=int, default=5)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--max-predictions", type=int, default=20, help="masked positions per sequence")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sides", default="bertkit,transformers",
                   help="which sides to train (one alone: a quick look at a setting's curve)")
    p.add_argument("--plot", type=Path, default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(a, Path(tmp))
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    if a.plot:
        plot(result, a.plot)


if __name__ == "__main__":
    main()
