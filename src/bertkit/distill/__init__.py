"""Knowledge distillation: the loss terms (:mod:`bertkit.distill.losses`) and students built from
a teacher's layers (:mod:`bertkit.distill.student`)."""

from __future__ import annotations

from bertkit.distill.losses import (
    DistilBertLoss,
    LossWeights,
    TaskLoss,
    attention_kl_loss,
    cosine_hidden_loss,
    distilbert_loss,
    hidden_mse_loss,
    mlm_cross_entropy,
    soft_target_kl,
    task_distill_loss,
)
from bertkit.distill.student import (
    DistillError,
    build_student,
    check_vocabularies,
    parse_student_layers,
)

__all__ = ["DistilBertLoss", "DistillError", "LossWeights", "TaskLoss", "attention_kl_loss",
           "build_student", "check_vocabularies", "cosine_hidden_loss", "distilbert_loss", "hidden_mse_loss",
           "mlm_cross_entropy", "parse_student_layers", "soft_target_kl", "task_distill_loss"]
