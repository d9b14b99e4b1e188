"""``bertkit distill --task KIND``: task distillation from a fine-tuned teacher.

Kinds: ``classification``, ``regression``, ``ner``, ``qa`` and ``multiple-choice``, each read,
encoded, evaluated and written exactly as ``bertkit finetune --task KIND`` does.

The student learns the teacher's soft targets on the labelled training text plus optional
unlabelled in-domain text (``--unlabelled``: Turc et al.'s pre-trained distillation), mixed with
the hard labels where they exist: per row ``(1 - w) * soft + w * hard`` with ``w =
--alpha-hard`` on labelled rows and 0 on unlabelled ones
(:func:`~bertkit.distill.losses.task_distill_loss`). The soft loss is the T^2-scaled KL at
temperature T to the teacher's distribution, or for ``regression`` the squared error to the
teacher's prediction. A row is an example's feature (``classification``, ``regression``,
``multiple-choice``: its choices' scores together), a context window (``qa``: start and end
distributions over the window's tokens, averaged; one question gives several windows) or a
word's first piece (``ner``); see :mod:`bertkit.distill.task_targets`. Unlabelled text is the
kind's own layout without labels: table rows without a label, tokens alone (ner), SWAG rows
without the label column (multiple-choice), SQuAD questions without answers (qa; answers there
are not used). The teacher's outputs are computed once, before training (the inputs do not
change between epochs or seeds), and looked up per batch; with ``--alpha-hard 1`` and no
``--unlabelled`` (every row labelled) the soft targets weigh nothing and are not computed (the
teacher runs on dev alone, for the summary), and the records have no ``train_soft_loss``.

The budget is ``--epochs`` passes over the training features, or ``--max-steps`` updates when
given (the last, partial epoch is evaluated too). Evaluation after each epoch (the kind's
metrics: accuracy, pearson/spearman, entity F1, exact/F1), best-model export (``RUN/best``), dev
and ``--test`` predictions (test metrics when every test example is labelled) and
``results.json`` are ``bertkit finetune``'s; ``RUN/summary.json`` adds the teacher and student
parameters, their inference tokens/s on the dev set (same run, same batches), their dev metric
and the share of the teacher's metric the student keeps. With ``--seeds 1,2,3`` each seed runs
in ``RUN/seed-N`` (its own ``summary.json``) and ``RUN/summary.json`` holds every seed's numbers
and their mean and std.

``--dropout`` sets the student's dropout (e.g. 0 for a deterministic student).

Checkpoints and resume are fine-tuning's (:mod:`bertkit.finetune.resume`, the same epoch loop
:func:`bertkit.finetune.run.train_epochs`): ``RUN/checkpoint-STEP`` (``RUN/seed-N/...`` per
seed) at each epoch's end and every ``--save-every`` steps, the last ``--keep-last`` kept and
removed when the seed finishes unless ``--keep-checkpoints``; ``--resume RUN`` (or ``auto``)
continues exactly, bit for bit as an uninterrupted run; a seed with a ``summary.json`` is done.
The teacher's outputs are not checkpointed: a resumed run computes them again (the same
numbers: the teacher is frozen, in eval mode, on the same batches). SIGINT and SIGTERM stop a
run at the next step once it is checkpointed (exit status 128 + signal).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bertkit.distill.losses import DistillError, task_distill_loss
from bertkit.distill.task_targets import (
    loss_inputs,
    row_count,
    split_labels,
    targets,
    teacher_outputs,
)
from bertkit.fileio import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["FIXED_FLAGS", "RUN_FLAGS", "TASKS", "continues_task_run", "data_fingerprint",
           "run_task_distill", "seeds_summary", "total_steps"]

TASKS = ("classification", "regression", "ner", "qa", "multiple-choice")
LABELLED_HEADS = ("classification", "ner")  # kinds whose teacher fixes a label list


def _teacher_task(args: Any) -> tuple[Path, list[str] | None]:
    """(teacher dir, its labels in id order for classification and ner, else None);
    DistillError for a teacher of another task."""
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
    return teacher_dir, label_names(config) if kind in LABELLED_HEADS else None


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


# ----------------------------------------------------------------------------- data


@dataclass
class _Data:
    """Training features (labels stripped), their labels and teacher outputs, the dev split and
    the test split (empty without ``--test``): see :mod:`bertkit.distill.task_targets`."""

    feats: list[Any]
    labels: list[Any]
    logits: list[np.ndarray] | None
    """None when the soft targets weigh nothing (:func:`_needs_soft_targets`)."""
    dev: Any
    test: Any
    fingerprint: str = ""
    """Of ``--train`` and ``--unlabelled``'s content: a checkpoint's cursor points into them."""


def _targets(kind: str, feats: list[Any], labels: list[Any], logits: list[np.ndarray] | None
             ) -> dict[str, Tensor]:
    """A micro-batch's targets: :func:`bertkit.distill.task_targets.targets`."""
    return targets(kind, feats, labels, logits)


