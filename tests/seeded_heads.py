"""A real encoder with a seeded random task head, saved as a model directory (test helper)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch


def head_dir(minilm_dir: Path, out: Path, cls_name: str, labels: list[str] | None,
             seed: int = 0) -> Path:
    """MiniLM + a seeded random ``cls_name`` head (scaled x40 so predictions vary), saved to
    ``out`` with its tokenizer files."""
    from bertkit.models import heads

    torch.manual_seed(seed)
    overrides = heads.label_entries(labels) if labels is not None else {}
    model = getattr(heads, cls_name).from_pretrained(minilm_dir, **overrides)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("classifier", "qa_outputs")) and p.ndim == 2:
                p.mul_(40)
    model.save_pretrained(out)
    for f in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_dir / f, out / f)
    return out
