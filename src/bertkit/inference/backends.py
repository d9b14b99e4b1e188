"""Backends by name: ``load_backend("torch", model_dir, head=...)``.

Each entry is ``"module:name"``, imported only when used: a class with
``from_pretrained(model_dir, head=..., device=..., **options)``, or a function of the same
arguments, returning an object following :class:`~bertkit.inference.backend.Backend`. Adding a
backend is one line in :data:`BACKENDS` (or :func:`register_backend` at run time).

``onnx`` serves a graph written by ``bertkit export --format onnx``: ``model.onnx`` in the model
directory, or the file given as ``onnx_file=``; ``threads=`` sets onnxruntime's intra-op threads.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from bertkit.inference.backend import Backend

__all__ = ["BACKENDS", "load_backend", "register_backend"]

BACKENDS: dict[str, str] = {
    "torch": "bertkit.inference.torch_backend:TorchBackend",
    "onnx": "bertkit.inference.backends:onnx_backend",
}


def onnx_backend(model_dir: str | Path, head: str = "base", device: str = "cpu",
                 onnx_file: str | Path | None = None, threads: int | None = None,
                 output_hidden_states: bool = False, memory_arena: bool = True) -> Backend:
    """:class:`~bertkit.inference.onnx.OnnxBackend` on ``onnx_file`` (default
    ``model_dir/model.onnx``); the graph's head is the one it was exported with."""
    from bertkit.inference.onnx import OnnxBackend

    if str(device) != "cpu":
        raise ValueError(f"device: the onnx backend runs on the CPU, not {device!r}")
    if output_hidden_states:
        raise ValueError("layers: the onnx backend returns the last layer only; use "
                         "backend='torch' for chosen layers")
    path = Path(onnx_file) if onnx_file is not None else Path(model_dir) / "model.onnx"
    if not path.is_file():
        raise ValueError(f"onnx_file: {path} not found; write it with bertkit export "
                         f"--format onnx, or pass onnx_file=")
    return OnnxBackend(path, threads, memory_arena)


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
    module_name, _, attr = BACKENDS[name].partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"backend {name!r} is not available here ({e})") from e
    factory = getattr(target, "from_pretrained", target)
    return factory(model_dir, head=head, device=device, **options)