def _batches(task: Any, kind: str, data: _Data, batch_size: int, grad_accum: int, seed: int,
             epoch: int, group: int) -> list[list[dict[str, Tensor]]]:
    """One epoch of updates: each a list of ``grad_accum`` micro-batches of the features (without
    labels) with the :func:`_targets` of their rows."""
    from bertkit.finetune.features import feature_lengths, length_grouped_order

    if batch_size % grad_accum:
        raise ValueError(f"--batch-size {batch_size} is not divisible by --grad-accum {grad_accum}")
    micro = batch_size // grad_accum
    out = []
    for idx in length_grouped_order(feature_lengths(data.feats), batch_size, seed, epoch, group):
        step = []
        for p in (idx[i:i + micro] for i in range(0, len(idx), micro)):
            feats = [data.feats[j] for j in p]
            mb = task.collate(feats)
            logits = None if data.logits is None else [data.logits[j] for j in p]
            mb.update(_targets(kind, feats, [data.labels[j] for j in p], logits))
            step.append(mb)
        out.append(step)
    return out


def _read_splits(task: Any, args: Any) -> tuple[Any, Any, Any, Any]:
    """(train, dev, unlabelled, test) splits; the unlabelled and test files read as finetune
    reads a test file (labels optional). Refuses an empty file, before anything is written."""
    from bertkit.finetune.tasks import Split

    splits = task.load_all({"train": Path(args.train), "dev": Path(args.dev),
                            "test": Path(args.unlabelled) if args.unlabelled else None})
    test = (task.load_all({"test": Path(args.test)})["test"] if args.test
            else Split("test", None, [], []))  # the label list is fixed by now (teacher/train)
    for split, flag, path in ((splits["train"], "--train", args.train),
                              (splits["dev"], "--dev", args.dev),
                              (splits["test"], "--unlabelled", args.unlabelled),
                              (test, "--test", args.test)):
        if path and not split.features:
            raise ValueError(f"{flag} {path}: no examples")
    if args.task == "qa" and any(e.answers for e in splits["test"].examples):
        logger.warning("--unlabelled %s: its answers are not used (soft targets only); put "
                       "labelled questions in --train", args.unlabelled)
    return splits["train"], splits["dev"], splits["test"], test


def _all_labelled(kind: str, labels: list[Any]) -> bool:
    """Whether every training row has its label (see :mod:`bertkit.distill.task_targets`)."""
    from bertkit.distill.losses import IGNORE_INDEX

    if kind == "regression":
        return not any(math.isnan(y) for y in labels)
    if kind == "ner":
        return all(y is not None for y in labels)
    missing = (IGNORE_INDEX, IGNORE_INDEX) if kind == "qa" else IGNORE_INDEX
    return all(y != missing for y in labels)


def _needs_soft_targets(args: Any, labels: list[Any]) -> bool:
    """False when the soft term weighs 0 on every row: ``--alpha-hard 1``, no ``--unlabelled``
    and every training row labelled (unlabelled rows learn from soft targets alone)."""
    return not (args.alpha_hard == 1 and not args.unlabelled
                and _all_labelled(args.task, labels))


def data_fingerprint(args: Any) -> str:
    """The content of ``--train`` (and ``--unlabelled``): what a checkpoint's cursor points into."""
    from bertkit.finetune.resume import train_fingerprint

    return "+".join(train_fingerprint(f) for f in (args.train, args.unlabelled) if f)


