"""Distillation losses: DistilBERT's three terms, TinyBERT/MiniLM's layer transfer, task distillation.

Notation: B batch, T tokens, N rows that count (masked positions, labelled tokens), V vocabulary,
C classes, H hidden size (Hs student, Ht teacher), A attention heads.

Every function takes the teacher's tensors as targets and detaches them, so gradients reach the
student only. Temperature-softened KL terms are scaled by T^2, as DistilBERT and Hinton et al. do,
so their gradients keep the hard loss's magnitude whatever T is.

    >>> s, t = torch.zeros(3, 5), torch.zeros(3, 5)
    >>> float(soft_target_kl(s, t))
    0.0
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.errors import BertkitError

logger = logging.getLogger(__name__)

__all__ = ["DistilBertLoss", "DistillError", "HiddenProjection", "LossWeights", "TASK_KINDS",
           "TaskLoss", "attention_kl_loss", "cosine_hidden_loss", "distilbert_loss", "hidden_mse_loss",
           "kl_rows", "masked_rows", "mlm_cross_entropy", "soft_target_kl", "task_distill_loss"]

IGNORE_INDEX = -100  # a class label that is not there (an unlabelled row or token)


class DistillError(BertkitError, ValueError):
    """A teacher/student pair, layer choice or layer pairing that cannot be distilled."""


def _mean(x: Tensor) -> Tensor:
    """Mean of ``x``; 0 (still in the graph) when ``x`` is empty, e.g. a batch with no mask."""
    return x.mean() if x.numel() else x.sum()


def masked_rows(x: Tensor, mask: Tensor) -> Tensor:
    """The rows of ``x`` (B, P, ...) where ``mask`` (B, P) is nonzero -> (N, ...)."""
    return x[mask.bool()]


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor,
                   temperature: float = 2.0) -> Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), summed over the last dim and
    averaged over rows: logits (N, V) -> scalar. For DistilBERT the rows are the N masked
    positions; for task distillation, examples or labelled tokens."""
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)          # (N, V)
    log_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)  # (N, V)
    per_row = F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(-1)  # (N,)
    return _mean(per_row) * temperature ** 2


