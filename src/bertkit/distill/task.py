"""``bertkit distill --task classification``: task distillation from a fine-tuned teacher.

The student learns the teacher's soft targets (T^2-scaled KL at temperature T) on the labelled
training text plus optional unlabelled in-domain text (``--unlabelled``: Turc et al.'s
pre-trained distillation), mixed with the hard labels where they exist: per example
``(1 - w) * soft + w * hard`` with ``w = --alpha-hard`` on labelled rows and 0 on unlabelled ones
(:func:`~bertkit.distill.losses.task_distill_loss`). The teacher's logits are computed once, before
training (the inputs do not change between epochs), and looked up per batch.

Evaluation, best-model export (``RUN/best``), dev predictions and ``results.json`` are
``bertkit finetune``'s; ``RUN/summary.json`` adds the teacher and student parameters, their
inference tokens/s on the dev set (same run, same batches), their dev metric and the share of the
teacher's metric the student keeps.

Only ``classification`` so far; the other task kinds, ``--seeds`` and resume are not done.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bertkit.distill.losses import IGNORE_INDEX, DistillError, task_distill_loss
from bertkit.fileio import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["TASKS", "run_task_distill"]

TASKS = ("classification",)


def _teacher_task(args: Any) -> tuple[Path, list[str]]:
    """(teacher dir, its labels in id order); DistillError for a teacher of another task."""
    from bertkit.config import AutoConfig
    from bertkit.finetune.tasks import task_for_model
    from bertkit.models.heads import check_model_dir, label_names

    if args.task not in TASKS:
        raise DistillError(f"--task {args.task}: task distillation supports "
                           f"{', '.join(TASKS)} so far")
    for flag, value in (("--teacher", args.teacher), ("--train", args.train),
                        ("--dev", args.dev), ("--out", args.out)):
        if value is None:
            raise ValueError(f"--task {args.task}: {flag} is required")
    teacher_dir = Path(args.teacher)
    check_model_dir(teacher_dir, "--teacher", fine_tuned=True)
    config = AutoConfig.from_json_file(teacher_dir / "config.json")
    kind = task_for_model(config)
    if kind != args.task:
        raise DistillError(f"--teacher {teacher_dir} is fine-tuned for {kind} (config.json "
                           f"architectures {config.extra.get('architectures')}), not "
                           f"{args.task}: distil with --task {kind} or give a {args.task} "
                           "teacher")
    return teacher_dir, label_names(config)


def _student(args: Any, teacher: nn.Module, task: Any) -> nn.Module:
    """``--student DIR`` (a fresh head of the teacher's labels) or ``--student-layers`` of the
    teacher (default every other layer; the teacher's head copied)."""
    from bertkit.distill.general import _check_same_tokenizer
    from bertkit.distill.student import build_student, parse_student_layers

    if args.student is not None:
        if args.student_layers is not None:
            raise DistillError("--student and --student-layers exclude each other")
        path = Path(args.student)
        if not path.is_dir():
            raise DistillError(f"--student {path}: task distillation takes a model directory "
                               "or --student-layers")
        _check_same_tokenizer(Path(args.teacher), path, "--student")
        return task.build_model(path)
    layers = parse_student_layers(args.student_layers) if args.student_layers else None
    return build_student(teacher, layers).train()


def _batches(task: Any, feats: list[Any], labels: list[int], cached: np.ndarray,
             batch_size: int, grad_accum: int, seed: int, epoch: int, group: int
             ) -> list[list[dict[str, Tensor]]]:
    """One epoch of updates: each a list of ``grad_accum`` micro-batches of ``feats`` (without
    labels) with ``labels`` (B,) (IGNORE_INDEX = unlabelled) and the cached ``teacher_logits``
    (B, C)."""
    from bertkit.finetune.features import feature_lengths, length_grouped_order

    if batch_size % grad_accum:
        raise ValueError(f"--batch-size {batch_size} is not divisible by --grad-accum {grad_accum}")
    micro = batch_size // grad_accum
    out = []
    for idx in length_grouped_order(feature_lengths(feats), batch_size, seed, epoch, group):
        parts = [idx[i:i + micro] for i in range(0, len(idx), micro)]
        step = []
        for p in parts:
            mb = task.collate([feats[j] for j in p])
            mb["labels"] = torch.tensor([labels[j] for j in p], dtype=torch.long)
            mb["teacher_logits"] = torch.from_numpy(cached[p])
            step.append(mb)
        out.append(step)
    return out


def _training_data(task: Any, teacher: nn.Module, args: Any, device: torch.device
                   ) -> tuple[list[Any], list[int], np.ndarray, Any]:
    """(training features without labels, their labels (IGNORE_INDEX = unlabelled), the
    teacher's logits (N, C), computed once: the inputs are the same every epoch, the dev split)."""
    from bertkit.finetune.run import predict_split
    from bertkit.finetune.tasks import Split

    splits = task.load_all({"train": Path(args.train), "dev": Path(args.dev),
                            "test": Path(args.unlabelled) if args.unlabelled else None})
    train, dev, extra = splits["train"], splits["dev"], splits["test"]
    y = [IGNORE_INDEX if f.label is None else int(f.label)
         for f in (*train.features, *extra.features)]
    # the labels travel beside the features (a collated batch may mix labelled and unlabelled)
    feats = [dataclasses.replace(f, label=None) for f in (*train.features, *extra.features)]
    logger.info("task distillation: %d labelled and %d unlabelled training features, dev %d",
                len(train.features), len(extra.features), len(dev.features))
    cached = np.stack(predict_split(task, teacher.to(device), Split("train", None, [], feats),
                                    args.eval_batch_size, device)).astype(np.float32)  # (N, C)
    return feats, y, cached, dev


def _inference_tokens_per_s(task: Any, model: nn.Module, split: Any, batch_size: int,
                            device: torch.device) -> tuple[float, list[Any]]:
    """(tokens/s of one inference pass over ``split``, its outputs)."""
    from bertkit.finetune.run import predict_split

    tokens = sum(split.lengths())
    t0 = time.perf_counter()
    outputs = predict_split(task, model, split, batch_size, device)
    return tokens / max(time.perf_counter() - t0, 1e-9), outputs


def run_task_distill(args: Any) -> int:
    """Distil a fine-tuned teacher into a student on ``--train`` (+ ``--unlabelled``) text;
    evaluate on ``--dev`` after every epoch; export the best student. Returns 0."""
    from bertkit.distill.student import check_vocabularies
    from bertkit.finetune.run import (
        FinetuneArgs,
        _better,
        _final_outputs,
        _save_model,
        check_out,
        predict_split,
        settings_from,
    )
    from bertkit.finetune.tasks import Split, make_task
    from bertkit.tokenization import AutoTokenizer
    from bertkit.train.distributed import DistEnv
    from bertkit.train.loop import LoopSettings, LoopState, train_steps
    from bertkit.train.optim import build_optimizer, build_scheduler
    from bertkit.train.state import seed_all

    if args.threads:
        torch.set_num_threads(args.threads)
    teacher_dir, labels = _teacher_task(args)
    run = Path(args.out)
    check_out(run, overwrite=False)
    fa = FinetuneArgs(task=args.task, model=str(teacher_dir), train=args.train, dev=args.dev,
                      out=str(run), labels=labels, max_seq_length=args.max_seq_length,
                      eval_batch_size=args.eval_batch_size, progress=False)
    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available()
                          else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    task = make_task(args.task, settings_from(fa), tokenizer)
    teacher = task.model_class(teacher_dir).from_pretrained(teacher_dir)
    teacher.eval().requires_grad_(False)
    seed_all(args.seed)
    student = _student(args, teacher, task)
    check_vocabularies(teacher.config, student.config)
    feats, y, cached, dev = _training_data(task, teacher, args, device)
    run.mkdir(parents=True, exist_ok=True)  # only now: bad input leaves no RUN behind
    atomic_write_text(run / "args.json", json.dumps(dataclasses.asdict(args), indent=1) + "\n")
    student.to(device)
    total = max(1, round(math.ceil(len(feats) / args.batch_size) * args.epochs))
    opt = build_optimizer(student, "adamw", args.lr, args.weight_decay, eps=args.adam_eps,
                          bias_correction=args.bias_correction)
    warmup = args.warmup_steps if args.warmup_steps is not None else total // 10
    sched = build_scheduler(opt, warmup, total, after_warmup=args.decay_after_warmup)
    settings = LoopSettings(max_grad_norm=args.max_grad_norm or None)
    state, env = LoopState(), DistEnv(device=device)

    def loss_fn(m: nn.Module, mb: dict[str, Tensor], counts: dict[str, Tensor]
                ) -> dict[str, Tensor]:
        res = task_distill_loss(args.task, task.forward(m, mb), mb["teacher_logits"],
                                mb["labels"], temperature=args.temperature,
                                alpha_hard=args.alpha_hard)
        share = mb["labels"].shape[0] / counts["n"]  # a micro-batch mean -> its share
        return {"loss": res.total * share, "soft_loss": res.soft * share}

    def count_fn(mb: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"n": torch.tensor(float(mb["labels"].shape[0]))}

    seed_all(args.seed)
    best, best_state, history, epoch = None, {}, [], 0
    while state.step < total:
        t0 = time.perf_counter()
        steps = _batches(task, feats, y, cached, args.batch_size, args.grad_accum, args.seed,
                         epoch, 50)
        results = list(train_steps(student, steps, opt, sched, loss_fn, count_fn, total, state,
                                   settings, env))
        dev_metrics = task.evaluate(dev, predict_split(task, student, dev, args.eval_batch_size,
                                                       device))
        record = {"epoch": epoch + 1, "step": state.step,
                  "train_loss": float(np.mean([r.metrics["loss"] for r in results])),
                  "train_soft_loss": float(np.mean([r.metrics["soft_loss"] for r in results])),
                  "train_seconds": round(time.perf_counter() - t0, 3),
                  **{f"dev_{k}": v for k, v in dev_metrics.items()}}
        history.append(record)
        with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        logger.info("epoch %d: %s", epoch + 1, record)
        if _better(dev_metrics[task.main_metric], best, task.main_metric):
            best = dev_metrics[task.main_metric]
            _save_model(student, tokenizer, run / "best")
            best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
        epoch += 1
    student.load_state_dict(best_state)
    results = _final_outputs(task, student, dev, Split("test", None, [], []), run, fa, device,
                             None)
    results.update(epochs=history, main_metric=task.main_metric)
    atomic_write_text(run / "results.json", json.dumps(results, indent=2) + "\n")
    summary = _summary(task, teacher, student, dev, args, device, results["dev"])
    atomic_write_text(run / "summary.json", json.dumps(summary, indent=1) + "\n")
    logger.info("wrote %s: %s", run / "summary.json", summary)
    return 0


def _summary(task: Any, teacher: nn.Module, student: nn.Module, dev: Any, args: Any,
             device: torch.device, student_dev: dict[str, float]) -> dict[str, Any]:
    """Parameters, dev inference tokens/s (same run), dev metric and share kept, both models."""
    metric = task.main_metric
    t_tps, t_out = _inference_tokens_per_s(task, teacher, dev, args.eval_batch_size, device)
    s_tps, _ = _inference_tokens_per_s(task, student, dev, args.eval_batch_size, device)
    teacher_dev = task.evaluate(dev, t_out)
    return {"task": args.task, "teacher": args.teacher, "metric": metric,
            "teacher_params": sum(p.numel() for p in teacher.parameters()),
            "student_params": sum(p.numel() for p in student.parameters()),
            "teacher_layers": teacher.config.num_hidden_layers,
            "student_layers": student.config.num_hidden_layers,
            f"teacher_dev_{metric}": teacher_dev[metric], f"student_dev_{metric}":
                student_dev[metric],
            "share_kept": student_dev[metric] / teacher_dev[metric] if teacher_dev[metric]
            else None,
            "teacher_tokens_per_s": round(t_tps, 1), "student_tokens_per_s": round(s_tps, 1),
            "speedup": round(s_tps / t_tps, 3)}
