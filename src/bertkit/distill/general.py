"""``bertkit distill``: DistilBERT's general distillation on pre-training shards, on the shared driver.

The student learns from a frozen teacher on create-pretraining-data shards with DistilBERT's loss
(:func:`general_loss`): ``alpha_ce`` x the T^2-scaled KL between the teacher's and the student's
vocabulary distributions at temperature T, ``alpha_mlm`` x the masked-LM cross-entropy on the true
ids, ``alpha_cos`` x (1 - cosine) between the last hidden states at every real token. Both
models compute vocabulary logits only at the masked positions (B, P, V), never at all B x T
positions; the losses are normalised by the whole global batch's masked (resp. real) tokens, so
gradient accumulation and DDP give the loss of one big batch, as for pre-training. Optional layer
transfer (:mod:`bertkit.distill.transfer`): ``--alpha-hidden`` x TinyBERT's hidden-state MSE
(through a learned projection when the widths differ; checkpointed, never exported) and
``--alpha-attn`` x the attention-distribution KL, on ``--hidden-pairs`` / ``--attn-pairs``;
both off by default, when nothing extra is computed.

The student is ``--student-layers`` of the teacher (DistilBERT's every-other-layer rule by
default; embeddings and MLM head copied; ``--student-family distilbert`` drops token types and
pooler), a model directory, or a preset trained from scratch. The teacher is loaded once, in eval
mode, without gradients (bf16 on CUDA) and never wrapped in DDP. Everything else (flags, metrics,
evaluation, checkpoints, ``--resume``, signals, torchrun, ``bertkit export``) is pre-training's,
through :func:`bertkit.train.driver.run_training`; the checkpoints hold the student alone. A
finished run writes ``RUN/summary.json`` (and prints it): both models' parameters, training
tokens/s, and with ``--eval-data`` both models' held-out masked-LM accuracy and the share kept.

Bad input (a missing teacher, a teacher without an MLM head, teacher, student and data with
different vocabularies, bad ``--student-layers``, a cosine loss between different widths, bad
layer pairs, attention transfer between different head counts) is refused before the run
directory is written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.distill.losses import DistillError, LossWeights, kl_rows
from bertkit.distill.student import (
    build_student,
    check_vocabularies,
    default_student_layers,
    parse_student_layers,
)
from bertkit.distill.transfer import (
    NO_TRANSFER,
    Transfer,
    attach_projection,
    checkpoint_has_projection,
    resolve_transfer,
    student_weights,
    transfer_shares,
)
from bertkit.fileio import atomic_write_text
from bertkit.train.distributed import DistEnv
from bertkit.train.driver import (
    Job,
    TrainArgs,
    open_run,
    prepare_run,
    run_distributed,
    run_training,
    set_dropout,
    worker_main,
)
from bertkit.train.state import seed_all

logger = logging.getLogger(__name__)

__all__ = ["DistillArgs", "general_loss", "load_teacher", "run_distill"]

GENERAL_MAX_STEPS = 1000  # general distillation's --max-steps when none is given


@dataclass
class DistillArgs(TrainArgs):
    """Distil a teacher into a smaller student: DistilBERT's general distillation on
    create-pretraining-data shards, with the same flags, metrics, checkpoints and --resume as
    pretrain; or, with --task classification|regression|ner|qa|multiple-choice, task
    distillation from a fine-tuned teacher on --train (+ --unlabelled) text, evaluated as
    finetune."""

    teacher: str | None = field(default=None, metadata={
        "help": "teacher model directory (HF layout, with its MLM head and tokenizer files); "
                "required, except with --resume RUN, which takes the run's"})
    student: str | None = field(default=None, metadata={
        "help": "student: a model directory (HF layout, the teacher's tokenizer) or a preset "
                "(tiny, mini, L-4_H-256, ...) trained from scratch; default: layers of the "
                "teacher (--student-layers)"})
    student_layers: str | None = field(default=None, metadata={
        "help": "teacher layers the student starts from, e.g. 0,2,4 (default: every other "
                "layer, 0,2,4,...); embeddings and MLM head are copied"})
    student_family: Literal["same", "distilbert"] = field(default="same", metadata={
        "help": "with --student-layers: the teacher's family, or a DistilBERT student (no token "
                "types, no pooler) from a BERT teacher"})
    alpha_ce: float = field(default=5.0, metadata={"min": 0,
        "help": "weight of the soft-target KL at the masked positions"})
    alpha_mlm: float = field(default=2.0, metadata={"min": 0,
        "help": "weight of the masked-LM cross-entropy on the true ids"})
    alpha_cos: float = field(default=1.0, metadata={"min": 0,
        "help": "weight of 1 - cosine between the last hidden states"})
    temperature: float = field(default=2.0, metadata={"above": 0,
        "help": "softmax temperature of the soft targets (the KL is scaled by T^2)"})
    # layer transfer (TinyBERT / MiniLM): bertkit.distill.transfer
    alpha_hidden: float = field(default=0.0, metadata={"min": 0,
        "help": "weight of TinyBERT's hidden-state MSE on --hidden-pairs, over the real tokens "
                "(0: off, nothing extra computed); when the widths differ the student's states "
                "go through a learned linear projection, trained and checkpointed with the "
                "student but never exported"})
    hidden_pairs: str | None = field(default=None, metadata={
        "help": "with --alpha-hidden: STUDENT:TEACHER pairs of hidden-state indices, e.g. "
                "0:0,1:2,2:4 (0 = the embeddings' output, i = the output of layer i); default: "
                "0:0 and each student layer with the teacher layer it was copied from "
                "(--student-layers), or for another student layer i with teacher layer "
                "i x Lt / Ls (rounded down)"})
    alpha_attn: float = field(default=0.0, metadata={"min": 0,
        "help": "weight of the attention-distribution KL(teacher || student) on --attn-pairs, "
                "averaged over heads and real query tokens (MiniLM / TinyBERT; 0: off, the "
                "fast attention path stays); both models need the same number of heads"})
    attn_pairs: str | None = field(default=None, metadata={
        "help": "with --alpha-attn: STUDENT:TEACHER pairs of layer indices (0 = the first "
                "layer), e.g. 1:3 for MiniLM's last layers of a 2- and 4-layer pair; default: "
                "each student layer with the teacher layer it was copied from, or the uniform "
                "map as --hidden-pairs"})
    task: Literal["classification", "regression", "ner", "qa", "multiple-choice"] | None = field(
        default=None, metadata={
            "help": "task distillation from a fine-tuned --teacher of this task instead of "
                    "general distillation: --train/--dev/--test files as bertkit finetune's, "
                    "optional --unlabelled text (rows without labels; qa: questions without "
                    "answers)"})
    train: str | None = field(default=None, metadata={"help": "--task: training file"})
    dev: str | None = field(default=None, metadata={
        "help": "--task: dev file, evaluated after every epoch (best model kept)"})
    unlabelled: str | None = field(default=None, metadata={
        "help": "--task: unlabelled in-domain text (same layout, empty or no label column): "
                "soft targets only"})
    alpha_hard: float = field(default=0.5, metadata={"min": 0, "max": 1,
        "help": "--task: weight of the hard-label loss on labelled rows (soft: 1 - this)"})
    epochs: float = field(default=3.0, metadata={"above": 0,
        "help": "--task: passes over the training data"})
    max_seq_length: int = field(default=128, metadata={"min": 8,
        "help": "--task: tokens per input"})
    eval_batch_size: int = field(default=64, metadata={"min": 1,
        "help": "--task: examples per inference batch"})
    seeds: list[int] | None = field(default=None, metadata={"min": 0, "unique": True,
        "help": "--task: one student per seed (RUN/seed-N) and RUN/summary.json with every "
                "seed's metric and their mean and std"})
    max_steps: int | None = field(default=None, metadata={"min": 1,
        "help": "optimizer updates in all (general distillation: default 1000; --task: "
                "overrides --epochs)"})
    test: str | None = field(default=None, metadata={
        "help": "--task: test file: the best student's predictions, and metrics when every "
                "example has a label"})
    doc_stride: int | None = field(default=None, metadata={"min": 1,
        "help": "--task qa: step between context windows (default 128, or half the window "
                "when that is narrower)"})
    max_query_length: int = field(default=64, metadata={"min": 1,
        "help": "--task qa: question tokens kept"})
    resume: str | None = field(default=None, metadata={
        "help": "continue a run: RUN (its newest checkpoint) or RUN/checkpoint-STEP (general "
                "distillation); auto: --out's newest checkpoint if it has one, else start (one "
                "command for a first launch and every restart). Continuing, flags left at their "
                "defaults take RUN/args.json's; flags fixing the model and optimizer (--teacher, "
                "--student, --optimizer; with --task also --train, --dev, --unlabelled, "
                "--batch-size, --seed(s), --max-seq-length) other than the run's are errors. "
                "--task: exactly as an uninterrupted run (metrics, best/, results); finished "
                "seeds (summary.json) are skipped, each other seed continues from its own "
                "checkpoint"})
    save_every: int = field(default=1000, metadata={"min": 1,
        "help": "checkpoint every N steps (--task: also at each epoch's end)"})
    keep_last: int = field(default=3, metadata={"min": 1,
        "help": "checkpoints kept (--task: per seed, RUN/seed-N/checkpoint-STEP)"})
    keep_checkpoints: bool = field(default=False, metadata={
        "help": "--task: keep a seed's checkpoints once it has finished (default: removed then; "
                "best/, results.json and summary.json hold its outcome)"})


# ----------------------------------------------------------------------------- loss


def _forward(model: nn.Module, batch: dict[str, Tensor], hidden: bool, attn: bool) -> Any:
    """A masked-LM model's output: logits (B, P, V) at the masked positions only, the hidden
    states (embeddings first, last = the encoder's output, (B, T, H)) and the attention
    probabilities (per layer (B, A, T, T), the math path) when asked."""
    extra = {"output_attentions": True} if attn else {}  # the default call is unchanged
    return model(input_ids=batch["input_ids"], attention_mask=batch["input_mask"],
                 token_type_ids=batch["segment_ids"],
                 masked_lm_positions=batch["masked_lm_positions"], output_hidden_states=hidden,
                 **extra)


def general_loss(student: nn.Module, teacher: nn.Module, batch: dict[str, Tensor],
                 counts: dict[str, Tensor], weights: LossWeights,
                 transfer: Transfer = NO_TRANSFER, projection: nn.Module | None = None
                 ) -> dict[str, Tensor]:
    """This micro-batch's share of the global batch's DistilBERT loss.

    batch: shard fields (``input_ids``, ``input_mask``, ``segment_ids`` (B, T); ``masked_lm_positions``,
    ``masked_lm_ids``, ``masked_lm_weights`` (B, P)); counts: the global batch's ``masked``
    (sum of masked_lm_weights) and ``tokens`` (real tokens). Returns ``loss`` (the weighted
    sum) and each weighted-in term unweighted (``ce_loss``, ``mlm_loss``, ``cos_loss``): summed over
    micro-batches and ranks they are :func:`~bertkit.distill.losses.distilbert_loss`'s terms
    over the whole global batch. ``transfer``'s terms (``hidden_loss``, ``attn_loss``, through
    ``projection`` when the widths differ) are added when their weights are nonzero.
    """
    hidden = weights.alpha_cos > 0 or transfer.needs_hidden
    s = _forward(student, batch, hidden, transfer.needs_attn)
    t = None
    if weights.alpha_ce or hidden or transfer.needs_attn:  # MLM alone needs no teacher
        with torch.no_grad():
            t = _forward(teacher, batch, hidden, transfer.needs_attn)
    w = batch["masked_lm_weights"].flatten().float()                     # (B*P,)
    n_masked = counts["masked"].clamp_min(1.0)
    s_logits = s.mlm_logits.flatten(0, 1)                                # (B*P, V)
    shares: dict[str, Tensor] = {}
    total = s_logits.new_zeros((), dtype=torch.float32)
    if weights.alpha_ce:
        assert t is not None
        kl = kl_rows(s_logits, t.mlm_logits.flatten(0, 1), weights.temperature)  # (B*P,)
        shares["ce_loss"] = (kl * w).sum() / n_masked
        total = total + weights.alpha_ce * shares["ce_loss"]
    if weights.alpha_mlm:
        ce = F.cross_entropy(s_logits.float(), batch["masked_lm_ids"].flatten(),
                             reduction="none")                           # (B*P,)
        shares["mlm_loss"] = (ce * w).sum() / n_masked
        total = total + weights.alpha_mlm * shares["mlm_loss"]
    if weights.alpha_cos:
        assert t is not None
        cos = F.cosine_similarity(s.hidden_states[-1].float(),
                                  t.hidden_states[-1].detach().float(), dim=-1)  # (B, T)
        real = batch["input_mask"].float()                               # (B, T)
        shares["cos_loss"] = ((1 - cos) * real).sum() / counts["tokens"].clamp_min(1.0)
        total = total + weights.alpha_cos * shares["cos_loss"]
    if transfer.needs_hidden or transfer.needs_attn:
        assert t is not None
        layer = transfer_shares(s, t, batch, counts, transfer, projection)
        for name, alpha in (("hidden_loss", transfer.alpha_hidden),
                            ("attn_loss", transfer.alpha_attn)):
            if name in layer:
                shares[name] = layer[name]
                total = total + alpha * layer[name]
    shares["loss"] = total
    return shares


def distill_counts(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The global-batch counts :func:`general_loss` divides by (and the driver's tokens/s)."""
    return {"masked": batch["masked_lm_weights"].sum(), "tokens": batch["input_mask"].sum(),
            "seqs": torch.tensor(float(batch["input_ids"].shape[0]))}


