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

import errno
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.fileio import sha256_file
from bertkit.train import checkpoint as C
from bertkit.train.distributed import (
    SINGLE,
    DistEnv,
    all_reduce_sum,
)
from bertkit.train.driver import (
    Job,
    TrainArgs,
    open_run,
    prepare_run,
    read_metrics,
    run_distributed,
    run_training,
    set_dropout,
    worker_main,
)
from bertkit.train.loop import autocast, to_device

logger = logging.getLogger(__name__)

__all__ = ["PretrainArgs", "ExportArgs", "PlotArgs", "evaluate", "pretraining_loss",
           "run_export", "run_plot", "run_pretrain"]


@dataclass
class PretrainArgs(TrainArgs):
    """Pre-train a BERT-family model (MLM + NSP/SOP) on create-pretraining-data shards."""

    config: str | None = field(default=None, metadata={
        "help": "model preset (tiny/mini/small/medium/base/large, L-4_H-256..., roberta-mini, "
                "albert-mini, distilbert-mini, ...) or config JSON; default mini"})
    init: str | None = field(default=None, metadata={
        "help": "start from this HF-layout model directory (heads missing there start fresh)"})



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
        set_dropout(model, args.dropout)
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


# Flags a continued run takes from its args.json when left at their defaults: what defines the
# run and its exact continuation. Not the machine's: device, precision, compile, fsdp, threads.
_RUN_FLAGS = ("data", "eval_data", "config", "init", "batch_size", "grad_accum", "max_steps", "lr",
              "warmup_steps", "schedule", "power", "decay_after_warmup", "optimizer",
              "bias_correction", "weight_decay", "beta1", "beta2", "adam_eps", "max_grad_norm",
              "dropout", "seed", "log_every", "eval_every", "eval_batches", "save_every",
              "keep_last", "max_nonfinite")
# ... and those that cannot change on resume (the checkpoint fixes the model and optimizer)
_FIXED_FLAGS = {"config": "mini", "init": None, "optimizer": "adamw"}


def run_pretrain(args: PretrainArgs) -> int:
    """CLI entry point: train, evaluate, checkpoint; returns the exit code.

    0 when ``max_steps`` are done; 128 + signal number after a signal (a checkpoint was written);
    1 when the run stopped on non-finite losses; errors in the input raise ValueError.

    Continuing a run (``--resume RUN``, or ``--resume auto`` once RUN has a checkpoint), flags
    left at their defaults take RUN's recorded values (:func:`~bertkit.train.driver.continue_args`), so
    ``bertkit pretrain --resume RUN`` alone continues exactly.
    """
    from bertkit.data.shards import PretrainingDataset, load_index

    args, run, resume_dir = open_run(args, _RUN_FLAGS, _FIXED_FLAGS, {"data": "--data DIR"})
    return run_distributed(args, lambda env: _train(args, env, run, resume_dir,
                                                    PretrainingDataset, load_index))


def _train(args: PretrainArgs, env: DistEnv, run: Path, resume_dir: Path | None,
           dataset_cls: Any, load_index: Any) -> int:
    """Pre-training on the shared driver: the family's MLM model, Google's loss and metrics."""
    index = load_index(args.data)
    job = Job(index=index, dataset_cls=dataset_cls,
              build_model=lambda resume: build_model(args, index, resume),
              prepare_run=lambda run, resuming: prepare_run(args, index, run, resuming),
              loss_fn=pretraining_loss, count_fn=pretraining_counts, evaluate=evaluate)
    return run_training(args, env, run, resume_dir, job)



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
    model.load_state_dict(C.model_weights(state))  # without training-only parts
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
    return worker_main(PretrainArgs, run_pretrain, "python -m bertkit.train.pretrain", argv)


if __name__ == "__main__":  # pragma: no cover
    from bertkit.cliargs import exit_worker

    exit_worker(main())
