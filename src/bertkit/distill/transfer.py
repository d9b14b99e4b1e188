"""Layer transfer for general distillation: TinyBERT's hidden-state MSE and MiniLM/TinyBERT's
attention-distribution KL on chosen (student, teacher) layer pairs, as ``bertkit distill`` flags.

Indices: a hidden-state pair ``S:T`` names entries of ``hidden_states`` (0 = the embeddings'
output, i = the output of layer i, so L + 1 entries); an attention pair ``S:T`` names encoder
layers 0 .. L - 1 (``attentions``, (B, A, T, T) probabilities). Default pairs (:func:`default_pairs`):
with a student made of teacher layers (``--student-layers``, or its every-other default), each
student layer with the teacher layer it was copied from (and the embeddings with the
embeddings); with any other student, TinyBERT's uniform map, student layer i (1-based) with
teacher layer i x Lt / Ls (rounded down).

When the widths differ, the student's states go through a learned :class:`HiddenProjection`
(Hs -> Ht). It is trained with the student, so it lives inside the trained model as the
submodule ``train_aux.hidden_projection``: the optimizer, DDP, checkpoints and ``--resume`` take
it like any other weight, and ``bertkit export`` leaves it out (every ``train_aux.`` key is
training-only, :data:`bertkit.train.checkpoint.TRAINING_ONLY_PREFIX`).

With both weights at 0 (the default) nothing here runs: no attention probabilities are asked
for (the fast SDPA path stays), no projection is made.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bertkit.distill.losses import (
    DistillError,
    HiddenProjection,
    attention_kl_loss,
    hidden_mse_loss,
)
from bertkit.train.checkpoint import TRAINING_ONLY_PREFIX

logger = logging.getLogger(__name__)

__all__ = ["NO_TRANSFER", "Transfer", "attach_projection", "checkpoint_has_projection", "default_pairs", "parse_pairs", "projection_of",
           "resolve_transfer", "student_weights", "transfer_shares"]

Pairs = tuple[tuple[int, int], ...]
AUX = TRAINING_ONLY_PREFIX.rstrip(".")  # the trained model's submodule of training-only parts


@dataclass(frozen=True)
class Transfer:
    """The layer-transfer terms of a run: weights (0 = off) and their (student, teacher) pairs."""

    alpha_hidden: float = 0.0
    hidden_pairs: Pairs = ()
    alpha_attn: float = 0.0
    attn_pairs: Pairs = ()

    @property
    def needs_hidden(self) -> bool:
        return self.alpha_hidden > 0

    @property
    def needs_attn(self) -> bool:
        return self.alpha_attn > 0


NO_TRANSFER = Transfer()
"""Both terms off (DistilBERT's loss alone)."""


def parse_pairs(text: str, flag: str) -> Pairs:
    """``"0:0,1:2"`` -> ((0, 0), (1, 2)); DistillError naming ``flag`` on other text."""
    pairs = []
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            s, t = int(parts[0]), int(parts[1])
        except ValueError:
            raise DistillError(f"{flag} {text!r}: {item.strip()!r} is not a pair STUDENT:TEACHER "
                               "of layer indices; expected e.g. 1:2,2:4") from None
        if s < 0 or t < 0:
            raise DistillError(f"{flag} {text!r}: negative index in {item.strip()!r}")
        pairs.append((s, t))
    if len(set(pairs)) != len(pairs):
        raise DistillError(f"{flag} {text!r}: a pair is given twice")
    return tuple(pairs)


def default_pairs(kind: str, copied_from: Sequence[int] | None, n_student: int,
                  n_teacher: int) -> Pairs:
    """Default pairs for ``kind`` ("hidden" or "attn"): each student layer with the teacher layer
    it was copied from (``copied_from[i]`` for student layer i), else TinyBERT's uniform map
    (student layer i, 1-based, with teacher layer i * n_teacher // n_student); DistillError when
    the student has more layers than the teacher and no map is given."""
    flag = "--hidden-pairs" if kind == "hidden" else "--attn-pairs"
    if copied_from is None:
        if n_student > n_teacher:
            raise DistillError(f"the student has {n_student} layers, more than the teacher's "
                               f"{n_teacher}: no default layer map; give {flag}")
        copied_from = [(i + 1) * n_teacher // n_student - 1 for i in range(n_student)]
    if kind == "hidden":  # hidden_states: 0 = embeddings, i + 1 = after layer i
        return ((0, 0),) + tuple((i + 1, t + 1) for i, t in enumerate(copied_from))
    return tuple(enumerate(copied_from))


def _check_range(pairs: Pairs, flag: str, n_student: int, n_teacher: int) -> None:
    """DistillError naming ``flag`` when a pair is outside 0..n-1 of either model."""
    for s, t in pairs:
        if s >= n_student or t >= n_teacher:
            raise DistillError(f"{flag} pair {s}:{t} is out of range: the student has indices "
                               f"0..{n_student - 1}, the teacher 0..{n_teacher - 1}")


def resolve_transfer(args: Any, tcfg: Any, scfg: Any, copied_from: Sequence[int] | None
                     ) -> Transfer:
    """The run's :class:`Transfer` from the flags (``alpha_hidden``, ``hidden_pairs``,
    ``alpha_attn``, ``attn_pairs``), checked against both configs; DistillError on bad input."""
    n_s, n_t = scfg.num_hidden_layers, tcfg.num_hidden_layers
    found: dict[str, Pairs] = {}
    for kind, alpha, text in (("hidden", args.alpha_hidden, args.hidden_pairs),
                              ("attn", args.alpha_attn, args.attn_pairs)):
        flag, wflag = f"--{kind}-pairs", f"--alpha-{kind}"
        if not alpha:
            if text is not None:
                raise DistillError(f"{flag} {text} is given but {wflag} is 0: give {wflag} W > 0 "
                                   "to use those pairs")
            found[kind] = ()
            continue
        pairs = (parse_pairs(text, flag) if text is not None
                 else default_pairs(kind, copied_from, n_s, n_t))
        extra = 1 if kind == "hidden" else 0  # hidden_states has the embeddings first
        _check_range(pairs, flag if text is not None else f"default {flag}", n_s + extra,
                     n_t + extra)
        found[kind] = pairs
    if args.alpha_attn and scfg.num_attention_heads != tcfg.num_attention_heads:
        raise DistillError(f"--alpha-attn {args.alpha_attn:g}: attention transfer compares "
                           f"head by head, but the student has {scfg.num_attention_heads} heads "
                           f"and the teacher {tcfg.num_attention_heads}; pass --alpha-attn 0")
    spec = Transfer(args.alpha_hidden, found["hidden"], args.alpha_attn, found["attn"])
    if spec.needs_hidden or spec.needs_attn:
        logger.info("layer transfer: hidden pairs %s (x%g), attention pairs %s (x%g)",
                    _show(spec.hidden_pairs), spec.alpha_hidden, _show(spec.attn_pairs),
                    spec.alpha_attn)
    return spec


def _show(pairs: Pairs) -> str:
    return ",".join(f"{s}:{t}" for s, t in pairs) or "-"


# ----------------------------------------------------------------------------- projection


def attach_projection(student: nn.Module, student_width: int, teacher_width: int
                      ) -> HiddenProjection | None:
    """Add ``train_aux.hidden_projection`` (Linear(Hs, Ht)) to ``student`` when the widths
    differ and return it; None (nothing added) when they agree."""
    if student_width == teacher_width:
        return None
    proj = HiddenProjection(student_width, teacher_width)
    std = getattr(student.config, "initializer_range", 0.02)
    nn.init.trunc_normal_(proj.proj.weight, std=std, a=-2 * std, b=2 * std)  # type: ignore
    nn.init.zeros_(proj.proj.bias)  # type: ignore[union-attr]
    student.add_module(AUX, nn.ModuleDict({"hidden_projection": proj}))
    return proj


def projection_of(model: nn.Module) -> nn.Module | None:
    """The ``train_aux.hidden_projection`` of ``model`` (or of a DDP wrapper's module), if any."""
    model = getattr(model, "module", model)
    aux = getattr(model, AUX, None)
    return aux["hidden_projection"] if isinstance(aux, nn.ModuleDict) else None


def student_weights(model: nn.Module) -> int:
    """Parameters of ``model`` without its training-only parts."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith(TRAINING_ONLY_PREFIX))


def checkpoint_has_projection(resume: Path) -> bool:
    """Whether checkpoint directory ``resume`` holds a hidden projection (memory-mapped read of
    the keys; an unreadable checkpoint says no here, the driver's load then names its fault)."""
    try:
        state = torch.load(resume / "state.pt", map_location="cpu", weights_only=True, mmap=True)
        keys = state["model"].keys()
    except Exception:  # noqa: BLE001 - reported by the driver's verified load
        return False
    return any(k.startswith(TRAINING_ONLY_PREFIX) for k in keys)


# ----------------------------------------------------------------------------- loss


def transfer_shares(s: Any, t: Any, batch: dict[str, Tensor], counts: dict[str, Tensor],
                    spec: Transfer, projection: nn.Module | None) -> dict[str, Tensor]:
    """This micro-batch's shares of the global batch's ``hidden_loss`` and ``attn_loss``
    (unweighted), from both models' outputs with ``hidden_states`` / ``attentions``.

    :func:`~bertkit.distill.losses.hidden_mse_loss` and
    :func:`~bertkit.distill.losses.attention_kl_loss` average over this micro-batch's real
    tokens (queries); scaled by its share of the global batch's real tokens, the shares summed
    over micro-batches and ranks are those losses over the whole global batch.
    """
    real = batch["input_mask"]                                          # (B, T)
    share = real.sum().float() / counts["tokens"].clamp_min(1.0)
    out: dict[str, Tensor] = {}
    if spec.needs_hidden:
        out["hidden_loss"] = hidden_mse_loss(s.hidden_states, t.hidden_states, spec.hidden_pairs,
                                             projection, real) * share
    if spec.needs_attn:
        out["attn_loss"] = attention_kl_loss(s.attentions, t.attentions, spec.attn_pairs,
                                             real) * share
    return out