# ----------------------------------------------------------------------------- models


def _vocab_files(directory: Path) -> dict[str, str]:
    """{name: sha256} of the vocabulary files (not tokenizer_config.json) in ``directory``."""
    from bertkit.data.vocab_files import TOKENIZER_FILES
    from bertkit.fileio import sha256_file

    return {name: sha256_file(directory / name) for name in TOKENIZER_FILES
            if name != "tokenizer_config.json" and (directory / name).is_file()}


def _check_same_tokenizer(teacher_dir: Path, other: Path, what: str) -> None:
    """DistillError when ``other``'s vocabulary files are not the teacher's."""
    mine, theirs = _vocab_files(teacher_dir), _vocab_files(other)
    if not mine or not theirs:
        logger.warning("%s or %s has no tokenizer files: the vocabularies cannot be compared "
                       "file by file", teacher_dir, other)
        return
    if set(mine) != set(theirs):
        raise DistillError(f"{what} {other} has another tokenizer than the teacher {teacher_dir} "
                           f"({', '.join(sorted(theirs))} vs {', '.join(sorted(mine))}); "
                           "distillation compares logits token by token, so both need one "
                           "tokenizer")
    for name, sha in mine.items():
        if theirs[name] != sha:
            raise DistillError(f"{what} {other / name} differs from the teacher's "
                               f"{teacher_dir / name} (sha256): teacher and {what} need one "
                               "vocabulary")


