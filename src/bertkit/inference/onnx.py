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
time; embeddings, LayerNorm and softmax stay float32, and so do the few outlier input channels
of the FFN projections (:mod:`bertkit.inference.onnx_outliers`: each fc1/fc2 MatMul becomes a
masked int8 MatMul plus a float32 one on 1-5 channels), which keeps every mean-pooled MiniLM
embedding of 1,000 real Wikipedia sentences and of the 1,281 Rotten Tomatoes dev snippets at a
cosine of at least 0.99 to fp32 at the default batching (see :func:`quantize_onnx`).
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
from bertkit.inference.onnx_outliers import OUTLIER_RATIO, split_outlier_channels

logger = logging.getLogger(__name__)

__all__ = ["FP32_FC2_LAYERS", "ExportError", "OnnxBackend", "default_threads", "export_onnx",
           "ffn_nodes", "quantize_onnx", "sensitive_nodes"]


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


FP32_FC2_LAYERS = 0  # first layers whose whole FFN output projection int8 keeps in float32
#                      (2 before the outlier-channel split made it unnecessary)


def _ffn_matmuls(path: str | Path) -> list[tuple[str, str]]:
    """(name, "fc1" | "fc2") of the FFN MatMul nodes of ``path``'s graph, in graph order."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [(n.name, part) for n in graph.node if n.op_type == "MatMul"
            for part in ("fc1", "fc2") if f"/ffn/{part}/" in n.name]


def ffn_nodes(path: str | Path) -> list[str]:
    """Names of the FFN MatMul nodes (fc1, fc2 of every layer): the ones whose outlier input
    channels :func:`quantize_onnx` keeps in float32."""
    return [name for name, _ in _ffn_matmuls(path)]


def sensitive_nodes(path: str | Path, layers: int = FP32_FC2_LAYERS) -> list[str]:
    """Names of the FFN output projections (``fc2``) of the first ``layers`` encoder layers: the
    MatMuls to keep wholly in float32 when the outlier split is off (``outlier_ratio=None``),
    as int8 did before it (2 layers). Their inputs (GELU outputs) hold outlier channels that a
    per-tensor uint8 activation scale flattens."""
    return [name for name, part in _ffn_matmuls(path) if part == "fc2"][:layers]


def quantize_onnx(src: str | Path, dst: str | Path, per_channel: bool = True,
                  keep_fp32: list[str] | None = None,
                  outlier_ratio: float | None = OUTLIER_RATIO) -> Path:
    """Dynamic int8 quantization of ``src``'s linear layers (MatMul, Attention) into ``dst``.

    Weights int8 (per output channel when ``per_channel``), activations uint8 chosen per batch.
    ``keep_fp32``: node names left wholly in float32 (default :func:`sensitive_nodes`: none).
    ``outlier_ratio``: the FFN MatMuls' input channels whose peak (over random-id sequences)
    exceeds this many times the median channel's stay float32
    (:func:`bertkit.inference.onnx_outliers.split_outlier_channels`); None turns this off.
    ``dst`` is written under a temp name beside it and renamed when complete.

    Measured on all-MiniLM-L6-v2 through the feature-extraction pipeline at the CPU default of
    2,048 padded tokens per batch: worst mean-pooled embedding cosine to fp32 over 1,000
    Wikipedia sentences / 1,281 Rotten Tomatoes dev snippets (texts below 0.99), and fp32 ONNX
    time / int8 time on 512 of those sentences (2 threads, medians of 7 interleaved rounds in
    one process on a busy shared 2-core machine: indicative only)::

        recipe                                  Wikipedia        RT dev          fp32/int8
        everything int8                         0.976 (13)       0.978 (176)     1.66x
        fc2 of layers 1-2 in fp32 (before)      0.9899 (1)       0.986 (24)      1.49x
        every fc2 in fp32                       0.993 (0)        0.988 (4)
        outlier channels of fc2 only, ratio 4   0.991 (0)        0.988 (7)
        outlier channels of fc1 only, ratio 4   0.989 (1)        0.983 (32)
        outlier channels of fc1+fc2, ratio 8    0.995 (0)        0.990 (0)
        outlier channels of fc1+fc2, ratio 6    0.996 (0)        0.991 (0)
        outlier channels of fc1+fc2, ratio 4    0.996 (0)        0.993 (0)       1.33x
        smoothing (x/s, s*W) of fc1+fc2, c=4    0.992 (0)        0.991 (0)       1.61x

    Any one MatMul (of 24) kept in float32 with the rest int8 stays below 0.99 on RT (best: the
    first layer's fc2, 0.980): the error is spread over layers, but comes from a few channels
    (MiniLM: channel 99 of every fc1 input peaks at ~28 against a median channel of ~2; one
    GELU channel per fc2 input at 14-25). The default, ratio 4, splits 1-5 channels per MatMul
    and holds 0.9952/0.9912 (Wikipedia/RT) at 16,384-token batches and 0.9959/0.9930 at 512;
    RT dev accuracy of a MiniLM fine-tuned on 2,000 RT snippets: fp32 79.47%, int8 79.78%
    (+0.31 points, 8 labels flipped; the fc2 recipe +0.70, 21 flipped). Its cost is the masks,
    the side MatMuls and the adds (~11% of int8 time against the fc2 recipe).
    Smoothing (dividing the outlier channels by s before quantization, multiplying the weight
    rows by s; c: the peak / median the channels are brought down to) is nearly free but holds
    less: 0.9904 on RT at 16,384 tokens; c=3 0.9905, c=6 0.987 at 2,048.
    """
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    exclude = sensitive_nodes(src) if keep_fp32 is None else list(keep_fp32)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.") as tmp:
        fp32 = Path(src)
        split = [n for n in ffn_nodes(src) if n not in exclude]
        if outlier_ratio is not None and split:
            fp32 = Path(tmp) / "split.onnx"
            exclude += split_outlier_channels(src, fp32, split, outlier_ratio)
        out = Path(tmp) / "int8.onnx"
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8,
                         per_channel=per_channel, op_types_to_quantize=["MatMul", "Attention"],
                         nodes_to_exclude=exclude,
                         extra_options={"MatMulConstBOnly": True,
                                        # onnx's shape inference stops at contrib ops
                                        "DefaultTensorType": 1})  # TensorProto.FLOAT
        os.replace(out, dst)
    logger.info("quantized %s to int8 (kept in float32: %s) -> %s", src, exclude or "none", dst)
    return dst
