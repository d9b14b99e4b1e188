"""What differs between task kinds in ``bertkit distill --task``: rows, labels, cached teacher
outputs, a batch's targets and the student's outputs the loss compares.

Notation: B batch, T tokens (the batch's longest feature), T_i tokens of feature i, C classes
(or choices), F training features.

A *row* is what the soft-target loss averages over: one feature for classification, regression
and multiple-choice (an example, its K choices scored together), one window feature for qa (a
question over a long context gives several; each window's start and end distributions are
matched to the teacher's and averaged), a word's first piece for ner.

Labels travel beside the features (a batch may mix labelled and unlabelled rows), one per
feature: a class or choice id (IGNORE_INDEX = none) for classification and multiple-choice; a
float (NaN = none) for regression; per-token ids (T_i,) as a list (IGNORE_INDEX where none), or
None, for ner; the (start, end) positions of the answer in the window for qa (``0, 0``, the
first token, where the window does not hold the answer, as fine-tuning trains;
IGNORE_INDEX twice when the question has no answer given).

The teacher's outputs, computed once per feature before training: (C,) logits; (1,) for
regression (the prediction itself is the soft target); (T_i, C) for ner; (2, T_i) for qa (start
and end logits, one row each).

    >>> split_labels("regression", [Feature(0, [101, 102], [0, 0], 0.5)])[1]
    [0.5]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bertkit.distill.losses import IGNORE_INDEX
from bertkit.finetune.features import Feature

__all__ = ["PAD_LOGIT", "loss_inputs", "row_count", "split_labels", "targets",
           "teacher_outputs"]

PAD_LOGIT = -1e4
"""qa: the start/end logit of both models at padding, so that no probability falls there (a
finite value: KL(0 || 0) must stay 0, not NaN)."""


def _label(kind: str, f: Any) -> Any:
    """One feature's label in the form the module docstring gives."""
    if kind == "qa":
        if f.start_position is None:
            return (IGNORE_INDEX, IGNORE_INDEX)
        return (int(f.start_position), int(f.end_position))
    if kind == "ner":
        return f.label
    if kind == "regression":
        return math.nan if f.label is None else float(f.label)
    return IGNORE_INDEX if f.label is None else int(f.label)


def split_labels(kind: str, features: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """(the features without their labels, so that any of them batch together; their labels)."""
    labels = [_label(kind, f) for f in features]
    if kind == "qa":
        bare = [dataclasses.replace(f, start_position=None, end_position=None) for f in features]
    else:
        bare = [dataclasses.replace(f, label=None) for f in features]
    return bare, labels


def teacher_outputs(kind: str, features: Sequence[Any], outputs: Sequence[Any]
                    ) -> list[np.ndarray]:
    """``predict_split``'s outputs (padded to their batch for ner and qa) -> each feature's own,
    float32: (C,), (1,), (T_i, C) or (2, T_i)."""
    out = []
    for f, o in zip(features, outputs, strict=True):
        n = len(f.input_ids)
        if kind == "qa":
            out.append(np.stack([o[0][:n], o[1][:n]]).astype(np.float32))   # (2, T_i)
        elif kind == "ner":
            out.append(np.asarray(o[:n], dtype=np.float32))                  # (T_i, C)
        else:
            out.append(np.asarray(o, dtype=np.float32))                      # (C,) or (1,)
    return out


def _ner_targets(feats: Sequence[Feature], labels: Sequence[Any],
                 logits: Sequence[np.ndarray] | None) -> dict[str, Tensor]:
    width = max(len(f.input_ids) for f in feats)
    y = torch.full((len(feats), width), IGNORE_INDEX, dtype=torch.long)   # (B, T)
    mask = torch.zeros(len(feats), width, dtype=torch.bool)              # (B, T)
    for i, (f, lab) in enumerate(zip(feats, labels, strict=True)):
        n = len(f.input_ids)
        if lab is not None:
            y[i, :n] = torch.tensor(lab, dtype=torch.long)
        mask[i, :n] = torch.tensor([w is not None for w in f.word_ids])  # type: ignore[union-attr]
    out = {"labels": y, "label_mask": mask}
    if logits is not None:
        t = torch.zeros(len(feats), width, logits[0].shape[-1])          # (B, T, C)
        for i, lg in enumerate(logits):
            t[i, :lg.shape[0]] = torch.from_numpy(lg)
        out["teacher_logits"] = t
    return out


def _qa_targets(feats: Sequence[Any], labels: Sequence[Any],
                logits: Sequence[np.ndarray] | None) -> dict[str, Tensor]:
    out = {"labels": torch.tensor(labels, dtype=torch.long)}             # (B, 2)
    if logits is not None:
        width = max(len(f.input_ids) for f in feats)
        t = torch.full((len(feats), 2, width), PAD_LOGIT)                # (B, 2, T)
        for i, lg in enumerate(logits):
            t[i, :, :lg.shape[1]] = torch.from_numpy(lg)
        out["teacher_logits"] = t
    return out


def targets(kind: str, feats: Sequence[Any], labels: Sequence[Any],
            logits: Sequence[np.ndarray] | None) -> dict[str, Tensor]:
    """``labels`` and ``teacher_logits`` (and ner's ``label_mask``) of one micro-batch.

    classification, multiple-choice: labels (B,) long, teacher_logits (B, C). regression: labels
    (B,) float (NaN where none), teacher_logits (B, 1). ner: labels (B, T) (IGNORE_INDEX where
    none), teacher_logits (B, T, C) zero-padded, label_mask (B, T) True at each word's first
    piece (the rows that count). qa: labels (B, 2) start and end, teacher_logits (B, 2, T)
    padded with :data:`PAD_LOGIT`. T = the longest feature, as the collated inputs. ``logits``
    None (soft targets not computed): no ``teacher_logits``.
    """
    if kind == "ner":
        return _ner_targets(feats, labels, logits)
    if kind == "qa":
        return _qa_targets(feats, labels, logits)
    dtype = torch.float32 if kind == "regression" else torch.long
    out = {"labels": torch.tensor(list(labels), dtype=dtype)}
    if logits is not None:
        out["teacher_logits"] = torch.from_numpy(np.stack(logits))
    return out


def loss_inputs(kind: str, student_out: Any, batch: dict[str, Tensor]
                ) -> tuple[Any, Any, Any]:
    """(student outputs, teacher outputs, labels) in the form
    :func:`~bertkit.distill.losses.task_distill_loss` takes for ``kind``; qa: (start, end)
    pairs of (B, T), the student's logits at padding set to :data:`PAD_LOGIT` as the teacher's
    (the rows then do not depend on how much padding the batch has).

    A batch without ``teacher_logits`` (soft targets of weight 0, not computed): the student's
    own outputs, detached, stand in for the teacher's (a soft loss of 0, no gradient)."""
    if kind != "qa":
        t = batch.get("teacher_logits")
        return student_out, student_out.detach() if t is None else t, batch["labels"]
    pad = ~batch["attention_mask"].bool()                                # (B, T)
    start, end = (x.masked_fill(pad, PAD_LOGIT) for x in student_out)
    y = batch["labels"]
    if "teacher_logits" not in batch:
        return (start, end), (start.detach(), end.detach()), (y[:, 0], y[:, 1])
    t = batch["teacher_logits"]
    return (start, end), (t[:, 0], t[:, 1]), (y[:, 0], y[:, 1])


def row_count(kind: str, batch: dict[str, Tensor]) -> Tensor:
    """The rows of a micro-batch the loss averages over (float scalar)."""
    if kind == "ner":
        return batch["label_mask"].sum().float()
    return torch.tensor(float(batch["labels"].shape[0]))
