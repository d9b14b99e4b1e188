"""One declarative weight map per model family: our parameter names <-> Hugging Face's.

Our module names differ from HF's (one fused ``attn.qkv`` instead of query/key/value, for one), so
each family's mapping lives here as data, and nowhere in model code. Each of our keys maps to one
HF key, or to several (the fused q/k/v projection, concatenated along the output dim). The map is
chosen by the config's ``model_type``.

    >>> BERT.hf_names("layers.3.attn.qkv.bias")[1]
    'encoder.layer.3.attention.self.key.bias'
    >>> BERT.normalise("bert.encoder.layer.0.output.LayerNorm.gamma")
    'encoder.layer.0.output.LayerNorm.weight'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

Rule = tuple[str, tuple[str, ...]]


def _compile(pattern: str) -> re.Pattern[str]:
    """A key pattern with ``{i}``, ``{j}`` (indexes) and ``{p}`` (weight|bias) as a regex."""
    rx = (re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
          .replace(r"\{p\}", r"(?P<p>weight|bias)"))
    return re.compile(f"^{rx}$")


@dataclass(frozen=True)
class WeightMap:
    """How one family's parameters are named in Hugging Face checkpoints."""

    model_type: str
    prefix: str                       # HF's base-model prefix in models with heads ("bert.")
    rules: tuple[Rule, ...]           # (our key pattern, HF key pattern(s))
    ignorable: re.Pattern[str]        # HF keys no bertkit weight needs (tied copies, buffers)
    heads: tuple[str, ...]            # our key prefixes that are task heads (may start fresh)
    top_level: tuple[str, ...]        # our heads that sit beside the base model in HF names
    renames: tuple[tuple[str, str], ...] = field(default=())  # legacy HF suffix -> current

    @cached_property
    def _ours(self) -> list[tuple[re.Pattern[str], tuple[str, ...]]]:
        return [(_compile(ours), hf) for ours, hf in self.rules]

    @cached_property
    def _theirs(self) -> list[re.Pattern[str]]:
        return [_compile(p) for _, hf in self.rules for p in hf]

    def hf_names(self, our_key: str) -> tuple[str, ...]:
        """The HF key(s), without the base prefix, that hold our parameter ``our_key``."""
        key = our_key.removeprefix(self.prefix)
        for rx, targets in self._ours:
            m = rx.match(key)
            if m:
                return tuple(t.format(**m.groupdict()) for t in targets)
        raise KeyError(f"no Hugging Face name for bertkit {self.model_type} parameter {our_key!r}")

    def normalise(self, hf_key: str) -> str:
        """Strip the base prefix and apply the legacy renames (Google-era gamma/beta)."""
        key = hf_key.removeprefix(self.prefix)
        for old, new in self.renames:
            if key.endswith(old):
                key = key[: -len(old)] + new
        return key

    def knows(self, hf_key: str) -> bool:
        """True when ``hf_key`` (any prefix or legacy form) is a weight some model of the family
        has, or one it may ignore."""
        key = self.normalise(hf_key)
        return bool(self.ignorable.search(key)) or any(rx.match(key) for rx in self._theirs)

    def is_head(self, our_key: str) -> bool:
        return our_key.startswith(self.heads)


def _encoder(layer: str, names: dict[str, str]) -> tuple[Rule, ...]:
    """One encoder layer's rules: ``layer`` is the HF path of layer {i}; ``names`` the HF names of
    q, k, v, out, attn_norm, fc1, fc2, ffn_norm."""
    ours = {"attn.out": "out", "attn_norm": "attn_norm", "ffn.fc1": "fc1", "ffn.fc2": "fc2",
            "ffn_norm": "ffn_norm"}
    qkv = tuple(f"{layer}.{names[n]}.{{p}}" for n in ("q", "k", "v"))
    our_layer = "groups.{i}.{j}" if "{j}" in layer else "layers.{i}"
    return ((f"{our_layer}.attn.qkv.{{p}}", qkv),
            *((f"{our_layer}.{k}.{{p}}", (f"{layer}.{names[v]}.{{p}}",)) for k, v in ours.items()))


_BERT_LAYER = {"q": "attention.self.query", "k": "attention.self.key",
               "v": "attention.self.value", "out": "attention.output.dense",
               "attn_norm": "attention.output.LayerNorm", "fc1": "intermediate.dense",
               "fc2": "output.dense", "ffn_norm": "output.LayerNorm"}

BERT = WeightMap(
    model_type="bert",
    prefix="bert.",
    rules=(
        ("embeddings.word.weight", ("embeddings.word_embeddings.weight",)),
        ("embeddings.position.weight", ("embeddings.position_embeddings.weight",)),
        ("embeddings.token_type.weight", ("embeddings.token_type_embeddings.weight",)),
        ("embeddings.norm.{p}", ("embeddings.LayerNorm.{p}",)),
        *_encoder("encoder.layer.{i}", _BERT_LAYER),
        ("pooler.dense.{p}", ("pooler.dense.{p}",)),
        ("mlm.transform.{p}", ("cls.predictions.transform.dense.{p}",)),
        ("mlm.norm.{p}", ("cls.predictions.transform.LayerNorm.{p}",)),
        ("mlm.bias", ("cls.predictions.bias",)),
        ("nsp.{p}", ("cls.seq_relationship.{p}",)),
        ("classifier.{p}", ("classifier.{p}",)),
        ("qa_outputs.{p}", ("qa_outputs.{p}",)),
    ),
    ignorable=re.compile(r"(^|\.)position_ids$|^cls\.predictions\.decoder\.(weight|bias)$"),
    heads=("pooler.", "bert.pooler.", "mlm.", "nsp.", "classifier.", "qa_outputs."),
    top_level=("mlm.", "nsp.", "classifier.", "qa_outputs."),
    renames=((".gamma", ".weight"), (".beta", ".bias")),
)


