"""``bertkit finetune``: train a task head on a pre-trained model, evaluate each epoch, keep the best.

Any family (BERT, RoBERTa, DistilBERT, ALBERT): the head class comes from the model directory's
``config.json`` ``model_type`` through the Auto classes, the tokenizer from its files
(``AutoTokenizer``), and the exported ``best/`` is that family's Hugging Face directory.

A run directory ``RUN`` holds ``args.json``, ``metrics.jsonl`` (one line per epoch: training loss,
dev metrics, seconds), ``best/`` (the best epoch's model by the task's main dev metric, in Hugging
Face format with vocab and tokenizer config, loadable by ``transformers`` and ``bertkit predict``),
the best model's dev (and test) predictions, and ``results.json``. With ``--seeds 1,2,3`` each seed
runs in ``RUN/seed-N`` and ``RUN/summary.json`` holds the mean, std, min and max of every metric.

While it trains, a run saves ``checkpoint-STEP`` at each epoch's end (and every ``--save-every``
steps) through the shared :class:`~bertkit.train.state.RunState`; ``--resume RUN`` (or ``auto``)
continues it exactly, and a finished run's checkpoints are removed unless ``--keep-checkpoints``
(see :mod:`bertkit.finetune.resume`).

``RUN`` must be new or empty (unless continued): one holding an earlier run is refused (its
``best/`` would be replaced and an old ``test_results.tsv`` kept beside the new results) unless
``--overwrite``, which removes that run's outputs once the new inputs have been read; a directory
holding no run is never written into. A run that diverges (NaN or infinite dev outputs or weights) stops with an
error naming it, and no model of a diverged epoch is exported.

Defaults are Google's: AdamW without bias correction, lr 5e-5, 3 epochs, 10% linear warmup then
linear decay, batch 32, max_seq_length 128 (QA: 384, doc stride 128, query 64), weight decay 0.01,
clipping at 1.0. Batches are padded to their longest member and training batches are grouped by
length (shuffled), so short inputs cost little.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from bertkit.fileio import atomic_write_text
from bertkit.finetune.resume import (
    Progress,
    RunStopped,
    SeedRun,
    checkpoint,
    load_checkpoint,
    remove_checkpoints,
    run_state,
    stop_if_signalled,
    write_back,
)
from bertkit.finetune.tasks import Settings, Split, Task, make_task
from bertkit.inference.batcher import NonFiniteOutputError
from bertkit.train import checkpoint as C
from bertkit.train.distributed import DistEnv
from bertkit.train.driver import Signals
from bertkit.train.loop import LoopSettings, NonFiniteLossError, autocast, train_steps

logger = logging.getLogger(__name__)

__all__ = ["FinetuneArgs", "NonFiniteOutputError", "Steps", "describe", "finetune",
           "predict_split", "run_finetune", "summarise", "train_epochs"]


@dataclass
class FinetuneArgs:
    """Fine-tune a pre-trained model (any family) on a labelled task; evaluate each epoch; keep
    the best model."""

    task: str | None = field(default=None, metadata={
        "help": "classification, regression, glue:NAME (cola, sst-2, mrpc, sts-b, qqp, mnli, "
                "qnli, rte, wnli), ner, qa or multiple-choice; required, as are --model, "
                "--train, --dev and --out, except with --resume RUN (which takes the run's)"})
    model: str | None = field(default=None, metadata={
        "help": "pre-trained model directory (HF layout, with its tokenizer files: vocab.txt, "
                "vocab.json + merges.txt or spiece.model)"})
    train: str | None = field(default=None, metadata={
        "help": "training file (CSV/TSV/JSONL, GLUE TSV, CoNLL, SQuAD JSON or SWAG CSV, by "
                "task)"})
    dev: str | None = field(default=None, metadata={
        "help": "dev file: evaluated after every epoch"})
    out: str | None = field(default=None, metadata={
        "help": "run directory (default with --resume RUN: that run)"})
    test: str | None = field(default=None, metadata={
        "help": "test file: predictions from the best model, and metrics when every example has "
                "a label (a table's label column may be missing or empty here, and a CoNLL "
                "file may hold tokens alone)"})
    text_column: str = field(default="text", metadata={"help": "table column of the text"})
    text_pair_column: str | None = field(default=None, metadata={
        "help": "table column of the second text of a pair"})
    label_column: str = field(default="label", metadata={"help": "table column of the label"})
    labels: list[str] | None = field(default=None, metadata={
        "help": "label list in id order (default: sorted labels of the training file)"})
    max_seq_length: int | None = field(default=None, metadata={"min": 8,
        "help": "tokens per input (default 128; qa 384)"})
    long_inputs: Literal["truncate", "window"] = field(default="truncate", metadata={
        "help": "classification/NER inputs longer than max-seq-length: Google's truncation, or "
                "overlapping windows (classification: mean of the windows' logits; NER: each "
                "word from the window where it has the most context)"})
    stride: int | None = field(default=None, metadata={"min": 1,
        "help": "tokens of overlap between windows (default: half a window)"})
    doc_stride: int = field(default=128, metadata={"min": 1,
        "help": "qa: step between context windows"})
    max_query_length: int = field(default=64, metadata={"min": 1,
        "help": "qa: question tokens kept"})
    n_best_size: int = field(default=20, metadata={"min": 1, "help": "qa: candidate answers kept"})
    max_answer_length: int = field(default=30, metadata={"min": 1,
        "help": "qa: longest answer in tokens"})
    null_score_diff_threshold: float = field(default=0.0, metadata={
        "help": "qa v2: predict no answer when null score - best span score exceeds this"})
    epochs: float = field(default=3.0, metadata={"above": 0,
        "help": "passes over the training data"})
    batch_size: int = field(default=32, metadata={"min": 1, "help": "examples per update"})
    grad_accum: int = field(default=1, metadata={"min": 1, "help": "micro-batches per update"})
    length_groups: int = field(default=50, metadata={"min": 1,
        "help": "training batches are drawn from random groups of this many batches sorted by "
                "length (less padding); 1 = plain random batches"})
    eval_batch_size: int = field(default=64, metadata={"min": 1,
        "help": "examples per inference batch"})
    lr: float = field(default=5e-5, metadata={"above": 0, "help": "peak learning rate"})
    warmup: float = field(default=0.1, metadata={"min": 0, "below": 1,
        "help": "fraction of steps of linear warmup"})
    decay_after_warmup: bool = field(default=False, metadata={
        "help": "start the linear decay when warmup ends, as transformers' Trainer (Google's "
                "decays over all steps, so the lr drops to (1 - warmup) x --lr when warmup "
                "ends)"})
    weight_decay: float = field(default=0.01, metadata={"min": 0,
        "help": "decoupled weight decay (not on LayerNorm and biases)"})
    adam_eps: float = field(default=1e-6, metadata={"above": 0, "help": "Adam epsilon"})
    bias_correction: bool = field(default=False, metadata={
        "help": "Adam bias correction (off = Google's AdamWeightDecay)"})
    max_grad_norm: float = field(default=1.0, metadata={"min": 0,
        "help": "clip at this global norm"})
    seed: int = field(default=42, metadata={"min": 0,
        "help": "seed of the head's init, dropout and order"})
    head_init: Literal["normal", "truncated"] = field(default="normal", metadata={
        "help": "a new head's weights: N(0, 0.02) as transformers, or Google's normal truncated at "
                "2 std; on small data 'normal' trained more reliably (README, WNUT-16)"})
    seeds: list[int] | None = field(default=None, metadata={"min": 0, "unique": True,
        "help": "run once per seed (RUN/seed-N) and write RUN/summary.json"})
    skip_bad_rows: bool = field(default=False, metadata={
        "help": "skip malformed rows (counted and logged) instead of stopping at the first"})
    precision: Literal["fp32", "bf16"] = field(default="fp32", metadata={
        "help": "bf16 autocast (fast on GPUs and CPUs with bf16 units; slow elsewhere)"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={
        "help": "auto = CUDA when available"})
    threads: int = field(default=0, metadata={"min": 0,
        "help": "torch CPU threads (0: torch's default)"})
    save_best: bool = field(default=True, metadata={"help": "export the best epoch's model"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace the finetune run already in --out (its outputs are removed first); "
                "without it a non-empty --out is refused"})
    progress: bool | None = field(default=None, metadata={
        "help": "progress bar (default: when stderr is a terminal)"})
    save_every: int = field(default=0, metadata={"min": 0,
        "help": "also checkpoint every N steps within an epoch (0: only at each epoch's end; "
                "a checkpoint is always saved when an epoch ends), for long epochs that "
                "may be cut short"})
    keep_last: int = field(default=1, metadata={"min": 1,
        "help": "checkpoints kept (RUN/checkpoint-STEP, or RUN/seed-N/checkpoint-STEP per "
                "seed): model, optimizer, schedule, RNG, data position and epoch records"})
    keep_checkpoints: bool = field(default=False, metadata={
        "help": "keep the checkpoints once the run has finished (default: removed then; best/ "
                "and results.json hold its outcome)"})
    resume: str | None = field(default=None, metadata={
        "help": "continue a run stopped part-way from its newest checkpoint, exactly (results, "
                "metrics and best/ as an uninterrupted run's): RUN, or auto = --out if it "
                "holds a finetune run, else start it (one command for a first launch and every "
                "restart). With --seeds, finished seeds are skipped and each other seed "
                "continues from its own checkpoint. Flags left at their defaults take the "
                "run's (RUN/args.json); flags that fix the model, task or data order (--task, "
                "--model, --train, --dev, --batch-size, --seed(s), --max-seq-length, ...) other "
                "than the run's are errors"})


def settings_from(args: FinetuneArgs) -> Settings:
    is_qa = args.task == "qa"
    return Settings(
        max_seq_length=args.max_seq_length or (384 if is_qa else 128),
        long_inputs=args.long_inputs, stride=args.stride, text_column=args.text_column,
        text_pair_column=args.text_pair_column, label_column=args.label_column,
        labels=list(args.labels) if args.labels else None, skip_bad_rows=args.skip_bad_rows,
        doc_stride=args.doc_stride, max_query_length=args.max_query_length,
        n_best_size=args.n_best_size, max_answer_length=args.max_answer_length,
        null_score_diff_threshold=args.null_score_diff_threshold, head_init=args.head_init)


def check_inputs(args: FinetuneArgs) -> None:
    """Refuse, before anything is read, input flags that cannot work: a required flag missing,
    a missing or directory
    ``--train``/``--dev``/``--test``, and (qa) a ``--doc-stride`` as wide as the context window."""
    from bertkit.fileio import check_input_file

    for name in ("task", "model", "train", "dev"):
        if getattr(args, name) is None:
            raise ValueError(f"--{name} is required (except with --resume RUN, which takes the "
                             "run's)")
    for flag, value in (("--train", args.train), ("--dev", args.dev), ("--test", args.test)):
        if value is not None:
            check_input_file(value, flag)
    if args.task == "qa":
        length = args.max_seq_length or 384
        window = length - args.max_query_length - 3  # a question of --max-query-length pieces
        if window < 1:
            raise ValueError(f"--max-seq-length {length} must be greater than --max-query-length "
                             f"{args.max_query_length} + 3 (BERT's special tokens; RoBERTa "
                             f"has 4)")
        if args.doc_stride >= window:
            raise ValueError(
                f"--doc-stride {args.doc_stride} must be less than the context window of "
                f"{window} tokens (--max-seq-length {length} - --max-query-length "
                f"{args.max_query_length} - 3): windows would not overlap, and an answer cut at "
                f"a window's edge could not be found; try --doc-stride {max(1, window // 2)}")


_RUN_ENTRY = re.compile(r"args\.json|metrics\.jsonl|results\.json|summary\.json|best|\.best-.*"
                        r"|dev|test|(dev|test)_(results\.tsv|predictions\.conll)|seed-\d+"
                        r"|checkpoint-\d+|\.checkpoint-.*\.tmp")


def check_out(out: str | Path, overwrite: bool, clear: bool = False) -> None:
    """Refuse a ``--out`` that is a file or a non-empty directory (a finished run would be mixed
    with this one: ``best/`` replaced, an old ``test_results.tsv`` kept). With ``overwrite`` an
    earlier finetune run (it has ``args.json`` or ``summary.json``) may be replaced, and
    ``clear`` removes its outputs; a directory holding no run is refused even then."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, expected a run directory")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    names = ", ".join(e.name for e in entries[:5]) + (" ..." if len(entries) > 5 else "")
    is_run = (out / "args.json").is_file() or (out / "summary.json").is_file()
    if not overwrite:
        raise ValueError(
            f"--out {out} is not empty ({names}): "
            + ("it holds an earlier finetune run; choose a new directory or pass --overwrite to "
               "replace that run" if is_run else "choose a new or empty directory"))
    if not is_run:
        raise ValueError(f"--out {out} is not empty ({names}) and holds no finetune run (no "
                         "args.json): --overwrite only replaces a run; choose a new or empty "
                         "directory")
    if clear:
        for e in entries:
            if _RUN_ENTRY.fullmatch(e.name):
                if e.is_dir() and not e.is_symlink():
                    shutil.rmtree(e)
                else:
                    e.unlink()
        logger.info("--overwrite: removed the earlier run's outputs from %s", out)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available")
    return torch.device(name)