def _check_data_vocab(teacher_dir: Path, data: str, index: dict[str, Any]) -> None:
    """DistillError when ``data`` was made with another vocabulary than the teacher's."""
    from bertkit.data.vocab_files import vocab_sha256
    from bertkit.fileio import sha256_file

    vocab = index["vocab"]
    if vocab.get("files"):
        found = _vocab_files(teacher_dir)
        same = bool(found) and vocab_sha256(teacher_dir) == vocab["sha256"]
    elif (teacher_dir / "vocab.txt").is_file():
        same = sha256_file(teacher_dir / "vocab.txt") == vocab["sha256"]
    else:
        logger.warning("%s has no vocab.txt: cannot check it against --data's", teacher_dir)
        return
    if not same:
        raise DistillError(f"--data {data} was made with another vocabulary than the teacher "
                           f"{teacher_dir} (sha256 differs); remake the data with the teacher's "
                           "vocabulary")


def load_teacher(path: str | Path) -> nn.Module:
    """The teacher: the family's masked-LM model from ``path``, in eval mode, without gradients.

    DistillError when ``path`` is not a model directory or its weights lack the MLM head (a
    fresh head would teach noise).
    """
    from bertkit.convert.hf import _read_directory, hf_to_ours
    from bertkit.models.auto import AutoModelForMaskedLM

    directory = Path(path)
    if not directory.is_dir():
        raise DistillError(f"--teacher {directory}: no such model directory")
    if not (directory / "config.json").is_file():
        raise DistillError(f"--teacher {directory}: no config.json (an HF model directory is "
                           "needed)")
    config, state, source, origin = _read_directory(directory)
    shell = AutoModelForMaskedLM.class_for(config.model_type)(config)
    _, missing, _ = hf_to_ours(state, shell, source, origin)
    absent = sorted(k for k in missing if k.startswith("mlm."))
    if absent:
        raise DistillError(f"--teacher {directory}: its weights have no masked-LM head ({source} "
                           f"lacks {', '.join(missing[absent[0]])}); general distillation needs a "
                           "teacher that predicts masked tokens (a BertForPreTraining or "
                           "...ForMaskedLM checkpoint, e.g. after bertkit pretrain + export)")
    del shell, state
    teacher = AutoModelForMaskedLM.from_pretrained(directory)
    teacher.eval().requires_grad_(False)
    return teacher


