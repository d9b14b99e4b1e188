"""A student initialised from a teacher: chosen encoder layers, the embeddings and the MLM head.

DistilBERT's rule is one teacher layer in two: ``student_layers`` defaults to 0, 2, 4, ... of the
teacher (transformers' extraction script picks 0, 2, 4, 7, 9, 11 of BERT-Base; pass those to get
its student). Student layer ``i`` is a copy of teacher layer ``student_layers[i]``; every other
tensor (embeddings, pooler, MLM and NSP heads) is copied as is, so the student computes the
teacher's embeddings, those layers in order, then the teacher's heads.

``family="distilbert"`` builds a DistilBERT from a BERT teacher: the token-type table is folded
into the positions and the pooler and NSP head dropped, as :mod:`bertkit.convert.rekey` does for
whole checkpoints, so on single texts it computes the same function as the BERT student.

    >>> student = build_student(teacher, (0, 2), family="distilbert")   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from torch import Tensor, nn

from bertkit.config import BertConfig
from bertkit.convert.rekey import bert_config_as, bert_state_as
from bertkit.distill.losses import DistillError

logger = logging.getLogger(__name__)

__all__ = ["DistillError", "build_student", "check_vocabularies", "default_student_layers",
           "parse_student_layers"]

_BASE_KEYS = ("embeddings.", "layers.", "pooler.")


def default_student_layers(n_teacher_layers: int) -> tuple[int, ...]:
    """DistilBERT's every-other-layer rule: 0, 2, 4, ... below ``n_teacher_layers``."""
    return tuple(range(0, n_teacher_layers, 2))


def parse_student_layers(text: str) -> tuple[int, ...]:
    """``--student-layers`` text ``"0,2,4"`` -> (0, 2, 4) (range checks: :func:`check_layers`)."""
    try:
        layers = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise DistillError(f"--student-layers {text!r}: expected comma-separated layer indices "
                           "such as 0,2,4") from None
    if not layers:
        raise DistillError(f"--student-layers {text!r}: no layer given")
    return layers


def check_layers(layers: Sequence[int], n_teacher_layers: int) -> None:
    """Raise DistillError unless ``layers`` is non-empty, strictly increasing and within
    0 .. n_teacher_layers - 1."""
    shown = ",".join(str(i) for i in layers)
    if not layers:
        raise DistillError("--student-layers is empty: name at least one teacher layer")
    bad = [i for i in layers if not 0 <= i < n_teacher_layers]
    if bad:
        raise DistillError(f"--student-layers {shown}: layer {bad[0]} is out of range; the "
                           f"teacher has layers 0..{n_teacher_layers - 1}")
    if any(b <= a for a, b in zip(layers, layers[1:], strict=False)):
        raise DistillError(f"--student-layers {shown}: not strictly increasing")


def check_vocabularies(teacher: BertConfig, student: BertConfig,
                       teacher_vocab: Sequence[str] | None = None,
                       student_vocab: Sequence[str] | None = None) -> None:
    """Raise DistillError when teacher and student do not share one vocabulary: config
    ``vocab_size`` and ``pad_token_id``, and the token lists when both are given."""
    if teacher.vocab_size != student.vocab_size:
        raise DistillError(f"vocabularies differ: teacher vocab_size {teacher.vocab_size}, "
                           f"student vocab_size {student.vocab_size}; distillation compares "
                           "logits token by token, so both need one tokenizer")
    if teacher.pad_token_id != student.pad_token_id:
        raise DistillError(f"vocabularies differ: teacher pad_token_id {teacher.pad_token_id}, "
                           f"student pad_token_id {student.pad_token_id}")
    if teacher_vocab is not None and student_vocab is not None:
        pairs = enumerate(zip(teacher_vocab, student_vocab, strict=False))
        first = next((i for i, (a, b) in pairs if a != b), None)
        if first is not None or len(teacher_vocab) != len(student_vocab):
            where = (f"token {first}: teacher {teacher_vocab[first]!r}, student "
                     f"{student_vocab[first]!r}" if first is not None else "lengths")
            raise DistillError(f"vocabularies differ at {where}; both need one tokenizer")