ROBERTA = WeightMap(
    model_type="roberta",
    prefix="roberta.",
    rules=(
        ("embeddings.word.weight", ("embeddings.word_embeddings.weight",)),
        ("embeddings.position.weight", ("embeddings.position_embeddings.weight",)),
        ("embeddings.token_type.weight", ("embeddings.token_type_embeddings.weight",)),
        ("embeddings.norm.{p}", ("embeddings.LayerNorm.{p}",)),
        *_encoder("encoder.layer.{i}", _BERT_LAYER),
        ("pooler.dense.{p}", ("pooler.dense.{p}",)),
        ("mlm.transform.{p}", ("lm_head.dense.{p}",)),
        ("mlm.norm.{p}", ("lm_head.layer_norm.{p}",)),
        ("mlm.bias", ("lm_head.bias",)),
        ("classifier.dense.{p}", ("classifier.dense.{p}",)),
        ("classifier.out_proj.{p}", ("classifier.out_proj.{p}",)),
        ("classifier.{p}", ("classifier.{p}",)),
        ("qa_outputs.{p}", ("qa_outputs.{p}",)),
    ),
    ignorable=re.compile(r"(^|\.)(position_ids|token_type_ids)$|^lm_head\.decoder\.(weight|bias)$"),
    heads=("pooler.", "roberta.pooler.", "mlm.", "classifier.", "qa_outputs."),
    top_level=("mlm.", "classifier.", "qa_outputs."),
)

DISTILBERT = WeightMap(
    model_type="distilbert",
    prefix="distilbert.",
    rules=(
        ("embeddings.word.weight", ("embeddings.word_embeddings.weight",)),
        ("embeddings.position.weight", ("embeddings.position_embeddings.weight",)),
        ("embeddings.norm.{p}", ("embeddings.LayerNorm.{p}",)),
        *_encoder("transformer.layer.{i}", {
            "q": "attention.q_lin", "k": "attention.k_lin", "v": "attention.v_lin",
            "out": "attention.out_lin", "attn_norm": "sa_layer_norm", "fc1": "ffn.lin1",
            "fc2": "ffn.lin2", "ffn_norm": "output_layer_norm"}),
        ("mlm.transform.{p}", ("vocab_transform.{p}",)),
        ("mlm.norm.{p}", ("vocab_layer_norm.{p}",)),
        ("mlm.bias", ("vocab_projector.bias",)),
        ("pre_classifier.{p}", ("pre_classifier.{p}",)),
        ("classifier.{p}", ("classifier.{p}",)),
        ("qa_outputs.{p}", ("qa_outputs.{p}",)),
    ),
    ignorable=re.compile(r"(^|\.)position_ids$|^vocab_projector\.weight$"),
    heads=("mlm.", "pre_classifier.", "classifier.", "qa_outputs."),
    top_level=("mlm.", "pre_classifier.", "classifier.", "qa_outputs."),
)

ALBERT = WeightMap(
    model_type="albert",
    prefix="albert.",
    rules=(
        ("embeddings.word.weight", ("embeddings.word_embeddings.weight",)),
        ("embeddings.position.weight", ("embeddings.position_embeddings.weight",)),
        ("embeddings.token_type.weight", ("embeddings.token_type_embeddings.weight",)),
        ("embeddings.norm.{p}", ("embeddings.LayerNorm.{p}",)),
        ("embed_proj.{p}", ("encoder.embedding_hidden_mapping_in.{p}",)),
        *_encoder("encoder.albert_layer_groups.{i}.albert_layers.{j}", {
            "q": "attention.query", "k": "attention.key", "v": "attention.value",
            "out": "attention.dense", "attn_norm": "attention.LayerNorm", "fc1": "ffn",
            "fc2": "ffn_output", "ffn_norm": "full_layer_layer_norm"}),
        ("pooler.dense.{p}", ("pooler.{p}",)),
        ("mlm.transform.{p}", ("predictions.dense.{p}",)),
        ("mlm.norm.{p}", ("predictions.LayerNorm.{p}",)),
        ("mlm.bias", ("predictions.bias",)),
        ("sop.{p}", ("sop_classifier.classifier.{p}",)),
        ("classifier.{p}", ("classifier.{p}",)),
        ("qa_outputs.{p}", ("qa_outputs.{p}",)),
    ),
    ignorable=re.compile(r"(^|\.)(position_ids|token_type_ids)$|^predictions\.decoder\.(weight|bias)$"),
    heads=("pooler.", "albert.pooler.", "mlm.", "sop.", "classifier.", "qa_outputs."),
    top_level=("mlm.", "sop.", "classifier.", "qa_outputs."),
)

WEIGHT_MAPS: dict[str, WeightMap] = {m.model_type: m for m in (BERT, ROBERTA, DISTILBERT, ALBERT)}


def weight_map(model_type: str) -> WeightMap:
    """The map of ``model_type`` (a config's ``model_type``)."""
    try:
        return WEIGHT_MAPS[model_type]
    except KeyError:
        raise KeyError(f"no weight map for model_type {model_type!r}; known: "
                       f"{', '.join(WEIGHT_MAPS)}") from None
