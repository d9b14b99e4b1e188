"""The onnxruntime backend and dynamic int8 quantization of exported graphs.

    >>> from bertkit.inference.onnx import OnnxBackend, export_onnx      # doctest: +SKIP
    >>> export_onnx("MODEL_DIR", "model.onnx")                            # doctest: +SKIP
    >>> backend = OnnxBackend("model.onnx")                               # doctest: +SKIP
    >>> backend({"input_ids": ids, "attention_mask": mask})["last_hidden_state"]  # (B, T, H)

:class:`OnnxBackend` follows :class:`bertkit.inference.backend.Backend`: one padded batch of int64
(B, T) tensors in, float32 outputs named as in Hugging Face out. The session runs on the CPU with
every graph optimization on and one intra-op thread per available core unless told otherwise.

:func:`quantize_onnx` is onnxruntime's dynamic quantization: the weights of MatMul/Attention
(every linear layer) become int8 per output channel, activations are quantized per batch at run
time; embeddings, LayerNorm and softmax stay float32, and so does the FFN output projection of
the first two layers (:func:`sensitive_nodes`: with it, every mean-pooled MiniLM embedding of
1,000 real sentences keeps a cosine of at least 0.99 to fp32).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bertkit.inference.onnx_export import ExportError, export_onnx

logger = logging.getLogger(__name__)

__all__ = ["FP32_FC2_LAYERS", "ExportError", "OnnxBackend", "default_threads", "export_onnx",
           "quantize_onnx", "sensitive_nodes"]


def default_threads() -> int:
    """CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _session_options(threads: int, memory_arena: bool = True):  # noqa: ANN202
    """onnxruntime.SessionOptions: all graph optimizations, ``threads`` intra-op threads, and
    onnxruntime's CPU memory arena unless ``memory_arena`` is False."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = memory_arena
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: ORT warns about unused initializers etc.
    return so


class OnnxBackend:
    """An onnxruntime CPU session on an exported graph (``bertkit export --format onnx``).

    ``threads``: intra-op threads (default: :func:`default_threads`). Inputs the graph does not
    take are ignored; a ``token_type_ids`` the graph takes but the caller omits is all zeros.
    ``memory_arena=False`` gives activations back to the C library after each run instead of
    keeping them in onnxruntime's arena, which grows without bound under batches of ever-changing
    shapes (a long-running server); the arena is faster for a fixed workload.
    """

    name = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None,
                 memory_arena: bool = True) -> None:
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise ExportError(f"{p}: no such ONNX file (write one with bertkit export "
                              "--format onnx)")
        self.path = p
        self.threads = threads or default_threads()
        self.session = ort.InferenceSession(str(p), _session_options(self.threads, memory_arena),
                                            providers=["CPUExecutionProvider"])
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def __repr__(self) -> str:
        return f"OnnxBackend({str(self.path)!r}, threads={self.threads})"

    def _feed(self, inputs: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        """{name: (B, T) int64 tensor} -> contiguous int64 arrays for the session's inputs."""
        if "input_ids" not in inputs:
            raise ValueError("OnnxBackend needs input_ids (B, T)")
        ids = inputs["input_ids"]
        feed = {}
        for name in self.input_names:
            t = inputs.get(name)
            if t is None:
                if name == "attention_mask":
                    t = torch.ones_like(ids)
                elif name == "token_type_ids":
                    t = torch.zeros_like(ids)
                else:
                    raise ValueError(f"OnnxBackend: missing input {name!r}")
            feed[name] = np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.int64)
        return feed

    def __call__(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """{input name: (B, T) int64} -> {output name: float32 tensor}."""
        outs = self.session.run(list(self.output_names), self._feed(inputs))
        return {n: torch.from_numpy(o) for n, o in zip(self.output_names, outs, strict=True)}


FP32_FC2_LAYERS = 2  # the first layers whose FFN output projection int8 keeps in float32


def sensitive_nodes(path: str | Path, layers: int = FP32_FC2_LAYERS) -> list[str]:
    """Names of the MatMul nodes kept in float32 by :func:`quantize_onnx`: the FFN output
    projection (``fc2``) of the first ``layers`` encoder layers. Their inputs (GELU outputs)
    hold outliers that a per-tensor uint8 activation scale flattens.

    Measured on all-MiniLM-L6-v2, worst mean-pooled embedding cosine to fp32 over 1,000
    Wikipedia sentences (sentences below 0.99): every fc2 int8 0.985 (23); the first layer's
    kept 0.987 (3); the first two 0.991 (0); every fc2 kept 0.993 (0). Keeping the first layer's
    with any one other: layer 2 0.990, layers 3-6 0.987-0.988. On BERT-Base the second kept
    layer cost no measurable speed. Short review snippets are harder: over 1,000 Rotten Tomatoes
    dev snippets the worst is 0.985 (14 below 0.99; every fc2 kept: 0.990, 2 below), as the
    activations' int8 scale is chosen per batch, so a text's int8 output depends on its batch
    neighbours (one text per batch: 0.989, 2 below).
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    fc2 = [n.name for n in graph.node if n.op_type == "MatMul" and "/ffn/fc2/" in n.name]
    return fc2[:layers]


def quantize_onnx(src: str | Path, dst: str | Path, per_channel: bool = True,
                  keep_fp32: list[str] | None = None) -> Path:
    """Dynamic int8 quantization of ``src``'s linear layers (MatMul, Attention) into ``dst``.

    Weights int8 (per output channel when ``per_channel``), activations uint8 chosen per batch.
    ``keep_fp32``: node names left in float32 (default :func:`sensitive_nodes`).
    ``dst`` is written under a temp name beside it and renamed when complete.
    """
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    exclude = sensitive_nodes(src) if keep_fp32 is None else list(keep_fp32)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.") as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8,
                         per_channel=per_channel, op_types_to_quantize=["MatMul", "Attention"],
                         nodes_to_exclude=exclude,
                         extra_options={"MatMulConstBOnly": True,
                                        # onnx's shape inference stops at contrib ops
                                        "DefaultTensorType": 1})  # TensorProto.FLOAT
        os.replace(out, dst)
    logger.info("quantized %s to int8 (kept in float32: %s) -> %s", src, exclude or "none", dst)
    return dst
