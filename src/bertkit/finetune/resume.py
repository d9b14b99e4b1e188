"""Checkpoints and exact resume of ``bertkit finetune``, through the shared
:class:`~bertkit.train.state.RunState`.

A fine-tuning run saves ``RUN/checkpoint-STEP`` (the layout of pre-training and distillation) at
the end of every epoch and, with ``--save-every N``, every N steps within one; the cursor records
the epoch and the batches consumed in it (an epoch's batches are a function of the seed and the
epoch, so a resumed run skips those). What fine-tuning keeps besides (:class:`Progress`: the
epoch records, the best score and epoch, the best weights, the current epoch's losses) travels
in the checkpoint's ``extra``; so ``metrics.jsonl`` and ``best/`` are written back from the
checkpoint on resume, and a resumed run ends as the straight run would have, bit for bit.

:func:`run_state` builds one seed's :class:`~bertkit.train.state.RunState` (continued from a
checkpoint that :func:`load_checkpoint` checked), :func:`checkpoint` saves a :class:`SeedRun`
and :func:`write_back` restores its files; :mod:`bertkit.finetune.run` holds the epoch loop.

Under ``bertkit finetune`` SIGINT and SIGTERM stop a run at the next step once it is
checkpointed (exit status 128 + signal), as pre-training's do.

With ``--seeds`` each seed is a run of its own (``RUN/seed-N``): continuing, a seed with a
``results.json`` is done, one with a checkpoint resumes from its newest, the others start.

Task distillation (:mod:`bertkit.distill.task`) checkpoints and resumes through the same pieces:
its run flags, its done marker (``summary.json``) and the fingerprint of its training data
(``--train`` and ``--unlabelled``) are parameters here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn

from bertkit.cliargs import given_flags
from bertkit.errors import BertkitError
from bertkit.fileio import atomic_write_text
from bertkit.finetune.tasks import Split, Task
from bertkit.train import checkpoint as C
from bertkit.train.distributed import DistEnv
from bertkit.train.driver import Signals, continue_args
from bertkit.train.optim import build_optimizer, build_scheduler
from bertkit.train.state import Cursor, RunState, seed_all

if TYPE_CHECKING:
    from bertkit.finetune.run import FinetuneArgs

logger = logging.getLogger(__name__)

A = TypeVar("A")

__all__ = ["FIXED_FLAGS", "RUN_FLAGS", "Progress", "RunStopped", "SeedRun", "checkpoint", "continue_run",
           "load_checkpoint", "remove_checkpoints", "run_state", "seed_checkpoint",
           "train_fingerprint", "write_back"]

# Flags a continued run takes from its args.json when left at their defaults (not the machine's:
# device, precision, threads, progress), ...
RUN_FLAGS = ("task", "model", "train", "dev", "test", "text_column", "text_pair_column",
             "label_column", "labels", "max_seq_length", "long_inputs", "stride", "doc_stride",
             "max_query_length", "n_best_size", "max_answer_length", "null_score_diff_threshold",
             "epochs", "batch_size", "grad_accum", "length_groups", "eval_batch_size", "lr",
             "warmup", "decay_after_warmup", "weight_decay", "adam_eps", "bias_correction",
             "max_grad_norm", "seed", "head_init", "seeds", "skip_bad_rows", "save_best",
             "save_every", "keep_last", "keep_checkpoints")
# ... and those a checkpoint fixes: the model and task, the data and its order (another value is
# an error; the value is what the flag's default means).
FIXED_FLAGS: dict[str, Any] = {
    "task": None, "model": None, "train": None, "dev": None, "text_column": "text",
    "text_pair_column": None, "label_column": "label", "labels": None, "max_seq_length": None,
    "long_inputs": "truncate", "stride": None, "doc_stride": 128, "max_query_length": 64,
    "batch_size": 32, "grad_accum": 1, "length_groups": 50, "seed": 42, "head_init": "normal",
    "seeds": None}


def train_fingerprint(path: str | Path) -> str:
    """Identifies the content of ``--train`` (a cursor into other data means nothing)."""
    from bertkit.fileio import sha256_file

    return sha256_file(Path(path))[:16]


@dataclass
class Progress:
    """What a fine-tuning run carries besides the :class:`~bertkit.train.state.RunState`."""

    history: list[dict[str, Any]] = field(default_factory=list)
    """One record per finished epoch (the lines of ``metrics.jsonl``)."""
    best: float | None = None
    best_epoch: int = 0
    best_state: dict[str, Tensor] = field(default_factory=dict)
    """The best epoch's weights (CPU or device tensors, cloned)."""
    epoch_losses: list[float] = field(default_factory=list)
    """Training losses of the current epoch's steps so far."""
    epoch_seconds: float = 0.0
    """Training seconds of the current epoch before this process (a resumed epoch)."""
    epoch_terms: dict[str, list[float]] = field(default_factory=dict)
    """Other per-step training metrics of the current epoch (task distillation's
    ``soft_loss``); each epoch's record holds their mean as ``train_NAME``."""

    def add_step(self, metrics: dict[str, float]) -> None:
        """Keep one step's ``loss`` and other metrics for the epoch's record."""
        self.epoch_losses.append(metrics["loss"])
        for k, v in metrics.items():
            if k != "loss":
                self.epoch_terms.setdefault(k, []).append(v)

    def add_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append an epoch's record as plain JSON values (what ``metrics.jsonl`` holds)."""
        plain = json.loads(json.dumps(record))
        self.history.append(plain)
        return plain

    def extra(self, cursor: Cursor, model: nn.Module) -> dict[str, Any]:
        """The checkpoint's ``extra``: plain values, and the best weights unless they are
        ``model``'s own (saved at the end of the best epoch)."""
        best_is_model = self.best_epoch > 0 and self.best_epoch == cursor.epoch \
            and cursor.batch == 0
        return {"history": self.history, "best": self.best, "best_epoch": self.best_epoch,
                "best_is_model": best_is_model,
                "best_state": {} if best_is_model else self.best_state,
                "epoch_losses": list(self.epoch_losses), "epoch_seconds": self.epoch_seconds,
                **({"epoch_terms": {k: list(v) for k, v in self.epoch_terms.items()}}
                   if self.epoch_terms else {})}

    @classmethod
    def from_extra(cls, extra: dict[str, Any], model: nn.Module) -> Progress:
        """Inverse of :meth:`extra`, with ``model`` holding the checkpoint's weights."""
        best_state = extra["best_state"]
        if extra["best_is_model"]:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return cls(history=list(extra["history"]), best=extra["best"],
                   best_epoch=extra["best_epoch"], best_state=best_state,
                   epoch_losses=list(extra["epoch_losses"]),
                   epoch_seconds=extra["epoch_seconds"],
                   epoch_terms={k: list(v) for k, v in extra.get("epoch_terms", {}).items()})


