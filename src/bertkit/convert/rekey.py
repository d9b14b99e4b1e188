"""A BERT checkpoint re-keyed, losslessly, as a DistilBERT or a RoBERTa model.

RoBERTa and DistilBERT are BERT's network with other names, so BERT's weights can be written as
either family's Hugging Face checkpoint, computing the same function on single texts (token types
all 0, which is all DistilBERT and RoBERTa have). What changes besides the names:

DistilBERT (no token-type table)
    BERT adds ``token_type_embeddings[0]`` to every token of a single text; it is folded into the
    position table: ``position'[i] = position[i] + token_type[0]``, so ``word + position'`` equals
    BERT's ``word + type + position`` (up to float rounding, about 1e-7). The word embeddings stay
    as they are, because the MLM decoder is tied to them. The pooler and the NSP head have no place
    in DistilBERT and are dropped (logged). transformers' DistilBERT fixes LayerNorm eps at 1e-12
    and knows only gelu and relu: another eps or activation is refused.

RoBERTa (positions counted from ``pad_token_id + 1``)
    Token ``i`` of a RoBERTa input has position ``pad_token_id + 1 + i`` (padding has
    ``pad_token_id``), so the position table is shifted down by ``pad_token_id + 1`` rows, the
    rows before it zero (only padding reads row ``pad_token_id``), and ``max_position_embeddings``
    grows by ``pad_token_id + 1``. The one token-type row RoBERTa has is BERT's row 0. The pooler
    is kept in the base model (``RobertaModel``), the NSP head dropped. RoBERTa's MLM head is
    always gelu: a BERT with another ``hidden_act`` is refused. Inputs must be padded with
    ``pad_token_id`` (positions come from the ids), which BERT's tokenizer does.

The tokenizer is BERT's (``vocab.txt``): the re-keyed directory keeps it, so the model reads the
ids it was trained on.

    >>> rekey_directory(bert_dir, out_dir, "distilbert")        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from torch import Tensor, nn

from bertkit.config import AutoConfig, BertConfig, ConfigError, DistilBertConfig, RobertaConfig
from bertkit.convert.hf import find_weights, hf_to_ours, read_state_dict

logger = logging.getLogger(__name__)

__all__ = ["FAMILIES", "bert_config_as", "bert_state_as", "rekey_directory"]

FAMILIES = ("distilbert", "roberta")
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.json")
_BASE_KEYS = ("embeddings.", "layers.", "pooler.")


def bert_config_as(family: str, config: BertConfig) -> BertConfig:
    """BERT's ``config`` as ``family``'s config of the same network (see the module docstring).

    Raises ConfigError for a BERT the family cannot compute exactly.
    """
    fields = dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                  num_hidden_layers=config.num_hidden_layers,
                  num_attention_heads=config.num_attention_heads,
                  intermediate_size=config.intermediate_size, hidden_act=config.hidden_act,
                  hidden_dropout_prob=config.hidden_dropout_prob,
                  attention_probs_dropout_prob=config.attention_probs_dropout_prob,
                  initializer_range=config.initializer_range, pad_token_id=config.pad_token_id)
    if family == "distilbert":
        if config.layer_norm_eps != 1e-12 or config.hidden_act not in ("gelu", "relu"):
            raise ConfigError(f"a BERT with layer_norm_eps {config.layer_norm_eps} and hidden_act "
                              f"{config.hidden_act!r} has no exact DistilBERT (transformers' "
                              "DistilBERT: eps 1e-12, gelu or relu)")
        return DistilBertConfig(**fields, max_position_embeddings=config.max_position_embeddings)
    if family == "roberta":
        if config.hidden_act != "gelu":
            raise ConfigError(f"a BERT with hidden_act {config.hidden_act!r} has no exact RoBERTa "
                              "MLM head (RoBERTa's is always gelu)")
        return RobertaConfig(**fields, type_vocab_size=1, layer_norm_eps=config.layer_norm_eps,
                             max_position_embeddings=config.max_position_embeddings
                             + config.pad_token_id + 1)
    raise ValueError(f"cannot re-key BERT as {family!r}; families: {', '.join(FAMILIES)}")


def bert_state_as(family: str, state: dict[str, Tensor], config: BertConfig
                  ) -> dict[str, Tensor]:
    """BERT's weights in bertkit's names (``embeddings.*``, ``layers.*``, ``pooler.*``,
    ``mlm.*``, ``nsp.*``; no ``bert.`` prefix) -> the same network's weights for ``family``
    (same names; the embeddings changed as the module docstring says; NSP dropped, and for
    DistilBERT the pooler too)."""
    out = {k: v for k, v in state.items() if not k.startswith("nsp.")}
    token_type = out.pop("embeddings.token_type.weight")      # (types, H)
    position = out["embeddings.position.weight"]              # (P, H)
    if family == "distilbert":
        out["embeddings.position.weight"] = position + token_type[0]
        for k in [k for k in out if k.startswith("pooler.")]:
            del out[k]
    elif family == "roberta":
        shift = config.pad_token_id + 1
        out["embeddings.position.weight"] = torch.cat([position.new_zeros(shift, position.shape[1]),
                                                       position])  # (P + shift, H)
        out["embeddings.token_type.weight"] = token_type[:1].clone()  # (1, H)
    else:
        raise ValueError(f"cannot re-key BERT as {family!r}; families: {', '.join(FAMILIES)}")
    return out


def _target_class(family: str, with_mlm: bool) -> type[nn.Module]:
    from bertkit.models.auto import AutoModel, AutoModelForMaskedLM

    return (AutoModelForMaskedLM if with_mlm else AutoModel).class_for(family)


def _load_bert(directory: Path) -> tuple[BertConfig, dict[str, Tensor], list[str]]:
    """BERT's config, its weights in bertkit's names (no prefix), and the head groups absent."""
    from bertkit.models.bert import BertForPreTraining

    config = AutoConfig.from_pretrained(directory)
    if config.model_type != "bert":
        raise ConfigError(f"{directory / 'config.json'}: model_type is {config.model_type!r}; "
                          "only a BERT checkpoint can be re-keyed")
    weights = find_weights(directory)
    ours, missing, unused = hf_to_ours(read_state_dict(weights), BertForPreTraining(config),
                                       str(weights))
    body = [k for k in missing if k.startswith("bert.") and not k.startswith("bert.pooler.")]
    if body:
        raise ConfigError(f"{weights}: lacks {missing[body[0]][0]} (and {len(body) - 1} more): "
                          "not a whole BERT encoder")
    if unused:
        logger.info("%s: %d tensors no BERT has are not carried over: %s", weights, len(unused),
                    ", ".join(unused[:5]))
    absent = sorted({k.removeprefix("bert.").split(".")[0] for k in missing})
    return config, {k.removeprefix("bert."): v for k, v in ours.items()}, absent


def rekey_directory(src: str | Path, out: str | Path, family: str) -> nn.Module:
    """Write BERT checkpoint directory ``src`` as ``family``'s HF directory ``out``; returns the
    bertkit model written (``...ForMaskedLM`` when ``src`` has an MLM head, else the base model).

    ``out`` gets ``config.json`` and ``model.safetensors`` in the family's names, and ``src``'s
    tokenizer files. Raises ConfigError for a checkpoint that is not BERT's or a BERT the family
    cannot compute exactly.
    """
    src, out = Path(src), Path(out)
    config, state, absent = _load_bert(src)
    target_config = bert_config_as(family, config)
    new = bert_state_as(family, state, config)
    if "mlm" in absent:  # the base model, with BERT's pooler when it has one
        model = _target_class(family, False)(target_config, add_pooler="pooler" not in absent)
    else:
        model = _target_class(family, True)(target_config)
    base = getattr(model, "base_name", "")
    prefixed = {(f"{base}." if base and k.startswith(_BASE_KEYS) else "") + k: v
                for k, v in new.items()}
    wanted = model.state_dict()
    kept = {k.removeprefix(f"{base}.").split(".")[0] for k in wanted}
    dropped = sorted({k.split(".")[0] for k in state} - kept)
    if dropped:
        logger.info("%s as %s: dropped %s (no place in %s)", src, family, ", ".join(dropped),
                    type(model).__name__)
    model.load_state_dict({k: v for k, v in prefixed.items() if k in wanted}, strict=True)
    model.save_pretrained(out)  # type: ignore[operator]
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    return model
