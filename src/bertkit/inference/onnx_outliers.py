"""Outlier input channels of linear layers kept in float32 before int8 quantization.

Notation: B batch, T tokens, C a MatMul's input channels, N its output channels, S the outlier
channels (a handful of C).

onnxruntime's dynamic int8 quantization gives each MatMul input ONE uint8 scale per batch. In
BERT-like models a few input channels hold values 5-15x larger than the rest (all-MiniLM-L6-v2:
channel 99 of every FFN input reaches ~28 where the median channel stays near 2, and one GELU
channel per layer ~14-25 at the FFN output projection), so that scale spends most of its 256
steps on them and the other channels of every text in the batch lose precision.
:func:`split_outlier_channels` rewrites ``Y = X W`` as

    Y = (X * keep) W  +  X[..., S] W[S, :]

where ``keep`` zeroes S: the first MatMul is then quantized without the outliers, the second is a
small (B, T, |S|) x (|S|, N) float32 MatMul. The outlier channels are found without data
(:func:`calibrate_channels`): the float32 graph runs on sequences of random vocabulary ids, which
light up the same channels as real text does (they are properties of the weights).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["OUTLIER_RATIO", "calibrate_channels", "outlier_channels", "split_outlier_channels"]

OUTLIER_RATIO = 4.0  # a channel whose largest |x| exceeds this many times the median channel's


def _vocab_size(graph) -> int:  # noqa: ANN001
    """Rows of the word-embedding table: the longest 2-D initializer that a Gather reads."""
    dims = {i.name: list(i.dims) for i in graph.initializer}
    rows = [dims[n.input[0]][0] for n in graph.node
            if n.op_type == "Gather" and len(dims.get(n.input[0], ())) == 2]
    if not rows:
        raise ValueError("no embedding table (a Gather on a 2-D initializer) in the graph")
    return max(rows)


def _random_feed(inputs: Sequence, vocab: int, batch: int, length: int,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Feeds of random ids above the first 1,000 (special, unused), all attended, type 0:
    (batch, length), or (batch, 1, length) for a graph of (B, K, T) inputs."""
    low = 1000 if vocab > 2000 else 0
    shape = {i.name: (batch, *[1] * (len(i.shape) - 2), length) for i in inputs}
    feed = {}
    for name, sh in shape.items():
        if name == "input_ids":
            feed[name] = rng.integers(low, vocab, sh, dtype=np.int64)
        elif name == "attention_mask":
            feed[name] = np.ones(sh, np.int64)
        else:  # token_type_ids
            feed[name] = np.zeros(sh, np.int64)
    return feed


def calibrate_channels(path: str | Path, tensors: Sequence[str], batches: int = 16,
                       batch: int = 16, length: int = 64, seed: int = 0
                       ) -> dict[str, np.ndarray]:
    """Largest |x| per channel, (C,), of each named float tensor of ``path``'s graph over
    ``batches`` x ``batch`` random-id sequences of ``length`` tokens."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    vocab = _vocab_size(model.graph)
    known = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in known:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    peak: dict[str, np.ndarray] = {}
    for _ in range(batches):
        outs = sess.run(list(tensors), _random_feed(sess.get_inputs(), vocab, batch, length, rng))
        for name, x in zip(tensors, outs, strict=True):
            a = np.abs(x.reshape(-1, x.shape[-1])).max(0)                   # (C,)
            peak[name] = a if name not in peak else np.maximum(peak[name], a)
    return peak


def outlier_channels(peak: np.ndarray, ratio: float = OUTLIER_RATIO) -> np.ndarray:
    """Indices of channels whose peak exceeds ``ratio`` x the median channel's peak."""
    return np.flatnonzero(peak > ratio * np.median(peak)).astype(np.int64)


def split_outlier_channels(src: str | Path, dst: str | Path, nodes: Sequence[str],
                           ratio: float = OUTLIER_RATIO,
                           peaks: Mapping[str, np.ndarray] | None = None) -> list[str]:
    """Rewrite each named MatMul (weights an initializer) of ``src`` whose input has outlier
    channels as a masked MatMul plus a float32 MatMul on those channels; save to ``dst``.
    ``peaks``: {input tensor name: (C,) largest |x|} (default :func:`calibrate_channels`).
    Returns the names of the added float32 MatMuls (for the quantizer to leave alone)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    by_name = {n.name: n for n in g.node}
    missing = [n for n in nodes if n not in by_name]
    if missing:
        raise ValueError(f"{src}: no nodes named {missing}")
    if peaks is None:
        peaks = calibrate_channels(src, [by_name[n].input[0] for n in nodes])
    added: list[str] = []
    new_nodes = []
    for node in list(g.node):
        new_nodes.append(node)
        if node.name not in nodes:
            continue
        x, w_name = node.input[0], node.input[1]
        w = numpy_helper.to_array(inits[w_name])                                  # (C, N)
        s = outlier_channels(peaks[x], ratio)
        if len(s) == 0:
            continue
        keep = np.ones(w.shape[0], np.float32)
        keep[s] = 0.0
        p = f"{node.name}/outliers"
        g.initializer.extend([numpy_helper.from_array(keep, f"{p}/keep"),
                              numpy_helper.from_array(s, f"{p}/index"),
                              numpy_helper.from_array(np.ascontiguousarray(w[s]), f"{p}/W")])
        y = node.output[0]
        node.input[0], node.output[0] = f"{p}/masked", f"{p}/main"
        new_nodes[-1:] = [
            helper.make_node("Mul", [x, f"{p}/keep"], [f"{p}/masked"], name=f"{p}/Mul"),
            node,
            helper.make_node("Gather", [x, f"{p}/index"], [f"{p}/x"], name=f"{p}/Gather",
                             axis=-1),
            helper.make_node("MatMul", [f"{p}/x", f"{p}/W"], [f"{p}/side"],
                             name=f"{p}/MatMul"),
            helper.make_node("Add", [f"{p}/main", f"{p}/side"], [y], name=f"{p}/Add")]
        added.append(f"{p}/MatMul")
        logger.info("%s: %d outlier input channels kept in float32: %s", node.name, len(s),
                    s.tolist())
    del g.node[:]
    g.node.extend(new_nodes)
    onnx.save(model, str(dst))
    return added