def build_distill_student(args: DistillArgs, teacher: nn.Module) -> tuple[nn.Module, str]:
    """(student, where it came from): ``--student`` DIR or preset, else ``--student-layers``."""
    from bertkit.config import AutoConfig
    from bertkit.models.auto import AutoModelForMaskedLM

    if args.student is not None and (args.student_layers is not None
                                     or args.student_family != "same"):
        raise DistillError("--student and --student-layers/--student-family exclude each other: "
                           "a student is a model directory or preset, or layers of the teacher")
    tcfg = teacher.config
    if args.student is None:
        layers = (parse_student_layers(args.student_layers) if args.student_layers is not None
                  else None)
        family = None if args.student_family == "same" else args.student_family
        student = build_student(teacher, layers, family=family)
        return student, f"teacher layers {args.student_layers or 'every other'}"
    path = Path(args.student)
    if path.is_dir():
        _check_same_tokenizer(Path(args.teacher or ""), path, "--student")
        student = AutoModelForMaskedLM.from_pretrained(path)
    elif path.suffix == ".json" or path.is_file():
        student = AutoModelForMaskedLM.from_config(AutoConfig.from_json_file(path))
    else:
        cfg = AutoConfig.from_preset(args.student, vocab_size=tcfg.vocab_size,
                                     pad_token_id=tcfg.pad_token_id)
        student = AutoModelForMaskedLM.from_config(cfg)
    return student, f"--student {args.student}"