def _parts(teacher: nn.Module) -> tuple[str, nn.Module]:
    """(prefix of the encoder's keys in the teacher's state dict, the encoder)."""
    if hasattr(teacher, "layers") and hasattr(teacher, "embeddings"):
        return "", teacher
    for name in (getattr(teacher, "base_name", None), "bert"):
        if name and isinstance(getattr(teacher, name, None), nn.Module):
            return f"{name}.", getattr(teacher, name)
    raise DistillError(f"teacher {type(teacher).__name__} has no encoder bertkit can take "
                       "layers from")


def _select_layers(state: dict[str, Tensor], prefix: str, layers: Sequence[int]
                   ) -> dict[str, Tensor]:
    """Keep teacher layers ``layers`` of ``state``, renumbered 0..len-1; other keys as is."""
    where = {t: i for i, t in enumerate(layers)}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(f"{prefix}layers."):
            out[key] = value
            continue
        index, rest = key[len(prefix) + len("layers."):].split(".", 1)
        if int(index) in where:
            out[f"{prefix}layers.{where[int(index)]}.{rest}"] = value.detach().clone()
    return out


def _as_distilbert(config: BertConfig, state: dict[str, Tensor], prefix: str
                   ) -> tuple[nn.Module, dict[str, Tensor]]:
    """A DistilBERT model for a BERT teacher's (already layer-selected) ``state``."""
    from bertkit.models.auto import AutoModel, AutoModelForMaskedLM

    target = bert_config_as("distilbert", config)
    bare = {k.removeprefix(prefix): v for k, v in state.items()}
    new = bert_state_as("distilbert", bare, config)
    has_mlm = any(k.startswith("mlm.") for k in new)
    model = (AutoModelForMaskedLM if has_mlm else AutoModel).class_for("distilbert")(target)
    base = getattr(model, "base_name", "")
    named = {(f"{base}." if base and k.startswith(_BASE_KEYS) else "") + k: v
             for k, v in new.items()}
    return model, named


def build_student(teacher: nn.Module, student_layers: Sequence[int] | None = None,
                  family: str | None = None) -> nn.Module:
    """A student of ``len(student_layers)`` layers copied from ``teacher``'s, in eval mode.

    teacher: a bertkit model with per-layer weights (BertForPreTraining, BertModel, a family's
    ``...ForMaskedLM`` or base model). family: None keeps the teacher's class; ``"distilbert"``
    turns a BERT teacher into a DistilBERT (``DistilBertForMaskedLM`` when the teacher has an
    MLM head, else ``DistilBertModel``). Raises DistillError (before anything is built) for a
    bad layer choice, a teacher without per-layer weights or a family it cannot become.
    """
    config: BertConfig = teacher.config  # type: ignore[assignment]
    if config.model_type == "albert":
        raise DistillError("an ALBERT teacher shares its layers: there are no per-layer weights "
                           "to pick --student-layers from")
    layers = tuple(default_student_layers(config.num_hidden_layers) if student_layers is None
                   else student_layers)
    check_layers(layers, config.num_hidden_layers)
    if family not in (None, config.model_type, "distilbert"):
        raise DistillError(f"--student-family {family!r}: a {config.model_type} teacher gives "
                           f"a {config.model_type} or a distilbert student")
    if family == "distilbert" and config.model_type not in ("bert", "distilbert"):
        raise DistillError(f"--student-family distilbert: needs a BERT teacher, not "
                           f"{config.model_type}")
    prefix, _ = _parts(teacher)
    student_config = dataclasses.replace(config, num_hidden_layers=len(layers))
    state = _select_layers(teacher.state_dict(), prefix, layers)
    if family == "distilbert" and config.model_type == "bert":
        model, state = _as_distilbert(student_config, state, prefix)
    elif prefix == "" and hasattr(teacher, "pooler"):  # a base model, with or without pooler
        model = type(teacher)(student_config, add_pooler=teacher.pooler is not None)
    else:
        model = type(teacher)(student_config)
    wanted = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=True)
    dropped = sorted({k.split(".")[0] for k in state if k not in wanted})
    logger.info("student: teacher layers %s of %d -> %s%s", ",".join(map(str, layers)),
                config.num_hidden_layers, type(model).__name__,
                f" (dropped {', '.join(dropped)})" if dropped else "")
    return model.eval()
