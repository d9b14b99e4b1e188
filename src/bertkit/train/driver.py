"""The run driver shared by ``pretrain`` and ``distill``: flags, data cursor, metrics, signals, and
one training run from setup to the last checkpoint (:func:`run_training`).

A kind of run brings a :class:`Job`: how to build the model to train, its loss and counts, its
evaluation and how to prepare the run directory. The driver does the rest, the same way for
every kind: checks, seeding, resume (:class:`~bertkit.train.state.RunState`), DDP/FSDP, the step
loop (:func:`~bertkit.train.loop.train_steps`), logging to ``RUN/metrics.jsonl`` and TensorBoard,
evaluation and checkpoints every N steps, and SIGINT/SIGTERM (checkpoint, then exit 128 + signal).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from bertkit.cliargs import given_flags
from bertkit.train import checkpoint as C
from bertkit.train.distributed import (
    DistEnv,
    all_reduce_max,
    init_distributed,
    shard_model,
    shutdown,
    wrap_model,
)
from bertkit.train.loop import CountFn, LoopSettings, LossFn, NonFiniteLossError, train_steps
from bertkit.train.optim import build_optimizer, build_scheduler, uncorrected_peak
from bertkit.train.state import Cursor, RunState, seed_all

logger = logging.getLogger(__name__)

__all__ = ["Job", "MetricsLog", "Signals", "TrainArgs", "continue_args", "data_fingerprint",
           "encoder_layers", "iter_batches", "prepare_run", "read_jsonl", "read_metrics",
           "resume_dir_of", "run_training", "set_dropout"]

A = TypeVar("A", bound="TrainArgs")


@dataclass
class TrainArgs:
    """The flags every shard-fed training run shares (``pretrain``, ``distill``)."""

    data: str | None = field(default=None, metadata={
        "help": "training data directory (create-pretraining-data); required, except with "
                "--resume RUN, which takes the run's (another --data continues on new data)"})
    out: str | None = field(default=None, metadata={
        "help": "run directory (metrics, checkpoints): new or empty; default with --resume: "
                "that run"})
    eval_data: str | None = field(default=None, metadata={"help": "held-out data directory"})
    resume: str | None = field(default=None, metadata={
        "help": "continue a run: RUN (its newest checkpoint) or RUN/checkpoint-STEP; auto: the "
                "newest checkpoint of --out if it has one, else start (the same command then "
                "serves a first launch and every restart). Continuing a run, flags left at "
                "their defaults take the values in RUN/args.json; flags that fix the model "
                "and optimizer (--config, --init, --teacher, --student, --optimizer) other "
                "than the run's are errors"})
    batch_size: int = field(default=32, metadata={"min": 1,
        "help": "global batch (sequences per update)"})
    grad_accum: int = field(default=1, metadata={"min": 1, "help": "micro-batches per update"})
    max_steps: int = field(default=1000, metadata={"min": 1, "help": "optimizer updates in all"})
    lr: float = field(default=1e-4, metadata={"above": 0, "help": "peak learning rate"})
    warmup_steps: int | None = field(default=None, metadata={"min": 0,
        "help": "linear warmup steps (default: 10%% of max-steps)"})
    schedule: Literal["linear", "polynomial", "constant"] = field(default="linear", metadata={
        "help": "decay after warmup (Google's: 1 - step/max_steps, to a power)"})
    power: float = field(default=1.0, metadata={"above": 0,
        "help": "power of the polynomial decay"})
    decay_after_warmup: bool = field(default=False, metadata={
        "help": "start the decay when warmup ends, as transformers' linear schedule (Google's "
                "decays over all steps, so the lr drops to (1 - warmup/max-steps) x --lr "
                "when warmup ends)"})
    optimizer: Literal["adamw", "lamb"] = field(default="adamw", metadata={
        "help": "AdamW (decoupled decay) or LAMB"})
    bias_correction: bool = field(default=True, metadata={
        "help": "Adam bias correction, as torch.optim.AdamW; --no-bias-correction is Google's "
                "AdamWeightDecay, whose first ~1000 updates are up to 6.5x lr: harmless under "
                "Google's 10,000 warmup steps, but with a short warmup and a high lr it can stall "
                "training at the unigram solution"})
    weight_decay: float = field(default=0.01, metadata={"min": 0,
        "help": "decoupled weight decay (not on LayerNorm and biases)"})
    beta1: float = field(default=0.9, metadata={"min": 0, "below": 1, "help": "Adam beta1"})
    beta2: float = field(default=0.999, metadata={"min": 0, "below": 1, "help": "Adam beta2"})
    adam_eps: float = field(default=1e-6, metadata={"above": 0, "help": "Adam epsilon"})
    max_grad_norm: float = field(default=1.0, metadata={"min": 0,
        "help": "clip gradients at this global norm (0: off)"})
    precision: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata={
        "help": "fp32; bf16 autocast (CPU or CUDA); fp16 autocast + gradient scaler (CUDA)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    fsdp: bool = field(default=False, metadata={
        "help": "under torchrun: shard parameters, gradients and optimizer state over the ranks "
                "(FSDP2, one unit per encoder layer) instead of DDP, for a model that does not "
                "fit one device; checkpoints stay full state dicts"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={
        "help": "auto = CUDA when available (under torchrun: cuda:LOCAL_RANK)"})
    dropout: float | None = field(default=None, metadata={"min": 0, "below": 1,
        "help": "override hidden and attention dropout (e.g. 0 for deterministic tests)"})
    seed: int = field(default=0, metadata={"min": 0,
        "help": "seed of init, dropout and data order"})
    log_every: int = field(default=10, metadata={"min": 1,
        "help": "append train metrics every N steps"})
    eval_every: int = field(default=1000, metadata={"min": 0,
        "help": "evaluate every N steps (0: end)"})
    eval_batches: int = field(default=50, metadata={"min": 0,
        "help": "batches per evaluation (0: all of --eval-data)"})
    save_every: int = field(default=1000, metadata={"min": 1, "help": "checkpoint every N steps"})
    keep_last: int = field(default=3, metadata={"min": 1, "help": "checkpoints kept"})
    max_nonfinite: int = field(default=10, metadata={"min": 1,
        "help": "stop after this many non-finite losses in a row"})
    threads: int = field(default=0, metadata={"min": 0,
        "help": "torch CPU threads (0: torch's default)"})
    cpu_minutes: float = field(default=0.0, metadata={"min": 0,
        "help": "also stop after this many minutes of this process's CPU time (all threads; "
                "0: no limit), then evaluate and save as at --max-steps: equal compute for runs "
                "compared on a shared machine. Eval records carry cpu_s"})
    progress: bool | None = field(default=None, metadata={
        "help": "progress bar (default: when stderr is a terminal)"})


# ----------------------------------------------------------------------------- data


def iter_batches(ds: Any, micro: int, accum: int, cursor: Cursor) -> Iterator[list[dict]]:
    """This rank's ``accum`` micro-batches of each global batch, endlessly, from ``cursor``.

    ``cursor`` is advanced as batches are handed out, so a checkpoint taken after a step records
    exactly where the next step starts.
    """
    rows_per_step = micro * accum
    while True:
        ds.set_epoch(cursor.epoch)
        n = len(ds) // rows_per_step
        if n == 0:
            raise ValueError(f"{ds.data_dir}: {len(ds)} rows per rank, fewer than one batch "
                             f"({rows_per_step}); use a smaller --batch-size or more data")
        while cursor.batch < n:
            start = cursor.batch * rows_per_step
            cursor.batch += 1
            yield [ds.batch(list(range(start + i * micro, start + (i + 1) * micro)))
                   for i in range(accum)]
        cursor.epoch, cursor.batch = cursor.epoch + 1, 0


def data_fingerprint(index: dict[str, Any]) -> str:
    """Identifies a data directory's content (its shards' hashes and settings)."""
    key = json.dumps([index["settings"], [s["sha256"] for s in index["shards"]]], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- metrics


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; ValueError names the file and line of a bad one."""
    from bertkit.fileio import utf8_lines

    records = []
    with open(path, "rb") as f:
        for lineno, line in enumerate(utf8_lines(f, str(path)), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: damaged metrics line, invalid JSON ({e.msg}); "
                                 "delete or fix that line") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: damaged metrics line, expected a JSON object")
            records.append(rec)
    return records