def _freeze_unused(student: nn.Module) -> None:
    """Stop gradients to the parts the DistilBERT loss never reaches (pooler, NSP/SOP head), so
    DDP does not wait for their gradients; they stay as initialised (or copied)."""
    frozen = []
    for name, p in student.named_parameters():
        if name.split(".")[0] in ("nsp", "sop") or ".pooler." in f".{name}":
            p.requires_grad_(False)
            frozen.append(name)
    if frozen:
        logger.info("student: %d tensors the loss does not reach stay frozen (pooler, "
                    "sentence-pair head)", len(frozen))


def check_pair(teacher: nn.Module, student: nn.Module, args: DistillArgs,
               index: dict[str, Any]) -> None:
    """DistillError when the student cannot learn from this teacher on this data."""
    tcfg, scfg = teacher.config, student.config
    check_vocabularies(tcfg, scfg)
    if args.alpha_cos and scfg.hidden_size != tcfg.hidden_size:
        raise DistillError(f"--alpha-cos {args.alpha_cos:g}: the cosine loss compares hidden "
                           f"states, but the student's width is {scfg.hidden_size} and the "
                           f"teacher's {tcfg.hidden_size}; pass --alpha-cos 0")
    vocab = index["vocab"]
    if tcfg.vocab_size != vocab["size"]:
        raise DistillError(f"--data {args.data} has a vocabulary of {vocab['size']} entries but "
                           f"the teacher has vocab_size {tcfg.vocab_size}")
    seq = index["settings"]["max_seq_length"]
    for who, cfg in (("teacher", tcfg), ("student", scfg)):
        offset = cfg.pad_token_id + 1 if cfg.model_type == "roberta" else 0
        if seq > cfg.max_position_embeddings - offset:
            raise DistillError(f"--data {args.data} has max_seq_length {seq} but the {who} has "
                               f"max_position_embeddings {cfg.max_position_embeddings}")


