"""``bertkit export``: a training checkpoint as a Hugging Face directory (``--format hf``, the
default, unchanged) or a model directory / checkpoint as an ONNX graph (``--format onnx``)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from bertkit.train.pretrain import ExportArgs as HfExportArgs
from bertkit.train.pretrain import run_export as run_hf_export

logger = logging.getLogger(__name__)

__all__ = ["ExportArgs", "run_export"]


@dataclass
class ExportArgs(HfExportArgs):
    """Write a training checkpoint as a Hugging Face model directory (--format hf), or a model
    directory or checkpoint as an ONNX graph for onnxruntime (--format onnx)."""

    checkpoint: str = field(metadata={
        "help": "RUN/checkpoint-STEP (or RUN: its newest); with --format onnx also a model "
                "directory in Hugging Face layout", "positional": True})
    out: str = field(metadata={"help": "--format hf: output directory (new or empty); "
                                       "--format onnx: the .onnx file to write"})
    format: Literal["hf", "onnx"] = field(default="hf", metadata={
        "help": "hf: a Hugging Face model directory; onnx: one ONNX graph (dynamic batch and "
                "sequence axes, Hugging Face input/output names)"})
    int8: bool = field(default=False, metadata={
        "help": "--format onnx: dynamic int8 quantization of the linear layers (faster on CPU)"})
    optimize: bool = field(default=True, metadata={
        "help": "--format onnx: fused attention and onnxruntime's transformer optimizer "
                "(--no-optimize: plain ONNX operators only)"})


def _is_training_run(path: Path) -> bool:
    """A pre-training run (checkpoint-* inside) or one of its checkpoints (state.pt)."""
    return path.is_dir() and ((path / "state.pt").is_file() or any(
        p.name.startswith("checkpoint-") for p in path.iterdir()))


def run_export(args: ExportArgs) -> int:
    """``--format hf``: as before. ``--format onnx``: :func:`~bertkit.inference.onnx.export_onnx`
    from a model directory, or from a checkpoint exported to a temp directory first."""
    if args.format == "hf":
        return run_hf_export(args)
    from bertkit.inference.onnx_export import ExportError, export_onnx

    out = Path(args.out)
    if out.is_dir():
        raise ExportError(f"--out {out} is a directory; give the .onnx file to write")
    if out.exists() and not args.overwrite:
        raise ExportError(f"--out {out} exists: choose a new --out, or pass --overwrite")
    src = Path(args.checkpoint)
    if not _is_training_run(src):
        export_onnx(src, out, optimize=args.optimize, fused_attention=args.optimize,
                    quantize=args.int8)
        return 0
    with tempfile.TemporaryDirectory(prefix=".bertkit-export-") as tmp:
        hf_dir = Path(tmp) / "model"
        run_hf_export(replace(args, out=str(hf_dir), format="hf", overwrite=False))
        export_onnx(hf_dir, out, optimize=args.optimize, fused_attention=args.optimize,
                    quantize=args.int8)
    return 0
