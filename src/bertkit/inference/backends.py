"""Backends by name: ``load_backend("torch", model_dir, head=...)``.

Each entry is ``"module:Class"``, imported only when used. The class's
``from_pretrained(model_dir, head=..., device=..., output_hidden_states=...)`` returns an object
following :class:`~bertkit.inference.backend.Backend`. Adding a backend is one line in
:data:`BACKENDS` (or :func:`register_backend` at run time).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from bertkit.inference.backend import Backend

__all__ = ["BACKENDS", "load_backend", "register_backend"]

BACKENDS: dict[str, str] = {
    "torch": "bertkit.inference.torch_backend:TorchBackend",
    "onnx": "bertkit.inference.onnx:OnnxBackend",
}


def register_backend(name: str, target: str) -> None:
    """Make ``backend=name`` load ``target`` (``"package.module:Class"``)."""
    if ":" not in target:
        raise ValueError(f"backend {name!r}: target {target!r} must be 'module:Class'")
    BACKENDS[name] = target


def load_backend(name: str, model_dir: str | Path, head: str = "base", device: str = "cpu",
                 **options: Any) -> Backend:
    """The backend ``name`` serving ``model_dir`` with ``head`` on ``device``.

    Raises ValueError naming ``backend`` for an unknown name, or one whose module is missing.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend {name!r}: unknown; bertkit has {', '.join(sorted(BACKENDS))}")
    module_name, _, cls_name = BACKENDS[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"backend {name!r} is not available here ({e})") from e
    return cls.from_pretrained(model_dir, head=head, device=device, **options)