def _transfer(args: DistillArgs, teacher: nn.Module, student: nn.Module) -> Transfer:
    """The run's layer-transfer terms; default pairs follow the layers a student was copied
    from (``--student-layers`` or its every-other default), else the uniform map."""
    copied_from = None
    if args.student is None:
        copied_from = (parse_student_layers(args.student_layers) if args.student_layers
                       else default_student_layers(teacher.config.num_hidden_layers))
    transfer = resolve_transfer(args, teacher.config, student.config, copied_from)
    if (transfer.needs_hidden and args.fsdp
            and student.config.hidden_size != teacher.config.hidden_size):
        raise DistillError("--alpha-hidden with --fsdp between different widths: the hidden "
                           "projection is applied outside the sharded model's forward; train "
                           "with DDP (drop --fsdp)")
    return transfer


def _projection(args: DistillArgs, model: nn.Module, teacher: nn.Module, transfer: Transfer,
                resume: Path | None) -> nn.Module | None:
    """The hidden projection added to ``model`` (None when not needed); DistillError when a
    checkpoint to resume and this run disagree on having one (before anything is written)."""
    needed = transfer.needs_hidden and model.config.hidden_size != teacher.config.hidden_size
    if resume is not None and checkpoint_has_projection(resume) != needed:
        have = "has a" if not needed else "has no"
        raise DistillError(f"--resume {resume}: the checkpoint {have} hidden-state projection "
                           f"but this run (--alpha-hidden {args.alpha_hidden:g}) "
                           f"{'needs' if needed else 'does not need'} one; continue with the "
                           "run's --alpha-hidden (0 or not)")
    if not needed:
        return None
    return attach_projection(model, model.config.hidden_size, teacher.config.hidden_size)


# ----------------------------------------------------------------------------- run