class RunStopped(BertkitError, RuntimeError):
    """SIGINT or SIGTERM stopped a run once its state was checkpointed."""

    def __init__(self, signum: int, run: Path, step: int) -> None:
        super().__init__(f"stopped by signal {signum} at step {step} of {run}; checkpoint "
                         f"saved: continue with --resume")
        self.signum = signum


@dataclass
class SeedRun:
    """One seed's run while it trains: its inputs, its :class:`RunState` and its progress."""

    args: FinetuneArgs
    run: Path
    seed: int
    task: Task
    tokenizer: Any
    train: Split
    dev: Split
    state: RunState
    total: int
    """Optimizer updates in all."""
    progress: Progress
    env: DistEnv
    dtype: torch.dtype | None
    signals: Signals | None = None
    """Set while SIGINT/SIGTERM are caught: the loop checkpoints and raises :class:`RunStopped`."""


def load_checkpoint(resume: Path | None, args: FinetuneArgs, data: str | None = None,
                    flags: str | None = None) -> dict[str, Any] | None:
    """The checkpoint dict to continue from; ValueError when the training data changed since.

    ``data``: the fingerprint of this run's training data (default: ``--train``'s), ``flags``
    the flags that name it (default ``--train FILE``)."""
    if resume is None:
        return None
    ck = C.load_checkpoint(resume)
    if "extra" not in ck:
        raise C.CheckpointError(f"{resume} holds no fine-tuning state (a pre-training or "
                                "general distillation checkpoint?)")
    if ck["cursor"]["data"] != (train_fingerprint(args.train) if data is None else data):
        raise ValueError(f"{flags or f'--train {args.train}'} is not the file {resume} was "
                         "trained on (its content changed): a run continues on its own data")
    return ck


def run_state(args: FinetuneArgs, task: Task, train: Split, seed: int, device: torch.device,
              ck: dict[str, Any] | None) -> tuple[RunState, int]:
    """The model, optimizer and schedule of one seed (continued from ``ck``), and its steps."""
    seed_all(seed)
    model = task.build_model(Path(args.model))
    if ck is not None:
        model.load_state_dict(ck["model"])
    model.to(device)
    updates_per_epoch = math.ceil(len(train.features) / args.batch_size)
    total = max(1, round(updates_per_epoch * args.epochs))
    optimizer = build_optimizer(model, "adamw", args.lr, args.weight_decay,
                                eps=args.adam_eps, bias_correction=args.bias_correction)
    scheduler = build_scheduler(optimizer, round(args.warmup * total), total,
                                after_warmup=args.decay_after_warmup)
    state = RunState(model, optimizer, scheduler, data=train_fingerprint(args.train))
    if ck is not None:
        state.load_state_dict(ck, DistEnv(device=device), args.lr, seed)
        logger.info("resumed %s at step %d (epoch %d, batch %d of it)", args.out,
                    state.loop.step, state.cursor.epoch + 1, state.cursor.batch)
    return state, total


