"""``bertkit pretrain``: MLM (+ NSP/SOP) pre-training of any family on bertkit shards.

The model is the family's masked-LM class (``AutoModelForMaskedLM`` by the config's
``model_type``): ``BertForPreTraining`` (MLM + NSP), ``RobertaForMaskedLM`` and
``DistilBertForMaskedLM`` (MLM only: data made with ``--objective none``), ``AlbertForPreTraining``
(MLM + SOP). ``--config roberta-mini`` etc. picks a family's preset.

A run directory ``RUN`` holds ``args.json``, the tokenizer's files (``vocab.txt`` and
``tokenizer_config.json`` for WordPiece data, else the data's tokenizer directory files),
``metrics.jsonl`` (one JSON object per logged step or evaluation), and checkpoints
``checkpoint-STEP`` (see :mod:`bertkit.train.checkpoint`). ``--resume RUN`` continues from the newest
checkpoint exactly (same weights, optimizer, schedule, RNG and data position); with other ``--data``
(e.g. phase 2 at sequence length 512) it continues the weights, optimizer and schedule and starts at
the beginning of the new data.

The MLM loss is Google's: cross-entropy at the masked positions, weighted by
``masked_lm_weights``, divided by the number of real predictions in the whole global batch (so
accumulation and DDP give the loss of one big batch); NSP/SOP: mean cross-entropy over sequences.

``--resume auto --out RUN`` continues RUN when it has a checkpoint and starts it otherwise, so one
command serves the first launch and every restart. Under ``torchrun`` the model is replicated with
DDP, or sharded with FSDP2 (``--fsdp``); checkpoints are the same full state dicts either way
(``docs/distributed.md``).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.fileio import sha256_file
from bertkit.train import checkpoint as C
from bertkit.train.distributed import (
    SINGLE,
    DistEnv,
    all_reduce_max,
    all_reduce_sum,
    full_state_dicts,
    init_distributed,
    load_optimizer_state,
    shard_model,
    shutdown,
    wrap_model,
)
from bertkit.train.loop import (
    LoopSettings,
    LoopState,
    NonFiniteLossError,
    autocast,
    to_device,
    train_steps,
)
from bertkit.train.optim import build_optimizer, build_scheduler, uncorrected_peak

logger = logging.getLogger(__name__)

__all__ = ["PretrainArgs", "ExportArgs", "PlotArgs", "evaluate", "pretraining_loss",
           "run_export", "run_plot", "run_pretrain"]


@dataclass
class PretrainArgs:
    """Pre-train a BERT-family model (MLM + NSP/SOP) on create-pretraining-data shards."""

    data: str | None = field(default=None, metadata={
        "help": "training data directory (create-pretraining-data); required, except with "
                "--resume RUN, which takes the run's (another --data continues on new data)"})
    out: str | None = field(default=None, metadata={
        "help": "run directory (metrics, checkpoints): new or empty; default with --resume: "
                "that run"})
    eval_data: str | None = field(default=None, metadata={"help": "held-out data directory"})
    config: str | None = field(default=None, metadata={
        "help": "model preset (tiny/mini/small/medium/base/large, L-4_H-256..., roberta-mini, "
                "albert-mini, distilbert-mini, ...) or config JSON; default mini"})
    init: str | None = field(default=None, metadata={
        "help": "start from this HF-layout model directory (heads missing there start fresh)"})
    resume: str | None = field(default=None, metadata={
        "help": "continue a run: RUN (its newest checkpoint) or RUN/checkpoint-STEP; auto: the "
                "newest checkpoint of --out if it has one, else start (the same command then "
                "serves a first launch and every restart). Continuing a run, flags left at "
                "their defaults take the values in RUN/args.json; --config/--init/--optimizer "
                "other than the run's are errors"})
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
    progress: bool | None = field(default=None, metadata={
        "help": "progress bar (default: when stderr is a terminal)"})


# ----------------------------------------------------------------------------- loss and eval


def pair_logits(out: Any) -> Tensor | None:
    """The sentence-pair logits (B, 2) of a family's output: NSP (BERT), SOP (ALBERT) or None."""
    logits = getattr(out, "nsp_logits", None)
    return logits if logits is not None else getattr(out, "sop_logits", None)