class MetricsLog:
    """``RUN/metrics.jsonl`` (rank 0) plus TensorBoard events when the package is installed."""

    def __init__(self, run: Path, enabled: bool, truncate_after: int | None) -> None:
        self.path = run / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        if truncate_after is not None and self.path.is_file():  # drop lines past the checkpoint
            keep = [json.dumps(r) for r in read_jsonl(self.path)
                    if r.get("step", 0) <= truncate_after]
            from bertkit.fileio import atomic_write_text

            atomic_write_text(self.path, "".join(k + "\n" for k in keep))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run / "tensorboard"))
        except ImportError:
            pass

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"{record.get('split', 'train')}/{k}", v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(run: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a pretrain run directory")
    return read_jsonl(path)


# ----------------------------------------------------------------------------- run


class Signals:
    """SIGINT/SIGTERM set a flag (the loop checkpoints and exits) instead of killing mid-step."""

    def __init__(self) -> None:
        self.received = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def warn_uncorrected(args: TrainArgs, warmup: int) -> None:
    """Warn when Google's uncorrected Adam makes early updates much larger than ``--lr``."""
    if args.bias_correction:
        return
    peak = uncorrected_peak(warmup, (args.beta1, args.beta2))
    if peak > 2.0:
        logger.warning("--no-bias-correction with %d warmup steps: early updates reach %.1fx "
                       "--lr (%.2g); a run can stall at the unigram solution. Use bias "
                       "correction, or a warmup of several thousand steps as Google's recipe",
                       warmup, peak, args.lr * peak)


def grad_scaler(precision: str, fsdp: bool) -> torch.amp.GradScaler | None:
    """fp16's gradient scaler; under FSDP the sharded one (inf/NaN found on any rank skips all)."""
    if precision != "fp16":
        return None
    if fsdp:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler("cuda")
    return torch.amp.GradScaler("cuda")


def continue_args(args: A, run: Path, run_flags: Sequence[str], fixed: dict[str, Any],
                  given: Collection[str] | None = None) -> A:
    """``args`` for continuing ``run``: flags not given take the run's recorded values.

    ``given`` names the flags given on the command line (default: those recorded by
    :func:`~bertkit.cliargs.given_flags`); a given flag wins even when it equals its default.
    Where neither is known, a flag at its default counts as not given.

    ``run_flags`` are the flags that define a run and its exact continuation (not the machine's:
    device, precision, compile, fsdp, threads). A flag given with another value than the run's
    is kept (and recorded), except those of ``fixed`` ({name: its default's meaning}), which the
    checkpoint fixes (e.g. --config, --init, --optimizer): those raise ValueError naming both.
    """
    path = run / "args.json"
    if not path.is_file():
        logger.warning("%s not found: the run's flags are not known, using these", path)
        return args
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: expected a JSON object")
    defaults = {f.name: f.default for f in dataclasses.fields(type(args))}
    explicit = given if given is not None else given_flags(args)
    changes: dict[str, Any] = {}
    for name in run_flags:
        if name not in saved:
            continue
        given, recorded = getattr(args, name), saved[name]
        if name in fixed:
            if given != defaults[name] and (given or fixed[name]) != \
                    (recorded or fixed[name]):
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} {given} conflicts with the run's {flag} "
                                 f"{recorded or fixed[name]} ({path}): a continued run "
                                 f"keeps its checkpoint's model and optimizer; drop {flag}")
        not_given = name not in explicit if explicit is not None else given == defaults[name]
        if not_given and recorded != given:
            changes[name] = recorded
        elif given != recorded:
            logger.info("--%s %s replaces the run's %s", name.replace("_", "-"), given, recorded)
    if changes:
        logger.info("continuing %s with its flags from %s: %s", run, path,
                    ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in changes.items()))
    return dataclasses.replace(args, **changes)


