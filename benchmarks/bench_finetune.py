"""Fine-tuning quality and speed: bertkit vs transformers on real labelled data, several seeds.

Both start from the real all-MiniLM-L6-v2 and see the same examples, the same features (bertkit's
encoders give Google's ids, identical to transformers' tokenizer on this text) and the same
hyperparameters: AdamW with bias correction (what ``transformers`` uses; bertkit's default is
Google's variant without it, so the bench passes ``--bias-correction``), lr 5e-5, eps 1e-6,
weight decay 0.01 (not on LayerNorm/bias), 10% linear warmup then linear decay from the end of
warmup (Trainer's schedule: the bench passes ``--decay-after-warmup``, where Google's default
would run bertkit at 0.9x the peer's lr after warmup), clipping at 1.0, batch 32. Each side keeps its best epoch on dev (bertkit's rule), and that epoch's dev metric is
reported. The peer for classification and NER is ``transformers.Trainer`` (random batches, padded
to the longest in the batch); for QA it is ``transformers.BertForQuestionAnswering`` trained by the
same ``Trainer`` on bertkit's QA features, with bertkit's post-processing, so the comparison isolates
model and training. Wall-clock per epoch covers training only (not evaluation).

These are NOT GLUE/SQuAD/CoNLL/SWAG numbers: the data are Rotten Tomatoes snippets, WNUT-16
tweets, MMLU questions (4 choices) and, for whoever holds ``bigbench-1.0.0.tar.gz`` (no longer on
PyPI; ``bertkit dataset fetch NAME --from``), Disfl-QA converted to SQuAD v2 and VitaminC pairs,
with bertkit's seeded 80/10/10 splits (and ``--train-limit`` examples of the training split, to
fit a CPU budget).

    python benchmarks/bench_finetune.py --tasks rotten-tomatoes,wnut16 --seeds 1,2,3 > ft.jsonl
    python benchmarks/bench_finetune.py --device cuda ...   # both sides on the GPU, fp32

It prints one JSON object per task (a line each).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bertkit import artifacts
from bertkit.data.labelled import fetch_labelled, sample_split
from bertkit.finetune.features import MEGA_BATCH_FACTOR
from bertkit.finetune.run import FinetuneArgs, describe, finetune, predict_split
from bertkit.finetune.tasks import Task, make_task
from bertkit.tokenization import BertTokenizer

logger = logging.getLogger("bench_finetune")

TASKS: dict[str, dict[str, Any]] = {
    "rotten-tomatoes": {"task": "classification", "metric": "accuracy"},
    "vitaminc": {"task": "classification", "metric": "accuracy", "pair": True},
    "wnut16": {"task": "ner", "metric": "f1"},
    "disfl-qa": {"task": "qa", "metric": "f1", "max_seq_length": 384},
    "mmlu": {"task": "multiple-choice", "metric": "accuracy"},
}
HF_HEADS = {"classification": "BertForSequenceClassification", "ner": "BertForTokenClassification",
            "qa": "BertForQuestionAnswering", "multiple-choice": "BertForMultipleChoice"}


class _HFAdapter(nn.Module):
    """A transformers model called like a bertkit head (logits, or start/end logits)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Any:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids)
        return (out.start_logits, out.end_logits) if hasattr(out, "start_logits") else out.logits


