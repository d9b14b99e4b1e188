"""Export a bertkit model directory to ONNX: every family, every single-sequence head.

``export_onnx(model_dir, out_path)`` loads the model its ``config.json`` names (``architectures``
and ``model_type``), traces it with ``torch.onnx.export`` with dynamic batch and sequence axes,
and writes a graph whose inputs and outputs carry Hugging Face's names:

    inputs   input_ids, attention_mask (B, T) int64 [, token_type_ids (B, T) for families with them]
    outputs  base encoder:        last_hidden_state (B, T, H) [, pooler_output (B, H)]
             masked LM:           logits (B, T, V)
             sequence classifier: logits (B, C);  token classifier: logits (B, T, C)
             question answering:  start_logits, end_logits (B, T)

Each self-attention is emitted as one onnxruntime ``com.microsoft::Attention`` node (bertkit's
fused q/k/v projection is exactly that op's weight layout), so the graph needs no pattern matching
to get fused attention; onnxruntime's transformer optimizer then fuses the rest (skip + LayerNorm,
bias + GELU). ``fused_attention=False`` writes plain ONNX ops that any runtime reads.

The file is written beside ``out_path`` under a temp name and renamed into place when complete,
so a failed export leaves nothing behind.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.errors import BertkitError

logger = logging.getLogger(__name__)

__all__ = ["ExportError", "OPSET", "export_onnx", "load_for_export", "output_names_of"]

OPSET = 17
_MODEL_MODULES = ("bert", "roberta", "distilbert", "albert", "heads")


class ExportError(BertkitError, ValueError):
    """A model directory that cannot be exported (no weights, a multi-input head, ...)."""


# -- which class, which outputs ---------------------------------------------------------------

def _architecture_classes() -> dict[str, type[nn.Module]]:
    """{HF architecture name: bertkit class} over every family module (read when called)."""
    found: dict[str, type[nn.Module]] = {}
    for name in _MODEL_MODULES:
        mod = importlib.import_module(f"bertkit.models.{name}")
        for obj in vars(mod).values():
            arch = getattr(obj, "hf_architecture", None)
            if isinstance(obj, type) and issubclass(obj, nn.Module) and isinstance(arch, str):
                if getattr(obj, "__module__", "") == mod.__name__:
                    found.setdefault(arch, obj)
    return found


def _has_weights(model_dir: Path) -> bool:
    return any((model_dir / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")) \
        or any(model_dir.glob("model*.safetensors")) or any(model_dir.glob("*.index"))


def load_for_export(model_dir: str | Path, head: str | None = None) -> nn.Module:
    """The model ``model_dir``'s config names, in eval mode (base encoder if none is named).

    ``head``: None for the config's ``architectures``; ``"base"`` for the bare encoder; another
    head name as :func:`bertkit.inference.torch_backend.head_class` knows it.

    Raises :class:`ExportError` naming the directory for a missing directory, no config.json or
    no weights.
    """
    from bertkit.config import AutoConfig

    d = Path(model_dir)
    if not d.is_dir():
        raise ExportError(f"{d}: no such model directory")
    if not (d / "config.json").is_file() and not (d / "bert_config.json").is_file():
        raise ExportError(f"{d}: no config.json (not a model directory in Hugging Face layout)")
    if not _has_weights(d):
        raise ExportError(f"{d}: no weights (model.safetensors or pytorch_model.bin) to export")
    config = AutoConfig.from_pretrained(d)
    from bertkit.models.auto import AutoModel

    if head == "base":
        return AutoModel.from_pretrained(d).eval()
    if head is not None:
        from bertkit.inference.torch_backend import head_class

        return head_class(head, config.model_type).from_pretrained(d).eval()  # type: ignore[attr-defined]
    names = list(config.extra.get("architectures") or [])
    classes = _architecture_classes()
    for name in names:
        cls = classes.get(name)
        if cls is not None and getattr(cls, "config_class", None) is type(config):
            return cls.from_pretrained(d).eval()  # type: ignore[attr-defined]
    if names:
        logger.info("%s: no bertkit class for %s; exporting the base encoder", d, names)
    return AutoModel.from_pretrained(d).eval()


def _named_outputs(out: Any) -> dict[str, Tensor]:
    """A model's forward result -> {HF output name: tensor}."""
    if isinstance(out, Tensor):
        return {"logits": out}
    if isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out):
        return {"start_logits": out[0], "end_logits": out[1]}
    if getattr(out, "mlm_logits", None) is not None:
        return {"logits": out.mlm_logits}
    if getattr(out, "last_hidden_state", None) is not None:
        named = {"last_hidden_state": out.last_hidden_state}
        if getattr(out, "pooler_output", None) is not None:
            named["pooler_output"] = out.pooler_output
        return named
    raise ExportError(f"cannot name the outputs of {type(out).__name__} for ONNX")


