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
    """A key pattern with ``{i}`` (a layer index) and ``{p}`` (weight|bias) as a regex."""
    rx = re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
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


BERT = WeightMap(
    model_type="bert",
    prefix="bert.",
    rules=(
        ("embeddings.word.weight", ("embeddings.word_embeddings.weight",)),
        ("embeddings.position.weight", ("embeddings.position_embeddings.weight",)),
        ("embeddings.token_type.weight", ("embeddings.token_type_embeddings.weight",)),
        ("embeddings.norm.{p}", ("embeddings.LayerNorm.{p}",)),
        ("layers.{i}.attn.qkv.{p}", tuple(f"encoder.layer.{{i}}.attention.self.{n}.{{p}}"
                                          for n in ("query", "key", "value"))),
        ("layers.{i}.attn.out.{p}", ("encoder.layer.{i}.attention.output.dense.{p}",)),
        ("layers.{i}.attn_norm.{p}", ("encoder.layer.{i}.attention.output.LayerNorm.{p}",)),
        ("layers.{i}.ffn.fc1.{p}", ("encoder.layer.{i}.intermediate.dense.{p}",)),
        ("layers.{i}.ffn.fc2.{p}", ("encoder.layer.{i}.output.dense.{p}",)),
        ("layers.{i}.ffn_norm.{p}", ("encoder.layer.{i}.output.LayerNorm.{p}",)),
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

WEIGHT_MAPS: dict[str, WeightMap] = {m.model_type: m for m in (BERT,)}


def weight_map(model_type: str) -> WeightMap:
    """The map of ``model_type`` (a config's ``model_type``)."""
    try:
        return WEIGHT_MAPS[model_type]
    except KeyError:
        raise KeyError(f"no weight map for model_type {model_type!r}; known: "
                       f"{', '.join(WEIGHT_MAPS)}") from None