# ----------------------------------------------------------------------------- batches


def micro_batches(task: Task, split: Split, batch_size: int, grad_accum: int, seed: int,
                  epoch: int, group: int) -> list[list[dict[str, Tensor]]]:
    """One epoch of updates, each a list of ``grad_accum`` collated micro-batches."""
    from bertkit.finetune.features import length_grouped_order

    if batch_size % grad_accum:
        raise ValueError(f"--batch-size {batch_size} is not divisible by --grad-accum {grad_accum}")
    order = length_grouped_order(split.lengths(), batch_size, seed, epoch, group)
    micro = batch_size // grad_accum
    out = []
    for idx in order:
        parts = [idx[i:i + micro] for i in range(0, len(idx), micro)]
        out.append([task.collate([split.features[j] for j in p]) for p in parts])
    return out


@torch.no_grad()
def predict_split(task: Task, model: nn.Module, split: Split, batch_size: int,
                  device: torch.device, dtype: torch.dtype | None = None, *,
                  progress: bool = False) -> list[Any]:
    """Model outputs for every feature of ``split``, in feature order, through the inference
    engine: ``model`` behind a :class:`~bertkit.inference.torch_backend.TorchBackend`, run by
    :func:`~bertkit.inference.batcher.run_features` in length-sorted batches of at most
    ``batch_size`` features (the token budget is set so that it never cuts a batch sooner).

    Per feature: logits as numpy, (C,) or (T_batch, C) for NER; QA a (start, end) pair of
    (T_batch,) arrays. Raises :class:`NonFiniteOutputError` (naming the split's file and the
    features) on a batch with NaN or infinite outputs, so that no NaN reaches a metric, a
    prediction or an exported model. ``progress`` shows a tqdm bar of the batches on stderr.
    """
    from bertkit.finetune.predict import feature_outputs
    from bertkit.inference.batcher import Encoded, run_features
    from bertkit.inference.torch_backend import TorchBackend

    items = [Encoded(f.input_ids, f.token_type_ids) for f in split.features]
    if not items:
        return []
    backend = TorchBackend(model, device)
    rows = max(len(it.input_ids) if it.choices else 1 for it in items)  # K for multiple choice
    budget = batch_size * rows * max(len(it) for it in items)
    try:
        with autocast(device, dtype):
            out = run_features(backend, items, task.tokenizer.pad_token_id, budget, batch_size,
                               "token_type_ids" in backend.input_names, progress, split.name)
    except NonFiniteOutputError as e:
        raise NonFiniteOutputError(f"{split.path or split.name}: the model's outputs are not "
                                   f"finite (NaN or inf) for {len(e.features)} input(s)",
                                   e.features) from e
    return feature_outputs(task.kind, out)