def _peer(task: Task, kind: str, model_dir: Path, train, dev, args: FinetuneArgs, seed: int
          ) -> dict[str, Any]:
    """transformers on the same features: Trainer, best epoch on dev, seconds per epoch."""
    import transformers

    transformers.set_seed(seed)
    cls = getattr(transformers, HF_HEADS[kind])
    model = cls.from_pretrained(model_dir, **task.config_overrides()) if kind != "qa" \
        else cls.from_pretrained(model_dir)
    total = -(-len(train.features) // args.batch_size) * int(args.epochs)
    history: list[dict[str, Any]] = []

    class EpochEval(transformers.TrainerCallback):
        t0 = 0.0

        def on_epoch_begin(self, a, state, control, **kw):  # noqa: ANN001, ANN003
            self.t0 = time.perf_counter()

        def on_epoch_end(self, a, state, control, model=None, **kw):  # noqa: ANN001, ANN003
            seconds = time.perf_counter() - self.t0
            outs = predict_split(task, _HFAdapter(model), dev, args.eval_batch_size,
                                 next(model.parameters()).device)
            history.append({"train_seconds": seconds, **task.evaluate(dev, outs)})
            model.train()

    with tempfile.TemporaryDirectory() as tmp:
        targs = transformers.TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr, num_train_epochs=args.epochs, weight_decay=args.weight_decay,
            adam_epsilon=args.adam_eps, max_grad_norm=args.max_grad_norm,
            warmup_steps=round(args.warmup * total), lr_scheduler_type="linear", seed=seed,
            save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[],
            dataloader_num_workers=0, remove_unused_columns=False,
            use_cpu=args.device == "cpu" or not torch.cuda.is_available(),
            disable_tqdm=True)
        trainer = transformers.Trainer(model=model, args=targs, train_dataset=train.features,
                                       data_collator=task.collate, callbacks=[EpochEval()])
        with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its summary dict
            trainer.train()
    best = max(history, key=lambda h: h[task.main_metric])
    return {"dev": {k: v for k, v in best.items() if k != "train_seconds"},
            "best_epoch": history.index(best) + 1,
            "train_seconds_per_epoch": statistics.median(h["train_seconds"] for h in history),
            "epochs": history}


def _summary(runs: list[dict[str, Any]], metric: str) -> dict[str, float]:
    summary = describe([r["dev"][metric] for r in runs])
    summary["seconds_per_epoch_median"] = statistics.median(r["train_seconds_per_epoch"]
                                                            for r in runs)
    return summary