def write_back(r: SeedRun, resumed: bool) -> None:
    """Start ``metrics.jsonl``; continuing, write back the checkpoint's epoch records and best
    model (what a later epoch wrote before the process stopped is replaced)."""
    path = r.run / "metrics.jsonl"
    if not resumed:
        path.unlink(missing_ok=True)
        return
    from bertkit.finetune.run import _save_model

    prog, model = r.progress, r.state.model
    atomic_write_text(path, "".join(json.dumps(h) + "\n" for h in prog.history))
    if not r.args.save_best:
        return
    if not prog.best_epoch:
        shutil.rmtree(r.run / "best", ignore_errors=True)
        return
    current = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(prog.best_state)
    _save_model(model, r.tokenizer, r.run / "best")
    model.load_state_dict(current)


def checkpoint(r: SeedRun) -> None:
    """Checkpoint ``r`` (its RunState with the fine-tuning progress as ``extra``)."""
    r.state.extra = r.progress.extra(r.state.cursor, r.state.model)
    r.state.save(r.run, r.env, r.args.keep_last)
    r.state.extra = {}


def stop_if_signalled(r: SeedRun, saved: bool) -> None:
    """After a signal: checkpoint (unless ``saved`` just now) and raise :class:`RunStopped`."""
    if r.signals is None or not r.signals.received:
        return
    if not saved:
        checkpoint(r)
    raise RunStopped(r.signals.received, r.run, r.state.loop.step)


def _has_progress(run: Path, done: str) -> bool:
    """Whether ``run`` (one seed's or a ``--seeds`` run's directory) has a checkpoint or a
    finished seed (its file ``done``) to continue from."""
    dirs = [run, *sorted(run.glob("seed-*"))]
    return any(C.list_checkpoints(d) or (d / done).is_file() for d in dirs)


def continue_run(args: A, run_flags: tuple[str, ...] = RUN_FLAGS,
                 fixed: dict[str, Any] | None = None, kind: str = "finetune",
                 done: str = "results.json") -> tuple[A, bool]:
    """The flags of this launch, and whether it continues a run (``--resume``).

    ``--resume RUN`` continues RUN (it must hold a checkpoint or a finished seed); ``--resume
    auto`` continues ``--out`` when it holds a ``kind`` run (``args.json``), else starts it.
    Continuing, flags of ``run_flags`` left at their defaults take the run's values; flags of
    ``fixed`` (default :data:`FIXED_FLAGS`) with other values are errors
    (:func:`~bertkit.train.driver.continue_args`). A seed is finished when it has ``done``.
    """
    if args.resume is None:
        return args, False
    if args.resume == "auto":
        if args.out is None:
            raise ValueError("--resume auto continues --out RUN: give --out")
        run = Path(args.out)
        if not (run / "args.json").is_file():
            logger.info("--resume auto: no %s run in %s yet, starting", kind, run)
            return args, False
    else:
        run = Path(args.resume)
        if args.out is not None and Path(args.out).resolve() != run.resolve():
            raise ValueError(f"--out {args.out} differs from --resume {run}: a continued run "
                             "stays in its directory; drop --out")
        if run.name.startswith("checkpoint-"):
            raise ValueError(f"--resume {run}: give the run directory ({run.parent}); a run "
                             "continues from its newest checkpoint")
        if not (run / "args.json").is_file():
            raise ValueError(f"--resume {run}: no {kind} run there (no args.json)")
        if not _has_progress(run, done):
            raise ValueError(f"--resume {run}: no checkpoint in {run} to resume from (the run "
                             "stopped before its first); start it again with --resume auto "
                             f"--out {run}, or with --overwrite")
    args = continue_args(dataclasses.replace(args, out=str(run)), run, run_flags,
                         FIXED_FLAGS if fixed is None else fixed, given_flags(args))
    return args, True


def seed_checkpoint(run: Path) -> Path | None:
    """The newest checkpoint of one seed's run directory (verified), or None."""
    return C.resolve_resume(run) if C.list_checkpoints(run) else None


def remove_checkpoints(run: Path) -> None:
    """Remove ``run``'s checkpoints (a finished run: ``best/`` and ``results.json`` hold its
    outcome, and a continued run skips it)."""
    for _, path in C.list_checkpoints(run):
        shutil.rmtree(path, ignore_errors=True)