def resume_dir_of(args: TrainArgs) -> Path | None:
    """The checkpoint to continue from, if any (``auto``: the newest of ``--out``, if it has one)."""
    if args.resume is None:
        return None
    if args.resume == "auto":
        if args.out is None:
            raise ValueError("--resume auto continues --out RUN: give --out")
        if not C.list_checkpoints(args.out):
            logger.info("--resume auto: no checkpoint in %s yet, starting", args.out)
            return None
        return C.resolve_resume(args.out)
    return C.resolve_resume(args.resume)


def open_run(args: A, run_flags: Sequence[str], fixed: dict[str, Any],
             required: dict[str, str]) -> tuple[A, Path, Path | None]:
    """The start of every ``run_*`` entry point: threads, ``--out``/``--resume`` checks, and on
    a continued run the recorded flags (:func:`continue_args`). ``required`` maps each field the
    run cannot start without to its flag text (``{"data": "--data DIR"}``). Returns (args, RUN,
    checkpoint to resume from or None)."""
    from bertkit.fileio import check_output_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out is None and args.resume in (None, "auto"):
        raise ValueError("--out RUN is required (or --resume RUN)")
    if args.out is not None:
        check_output_dir(args.out)
    resume_dir = resume_dir_of(args)
    run = Path(args.out) if args.out else (resume_dir.parent if resume_dir else Path("."))
    if resume_dir is not None and run.resolve() == resume_dir.parent.resolve():
        args = continue_args(args, run, run_flags, fixed)
    for name, flag in required.items():
        if getattr(args, name) is None:
            raise ValueError(f"{flag} is required (a continued run takes the "
                             f"{flag.split()[0]} recorded in its args.json)")
    return args, run, resume_dir