def bench_task(name: str, seeds: list[int], limit: int, dev_limit: int, epochs: float, work: Path,
               lr: float = 5e-5, device: str = "cpu", length_groups: int = MEGA_BATCH_FACTOR,
               decay_after_warmup: bool = True,
               sides: tuple[str, ...] = ("bertkit", "transformers"),
               batch_size: int = 32) -> dict[str, Any]:
    spec = TASKS[name]
    kind = spec["task"]
    splits = fetch_labelled(name)
    ext = {"qa": ".json", "ner": ".txt", "multiple-choice": ".csv"}.get(kind, ".jsonl")
    train = splits["train"]
    if limit:  # a seeded random sample of the training split (same for every seed and side)
        train = sample_split(train, work / f"{name}-train{ext}", limit, seed=0)
    dev = splits["dev"]
    if dev_limit:
        dev = sample_split(dev, work / f"{name}-dev{ext}", dev_limit, seed=0)
    model_dir = artifacts.minilm_dir()
    base = FinetuneArgs(task=kind, model=str(model_dir), train=str(train), dev=str(dev),
                        out=str(work / name), epochs=epochs, lr=lr, bias_correction=True,
                        decay_after_warmup=decay_after_warmup,
                        text_column="text_a" if spec.get("pair") else "text",
                        text_pair_column="text_b" if spec.get("pair") else None,
                        max_seq_length=spec.get("max_seq_length"), save_best=False, progress=False,
                        device=device, length_groups=length_groups, batch_size=batch_size)
    from bertkit.finetune.run import settings_from

    tok = BertTokenizer.from_pretrained(model_dir)
    task = make_task(kind, settings_from(base), tok)
    loaded = task.load_all({"train": train, "dev": dev})
    train_split, dev_split = loaded["train"], loaded["dev"]
    out: dict[str, Any] = {"task": kind, "lr": lr, "batch_size": batch_size,
                           "length_groups": length_groups,
                           "decay_after_warmup": decay_after_warmup,
                           "n_train": len(train_split.examples),
                           "n_train_features": len(train_split.features),
                           "n_dev": len(dev_split.examples), "bertkit": [], "transformers": []}
    for seed in seeds:  # interleaved, so machine noise hits both sides alike
        if "bertkit" in sides:
            res = finetune(base, work / name / f"bertkit-{seed}", seed)
            out["bertkit"].append({k: res[k] for k in ("dev", "best_epoch",
                                                       "train_seconds_per_epoch")})
            logger.info("%s seed %d bertkit: %s", name, seed, out["bertkit"][-1])
        if "transformers" in sides:
            out["transformers"].append(_peer(task, kind, model_dir, train_split, dev_split, base,
                                             seed))
            logger.info("%s seed %d transformers: %s", name, seed,
                        {k: out["transformers"][-1][k] for k in ("dev", "train_seconds_per_epoch")})
    metric = spec["metric"]
    out["summary"] = {side: _summary(out[side], metric) for side in sides}
    out["summary"]["metric"] = metric
    if len(sides) < 2:  # one side alone: no comparison to make
        return out
    scale = 1 if kind == "qa" else 100  # SQuAD metrics are already percentages
    out["summary"]["mean_difference_points"] = scale * (
        out["summary"]["bertkit"]["mean"] - out["summary"]["transformers"]["mean"])
    out["summary"]["epoch_time_ratio"] = (out["summary"]["bertkit"]["seconds_per_epoch_median"]
                                          / out["summary"]["transformers"]["seconds_per_epoch_median"])
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="rotten-tomatoes,wnut16,disfl-qa,vitaminc")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--train-limit", type=int, default=0,
                   help="training examples per task (0: the whole 80%% split)")
    p.add_argument("--limits", default="", help="per-task limits, e.g. vitaminc=4000,disfl-qa=1500")
    p.add_argument("--dev-limits", default="", help="per-task dev sample sizes (default: all)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lrs", default="", help="per-task peak learning rates (default 5e-5)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="examples per update, both sides (Google's default 32; smaller gives a "
                        "short CPU run more updates)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--length-groups", type=int, default=MEGA_BATCH_FACTOR,
                   help="bertkit's length-grouped batches (1 = random, as Trainer; default: "
                        "bertkit's)")
    p.add_argument("--decay-after-warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="bertkit decays the lr from the end of warmup as Trainer does (--no-: "
                        "Google's schedule, 0.9x Trainer's lr after a 10%% warmup)")
    p.add_argument("--sides", default="bertkit,transformers",
                   help="which sides to run (one alone for a variant of one side; the peer's "
                        "CPU results are deterministic for a seed)")
    a = p.parse_args(argv)
    if a.batch_size < 1:
        p.error(f"--batch-size must be at least 1, got {a.batch_size}")
    sides = tuple(x for x in a.sides.split(",") if x)
    if not sides or set(sides) - {"bertkit", "transformers"}:
        p.error(f"--sides: expected bertkit and/or transformers, got {a.sides!r}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("bertkit").setLevel(logging.WARNING)
    torch.set_num_threads(a.threads)
    limits = dict(x.split("=") for x in a.limits.split(",") if x)
    dev_limits = dict(x.split("=") for x in a.dev_limits.split(",") if x)
    lrs = dict(x.split("=") for x in a.lrs.split(",") if x)
    seeds = [int(s) for s in a.seeds.split(",")]
    where = torch.cuda.get_device_name() if a.device == "cuda" else f"cpu x{a.threads} threads"
    report: dict[str, Any] = {"torch": torch.__version__, "device": where, "seeds": seeds,
                              "epochs": a.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.tasks.split(","):
            limit = int(limits.get(name, a.train_limit))
            result = bench_task(name, seeds, limit, int(dev_limits.get(name, 0)), a.epochs,
                                Path(tmp), float(lrs.get(name, 5e-5)), a.device,
                                a.length_groups, a.decay_after_warmup, sides, a.batch_size)
            # one JSON line per task, so finished tasks survive an interruption of later ones
            sys.stdout.write(json.dumps({**report, "name": name, **result}) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