def input_names_of(model: nn.Module) -> tuple[str, ...]:
    """``input_ids``, ``attention_mask`` and ``token_type_ids`` where the family has them."""
    has_types = getattr(model.config, "has_token_types", True)
    return ("input_ids", "attention_mask") + (("token_type_ids",) if has_types else ())


class _Named(nn.Module):
    """Positional (B, T) inputs -> the model's outputs as a tuple in ``output_names`` order."""

    def __init__(self, model: nn.Module, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        kw = dict(zip(self.input_names, inputs, strict=True))
        return tuple(_named_outputs(self.model(**kw)).values())


def output_names_of(model: nn.Module, example: dict[str, Tensor]) -> tuple[str, ...]:
    """The HF names of ``model``'s outputs on ``example``."""
    with torch.inference_mode():
        return tuple(_named_outputs(model(**example)))


# -- fused attention --------------------------------------------------------------------------

class _OrtAttention(torch.autograd.Function):
    """Attention computed by torch while tracing, emitted as ``com.microsoft::Attention``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, mask: Tensor,  # noqa: ARG004
                n_heads: int) -> Tensor:
        """x (B, T, H), weight (3H, H), bias (3H,), mask (B, 1, 1, T) bool -> context (B, T, H)."""
        B, T, H = x.shape
        q, k, v = (F.linear(x, weight, bias)
                   .view(B, T, 3, n_heads, H // n_heads)          # (B, T, 3, N, D)
                   .permute(2, 0, 3, 1, 4).unbind(0))              # 3 x (B, N, T, D)
        ctx_ = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return ctx_.transpose(1, 2).reshape(B, T, H)               # (B, T, H)

    @staticmethod
    def symbolic(g: Any, x: Any, weight: Any, bias: Any, mask: Any, n_heads: int) -> Any:
        w = g.op("Transpose", weight, perm_i=[1, 0])                            # (H, 3H)
        axes = g.op("Constant", value_t=torch.tensor([1, 2], dtype=torch.long))
        m = g.op("Cast", g.op("Squeeze", mask, axes), to_i=6)                  # (B, T) int32
        out = g.op("com.microsoft::Attention", x, w, bias, m, num_heads_i=n_heads)
        out.setType(x.type())
        return out


def _fused_attention_forward(self: nn.Module, x: Tensor, mask: Tensor | None,
                             need_probs: bool = False) -> tuple[Tensor, None]:
    """``SelfAttention.forward`` for export: (B, T, H) -> (B, T, H) through one Attention node."""
    if mask is None:  # the example batch always has padding, so this is never traced
        mask = torch.ones(x.shape[0], 1, 1, x.shape[1], dtype=torch.bool)
    ctx = _OrtAttention.apply(x, self.qkv.weight, self.qkv.bias, mask, self.n_heads)
    return self.out(ctx), None


@contextmanager
def _fused_attention(model: nn.Module) -> Iterator[int]:
    """Route every bertkit ``SelfAttention`` in ``model`` through the fused op; yields the count."""
    from bertkit.models.bert import SelfAttention

    patched = [m for m in model.modules() if isinstance(m, SelfAttention)]
    for m in patched:
        m.forward = types.MethodType(_fused_attention_forward, m)  # type: ignore[method-assign]
    try:
        yield len(patched)
    finally:
        for m in patched:
            del m.forward


# -- export -----------------------------------------------------------------------------------

def _takes_choices(model: nn.Module) -> bool:
    """A multiple-choice head: (B, K, T) inputs, (B, K) logits."""
    from bertkit.models.heads import ChoiceScorer

    return isinstance(model, ChoiceScorer)


def example_inputs(model: nn.Module, batch: int = 2, length: int = 8) -> dict[str, Tensor]:
    """A padded (B, T) example batch: real-looking ids, the last row padded by a third; for a
    multiple-choice head (B, K=2, T), the same rows as choices."""
    if _takes_choices(model):
        flat = _example_rows(model, batch * 2, length)
        return {k: v.reshape(batch, 2, length) for k, v in flat.items()}
    return _example_rows(model, batch, length)


def _example_rows(model: nn.Module, batch: int, length: int) -> dict[str, Tensor]:
    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, cfg.vocab_size, (batch, length), generator=gen)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, length - length // 3:] = 0
    ids = ids.masked_fill(mask == 0, cfg.pad_token_id)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names_of(model):
        types_ = torch.zeros_like(ids)
        if cfg.type_vocab_size > 1:
            types_[:, length // 2:] = 1
        inputs["token_type_ids"] = types_ * mask
    return inputs


def _dynamic_axes(inputs: tuple[str, ...], outputs: dict[str, Tensor], choices: bool = False
                  ) -> dict[str, dict]:
    """Batch on axis 0 everywhere; sequence on axis 1 of inputs and per-token outputs. With
    ``choices``: inputs (batch, choices, sequence), logits (batch, choices)."""
    if choices:
        return {**{n: {0: "batch", 1: "choices", 2: "sequence"} for n in inputs},
                **{n: {0: "batch", 1: "choices"} for n in outputs}}
    axes: dict[str, dict] = {n: {0: "batch", 1: "sequence"} for n in inputs}
    for name, t in outputs.items():
        per_token = name in ("last_hidden_state", "start_logits", "end_logits") or t.dim() == 3
        axes[name] = {0: "batch", 1: "sequence"} if per_token else {0: "batch"}
    return axes


def _trace(model: nn.Module, path: Path, fused_attention: bool) -> tuple[str, ...]:
    """torch.onnx.export ``model`` to ``path``; returns the output names."""
    inputs = example_inputs(model)
    names = input_names_of(model)
    with torch.inference_mode():
        outputs = _named_outputs(model(**inputs))
    wrapper = _Named(model, names).eval()
    with warnings.catch_warnings(), _fused_attention_or_not(model, fused_attention):
        warnings.simplefilter("ignore")  # tracer warnings about Python-level shape checks
        torch.onnx.export(
            wrapper, tuple(inputs[n] for n in names), str(path), dynamo=False,
            input_names=list(names), output_names=list(outputs),
            dynamic_axes=_dynamic_axes(names, outputs, _takes_choices(model)),
            opset_version=OPSET,
            do_constant_folding=True,
            custom_opsets={"com.microsoft": 1} if fused_attention else None)
    model.eval()  # the exporter restores the wrapper's (training) mode on the way out
    return tuple(outputs)


@contextmanager
def _fused_attention_or_not(model: nn.Module, fused: bool) -> Iterator[None]:
    if not fused:
        yield
        return
    with _fused_attention(model) as n:
        logger.debug("exporting %d attention modules as com.microsoft::Attention", n)
        yield


def optimize_onnx(src: Path, dst: Path, model: nn.Module) -> dict[str, int]:
    """onnxruntime's transformer optimizer (model_type bert) on ``src`` -> ``dst``.

    Returns the fused-operator counts (SkipLayerNormalization, BiasGelu, Attention, ...)."""
    from onnxruntime.transformers import optimizer

    cfg = model.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = optimizer.optimize_model(str(src), model_type="bert", use_gpu=False,
                                       num_heads=cfg.num_attention_heads,
                                       hidden_size=cfg.hidden_size, opt_level=0)
    opt.save_model_to_file(str(dst))
    return {k: v for k, v in opt.get_fused_operator_statistics().items() if v}


def export_onnx(model_dir: str | Path, out_path: str | Path, *, optimize: bool = True,
                fused_attention: bool = True, quantize: bool = False,
                head: str | None = None) -> Path:
    """Write ``model_dir``'s model as an ONNX graph to ``out_path`` (atomically).

    ``optimize`` runs onnxruntime's transformer optimizer (fused skip-LayerNorm and GELU);
    ``fused_attention`` emits onnxruntime's Attention op (False: plain ONNX only, and no
    optimizer); ``quantize`` then applies dynamic int8 quantization to the linear layers
    (:func:`bertkit.inference.onnx.quantize_onnx`); ``head`` as in :func:`load_for_export`.
    Returns ``out_path``.
    """
    out = Path(out_path)
    if out.is_dir():
        raise ExportError(f"--out {out} is a directory; give a file name such as model.onnx")
    model = load_for_export(model_dir, head)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        raw = Path(tmp) / "raw.onnx"
        names = _trace(model, raw, fused_attention)
        final = raw
        if optimize and fused_attention:
            final = Path(tmp) / "opt.onnx"
            fused = optimize_onnx(raw, final, model)
            logger.info("onnxruntime optimizer fused %s", fused or "nothing")
        if quantize:
            from bertkit.inference.onnx import quantize_onnx

            q = Path(tmp) / "int8.onnx"
            quantize_onnx(final, q)
            final = q
        os.replace(final, out)
    logger.info("exported %s (%s; outputs %s) to %s", model_dir, type(model).__name__,
                ", ".join(names), out)
    return out