def run_distributed(args: TrainArgs, train: Callable[[DistEnv], int]) -> int:
    """``train(env)`` in this process's (torchrun's) process group, shut down after; the group
    is torn down without waiting for other ranks when ``train`` raises."""
    env = init_distributed(args.device)
    try:
        code = train(env)
    except BaseException:
        shutdown(env, clean=False)
        raise
    shutdown(env)
    return code


def worker_main(args_cls: type[A], run: Callable[[A], int], prog: str,
                argv: list[str] | None) -> int:
    """``python -m MODULE`` (also under torchrun): parse ``args_cls``'s flags, ``run`` them, and
    log input errors in one line (exit 1)."""
    import argparse

    from bertkit.cliargs import add_dataclass_args, dataclass_from_namespace

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog=prog, description=args_cls.__doc__)
    add_dataclass_args(parser, args_cls)
    args = dataclass_from_namespace(args_cls, parser.parse_args(argv), parser)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        logger.error("%s", e)
        return 1


def prepare_run(args: TrainArgs, index: dict[str, Any], run: Path, resuming: bool) -> None:
    """Create RUN (rank 0): args.json and the data's tokenizer files (a WordPiece vocab.txt with
    a ``BertTokenizer`` tokenizer_config.json, or the tokenizer directory's files).

    A new run needs a new or empty RUN; only a bertkit run that stopped before its first
    checkpoint (RUN holding args.json) may start again in it (its metrics lines are dropped)."""
    if not resuming and C.list_checkpoints(run):
        raise ValueError(f"{run} already holds checkpoints; continue it with --resume {run} "
                         "or choose a new --out")
    restart = (run / "args.json").is_file()
    if not resuming and not restart and run.is_dir() and any(run.iterdir()):
        names = sorted(p.name for p in run.iterdir())
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ValueError(f"{run} is not empty (it holds {shown}): a new run needs a new or empty "
                         "--out; continue a bertkit run with --resume")
    run.mkdir(parents=True, exist_ok=True)
    from bertkit.fileio import atomic_write_text

    atomic_write_text(run / "args.json", json.dumps(dataclasses.asdict(args), indent=1) + "\n")
    if index["vocab"].get("files"):  # made with a tokenizer directory (BPE, SentencePiece)
        from bertkit.data.vocab_files import data_tokenizer

        data_tokenizer(args.data).save_pretrained(run)
        return
    shutil.copyfile(Path(args.data) / "vocab.txt", run / "vocab.txt")
    tok = {"do_lower_case": bool(index["settings"].get("do_lower_case", True)),
           "tokenizer_class": "BertTokenizer", "model_max_length": 512}
    atomic_write_text(run / "tokenizer_config.json", json.dumps(tok, indent=1) + "\n")