def _forward(model: nn.Module, batch: dict[str, Tensor]) -> Any:
    return model(input_ids=batch["input_ids"], attention_mask=batch["input_mask"],
                 token_type_ids=batch["segment_ids"],
                 masked_lm_positions=batch["masked_lm_positions"])


def pretraining_loss(model: nn.Module, batch: dict[str, Tensor], counts: dict[str, Tensor]
                     ) -> dict[str, Tensor]:
    """This micro-batch's share of the global batch's MLM (+ NSP/SOP) loss (see the module doc)."""
    out = _forward(model, batch)
    ce = F.cross_entropy(out.mlm_logits.flatten(0, 1).float(),
                         batch["masked_lm_ids"].flatten(), reduction="none")  # (B*P,)
    w = batch["masked_lm_weights"].flatten().float()
    mlm = (ce * w).sum() / (counts["masked"] + 1e-5)
    shares = {"mlm_loss": mlm, "loss": mlm}
    pair = pair_logits(out)
    if "next_sentence_labels" in batch and pair is not None:
        nsp = F.cross_entropy(pair.float(), batch["next_sentence_labels"].flatten(),
                              reduction="sum") / counts["seqs"]
        shares.update(nsp_loss=nsp, loss=mlm + nsp)
    return shares


def pretraining_counts(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {"masked": batch["masked_lm_weights"].sum(), "tokens": batch["input_mask"].sum(),
            "seqs": torch.tensor(float(batch["input_ids"].shape[0]))}


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Any, batch_size: int, max_batches: int = 0,
             env: DistEnv = SINGLE, dtype: torch.dtype | None = None) -> dict[str, float]:
    """Google's eval metrics over (up to ``max_batches`` batches of) ``dataset``, all ranks summed.

    masked_lm_accuracy / masked_lm_loss are weighted by ``masked_lm_weights``;
    next_sentence_accuracy / next_sentence_loss (absent for objective none) per sequence.
    """
    was_training = model.training
    model.eval()
    n = len(dataset) // batch_size if len(dataset) >= batch_size else 1
    if max_batches:
        n = min(n, max_batches)
    sums = torch.zeros(6, dtype=torch.float64)  # mlm ce, mlm correct, weights, nsp ce, correct, n
    for b in range(n):
        idx = list(range(b * batch_size, min((b + 1) * batch_size, len(dataset))))
        batch = to_device(dataset.batch(idx), env.device)
        with autocast(env.device, dtype):
            out = _forward(model, batch)
        logits, ids = out.mlm_logits.float().flatten(0, 1), batch["masked_lm_ids"].flatten()
        w = batch["masked_lm_weights"].flatten().double()
        ce = F.cross_entropy(logits, ids, reduction="none").double()
        sums[0] += float((ce * w).sum())
        sums[1] += float(((logits.argmax(-1) == ids).double() * w).sum())
        sums[2] += float(w.sum())
        if "next_sentence_labels" in batch and pair_logits(out) is not None:
            labels = batch["next_sentence_labels"].flatten()
            nsp = pair_logits(out).float()
            sums[3] += float(F.cross_entropy(nsp, labels, reduction="sum"))
            sums[4] += float((nsp.argmax(-1) == labels).sum())
            sums[5] += len(labels)
    sums = all_reduce_sum(sums.to(env.device), env).cpu()
    model.train(was_training)
    res = {"masked_lm_accuracy": float(sums[1] / sums[2].clamp_min(1e-9)),
           "masked_lm_loss": float(sums[0] / sums[2].clamp_min(1e-9))}
    if sums[5] > 0:
        res.update(next_sentence_accuracy=float(sums[4] / sums[5]),
                   next_sentence_loss=float(sums[3] / sums[5]))
    return res


# ----------------------------------------------------------------------------- data


@dataclass
class Cursor:
    """Position in the data: epoch, and global batches consumed within it."""

    epoch: int = 0
    batch: int = 0


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


# ----------------------------------------------------------------------------- model setup


