"""BertConfig: the model's hyper-parameters with Google's and Hugging Face's key names.

Google's ``bert_config.json`` and HF's ``config.json`` share the key names below; HF adds
``layer_norm_eps``, ``pad_token_id`` and bookkeeping keys (``architectures``, ``model_type``, ...),
which we keep in ``extra`` so a saved config round-trips.

    >>> BertConfig.from_preset("L-4_H-256").num_attention_heads
    4
    >>> BertConfig.from_preset("mini") == BertConfig.from_preset("L-4_H-256")
    True
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bertkit.errors import BertkitError
from bertkit.fileio import atomic_write_text

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh")


class ConfigError(BertkitError, ValueError):
    """A configuration value is invalid; the message names the field (and file)."""


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder (defaults: BERT-Base, uncased)."""

    model_type: ClassVar[str] = "bert"  # HF's family name: picks the weight map and classes
    has_token_types: ClassVar[bool] = True  # DistilBERT has no token-type embeddings
    hf_keys: ClassVar[dict[str, str]] = {}  # HF config key -> our field, where they differ
    hf_omitted: ClassVar[tuple[str, ...]] = ()  # our fields the family's HF config does not have
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ---------------------------------------------------------------------------
    def validate(self, source: str = "BertConfig") -> None:
        """Raise ConfigError naming the bad field if the values cannot build a model."""
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{source}: {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"{source}: hidden_size ({self.hidden_size}) is not divisible by "
                f"num_attention_heads ({self.num_attention_heads})")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"{source}: hidden_act {self.hidden_act!r} is not one of {ACTIVATIONS}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"{source}: {name} must be in [0, 1), got {p!r}")
        if self.layer_norm_eps <= 0 or self.initializer_range <= 0:
            raise ConfigError(f"{source}: layer_norm_eps and initializer_range must be > 0")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"{source}: pad_token_id {self.pad_token_id} is outside the vocab")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # -- presets ------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> BertConfig:
        """A named preset: tiny/mini/small/medium/base/large or a compact model ``L-4_H-256``."""
        presets = cls.preset_table()
        if name not in presets:
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(presets)}")
        return cls(**{**presets[name], **overrides})

    @classmethod
    def preset_table(cls) -> dict[str, dict[str, Any]]:
        """{preset name: field values}; each family has its own."""
        return _presets()

    @classmethod
    def preset_names(cls) -> list[str]:
        return list(cls.preset_table())

    # -- json ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> BertConfig:
        """Build from a Google or HF dict; unknown keys are kept in ``extra``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ConfigError(f"{source}: model_type is {model_type!r}, not {cls.model_type!r}: "
                              f"a {model_type} checkpoint cannot load as {cls.__name__}")
        data = {cls.hf_keys.get(k, k): v for k, v in data.items()}
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        if "hidden_act" in kwargs and kwargs["hidden_act"] == "gelu_fast":
            kwargs["hidden_act"] = "gelu_new"
        for k, v in kwargs.items():
            if k != "hidden_act" and not isinstance(v, (int, float)):  # bool is an int
                raise ConfigError(f"{source}: {k} must be a number, got {v!r}")
        if kwargs.get("pad_token_id") is None:
            kwargs.pop("pad_token_id", None)
        cfg = cls.__new__(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            setattr(cfg, f.name, kwargs.get(f.name, getattr(defaults, f.name)))
        cfg.extra = extra
        cfg.validate(source)
        return cfg

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> BertConfig:
        """Read Google's ``bert_config.json`` or HF's ``config.json``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from e
        return cls.from_dict(data, source=str(path))

    def to_dict(self, architectures: list[str] | None = None) -> dict[str, Any]:
        """HF-style dict (a superset of Google's keys)."""
        out: dict[str, Any] = dict(self.extra)
        ours = {v: k for k, v in self.hf_keys.items()}
        out.update({ours.get(f.name, f.name): getattr(self, f.name)
                    for f in dataclasses.fields(self)
                    if f.name != "extra" and f.name not in self.hf_omitted})
        out["model_type"] = self.model_type
        if self.has_token_types:
            out.setdefault("position_embedding_type", "absolute")
        if architectures is not None:
            out["architectures"] = architectures
        return out

    def to_json_file(self, path: str | os.PathLike[str], architectures: list[str] | None = None
                     ) -> None:
        """Write the config as JSON (atomically)."""
        text = json.dumps(self.to_dict(architectures), indent=2, sort_keys=True) + "\n"
        atomic_write_text(path, text)

def _compact(layers: int, hidden: int) -> dict[str, int]:
    return {"num_hidden_layers": layers, "hidden_size": hidden,
            "num_attention_heads": hidden // 64, "intermediate_size": 4 * hidden}


def _presets() -> dict[str, dict[str, int]]:
    table = {f"L-{L}_H-{H}": _compact(L, H)
             for L in (2, 4, 6, 8, 10, 12) for H in (128, 256, 512, 768)}
    table.update({
        "tiny": _compact(2, 128), "mini": _compact(4, 256), "small": _compact(4, 512),
        "medium": _compact(8, 512), "base": _compact(12, 768),
        "large": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16,
                  "intermediate_size": 4096},
    })
    return table