def set_dropout(model: nn.Module, p: float) -> None:
    """Set the hidden and attention dropout of ``model`` (and its config) to ``p``."""
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = p
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        if hasattr(m, "p_drop"):
            m.p_drop = p


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder layers (FSDP's units): BERT-like ``layers``, or ALBERT's shared groups."""
    for m in model.modules():
        layers = getattr(m, "layers", None)
        if isinstance(layers, nn.ModuleList):
            return list(layers)
        groups = getattr(m, "groups", None)
        if isinstance(groups, nn.ModuleList):
            return list(groups)
    raise ValueError(f"{type(model).__name__}: no encoder layers found to shard")


EvalFn = Callable[[nn.Module, Any, int, int, DistEnv, "torch.dtype | None"], dict[str, float]]
"""(model, dataset, micro batch, max batches, env, autocast dtype) -> metrics, all ranks summed."""


@dataclass
class Job:
    """What one kind of run brings to :func:`run_training`.

    ``build_model(resume_dir)``: the model to train, on the CPU (the driver loads a checkpoint's
    weights into it); it raises on bad input before anything is written. ``prepare_run(run,
    resuming)``: rank 0 writes ``args.json`` and the tokenizer files, once every check passed.
    """

    index: dict[str, Any]
    dataset_cls: Any
    build_model: Callable[[Path | None], nn.Module]
    prepare_run: Callable[[Path, bool], None]
    loss_fn: LossFn
    count_fn: CountFn
    evaluate: EvalFn


def _micro_batch(args: TrainArgs, env: DistEnv) -> int:
    """Sequences per micro-batch on each rank; ValueError when the global batch does not split."""
    if args.precision == "fp16" and env.device.type != "cuda":
        raise ValueError("--precision fp16 needs CUDA (a gradient scaler); use bf16 on CPU")
    micro, rem = divmod(args.batch_size, env.world_size * args.grad_accum)
    if rem or micro == 0:
        raise ValueError(f"--batch-size {args.batch_size} is not divisible by world size "
                         f"{env.world_size} x --grad-accum {args.grad_accum}")
    return micro


def _run_state(args: TrainArgs, job: Job, env: DistEnv, resume_dir: Path | None,
               fsdp: bool) -> RunState:
    """The model (checkpoint weights loaded, then placed or sharded), optimizer, schedule and
    scaler of this run, continued from ``resume_dir`` when given."""
    seed_all(args.seed)
    model = job.build_model(resume_dir)
    ck = C.load_checkpoint(resume_dir) if resume_dir is not None else None  # on the CPU
    if ck is not None:
        model.load_state_dict(ck["model"])  # the full weights, before sharding
    model = shard_model(model, env, encoder_layers(model)) if fsdp else model.to(env.device)
    opt = build_optimizer(model, args.optimizer, args.lr, args.weight_decay,
                          (args.beta1, args.beta2), args.adam_eps, args.bias_correction)
    warmup = args.warmup_steps if args.warmup_steps is not None else args.max_steps // 10
    warn_uncorrected(args, warmup)
    sched = build_scheduler(opt, warmup, args.max_steps, args.schedule, args.power,
                            args.decay_after_warmup)
    state = RunState(model, opt, sched, grad_scaler(args.precision, fsdp),
                     data=data_fingerprint(job.index))
    if ck is not None:
        state.load_state_dict(ck, env, args.lr, args.seed)
        logger.info("resumed from %s at step %d", resume_dir, state.loop.step)
    else:
        seed_all(args.seed + env.rank)  # per-rank dropout streams
    return state


def run_training(args: TrainArgs, env: DistEnv, run: Path, resume_dir: Path | None,
                 job: Job) -> int:
    """Train ``job`` into ``run``: 0 when ``max_steps`` are done, 128 + signal after a signal (a
    checkpoint was written), 1 when the run stopped on non-finite losses; bad input raises
    ValueError before the run directory is written."""
    micro = _micro_batch(args, env)
    fsdp = args.fsdp and env.distributed
    if args.fsdp and not fsdp:
        logger.warning("--fsdp with a single process: nothing to shard, training unsharded")
    ds = job.dataset_cls(args.data, rank=env.rank, world_size=env.world_size, seed=args.seed)
    eval_ds = (job.dataset_cls(args.eval_data, rank=env.rank, world_size=env.world_size,
                               seed=args.seed) if args.eval_data else None)
    if eval_ds is not None and eval_ds.index["vocab"]["sha256"] != job.index["vocab"]["sha256"]:
        raise ValueError(f"--eval-data {args.eval_data} was made with another vocabulary than "
                         f"--data {args.data}")
    state = _run_state(args, job, env, resume_dir, fsdp)
    # a bertkit run that stopped before its first checkpoint starts again from step 0
    again = resume_dir is None and (run / "args.json").is_file() and not C.list_checkpoints(run)
    if env.is_main:  # only now: bad input above leaves no run directory behind
        job.prepare_run(run, resume_dir is not None)
    train_model: nn.Module = state.model if fsdp else wrap_model(state.model, env)
    if args.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    # a restart (--resume auto) drops the lines logged after its checkpoint (or all, before one)
    restart = resume_dir is not None or args.resume == "auto" or again
    log = MetricsLog(run, env.is_main, truncate_after=state.loop.step if restart else None)
    try:
        return _drive(args, env, run, state, train_model, iter_batches(
            ds, micro, args.grad_accum, state.cursor), eval_ds, job, log, resume_dir is not None)
    finally:
        log.close()


def _cpu_budget_spent(args: TrainArgs, cpu0: float, env: DistEnv) -> bool:
    """True (on every rank) once any rank has used ``--cpu-minutes`` of process CPU time."""
    if not args.cpu_minutes:
        return False
    spent = float(time.process_time() - cpu0 >= args.cpu_minutes * 60)
    if not all_reduce_max(torch.tensor([spent], device=env.device), env).item():
        return False
    logger.info("--cpu-minutes %g spent: stopping at this step", args.cpu_minutes)
    return True


def _drive(args: TrainArgs, env: DistEnv, run: Path, state: RunState, train_model: nn.Module,
           batches: Iterator[list[dict]], eval_ds: Any, job: Job, log: MetricsLog,
           resumed: bool) -> int:
    """The step loop: log every ``log_every``, evaluate every ``eval_every``, save every
    ``save_every``; a signal saves and stops; the end evaluates and saves. Returns the exit code."""
    from tqdm import tqdm

    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    settings = LoopSettings(max_grad_norm=args.max_grad_norm or None, autocast_dtype=dtype,
                            max_nonfinite_in_row=args.max_nonfinite)
    last_eval, last_saved = -1, state.loop.step if resumed else -1

    def run_eval() -> None:
        nonlocal last_eval
        if eval_ds is None or last_eval == state.loop.step:
            return
        last_eval = state.loop.step
        res = job.evaluate(train_model, eval_ds, max(1, args.batch_size // env.world_size),
                           args.eval_batches, env, dtype)
        log.write({"step": state.loop.step, "split": "eval", **res,
                   "cpu_s": round(time.process_time() - cpu0, 1)})
        if env.is_main:
            logger.info("step %d eval: %s", state.loop.step,
                        ", ".join(f"{k}={v:.4f}" for k, v in res.items()))

    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=args.max_steps, initial=state.loop.step, unit="step", dynamic_ncols=True,
               disable=not (progress and env.is_main))
    t_last, tokens_since, code = time.perf_counter(), 0.0, 0
    cpu0 = time.process_time()
    with Signals() as sig:
        try:
            for res in train_steps(train_model, batches, state.optimizer, state.scheduler,
                                   job.loss_fn, job.count_fn, args.max_steps, state.loop,
                                   settings, env, state.scaler):
                tokens_since += res.counts["tokens"]
                if res.skipped:
                    logger.warning("step %d skipped: non-finite loss (%d in a row, %d in all)",
                                   res.step + 1, state.loop.nonfinite_in_row,
                                   state.loop.nonfinite_total)
                    continue
                bar.update(1)
                if res.step % args.log_every == 0 or res.step == args.max_steps:
                    now = time.perf_counter()
                    tps = tokens_since / max(now - t_last, 1e-9)
                    t_last, tokens_since = now, 0.0
                    log.write({"step": res.step, "split": "train", **res.metrics, "lr": res.lr,
                               "grad_norm": res.grad_norm, "tokens_per_s": round(tps, 1),
                               "nonfinite_total": state.loop.nonfinite_total})
                    bar.set_postfix(loss=f"{res.metrics['loss']:.4f}", lr=f"{res.lr:.2e}",
                                    tok_s=f"{tps:,.0f}")
                if args.eval_every and res.step % args.eval_every == 0:
                    run_eval()
                if res.step % args.save_every == 0:
                    state.save(run, env, args.keep_last)
                    last_saved = res.step
                flag = torch.tensor([float(sig.received)], device=env.device)
                sig.received = int(all_reduce_max(flag, env).item())
                if sig.received or _cpu_budget_spent(args, cpu0, env):
                    break
        except NonFiniteLossError as e:
            logger.error("%s", e)
            code = 1
    bar.close()
    if sig.received:
        if last_saved != state.loop.step:
            state.save(run, env, args.keep_last)
        logger.info("stopped by signal %d at step %d; checkpoint saved: continue with "
                    "--resume %s", sig.received, state.loop.step, run)
        return 128 + sig.received
    if code == 0:
        run_eval()
        if last_saved != state.loop.step:
            state.save(run, env, args.keep_last)
    return code