def _train(args: DistillArgs, env: DistEnv, run: Path, resume_dir: Path | None) -> int:
    """Everything is checked (teacher, student, data) before the driver writes ``run``."""
    from bertkit.config import AutoConfig
    from bertkit.data.shards import PretrainingDataset, load_index
    from bertkit.models.auto import AutoModelForMaskedLM
    from bertkit.train.pretrain import evaluate

    index = load_index(args.data)
    teacher = load_teacher(args.teacher or "")
    _check_data_vocab(Path(args.teacher or ""), args.data or "", index)
    seed_all(args.seed)  # a preset student's init
    student, source = build_distill_student(args, teacher)  # checked now, rebuilt by the driver
    check_pair(teacher, student, args, index)
    transfer = _transfer(args, teacher, student)
    weights = LossWeights(args.alpha_ce, args.alpha_mlm, args.alpha_cos, args.temperature)
    if not (weights.alpha_ce or weights.alpha_mlm or weights.alpha_cos or transfer.needs_hidden
            or transfer.needs_attn):
        raise DistillError("--alpha-ce, --alpha-mlm, --alpha-cos, --alpha-hidden and "
                           "--alpha-attn are all 0: nothing to learn")
    t_params = sum(p.numel() for p in teacher.parameters())
    s_params = sum(p.numel() for p in student.parameters())
    logger.info("teacher %s: %.2fM parameters; student (%s): %.2fM (%.0f%%)", args.teacher,
                t_params / 1e6, source, s_params / 1e6, 100 * s_params / t_params)
    teacher = teacher.to(env.device)
    if env.device.type == "cuda":
        teacher = teacher.to(torch.bfloat16)

    trained: dict[str, nn.Module | None] = {}

    def build(resume: Path | None) -> nn.Module:
        if resume is not None:  # the checkpoint's student (its weights: the driver loads them)
            model = AutoModelForMaskedLM.from_config(AutoConfig.from_json_file(
                resume / "config.json"))
        else:
            model = student
        if args.dropout is not None:
            set_dropout(model, args.dropout)
        _freeze_unused(model)
        trained["student"] = model
        trained["projection"] = _projection(args, model, teacher, transfer, resume)
        return model

    def loss_fn(model: nn.Module, mb: dict[str, Tensor], counts: dict[str, Tensor]
                ) -> dict[str, Tensor]:
        return general_loss(model, teacher, mb, counts, weights, transfer,
                            trained["projection"])

    job = Job(index=index, dataset_cls=PretrainingDataset, build_model=build,
              prepare_run=lambda run, resuming: prepare_run(args, index, run, resuming),
              loss_fn=loss_fn, count_fn=distill_counts, evaluate=evaluate)
    code = run_training(args, env, run, resume_dir, job)
    if code == 0:
        assert trained["student"] is not None
        summary = _summary(args, env, run, teacher, trained["student"], evaluate)
        if env.is_main:
            atomic_write_text(run / "summary.json", json.dumps(summary, indent=1) + "\n")
            logger.info("wrote %s:\n%s", run / "summary.json", _summary_lines(summary))
    return code


