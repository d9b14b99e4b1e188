"""A real encoder with a seeded random task head, saved as a model directory (test helper)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch


def head_dir(minilm_dir: Path, out: Path, cls_name: str, labels: list[str] | None,
             seed: int = 0, *, regression: bool = False,
             layers: tuple[int, ...] | None = None, scale: float = 40.0) -> Path:
    """MiniLM + a seeded random ``cls_name`` head (scaled x``scale`` so predictions vary), saved
    to ``out`` with its tokenizer files. ``regression``: one output, HF's regression config;
    ``layers``: keep only these of MiniLM's 6 layers (a faster teacher)."""
    from bertkit.distill.student import build_student
    from bertkit.models import heads

    torch.manual_seed(seed)
    overrides = (heads.label_entries(None) if regression
                 else heads.label_entries(labels) if labels is not None else {})
    model = getattr(heads, cls_name).from_pretrained(minilm_dir, **overrides)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("classifier", "qa_outputs")) and p.ndim == 2:
                p.mul_(scale)
    if layers is not None:
        model = build_student(model, layers)
    model.save_pretrained(out)
    for f in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_dir / f, out / f)
    return out