# -- the BERT family ----------------------------------------------------------------------------

def _family_presets(prefix: str, sizes: dict[str, tuple[int, int, int]], **common: Any
                    ) -> dict[str, dict[str, Any]]:
    """{prefix-size: fields} from (layers, hidden, heads); the FFN is 4 x hidden."""
    return {f"{prefix}-{name}": {"num_hidden_layers": L, "hidden_size": H,
                                 "num_attention_heads": N, "intermediate_size": 4 * H, **common}
            for name, (L, H, N) in sizes.items()}


@dataclass
class RobertaConfig(BertConfig):
    """RoBERTa: BERT's encoder with positions counted from ``pad_token_id + 1``, one token type."""

    model_type: ClassVar[str] = "roberta"
    vocab_size: int = 50265
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2

    @classmethod
    def preset_table(cls) -> dict[str, dict[str, Any]]:
        return _family_presets("roberta", {"mini": (4, 256, 4), "base": (12, 768, 12),
                                           "large": (24, 1024, 16)})


@dataclass
class AlbertConfig(BertConfig):
    """ALBERT: factorised embeddings (E < H) and groups of layers whose parameters are shared."""

    model_type: ClassVar[str] = "albert"
    vocab_size: int = 30000
    embedding_size: int = 128
    num_hidden_groups: int = 1
    inner_group_num: int = 1
    hidden_act: str = "gelu_new"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    classifier_dropout_prob: float = 0.1
    bos_token_id: int = 2
    eos_token_id: int = 3

    def validate(self, source: str = "AlbertConfig") -> None:
        super().validate(source)
        for name in ("embedding_size", "num_hidden_groups", "inner_group_num"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{source}: {name} must be a positive integer, got {value!r}")
        if self.num_hidden_groups > self.num_hidden_layers:
            raise ConfigError(f"{source}: num_hidden_groups ({self.num_hidden_groups}) exceeds "
                              f"num_hidden_layers ({self.num_hidden_layers})")

    @classmethod
    def preset_table(cls) -> dict[str, dict[str, Any]]:
        table = _family_presets("albert", {"mini": (4, 256, 4)})
        table.update({f"{k}-v2": v for k, v in _family_presets(
            "albert", {"base": (12, 768, 12), "large": (24, 1024, 16)}).items()})
        return table


@dataclass
class DistilBertConfig(BertConfig):
    """DistilBERT: BERT's layers without token types or pooler; HF names its keys differently."""

    model_type: ClassVar[str] = "distilbert"
    has_token_types: ClassVar[bool] = False
    hf_keys: ClassVar[dict[str, str]] = {
        "dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
        "hidden_dim": "intermediate_size", "activation": "hidden_act",
        "dropout": "hidden_dropout_prob", "attention_dropout": "attention_probs_dropout_prob"}
    hf_omitted: ClassVar[tuple[str, ...]] = ("type_vocab_size", "layer_norm_eps")
    num_hidden_layers: int = 6
    type_vocab_size: int = 1            # unused: kept so the shared checks hold
    sinusoidal_pos_embds: bool = False
    qa_dropout: float = 0.1
    seq_classif_dropout: float = 0.2

    @classmethod
    def preset_table(cls) -> dict[str, dict[str, Any]]:
        return _family_presets("distilbert", {"mini": (4, 256, 4), "base": (6, 768, 12)})


CONFIG_CLASSES: dict[str, type[BertConfig]] = {
    c.model_type: c for c in (BertConfig, RobertaConfig, AlbertConfig, DistilBertConfig)}


def config_class(model_type: str, source: str = "config") -> type[BertConfig]:
    """The config class of a family, by HF's ``model_type``."""
    if model_type not in CONFIG_CLASSES:
        raise ConfigError(f"{source}: model_type {model_type!r} is not a family bertkit knows "
                          f"({', '.join(CONFIG_CLASSES)})")
    return CONFIG_CLASSES[model_type]


class AutoConfig:
    """The family's config from its ``model_type`` (Google's ``bert_config.json``: BERT)."""

    @staticmethod
    def from_dict(data: dict[str, Any], source: str = "config") -> BertConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        return config_class(data.get("model_type", "bert"), source).from_dict(data, source)

    @staticmethod
    def from_json_file(path: str | os.PathLike[str]) -> BertConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from e
        return AutoConfig.from_dict(data, str(path))

    @staticmethod
    def from_pretrained(path: str | os.PathLike[str]) -> BertConfig:
        """``config.json`` of a model directory (or ``bert_config.json`` of Google's layout)."""
        d = Path(path)
        name = "config.json" if (d / "config.json").is_file() or not (
            d / "bert_config.json").is_file() else "bert_config.json"
        return AutoConfig.from_json_file(d / name)

    @staticmethod
    def from_preset(name: str, **overrides: Any) -> BertConfig:
        """A preset of any family: ``mini``, ``roberta-mini``, ``albert-base-v2``, ..."""
        for cls in CONFIG_CLASSES.values():
            if name in cls.preset_table():
                return cls.from_preset(name, **overrides)
        names = [n for c in CONFIG_CLASSES.values() for n in c.preset_names()]
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(names)}")