# ----------------------------------------------------------------------------- one run


def _check_finite(model: nn.Module, run: Path) -> None:
    """Refuse to go on with (and export) a model holding a NaN or infinite weight."""
    bad = [name for name, t in model.state_dict().items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise NonFiniteOutputError(
            f"{run}: training diverged: {len(bad)} weight tensor(s) hold NaN or inf (first: "
            f"{bad[0]}); nothing exported. Lower --lr or check the data")


def _save_model(model: nn.Module, tokenizer: Any, target: Path) -> None:
    """Write the model + vocab to ``target`` through a temp dir and a rename (never half a dir).

    A model with a NaN or infinite weight is never written (:class:`NonFiniteOutputError`)."""
    _check_finite(model, target.parent)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        model.save_pretrained(tmp)  # type: ignore[attr-defined]
        tokenizer.save_pretrained(tmp)
        old = target.with_name(f".{target.name}-old")
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _better(new: float, best: float | None, metric: str) -> bool:
    lower_is_better = metric in ("mse", "loss")
    return best is None or (new < best if lower_is_better else new > best)


def finetune(args: FinetuneArgs, run: Path, seed: int, *, claim: Path | None = None,
             resume: Path | None = None, signals: Signals | None = None) -> dict[str, Any]:
    """Train and evaluate one seed into ``run``; returns ``results.json``'s content.

    ``claim`` (the command line's ``--out``): once the inputs are read, a non-empty ``claim`` is
    refused, or with ``args.overwrite`` the earlier run's outputs there are removed (see
    :func:`check_out`). Without it ``run`` is written over as it is. ``resume``: a checkpoint of
    ``run`` to continue from exactly (see :mod:`bertkit.finetune.resume`). ``signals``: caught
    SIGINT/SIGTERM; one received checkpoints the run and raises :class:`RunStopped`.
    """
    from bertkit.models.heads import check_model_dir
    from bertkit.tokenization import AutoTokenizer

    device = _device(args.device)
    check_inputs(args)
    check_model_dir(args.model, "--model", fine_tuned=False)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    task = make_task(args.task, settings_from(args), tokenizer)
    task.model_class(Path(args.model))  # a family without this task's head: refused before reading
    t0 = time.perf_counter()
    splits = task.load_all({"train": Path(args.train), "dev": Path(args.dev),
                            "test": Path(args.test) if args.test else None})
    train, dev, test = splits["train"], splits["dev"], splits["test"]
    logger.info("features: train %d (from %d examples), dev %d, test %d; encoding took %.1f s",
                len(train.features), len(train.examples), len(dev.features), len(test.features),
                time.perf_counter() - t0)
    for split, path in ((train, args.train), (dev, args.dev), (test, args.test)):
        if path and not split.features:  # an empty --test would silently predict nothing
            raise ValueError(f"{path}: no {split.name} examples")
    ck = load_checkpoint(resume, args)
    if claim is not None:
        check_out(claim, args.overwrite, clear=True)
    task.fit_loss_scale(train)
    state, total = run_state(args, task, train, seed, device, ck)
    run.mkdir(parents=True, exist_ok=True)  # only now: bad input or weights leave no empty RUN
    atomic_write_text(run / "args.json", json.dumps({**dataclasses.asdict(args), "seed": seed},
                                                    indent=2) + "\n")
    if claim is not None and claim.resolve() != run.resolve():  # --seeds: the run's own flags
        atomic_write_text(claim / "args.json", json.dumps(dataclasses.asdict(args), indent=2)
                          + "\n")
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    r = SeedRun(args, run, seed, task, tokenizer, train, dev, state, total,
                Progress.from_extra(state.extra, state.model) if ck else Progress(),
                DistEnv(device=device), dtype, signals)
    write_back(r, resumed=ck is not None)
    train_epochs(r, _finetune_steps(r))
    model, prog = state.model, r.progress
    model.load_state_dict(prog.best_state)
    _check_finite(model, run)
    results = _final_outputs(task, model, dev, test, run, args, device, dtype)
    results.update(seed=seed, best_epoch=prog.best_epoch, epochs=prog.history,
                   main_metric=task.main_metric,
                   train_seconds_per_epoch=statistics.median(
                       h["train_seconds"] for h in prog.history),
                   n_train=len(train.examples), n_train_features=len(train.features))
    atomic_write_text(run / "results.json", json.dumps(results, indent=2) + "\n")
    if not args.keep_checkpoints:
        remove_checkpoints(run)
    return results


@dataclass
class Steps:
    """How a run's updates are made: ``batches(epoch)`` gives an epoch's updates (each a list of
    ``grad_accum`` collated micro-batches), ``loss_fn`` and ``count_fn`` are
    :func:`~bertkit.train.loop.train_steps`'s. Fine-tuning's are :func:`_finetune_steps`; task
    distillation has its own (:mod:`bertkit.distill.task`)."""

    batches: Callable[[int], list[list[dict[str, Tensor]]]]
    loss_fn: Callable[[nn.Module, dict[str, Tensor], dict[str, Tensor]], dict[str, Tensor]]
    count_fn: Callable[[dict[str, Tensor]], dict[str, Tensor]]
    desc: str = "finetune"
    """The progress bar's label."""


def _finetune_steps(r: SeedRun) -> Steps:
    """Fine-tuning's batches (:func:`micro_batches`) and loss (the task's, per example)."""
    args = r.args

    def loss_fn(m: nn.Module, mb: dict[str, Tensor], counts: dict[str, Tensor]
                ) -> dict[str, Tensor]:
        return {"loss": r.task.loss_sum(m, mb) / counts["n"]}

    def count_fn(mb: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"n": r.task.count(mb)}

    return Steps(lambda epoch: micro_batches(r.task, r.train, args.batch_size, args.grad_accum,
                                             r.seed, epoch, args.length_groups),
                 loss_fn, count_fn)


def train_epochs(r: SeedRun, steps: Steps) -> None:
    """Train until ``r.total`` steps, evaluating and checkpointing at each epoch's end."""
    from tqdm import tqdm

    args = r.args
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    settings = LoopSettings(max_grad_norm=args.max_grad_norm or None, autocast_dtype=r.dtype)
    with tqdm(total=r.total, initial=r.state.loop.step, disable=not progress,
              desc=f"{steps.desc} seed {r.seed}", dynamic_ncols=True) as bar:
        while r.state.loop.step < r.total:
            stop_if_signalled(r, saved=bool(C.list_checkpoints(r.run)))  # one at each epoch end
            _train_epoch(r, steps, settings, bar)
            _end_epoch(r)


def _train_epoch(r: SeedRun, steps: Steps, settings: LoopSettings, bar: Any) -> None:
    """The rest of the cursor's epoch, or up to ``r.total`` steps; checkpoints every
    ``--save-every`` steps within it."""
    args, state, prog, cur = r.args, r.state, r.progress, r.state.cursor
    batches = steps.batches(cur.epoch)

    def feed() -> Iterator[list[dict[str, Tensor]]]:  # the cursor counts what is handed out
        while cur.batch < len(batches):
            cur.batch += 1
            yield batches[cur.batch - 1]

    t0 = time.perf_counter()
    try:  # the shared step loop; it stops at ``total`` steps within the epoch
        for res in train_steps(state.model, feed(), state.optimizer, state.scheduler,
                               steps.loss_fn, steps.count_fn, r.total, state.loop, settings,
                               r.env):
            prog.add_step(res.metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{res.metrics['loss']:.4f}", lr=f"{res.lr:.2e}")
            if cur.batch == len(batches) or res.step == r.total:
                continue  # the epoch's end evaluates and checkpoints
            prog.epoch_seconds += time.perf_counter() - t0  # training time, saves apart
            saved = bool(args.save_every and res.step % args.save_every == 0
                         and not res.skipped)
            if saved:
                checkpoint(r)
            stop_if_signalled(r, saved)
            t0 = time.perf_counter()
    except NonFiniteLossError as e:
        kept = (f"{r.run / 'best'} holds epoch {prog.best_epoch}'s model"
                if prog.best_epoch and args.save_best else "no model was exported")
        raise NonFiniteLossError(f"{r.run}: training diverged: {e}; {kept}") from e
    prog.epoch_seconds += time.perf_counter() - t0


def _end_epoch(r: SeedRun) -> None:
    """Evaluate on dev, log the epoch's record, keep the best model, move the cursor to the
    next epoch and checkpoint."""
    args, state, prog, cur, task = r.args, r.state, r.progress, r.state.cursor, r.task
    device = r.env.device
    try:
        dev_out = predict_split(task, state.model, r.dev, args.eval_batch_size, device, r.dtype)
    except NonFiniteOutputError as e:
        raise NonFiniteOutputError(
            f"{r.run}: training diverged: after epoch {cur.epoch + 1} (step {state.loop.step}) "
            f"the model's outputs on {r.dev.path} are NaN or inf; no model of this epoch is "
            f"exported. Lower --lr (now {args.lr:g}) or check the data", e.features) from e
    dev_metrics = task.evaluate(r.dev, dev_out)
    losses = prog.epoch_losses
    record = prog.add_record({"epoch": cur.epoch + 1, "step": state.loop.step,
                              "train_loss": sum(losses) / max(1, len(losses)),
                              **{f"train_{k}": sum(v) / max(1, len(v))
                                 for k, v in prog.epoch_terms.items()},
                              "train_seconds": round(prog.epoch_seconds, 3),
                              **{f"dev_{k}": v for k, v in dev_metrics.items()}})
    with open(r.run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    logger.info("seed %d epoch %d: %s", r.seed, cur.epoch + 1, _fmt(record))
    score = dev_metrics.get(task.main_metric)
    if score is None:
        raise KeyError(f"task metric {task.main_metric!r} missing from {dev_metrics}")
    if _better(score, prog.best, task.main_metric):
        prog.best = float(score)
        if args.save_best:
            _save_model(state.model, r.tokenizer, r.run / "best")
        prog.best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        prog.best_epoch = cur.epoch + 1
    cur.epoch, cur.batch = cur.epoch + 1, 0
    prog.epoch_losses, prog.epoch_seconds, prog.epoch_terms = [], 0.0, {}
    checkpoint(r)


def _final_outputs(task: Task, model: nn.Module, dev: Split, test: Split, run: Path,
                   args: FinetuneArgs, device: torch.device, dtype: torch.dtype | None
                   ) -> dict[str, Any]:
    """Dev metrics and predictions of the best model; test predictions (and metrics if labelled)."""
    out: dict[str, Any] = {}
    dev_out = predict_split(task, model, dev, args.eval_batch_size, device, dtype)
    out["dev"] = task.evaluate(dev, dev_out)
    files = task.write_predictions(dev, dev_out, run)
    if test.examples:
        test_out = predict_split(task, model, test, args.eval_batch_size, device, dtype)
        files += task.write_predictions(test, test_out, run)
        if task.labelled(test.examples):
            out["test"] = task.evaluate(test, test_out)
        else:
            logger.info("%s has examples without labels: test predictions written, no metrics",
                        test.path)
    out["files"] = [str(p) for p in files]
    return out


def _fmt(record: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in record.items())


# ----------------------------------------------------------------------------- seeds


def describe(values: list[float]) -> dict[str, float]:
    """Mean, sample std (0 for one value), min, max and count of ``values``."""
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`describe` of every dev/test metric, and of the seconds per epoch, over seeds."""
    table: dict[str, dict[str, float]] = {}
    for split in ("dev", "test"):
        for k in sorted({k for r in results for k in r.get(split, {})}):
            table[f"{split}_{k}"] = describe([float(r[split][k]) for r in results
                                              if k in r.get(split, {})])
    table["train_seconds_per_epoch"] = describe([r["train_seconds_per_epoch"] for r in results])
    return {"seeds": [r["seed"] for r in results], "metrics": table}


def summary_table(summary: dict[str, Any]) -> str:
    rows = [f"{'metric':<28}{'mean':>10}{'std':>10}{'min':>10}{'max':>10}"]
    for k, v in summary["metrics"].items():
        rows.append(f"{k:<28}{v['mean']:>10.4f}{v['std']:>10.4f}{v['min']:>10.4f}{v['max']:>10.4f}")
    return "\n".join(rows)


def run_finetune(args: FinetuneArgs) -> int:
    """CLI entry point: one seed into RUN, or each of ``--seeds`` into RUN/seed-N plus a summary.

    With ``--resume`` (see :func:`~bertkit.finetune.resume.continue_run`) each unfinished seed
    continues from its newest checkpoint, or starts when it has none; finished seeds are read."""
    from bertkit.finetune.resume import continue_run, seed_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    args, continuing = continue_run(args)
    if args.out is None:
        raise ValueError("--out is required (except with --resume RUN, which takes the run's)")
    run = Path(args.out)
    check_inputs(args)
    if not continuing:
        check_out(run, args.overwrite)  # early: before minutes of reading and encoding
    seeds = list(args.seeds) if args.seeds else [args.seed]
    results = []
    with Signals() as signals:
        for i, seed in enumerate(seeds):
            target = run / f"seed-{seed}" if args.seeds else run
            if continuing and (target / "results.json").is_file():
                logger.info("seed %d: finished already (%s)", seed, target / "results.json")
                results.append(json.loads((target / "results.json").read_text(encoding="utf-8")))
            else:
                resume = seed_checkpoint(target) if continuing else None
                claim = run if i == 0 and not continuing else None
                try:
                    results.append(finetune(args, target, seed, claim=claim, resume=resume,
                                            signals=signals))
                except RunStopped as e:
                    logger.info("%s %s", e, run)
                    return 128 + e.signum
            print(f"seed {seed}: best epoch {results[-1]['best_epoch']}, dev "
                  + _fmt(results[-1]["dev"]))
    summary = summarise(results)
    if args.seeds:
        atomic_write_text(run / "summary.json", json.dumps(summary, indent=2) + "\n")
        print(summary_table(summary))
        print(f"wrote {run / 'summary.json'}")
    print(f"best model: {(run / f'seed-{seeds[0]}' if args.seeds else run) / 'best'}")
    return 0