def build_model(args: PretrainArgs, index: dict[str, Any], resume_dir: Path | None) -> Any:
    """The family's pre-training model (:class:`~bertkit.models.auto.AutoModelForMaskedLM` by
    ``model_type``) from the checkpoint, ``--init`` or ``--config``, checked against the data."""
    from bertkit.config import AutoConfig
    from bertkit.models.auto import AutoModelForMaskedLM

    vocab = index["vocab"]
    if resume_dir is not None:
        model = AutoModelForMaskedLM.from_config(AutoConfig.from_json_file(
            resume_dir / "config.json"))
        source = str(resume_dir)
    elif args.init:
        init = Path(args.init)
        if init.is_file():
            raise NotADirectoryError(errno.ENOTDIR, "--init: is a file, not a model directory "
                                     "(config.json, model.safetensors)", str(init))
        model = AutoModelForMaskedLM.from_pretrained(init)
        source = str(init)
        if (init / "vocab.txt").is_file() and sha256_file(init / "vocab.txt") != vocab["sha256"]:
            raise ValueError(f"{args.data} was made with another vocabulary than {init}/vocab.txt "
                             "(sha256 differs); remake the data with the model's vocab.txt")
    else:
        spec = args.config or "mini"
        if spec.endswith(".json") or Path(spec).is_file():
            cfg = AutoConfig.from_json_file(spec)
        else:
            cfg = AutoConfig.from_preset(spec, vocab_size=vocab["size"],
                                         pad_token_id=vocab.get("pad_id", 0))
        model = AutoModelForMaskedLM.from_config(cfg)
        source = f"--config {spec}"
    cfg = model.config
    _check_model_fits_data(cfg, source, args.data, index)
    if args.dropout is not None:
        cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = args.dropout
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = args.dropout
            if hasattr(m, "p_drop"):
                m.p_drop = args.dropout
    return model


def _check_model_fits_data(cfg: Any, source: str, data: Any, index: dict[str, Any]) -> None:
    """ValueError naming both when the data's vocabulary, length or objective does not fit."""
    vocab = index["vocab"]
    if cfg.vocab_size != vocab["size"]:
        raise ValueError(f"{data} has a vocabulary of {vocab['size']} entries but the model "
                         f"({source}) has vocab_size {cfg.vocab_size}")
    seq = index["settings"]["max_seq_length"]
    offset = cfg.pad_token_id + 1 if cfg.model_type == "roberta" else 0  # RoBERTa's positions
    if seq > cfg.max_position_embeddings - offset:
        raise ValueError(f"{data} has max_seq_length {seq} but the model ({source}) has "
                         f"max_position_embeddings {cfg.max_position_embeddings}")
    objective = index["settings"].get("objective", "nsp")
    if objective != "none" and cfg.model_type in ("roberta", "distilbert"):
        raise ValueError(f"{data} was made with --objective {objective} but the model "
                         f"({source}) is {cfg.model_type}, which has no sentence-pair head: "
                         "make the data with --objective none")
    if cfg.model_type == "roberta" and vocab.get("pad_id", cfg.pad_token_id) != cfg.pad_token_id:
        raise ValueError(f"{data} pads with id {vocab['pad_id']} but the model ({source}) has "
                         f"pad_token_id {cfg.pad_token_id} (RoBERTa's positions depend on it)")


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