def _summary(args: DistillArgs, env: DistEnv, run: Path, teacher: nn.Module, student: nn.Module,
             evaluate: Any) -> dict[str, Any]:
    """``RUN/summary.json``: parameters of both, the run's training tokens/s (mean of the logged
    intervals), and with ``--eval-data`` both models' held-out masked-LM accuracy and the share
    of the teacher's kept by the student. Collective under torchrun (the teacher's evaluation)."""
    from bertkit.data.shards import PretrainingDataset
    from bertkit.train.driver import read_metrics

    records = read_metrics(run) if env.is_main else []
    tps = [r["tokens_per_s"] for r in records if r.get("split") == "train"
           and "tokens_per_s" in r]
    summary: dict[str, Any] = {
        "teacher": args.teacher, "teacher_params": sum(p.numel() for p in teacher.parameters()),
        "student_params": student_weights(student),  # without a hidden projection
        "student_layers": student.config.num_hidden_layers,
        "teacher_layers": teacher.config.num_hidden_layers,
        "train_tokens_per_s": sum(tps) / len(tps) if tps else None,
        "steps": args.max_steps}
    summary["params_share"] = summary["student_params"] / summary["teacher_params"]
    evals = [r for r in records if r.get("split") == "eval"]
    if args.eval_data:
        ds = PretrainingDataset(args.eval_data, rank=env.rank, world_size=env.world_size,
                                seed=args.seed)
        dtype = torch.bfloat16 if env.device.type == "cuda" else None
        micro = max(1, args.batch_size // env.world_size)
        t_acc = evaluate(teacher, ds, micro, args.eval_batches, env, dtype)["masked_lm_accuracy"]
        summary["teacher_masked_lm_accuracy"] = t_acc
        if evals:
            s_acc = evals[-1]["masked_lm_accuracy"]
            summary["student_masked_lm_accuracy"] = s_acc
            summary["accuracy_share_kept"] = s_acc / t_acc if t_acc else None
    return summary


def _summary_lines(summary: dict[str, Any]) -> str:
    """The summary on screen: one ``key  value`` line each."""
    return "\n".join(f"{k:<28}{v:.4g}" if isinstance(v, float) else f"{k:<28}{v}"
                     for k, v in summary.items())


# Flags a continued run takes from its args.json when left at their defaults, and those fixed
_RUN_FLAGS = ("data", "eval_data", "teacher", "student", "student_layers", "student_family",
              "alpha_ce", "alpha_mlm", "alpha_cos", "temperature", "alpha_hidden",
              "hidden_pairs", "alpha_attn", "attn_pairs", "batch_size", "grad_accum",
              "max_steps", "lr", "warmup_steps", "schedule", "power", "decay_after_warmup",
              "optimizer", "bias_correction", "weight_decay", "beta1", "beta2", "adam_eps",
              "max_grad_norm", "dropout", "seed", "log_every", "eval_every", "eval_batches",
              "save_every", "keep_last", "max_nonfinite")
_FIXED_FLAGS = {"student": None, "student_layers": None, "student_family": "same",
                "optimizer": "adamw"}


def run_distill(args: DistillArgs) -> int:
    """CLI entry point: distil, evaluate, checkpoint; exit codes as ``bertkit pretrain``'s.

    Continuing a run (``--resume RUN`` or ``--resume auto``), flags left at their defaults take
    RUN's recorded values, so ``bertkit distill --resume RUN`` alone continues exactly.
    """
    from bertkit.distill.task import continues_task_run

    if continues_task_run(args):
        from bertkit.distill.task import run_task_distill

        if args.alpha_hidden or args.alpha_attn or args.hidden_pairs or args.attn_pairs:
            raise DistillError("--alpha-hidden/--hidden-pairs/--alpha-attn/--attn-pairs: "
                               "general distillation only, not with --task")

        return run_task_distill(args)
    if args.seeds:
        raise ValueError("--seeds: only with --task (general distillation runs one seed, --seed)")
    if args.test is not None:
        raise ValueError("--test: only with --task (general distillation holds out --eval-data)")
    if args.keep_checkpoints:
        raise ValueError("--keep-checkpoints: only with --task (general distillation keeps its "
                         "last --keep-last checkpoints)")
    args, run, resume_dir = open_run(args, _RUN_FLAGS, _FIXED_FLAGS,
                                     {"data": "--data DIR", "teacher": "--teacher DIR"})
    if args.max_steps is None:  # None = not given (--task reads it as "use --epochs")
        args = dataclasses.replace(args, max_steps=GENERAL_MAX_STEPS)
    return run_distributed(args, lambda env: _train(args, env, run, resume_dir))


def main(argv: list[str] | None = None) -> int:
    """``python -m bertkit.distill.general`` (also under torchrun): the same flags as the CLI."""
    return worker_main(DistillArgs, run_distill, "python -m bertkit.distill.general", argv)


if __name__ == "__main__":  # pragma: no cover
    from bertkit.cliargs import exit_worker

    exit_worker(main())