def _training_data(task: Any, teacher: nn.Module, args: Any, device: torch.device) -> _Data:
    """The training features with their labels and the teacher's outputs, computed once (the
    inputs are the same every epoch and seed) unless they weigh nothing, and the dev and test
    splits."""
    from bertkit.finetune.run import predict_split
    from bertkit.finetune.tasks import Split

    train, dev, extra, test = _read_splits(task, args)
    feats, labels = split_labels(args.task, [*train.features, *extra.features])
    logger.info("task distillation: %d labelled and %d unlabelled training features, dev %d, "
                "test %d", len(train.features), len(extra.features), len(dev.features),
                len(test.features))
    logits = None
    if _needs_soft_targets(args, labels):
        outs = predict_split(task, teacher.to(device), Split("train", None, [], feats),
                             args.eval_batch_size, device)
        logits = teacher_outputs(args.task, feats, outs)
    else:
        logger.info("--alpha-hard 1 without --unlabelled: the soft targets weigh nothing; the "
                    "teacher's outputs on the training set are not computed")
    return _Data(feats, labels, logits, dev, test, data_fingerprint(args))


def _inference_tokens_per_s(task: Any, model: nn.Module, split: Any, batch_size: int,
                            device: torch.device) -> tuple[float, list[Any]]:
    """(tokens/s of one inference pass over ``split``, its outputs)."""
    from bertkit.finetune.run import predict_split

    tokens = sum(split.lengths())
    t0 = time.perf_counter()
    outputs = predict_split(task, model, split, batch_size, device)
    return tokens / max(time.perf_counter() - t0, 1e-9), outputs


# ----------------------------------------------------------------------------- run


@dataclass
class _Setup:
    """What every seed shares: the task, tokenizer, frozen teacher, cached data and device."""

    task: Any
    tokenizer: Any
    teacher: nn.Module
    data: _Data
    fa: Any
    device: torch.device