def _seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- metrics


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
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
            keep = [json.dumps(r) for r in _read_jsonl(self.path)
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


# ----------------------------------------------------------------------------- run


class _Signals:
    """SIGINT/SIGTERM set a flag (the loop checkpoints and exits) instead of killing mid-step."""

    def __init__(self) -> None:
        self.received = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
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


def _warn_uncorrected(args: PretrainArgs, warmup: int) -> None:
    """Warn when Google's uncorrected Adam makes early updates much larger than ``--lr``."""
    if args.bias_correction:
        return
    peak = uncorrected_peak(warmup, (args.beta1, args.beta2))
    if peak > 2.0:
        logger.warning("--no-bias-correction with %d warmup steps: early updates reach %.1fx "
                       "--lr (%.2g); a run can stall at the unigram solution. Use bias "
                       "correction, or a warmup of several thousand steps as Google's recipe",
                       warmup, peak, args.lr * peak)


def _grad_scaler(precision: str, fsdp: bool) -> torch.amp.GradScaler | None:
    """fp16's gradient scaler; under FSDP the sharded one (inf/NaN found on any rank skips all)."""
    if precision != "fp16":
        return None
    if fsdp:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler("cuda")
    return torch.amp.GradScaler("cuda")


def _prepare_run(args: PretrainArgs, index: dict[str, Any], run: Path, resuming: bool) -> None:
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


# Flags a continued run takes from its args.json when left at their defaults: what defines the
# run and its exact continuation. Not the machine's: device, precision, compile, fsdp, threads.
_RUN_FLAGS = ("data", "eval_data", "config", "init", "batch_size", "grad_accum", "max_steps", "lr",
              "warmup_steps", "schedule", "power", "decay_after_warmup", "optimizer",
              "bias_correction", "weight_decay", "beta1", "beta2", "adam_eps", "max_grad_norm",
              "dropout", "seed", "log_every", "eval_every", "eval_batches", "save_every",
              "keep_last", "max_nonfinite")
# ... and those that cannot change on resume (the checkpoint fixes the model and optimizer)
_FIXED_FLAGS = {"config": "mini", "init": None, "optimizer": "adamw"}


def _continue_args(args: PretrainArgs, run: Path) -> PretrainArgs:
    """``args`` for continuing ``run``: flags at their defaults take the run's recorded values.

    A flag given with another value than the run's is kept (and recorded), except --config,
    --init and --optimizer, which the checkpoint fixes: those raise ValueError naming both.
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
    defaults = {f.name: f.default for f in dataclasses.fields(PretrainArgs)}
    changes: dict[str, Any] = {}
    for name in _RUN_FLAGS:
        if name not in saved:
            continue
        given, recorded = getattr(args, name), saved[name]
        if name in _FIXED_FLAGS:
            if given != defaults[name] and (given or _FIXED_FLAGS[name]) != \
                    (recorded or _FIXED_FLAGS[name]):
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} {given} conflicts with the run's {flag} "
                                 f"{recorded or _FIXED_FLAGS[name]} ({path}): a continued run "
                                 f"keeps its checkpoint's model and optimizer; drop {flag}")
        if given == defaults[name] and recorded != given:
            changes[name] = recorded
        elif given != recorded:
            logger.info("--%s %s replaces the run's %s", name.replace("_", "-"), given, recorded)
    if changes:
        logger.info("continuing %s with its flags from %s: %s", run, path,
                    ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in changes.items()))
    return dataclasses.replace(args, **changes)


def run_pretrain(args: PretrainArgs) -> int:
    """CLI entry point: train, evaluate, checkpoint; returns the exit code.

    0 when ``max_steps`` are done; 128 + signal number after a signal (a checkpoint was written);
    1 when the run stopped on non-finite losses; errors in the input raise ValueError.

    Continuing a run (``--resume RUN``, or ``--resume auto`` once RUN has a checkpoint), flags
    left at their defaults take RUN's recorded values (:func:`_continue_args`), so
    ``bertkit pretrain --resume RUN`` alone continues exactly.
    """
    from bertkit.data.shards import PretrainingDataset, load_index
    from bertkit.fileio import check_output_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out is None and args.resume in (None, "auto"):
        raise ValueError("--out RUN is required (or --resume RUN)")
    if args.out is not None:
        check_output_dir(args.out)
    resume_dir = _resume_dir(args)
    run = Path(args.out) if args.out else (resume_dir.parent if resume_dir else Path("."))
    if resume_dir is not None and run.resolve() == resume_dir.parent.resolve():
        args = _continue_args(args, run)
    if args.data is None:
        raise ValueError("--data DIR is required (a continued run takes the --data recorded in "
                         "its args.json)")
    env = init_distributed(args.device)
    try:
        code = _train(args, env, run, resume_dir, PretrainingDataset, load_index)
    except BaseException:
        shutdown(env, clean=False)
        raise
    shutdown(env)
    return code


def _resume_dir(args: PretrainArgs) -> Path | None:
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


def _train(args: PretrainArgs, env: DistEnv, run: Path, resume_dir: Path | None,
           dataset_cls: Any, load_index: Any) -> int:
    index = load_index(args.data)
    if args.precision == "fp16" and env.device.type != "cuda":
        raise ValueError("--precision fp16 needs CUDA (a gradient scaler); use bf16 on CPU")
    micro, rem = divmod(args.batch_size, env.world_size * args.grad_accum)
    if rem or micro == 0:
        raise ValueError(f"--batch-size {args.batch_size} is not divisible by world size "
                         f"{env.world_size} x --grad-accum {args.grad_accum}")
    fsdp = args.fsdp and env.distributed
    if args.fsdp and not fsdp:
        logger.warning("--fsdp with a single process: nothing to shard, training unsharded")
    _seed_all(args.seed)
    model = build_model(args, index, resume_dir)
    ck = C.load_checkpoint(resume_dir) if resume_dir is not None else None  # on the CPU
    if ck is not None:
        model.load_state_dict(ck["model"])  # the full weights, before sharding
    model = shard_model(model, env, encoder_layers(model)) if fsdp else model.to(env.device)
    ds = dataset_cls(args.data, rank=env.rank, world_size=env.world_size, seed=args.seed)
    eval_ds = (dataset_cls(args.eval_data, rank=env.rank, world_size=env.world_size,
                           seed=args.seed) if args.eval_data else None)
    if eval_ds is not None and eval_ds.index["vocab"]["sha256"] != index["vocab"]["sha256"]:
        raise ValueError(f"--eval-data {args.eval_data} was made with another vocabulary than "
                         f"--data {args.data}")
    # a bertkit run that stopped before its first checkpoint starts again from step 0
    again = resume_dir is None and (run / "args.json").is_file() and not C.list_checkpoints(run)
    if env.is_main:  # only now: bad input above leaves no run directory behind
        _prepare_run(args, index, run, resume_dir is not None)
    opt = build_optimizer(model, args.optimizer, args.lr, args.weight_decay,
                          (args.beta1, args.beta2), args.adam_eps, args.bias_correction)
    warmup = args.warmup_steps if args.warmup_steps is not None else args.max_steps // 10
    _warn_uncorrected(args, warmup)
    sched = build_scheduler(opt, warmup, args.max_steps, args.schedule, args.power,
                            args.decay_after_warmup)
    scaler = _grad_scaler(args.precision, fsdp)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    state, cursor = LoopState(), Cursor()
    fingerprint = data_fingerprint(index)
    if ck is not None:
        load_optimizer_state(model, opt, ck["optimizer"])
        # lr_lambdas=[None]: the schedule comes from these flags (phase 2 may extend it)
        sched.load_state_dict({**ck["scheduler"], "lr_lambdas": [None]})
        sched.base_lrs = [args.lr for _ in opt.param_groups]  # the schedule of these flags
        for g, lr in zip(opt.param_groups, sched.base_lrs, strict=True):
            g["lr"] = lr * sched.lr_lambdas[0](sched.last_epoch)
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        state = LoopState(**ck["loop"])
        if ck["cursor"]["data"] == fingerprint:
            cursor = Cursor(ck["cursor"]["epoch"], ck["cursor"]["batch"])
        else:
            logger.info("--data differs from the checkpoint's data: starting at its beginning")
        rngs = ck["rng"]
        if len(rngs) != env.world_size:
            logger.warning("checkpoint from %d ranks, now %d: data order kept, RNG re-seeded",
                           len(rngs), env.world_size)
            _seed_all(args.seed + 7919 * state.step + env.rank)
        else:
            C.restore_rng(rngs[env.rank])
        logger.info("resumed from %s at step %d", resume_dir, state.step)
        ck = None  # free the full copy (every rank holds one; large under FSDP)
    else:
        _seed_all(args.seed + env.rank)  # per-rank dropout streams
    train_model: nn.Module = model if fsdp else wrap_model(model, env)
    if args.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    settings = LoopSettings(max_grad_norm=args.max_grad_norm or None, autocast_dtype=dtype,
                            max_nonfinite_in_row=args.max_nonfinite)
    # a restart (--resume auto) drops the lines logged after its checkpoint (or all, before one)
    restart = resume_dir is not None or args.resume == "auto" or again
    log = MetricsLog(run, env.is_main, truncate_after=state.step if restart else None)

    def save() -> None:
        rngs = [C.capture_rng()]
        if env.distributed:
            import torch.distributed as dist

            rngs = [None] * env.world_size  # type: ignore[list-item]
            dist.all_gather_object(rngs, C.capture_rng())
        model_sd, opt_sd = full_state_dicts(model, opt)  # under FSDP: gathered on rank 0
        if env.is_main:
            ck_state = {"model": model_sd, "optimizer": opt_sd,
                        "scheduler": {k: v for k, v in sched.state_dict().items()
                                      if k != "lr_lambdas"},
                        "scaler": scaler.state_dict() if scaler is not None else {},
                        "loop": dataclasses.asdict(state), "rng": rngs,
                        "cursor": {"epoch": cursor.epoch, "batch": cursor.batch,
                                   "data": fingerprint}}
            C.save_checkpoint(run, state.step, ck_state, model.config, args.keep_last,
                              architectures=[model.hf_architecture])

    last_eval = -1

    def run_eval() -> None:
        nonlocal last_eval
        if eval_ds is None or last_eval == state.step:
            return
        last_eval = state.step
        micro = max(1, args.batch_size // env.world_size)
        res = evaluate(train_model, eval_ds, micro, args.eval_batches, env, dtype)
        log.write({"step": state.step, "split": "eval", **res})
        if env.is_main:
            logger.info("step %d eval: %s", state.step,
                        ", ".join(f"{k}={v:.4f}" for k, v in res.items()))

    from tqdm import tqdm

    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=args.max_steps, initial=state.step, disable=not (progress and env.is_main),
               unit="step", dynamic_ncols=True)
    batches = iter_batches(ds, micro, args.grad_accum, cursor)
    t_last, tokens_since, code = time.perf_counter(), 0.0, 0
    last_saved = state.step if resume_dir else -1
    with _Signals() as sig:
        try:
            for res in train_steps(train_model, batches, opt, sched, pretraining_loss,
                                   pretraining_counts, args.max_steps, state, settings, env,
                                   scaler):
                tokens_since += res.counts["tokens"]
                if res.skipped:
                    logger.warning("step %d skipped: non-finite loss (%d in a row, %d in all)",
                                   res.step + 1, state.nonfinite_in_row, state.nonfinite_total)
                    continue
                bar.update(1)
                if res.step % args.log_every == 0 or res.step == args.max_steps:
                    now = time.perf_counter()
                    tps = tokens_since / max(now - t_last, 1e-9)
                    t_last, tokens_since = now, 0.0
                    log.write({"step": res.step, "split": "train", **res.metrics, "lr": res.lr,
                               "grad_norm": res.grad_norm, "tokens_per_s": round(tps, 1),
                               "nonfinite_total": state.nonfinite_total})
                    bar.set_postfix(loss=f"{res.metrics['loss']:.4f}", lr=f"{res.lr:.2e}",
                                    tok_s=f"{tps:,.0f}")
                if args.eval_every and res.step % args.eval_every == 0:
                    run_eval()
                if res.step % args.save_every == 0:
                    save()
                    last_saved = res.step
                flag = torch.tensor([float(sig.received)], device=env.device)
                sig.received = int(all_reduce_max(flag, env).item())
                if sig.received:
                    break
        except NonFiniteLossError as e:
            logger.error("%s", e)
            code = 1
    bar.close()
    if sig.received:
        if last_saved != state.step:
            save()
        logger.info("stopped by signal %d at step %d; checkpoint saved: continue with "
                    "--resume %s", sig.received, state.step, run)
        log.close()
        return 128 + sig.received
    if code == 0:
        run_eval()
        if last_saved != state.step:
            save()
    log.close()
    return code


# ----------------------------------------------------------------------------- export, plot


@dataclass
class ExportArgs:
    """Write a training checkpoint as a Hugging Face model directory."""

    checkpoint: str = field(metadata={"help": "RUN/checkpoint-STEP (or RUN: its newest)",
                                      "positional": True})
    out: str = field(metadata={"help": "output directory (config.json, model.safetensors, "
                                       "vocab.txt, tokenizer_config.json): new or empty"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace the model files of a non-empty --out"})


def run_export(args: ExportArgs) -> int:
    """Export: bertkit's and transformers' classes of the family load the result
    (``BertForPreTraining``, ``RobertaForMaskedLM``, ``AlbertForPreTraining``, ...).

    A non-empty ``--out`` is refused unless ``--overwrite``; the files are written into a temp
    directory beside it and moved in only when all are written.
    """
    import tempfile

    from bertkit.config import AutoConfig
    from bertkit.data.vocab_files import TOKENIZER_FILES
    from bertkit.fileio import check_output_dir, current_umask
    from bertkit.models.auto import AutoModelForMaskedLM

    out = Path(args.out)
    check_output_dir(out)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"{out} is not empty: choose a new --out, or pass --overwrite to "
                         "replace its model files")
    ck_dir = C.resolve_resume(args.checkpoint)
    state = C.load_checkpoint(ck_dir)
    model = AutoModelForMaskedLM.from_config(AutoConfig.from_json_file(ck_dir / "config.json"))
    model.load_state_dict(state["model"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(tmp)
        copied = [name for name in TOKENIZER_FILES if (ck_dir.parent / name).is_file()]
        for name in copied:
            shutil.copyfile(ck_dir.parent / name, tmp / name)
        if not set(copied) - {"tokenizer_config.json"}:
            logger.warning("%s has no vocab.txt (or other tokenizer files); the export has none",
                           ck_dir.parent)
        if not out.exists():
            os.chmod(tmp, 0o777 & ~current_umask())
            os.replace(tmp, out)
        else:
            for f in tmp.iterdir():
                os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("exported %s (step %d) to %s", ck_dir, state["loop"]["step"], out)
    return 0


@dataclass
class PlotArgs:
    """Plot a run's loss and accuracy curves (needs matplotlib)."""

    run: str = field(metadata={"help": "run directory", "positional": True})
    out: str | None = field(default=None, metadata={"help": "PNG path (default RUN/curves.png)"})


def read_metrics(run: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a pretrain run directory")
    return _read_jsonl(path)


def run_plot(args: PlotArgs) -> int:
    """Write loss (train and eval) and accuracy (eval) curves as one PNG (atomically)."""
    from bertkit.fileio import atomic_path, check_output_file

    records = read_metrics(args.run)
    out = Path(args.out) if args.out else Path(args.run) / "curves.png"
    check_output_file(out)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.error("bertkit plot needs matplotlib: pip install matplotlib")
        return 2
    train = [r for r in records if r.get("split") == "train" and "step" in r and "loss" in r]
    ev = [r for r in records if r.get("split") == "eval" and "step" in r
          and "masked_lm_loss" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if ev:
        ax1.plot([r["step"] for r in ev], [r["masked_lm_loss"] for r in ev], "o-",
                 label="eval masked_lm_loss")
        for k in ("masked_lm_accuracy", "next_sentence_accuracy"):
            if k in ev[0]:
                ax2.plot([r["step"] for r in ev], [r.get(k) for r in ev], "o-", label=k)
    ax1.set_xlabel("step")
    ax2.set_xlabel("step")
    for ax in (ax1, ax2):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    ax2.set_ylim(0, 1)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    logger.info("wrote %s", out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bertkit.train.pretrain`` (also under torchrun): the same flags as the CLI."""
    import argparse

    from bertkit.cliargs import add_dataclass_args, dataclass_from_namespace

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m bertkit.train.pretrain",
                                     description=PretrainArgs.__doc__)
    add_dataclass_args(parser, PretrainArgs)
    args = dataclass_from_namespace(PretrainArgs, parser.parse_args(argv), parser)
    try:
        return run_pretrain(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        logger.error("%s", e)
        return 1


if __name__ == "__main__":  # pragma: no cover
    from bertkit.cliargs import exit_worker

    exit_worker(main())