def mlm_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of the student's logits (N, V) at the masked positions against the
    original ids (N,) -> scalar (0 when N is 0)."""
    return _mean(F.cross_entropy(logits.float(), labels.long(), reduction="none"))


def cosine_hidden_loss(student_hidden: Tensor, teacher_hidden: Tensor,
                       attention_mask: Tensor | None = None) -> Tensor:
    """Mean of 1 - cos(student, teacher) over the non-padding positions (cosine embedding loss
    with target +1): hidden states (B, T, H), attention_mask (B, T) 1 = token -> scalar."""
    s, t = student_hidden.float(), teacher_hidden.detach().float()
    if attention_mask is not None:
        s, t = masked_rows(s, attention_mask), masked_rows(t, attention_mask)  # (N, H)
    return _mean(1 - F.cosine_similarity(s, t, dim=-1))


@dataclass(frozen=True)
class LossWeights:
    """DistilBERT's loss weights and temperature (the released run's values by default)."""

    alpha_ce: float = 5.0
    """Weight of the soft-target KL at the masked positions."""
    alpha_mlm: float = 2.0
    """Weight of the masked-LM cross-entropy on the true ids."""
    alpha_cos: float = 1.0
    """Weight of the cosine loss between the last hidden states."""
    temperature: float = 2.0
    """Softmax temperature T of the soft targets (the KL is scaled by T^2)."""


@dataclass
class DistilBertLoss:
    """``total`` = the weighted sum; each term unweighted (None when its weight is 0)."""

    total: Tensor
    ce: Tensor | None
    mlm: Tensor | None
    cos: Tensor | None


def distilbert_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
                    student_hidden: Tensor, teacher_hidden: Tensor,
                    attention_mask: Tensor | None = None,
                    weights: LossWeights = LossWeights()) -> DistilBertLoss:
    """alpha_ce * T^2 KL + alpha_mlm * MLM CE + alpha_cos * (1 - cos).

    student_logits, teacher_logits: (N, V) at the N masked positions; labels: (N,) their ids;
    student_hidden, teacher_hidden: (B, T, H) last hidden states; attention_mask: (B, T).
    """
    ce = (soft_target_kl(student_logits, teacher_logits, weights.temperature)
          if weights.alpha_ce else None)
    mlm = mlm_cross_entropy(student_logits, labels) if weights.alpha_mlm else None
    cos = (cosine_hidden_loss(student_hidden, teacher_hidden, attention_mask)
           if weights.alpha_cos else None)
    total = student_logits.new_zeros((), dtype=torch.float32)
    for alpha, term in ((weights.alpha_ce, ce), (weights.alpha_mlm, mlm),
                        (weights.alpha_cos, cos)):
        if term is not None:
            total = total + alpha * term
    return DistilBertLoss(total=total, ce=ce, mlm=mlm, cos=cos)


class HiddenProjection(nn.Module):
    """TinyBERT's learned map of the student's hidden states into the teacher's width:
    Linear(Hs, Ht), or the identity when the widths agree. Train it with the student."""

    def __init__(self, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.proj: nn.Module = (nn.Identity() if student_width == teacher_width
                                else nn.Linear(student_width, teacher_width))

    def forward(self, h: Tensor) -> Tensor:
        """(..., Hs) -> (..., Ht)."""
        return self.proj(h)


def _check_pairs(pairs: Sequence[tuple[int, int]], n_student: int, n_teacher: int,
                 what: str) -> None:
    if not pairs:
        raise DistillError(f"no layer pairs for the {what} loss")
    for s, t in pairs:
        if not (0 <= s < n_student and 0 <= t < n_teacher):
            raise DistillError(f"{what} layer pair ({s}, {t}) out of range: the student has "
                             f"{n_student} {what} tensors, the teacher {n_teacher}")


def hidden_mse_loss(student_states: Sequence[Tensor], teacher_states: Sequence[Tensor],
                    pairs: Sequence[tuple[int, int]], projection: nn.Module | None = None,
                    attention_mask: Tensor | None = None) -> Tensor:
    """TinyBERT's hidden-state loss: sum over ``pairs`` (student index, teacher index) of the
    mean squared error between projection(student state) and the teacher state, over the
    non-padding positions. States: ``hidden_states`` tuples of (B, T, Hs) / (B, T, Ht), index 0
    the embeddings; attention_mask (B, T) -> scalar."""
    _check_pairs(pairs, len(student_states), len(teacher_states), "hidden-state")
    total = student_states[0].new_zeros((), dtype=torch.float32)
    for s, t in pairs:
        hs = student_states[s] if projection is None else projection(student_states[s])
        hs, ht = hs.float(), teacher_states[t].detach().float()
        if attention_mask is not None:
            hs, ht = masked_rows(hs, attention_mask), masked_rows(ht, attention_mask)  # (N, Ht)
        total = total + F.mse_loss(hs, ht)
    return total


def attention_kl_loss(student_attns: Sequence[Tensor], teacher_attns: Sequence[Tensor],
                      pairs: Sequence[tuple[int, int]],
                      attention_mask: Tensor | None = None) -> Tensor:
    """Attention-distribution transfer (MiniLM; TinyBERT's on probabilities): sum over ``pairs``
    (student layer, teacher layer) of KL(teacher || student) over the keys, averaged over
    batch, heads and non-padding queries. Attentions: per-layer (B, A, T, T) probabilities
    (``output_attentions``), same A for both; attention_mask (B, T) -> scalar. Padded keys
    carry zero probability in both and are left out of the sum."""
    _check_pairs(pairs, len(student_attns), len(teacher_attns), "attention")
    tiny = torch.finfo(torch.float32).tiny
    total = student_attns[0].new_zeros((), dtype=torch.float32)
    for s, t in pairs:
        ps, pt = student_attns[s].float(), teacher_attns[t].detach().float()
        if ps.shape != pt.shape:
            raise DistillError(f"attention pair ({s}, {t}): student {tuple(ps.shape)} and teacher "
                             f"{tuple(pt.shape)} differ (heads and tokens must agree)")
        kl = pt * (pt.clamp_min(tiny).log() - ps.clamp_min(tiny).log())  # (B, A, T, T)
        if attention_mask is None:
            total = total + kl.sum(-1).mean()
            continue
        keep = attention_mask.bool()                                  # (B, T)
        kl = kl.masked_fill(~keep[:, None, None, :], 0.0).sum(-1)     # (B, A, T): per query
        rows = keep[:, None, :].expand_as(kl)                         # (B, A, T)
        total = total + kl[rows].mean()
    return total


# ---------------------------------------------------------------- task distillation

TASK_KINDS = ("classification", "multiple-choice", "ner", "qa", "regression")


@dataclass
class TaskLoss:
    """``total`` = mean over rows of (1 - w) soft + w hard, w = alpha_hard on labelled rows and 0
    on unlabelled ones; ``soft`` and ``hard`` the row means (``hard`` over labelled rows; None
    when none is labelled)."""

    total: Tensor
    soft: Tensor
    hard: Tensor | None


def kl_rows(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Per-row T^2 KL(teacher || student): logits (N, C) -> (N,)."""
    log_s = F.log_softmax(student.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher.detach().float() / temperature, dim=-1)
    return F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(-1) * temperature ** 2


def _mix(soft: Tensor, hard: Tensor | None, labelled: Tensor | None,
         alpha_hard: float) -> TaskLoss:
    """Per-row soft (N,) and hard (N,) losses, labelled (N,) bool -> the mixed TaskLoss."""
    if hard is None or labelled is None or not bool(labelled.any()):
        return TaskLoss(total=soft.mean(), soft=soft.mean(), hard=None)
    w = labelled.float() * alpha_hard                               # (N,)
    hard = torch.where(labelled, hard, torch.zeros_like(hard))      # no NaN from missing labels
    total = ((1 - w) * soft + w * hard).mean()
    return TaskLoss(total=total, soft=soft.mean(), hard=hard[labelled].mean())


def _class_rows(student: Tensor, teacher: Tensor, labels: Tensor | None, temperature: float
                ) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """logits (N, C), labels (N,) with IGNORE_INDEX for none -> soft, hard, labelled (N,)."""
    soft = kl_rows(student, teacher, temperature)
    if labels is None:
        return soft, None, None
    labels = labels.long()
    labelled = labels.ne(IGNORE_INDEX)
    hard = F.cross_entropy(student.float(), labels.clamp_min(0), reduction="none")
    return soft, hard, labelled


def task_distill_loss(kind: str, student_logits: Tensor | tuple[Tensor, Tensor],
                      teacher_logits: Tensor | tuple[Tensor, Tensor],
                      labels: Tensor | tuple[Tensor, Tensor] | None = None,
                      label_mask: Tensor | None = None, temperature: float = 2.0,
                      alpha_hard: float = 0.5) -> TaskLoss:
    """Soft targets from a fine-tuned teacher, mixed with the hard labels where they exist.

    classification, multiple-choice: logits (B, C), labels (B,) (IGNORE_INDEX = unlabelled).
    ner: logits (B, T, C), labels (B, T), label_mask (B, T): the tokens that count (first
    sub-words, no padding); rows are those tokens.
    qa: (start, end) logits, each (B, T); labels (start, end) positions, each (B,); the start and
    end losses averaged.
    regression: predictions (B,) or (B, 1); MSE to the teacher and to the labels (NaN =
    unlabelled); no temperature.
    """
    if kind not in TASK_KINDS:
        raise ValueError(f"task kind {kind!r}; kinds: {', '.join(TASK_KINDS)}")
    if kind == "qa":
        assert isinstance(student_logits, tuple) and isinstance(teacher_logits, tuple)
        ends = [task_distill_loss("classification", s, t, None if labels is None else y,
                                  None, temperature, alpha_hard)
                for s, t, y in zip(student_logits, teacher_logits,
                                   labels if labels is not None else (None, None), strict=True)]
        hard = (None if any(e.hard is None for e in ends)
                else (ends[0].hard + ends[1].hard) / 2)  # type: ignore[operator]
        return TaskLoss(total=(ends[0].total + ends[1].total) / 2,
                        soft=(ends[0].soft + ends[1].soft) / 2, hard=hard)
    assert isinstance(student_logits, Tensor) and isinstance(teacher_logits, Tensor)
    assert labels is None or isinstance(labels, Tensor)
    if kind == "regression":
        s = student_logits.float().reshape(-1)                       # (B,)
        soft = (s - teacher_logits.detach().float().reshape(-1)) ** 2
        if labels is None:
            return _mix(soft, None, None, alpha_hard)
        y = labels.float().reshape(-1)
        labelled = ~y.isnan()
        return _mix(soft, (s - y.nan_to_num()) ** 2, labelled, alpha_hard)
    if kind == "ner":
        if label_mask is None:
            raise ValueError("ner distillation needs label_mask (B, T): the tokens that count")
        student_logits = masked_rows(student_logits, label_mask)     # (N, C)
        teacher_logits = masked_rows(teacher_logits, label_mask)     # (N, C)
        labels = None if labels is None else masked_rows(labels, label_mask)  # (N,)
    return _mix(*_class_rows(student_logits, teacher_logits, labels, temperature), alpha_hard)