def _doc_stride(args: Any) -> int:
    """``--doc-stride``, or finetune's 128 when it is under the context window, else half the
    window (``--max-seq-length`` 128 leaves 61 context tokens beside a 64-token question)."""
    if args.doc_stride is not None:
        return int(args.doc_stride)
    window = args.max_seq_length - args.max_query_length - 3
    return 128 if 128 < window else max(1, window // 2)


def _finetune_args(args: Any, teacher_dir: Path, labels: list[str] | None) -> Any:
    """The ``bertkit finetune`` arguments that read, encode, evaluate and write this run's data
    as finetune would, and checkpoint it (:mod:`bertkit.finetune.resume` reads them); their
    input checks run here (missing files, qa window lengths)."""
    from bertkit.fileio import check_input_file
    from bertkit.finetune.run import FinetuneArgs, check_inputs

    fa = FinetuneArgs(task=args.task, model=str(teacher_dir), train=args.train, dev=args.dev,
                      out=args.out, test=args.test, labels=labels,
                      max_seq_length=args.max_seq_length, doc_stride=_doc_stride(args),
                      max_query_length=args.max_query_length,
                      eval_batch_size=args.eval_batch_size, progress=args.progress,
                      batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
                      max_grad_norm=args.max_grad_norm, seed=args.seed,
                      save_every=args.save_every, keep_last=args.keep_last,
                      keep_checkpoints=args.keep_checkpoints)
    check_inputs(fa)
    if args.unlabelled is not None:
        check_input_file(args.unlabelled, "--unlabelled")
    return fa


def _setup(args: Any, continuing: bool = False) -> _Setup:
    """Check the inputs, load the teacher, encode the data and cache the teacher's logits;
    raises before RUN is created (``continuing``: RUN holds this run already)."""
    from bertkit.finetune.run import check_out, settings_from
    from bertkit.finetune.tasks import make_task
    from bertkit.tokenization import AutoTokenizer

    teacher_dir, labels = _teacher_task(args)
    if not continuing:
        check_out(Path(args.out), overwrite=False)
    fa = _finetune_args(args, teacher_dir, labels)
    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available()
                          else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    task = make_task(args.task, settings_from(fa), tokenizer)
    teacher = task.model_class(teacher_dir).from_pretrained(teacher_dir)
    teacher.eval().requires_grad_(False)
    return _Setup(task, tokenizer, teacher, _training_data(task, teacher, args, device), fa,
                  device)


def total_steps(n_features: int, args: Any) -> int:
    """Optimizer updates in all: ``--max-steps`` when given, else ``--epochs`` passes over
    ``n_features`` in batches of ``--batch-size`` (at least 1)."""
    if args.max_steps is not None:
        return int(args.max_steps)
    return max(1, round(math.ceil(n_features / args.batch_size) * args.epochs))


def _seed_run(s: _Setup, args: Any, seed: int, run: Path, ck: dict[str, Any] | None,
              signals: Any) -> Any:
    """One seed's :class:`~bertkit.finetune.resume.SeedRun`: the student, its optimizer and
    schedule, continued from checkpoint dict ``ck`` when given."""
    from bertkit.distill.student import check_vocabularies
    from bertkit.finetune.resume import Progress, SeedRun
    from bertkit.finetune.tasks import Split
    from bertkit.train.distributed import DistEnv
    from bertkit.train.driver import set_dropout
    from bertkit.train.optim import build_optimizer, build_scheduler
    from bertkit.train.state import RunState, seed_all

    seed_all(seed)
    student = _student(args, s.teacher, s.task)
    check_vocabularies(s.teacher.config, student.config)
    if args.dropout is not None:
        set_dropout(student, args.dropout)
    if ck is not None:
        student.load_state_dict(ck["model"])
    student.to(s.device)
    total = total_steps(len(s.data.feats), args)
    opt = build_optimizer(student, "adamw", args.lr, args.weight_decay, eps=args.adam_eps,
                          bias_correction=args.bias_correction)
    warmup = args.warmup_steps if args.warmup_steps is not None else total // 10
    sched = build_scheduler(opt, warmup, total, after_warmup=args.decay_after_warmup)
    env = DistEnv(device=s.device)
    state = RunState(student, opt, sched, data=s.data.fingerprint)
    if ck is None:
        seed_all(seed)
        progress = Progress()
    else:
        state.load_state_dict(ck, env, args.lr, seed)
        progress = Progress.from_extra(state.extra, student)
        logger.info("resumed %s at step %d (epoch %d, batch %d of it)", run, state.loop.step,
                    state.cursor.epoch + 1, state.cursor.batch)
    return SeedRun(s.fa, run, seed, s.task, s.tokenizer, Split("train", None, [], s.data.feats),
                   s.data.dev, state, total, progress, env, None, signals)


def _steps(s: _Setup, args: Any, seed: int) -> Any:
    """Task distillation's :class:`~bertkit.finetune.run.Steps`: :func:`_batches` and
    :func:`~bertkit.distill.losses.task_distill_loss` per row (``soft_loss`` beside ``loss``
    when the soft targets were computed)."""
    from bertkit.finetune.run import Steps

    task, kind, data = s.task, args.task, s.data

    def loss_fn(m: nn.Module, mb: dict[str, Tensor], counts: dict[str, Tensor]
                ) -> dict[str, Tensor]:
        res = task_distill_loss(kind, *loss_inputs(kind, task.forward(m, mb), mb),
                                mb.get("label_mask"), temperature=args.temperature,
                                alpha_hard=args.alpha_hard)
        share = row_count(kind, mb) / counts["n"]  # a micro-batch's mean over rows -> its share
        out = {"loss": res.total * share}
        if data.logits is not None:
            out["soft_loss"] = res.soft * share
        return out

    return Steps(lambda epoch: _batches(task, kind, data, args.batch_size, args.grad_accum,
                                        seed, epoch, 50),
                 loss_fn, lambda mb: {"n": row_count(kind, mb)}, desc="distill")


def _distil_seed(s: _Setup, args: Any, seed: int, run: Path, resume: Path | None = None,
                 signals: Any = None) -> dict[str, Any]:
    """Distil one student (seed ``seed``) into ``run``, continuing from checkpoint ``resume``
    when given; its summary (see :func:`_summary`). Raises
    :class:`~bertkit.finetune.resume.RunStopped` when ``signals`` stop it."""
    from bertkit.finetune.resume import load_checkpoint, remove_checkpoints, write_back
    from bertkit.finetune.run import _final_outputs, train_epochs

    flags = f"--train {args.train}" + (f" (+ --unlabelled {args.unlabelled})"
                                       if args.unlabelled else "")
    ck = load_checkpoint(resume, s.fa, data=s.data.fingerprint, flags=flags)
    r = _seed_run(s, args, seed, run, ck, signals)
    run.mkdir(parents=True, exist_ok=True)
    write_back(r, resumed=ck is not None)
    train_epochs(r, _steps(s, args, seed))
    student = r.state.model
    student.load_state_dict(r.progress.best_state)
    results = _final_outputs(s.task, student, s.data.dev, s.data.test, run, s.fa, s.device, None)
    results.update(seed=seed, epochs=r.progress.history, main_metric=s.task.main_metric,
                   steps=r.state.loop.step)
    atomic_write_text(run / "results.json", json.dumps(results, indent=2) + "\n")
    summary = _summary(s, student, args, seed, results["dev"], results.get("test"))
    atomic_write_text(run / "summary.json", json.dumps(summary, indent=1) + "\n")
    if not args.keep_checkpoints:
        remove_checkpoints(run)
    logger.info("wrote %s: %s", run / "summary.json", summary)
    return summary


# Flags a continued run takes from its args.json when left at their defaults, and those a
# checkpoint fixes (the teacher, student, task and data and their order; value: the default's
# meaning)
RUN_FLAGS = ("task", "teacher", "student", "student_layers", "train", "dev", "unlabelled",
             "test", "max_seq_length", "doc_stride", "max_query_length", "epochs", "max_steps",
             "batch_size", "grad_accum", "eval_batch_size", "lr", "warmup_steps",
             "decay_after_warmup", "weight_decay", "adam_eps", "bias_correction",
             "max_grad_norm", "dropout", "seed", "seeds", "alpha_hard", "temperature",
             "save_every", "keep_last", "keep_checkpoints")
FIXED_FLAGS: dict[str, Any] = {
    "task": None, "teacher": None, "student": None, "student_layers": None, "train": None,
    "dev": None, "unlabelled": None, "max_seq_length": 128, "doc_stride": None,
    "max_query_length": 64, "batch_size": 32, "grad_accum": 1, "seed": 0, "seeds": None}


def continues_task_run(args: Any) -> bool:
    """Whether ``--resume`` (RUN, or ``auto`` with ``--out``) names a task distillation run (its
    args.json has a ``task``), so that ``--resume RUN`` alone continues one."""
    if args.resume is None or args.task is not None:
        return args.task is not None
    run = Path(args.out) if args.resume == "auto" and args.out else Path(args.resume)
    if run.name.startswith("checkpoint-"):  # refused by the task path, naming the run
        run = run.parent
    try:
        return bool(json.loads((run / "args.json").read_text(encoding="utf-8")).get("task"))
    except (OSError, ValueError, AttributeError):
        return False


def run_task_distill(args: Any) -> int:
    """Distil a fine-tuned teacher into a student on ``--train`` (+ ``--unlabelled``) text, once
    or once per ``--seeds`` (RUN/seed-N); evaluate on ``--dev`` after every epoch; export the
    best student; print the summary. With ``--resume`` a seed with a ``summary.json`` is read,
    one with a checkpoint continues from it, others start. Returns 0, or 128 + signal when
    SIGINT/SIGTERM stopped it (checkpointed)."""
    from bertkit.finetune.resume import RunStopped, continue_run, seed_checkpoint
    from bertkit.train.driver import Signals

    if args.threads:
        torch.set_num_threads(args.threads)
    args, continuing = continue_run(args, RUN_FLAGS, FIXED_FLAGS, kind="task distillation",
                                    done="summary.json")
    s = _setup(args, continuing)
    run = Path(args.out)
    run.mkdir(parents=True, exist_ok=True)  # only now: bad input leaves no RUN behind
    atomic_write_text(run / "args.json", json.dumps(dataclasses.asdict(args), indent=1) + "\n")
    per_seed = []
    with Signals() as signals:
        for seed in (args.seeds or [args.seed]):
            target = run / f"seed-{seed}" if args.seeds else run
            if continuing and (target / "summary.json").is_file():
                logger.info("seed %d: finished already (%s)", seed, target / "summary.json")
                per_seed.append(json.loads((target / "summary.json").read_text(encoding="utf-8")))
                continue
            resume = seed_checkpoint(target) if continuing else None
            try:
                per_seed.append(_distil_seed(s, args, seed, target, resume, signals))
            except RunStopped as e:
                logger.info("%s", e)
                return 128 + e.signum
    if not args.seeds:
        print(summary_lines(per_seed[0]))
        return 0
    summary = seeds_summary(per_seed)
    atomic_write_text(run / "summary.json", json.dumps(summary, indent=1) + "\n")
    print(summary_lines(summary))
    print(f"wrote {run / 'summary.json'}")
    return 0


# ----------------------------------------------------------------------------- summary


def _summary(s: _Setup, student: nn.Module, args: Any, seed: int,
             student_dev: dict[str, float], student_test: dict[str, float] | None = None
             ) -> dict[str, Any]:
    """Parameters, dev inference tokens/s (same run, same batches), dev metric and share kept,
    of the teacher and this seed's best student (and its test metric with a labelled
    ``--test``)."""
    task, dev, metric = s.task, s.data.dev, s.task.main_metric
    t_tps, t_out = _inference_tokens_per_s(task, s.teacher, dev, args.eval_batch_size, s.device)
    s_tps, _ = _inference_tokens_per_s(task, student, dev, args.eval_batch_size, s.device)
    teacher_dev = task.evaluate(dev, t_out)
    return {"task": args.task, "teacher": args.teacher, "metric": metric, "seed": seed,
            "teacher_params": sum(p.numel() for p in s.teacher.parameters()),
            "student_params": sum(p.numel() for p in student.parameters()),
            "teacher_layers": s.teacher.config.num_hidden_layers,
            "student_layers": student.config.num_hidden_layers,
            f"teacher_dev_{metric}": teacher_dev[metric],
            f"student_dev_{metric}": student_dev[metric],
            "share_kept": student_dev[metric] / teacher_dev[metric] if teacher_dev[metric]
            else None,
            "teacher_tokens_per_s": round(t_tps, 1), "student_tokens_per_s": round(s_tps, 1),
            "speedup": round(s_tps / t_tps, 3),
            **({f"student_test_{metric}": student_test[metric]} if student_test else {})}


def seeds_summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Every seed's summary and the mean, std, min and max over seeds of its numbers (student
    metric, share kept, both tokens/s and their ratio; the teacher's metric is the same each
    time)."""
    from bertkit.finetune.run import describe

    first = per_seed[0]
    metric = first["metric"]
    keys = (f"student_dev_{metric}", "share_kept", "teacher_tokens_per_s",
            "student_tokens_per_s", "speedup")
    out = {k: first[k] for k in ("task", "teacher", "metric", "teacher_params", "student_params",
                                 "teacher_layers", "student_layers", f"teacher_dev_{metric}")}
    out["seeds"] = [r["seed"] for r in per_seed]
    out.update({k: describe([float(r[k]) for r in per_seed]) for k in keys})
    out["per_seed"] = per_seed
    return out


def summary_lines(summary: dict[str, Any]) -> str:
    """The summary as a few lines for the screen (mean +- std over seeds where there are)."""
    def fmt(v: Any) -> str:
        if isinstance(v, dict):
            return f"{v['mean']:.4f} +- {v['std']:.4f} (n={v['n']})"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    m = summary["metric"]
    keys = (f"teacher_dev_{m}", f"student_dev_{m}", "share_kept", "teacher_tokens_per_s",
            "student_tokens_per_s", "speedup", "teacher_params", "student_params")
    lines = [f"{k:<26}{fmt(summary[k])}" for k in keys]
    for r in summary.get("per_seed", []):
        lines.append(f"seed {r['seed']:<21}student dev {m} {r[f'student_dev_{m}']:.4f}, "
                     f"share kept {r['share_kept']:.4f}, speedup {r['speedup']:.2f}x")
    return "\n".join(lines)
