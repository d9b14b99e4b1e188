"""The BERT encoder and its pre-training heads, in one readable file.

Notation used in shape comments:
    B batch, T tokens per sequence, H hidden size, N attention heads, D head dim (H / N),
    I intermediate (FFN) size, V vocabulary size, P masked positions per sequence.

The architecture is Google's, unchanged, so real checkpoints reproduce: learned absolute positions,
post-LayerNorm encoder layers, exact-erf or tanh GELU per ``hidden_act``, a tanh pooler over
the first token, and an MLM head whose decoder weight IS the word-embedding matrix (with its own bias).
Module names are our own (one fused q/k/v projection, for instance); ``bertkit.convert`` maps them
to and from Hugging Face and Google names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertkit.config import BertConfig

logger = logging.getLogger(__name__)

__all__ = ["BertModel", "BertForPreTraining", "BertOutput", "PreTrainingOutput", "activation"]


def activation(name: str) -> nn.Module:
    """The activation named by ``hidden_act`` (HF spelling: ``gelu`` is erf, ``gelu_new`` tanh)."""
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"unknown hidden_act {name!r}")


@dataclass
class BertOutput:
    """What ``BertModel.forward`` returns.

    last_hidden_state: (B, T, H); pooler_output: (B, H) or None;
    hidden_states: L + 1 tensors (B, T, H), embeddings first, when asked;
    attentions: L tensors (B, N, T, T), when asked.
    """

    last_hidden_state: Tensor
    pooler_output: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class PreTrainingOutput:
    """What ``BertForPreTraining.forward`` returns (losses only when labels are given).

    mlm_logits: (B, P, V) at the masked positions, or (B, T, V) when no positions are given;
    nsp_logits: (B, 2).
    """

    loss: Tensor | None
    mlm_loss: Tensor | None
    nsp_loss: Tensor | None
    mlm_logits: Tensor
    nsp_logits: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


class Embeddings(nn.Module):
    """word + position (+ token type), then LayerNorm and dropout.

    ``width`` is the embedding size: H for BERT, ALBERT's smaller E. Families without token
    types (``config.has_token_types`` False: DistilBERT) have no token-type table.
    """

    def __init__(self, cfg: BertConfig, width: int | None = None) -> None:
        super().__init__()
        width = width or cfg.hidden_size
        self.word = nn.Embedding(cfg.vocab_size, width, padding_idx=cfg.pad_token_id)
        self.position = nn.Embedding(cfg.max_position_embeddings, width)
        self.token_type = (nn.Embedding(cfg.type_vocab_size, width) if cfg.has_token_types
                           else None)
        self.norm = nn.LayerNorm(width, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None,
                position_ids: Tensor | None) -> Tensor:
        """(B, T) ids -> (B, T, width)."""
        T = input_ids.shape[1]
        if T > self.position.num_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings "
                             f"{self.position.num_embeddings}")
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device)[None]  # (1, T)
        if self.token_type is None:
            return self.dropout(self.norm(self.word(input_ids) + self.position(position_ids)))
        if token_type_ids is None:
            types = self.token_type.weight[0]
        else:
            types = self.token_type(token_type_ids)
        x = self.word(input_ids) + types + self.position(position_ids)  # HF's order of sums
        return self.dropout(self.norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection.

    The fast path is ``F.scaled_dot_product_attention``; the math path (explicit softmax) runs
    when attention probabilities are requested, and serves as the oracle in tests.
    """

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.n_heads = cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.p_drop = cfg.attention_probs_dropout_prob

    def forward(self, x: Tensor, mask: Tensor | None, need_probs: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, H); mask: (B, 1, 1, T) bool, True = attend, or None for no padding.

        Returns the projected context (B, T, H) and, if ``need_probs``, probs (B, N, T, T).
        """
        B, T, H = x.shape
        q, k, v = (self.qkv(x)                                  # (B, T, 3H)
                   .view(B, T, 3, self.n_heads, self.head_dim)  # (B, T, 3, N, D)
                   .permute(2, 0, 3, 1, 4)                       # (3, B, N, T, D)
                   .unbind(0))
        p_drop = self.p_drop if self.training else 0.0
        probs = None
        if need_probs:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, N, T, T)
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            probs = scores.softmax(dim=-1)
            ctx = F.dropout(probs, p_drop, self.training) @ v             # (B, N, T, D)
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop)
        ctx = ctx.transpose(1, 2).reshape(B, T, H)                        # (B, T, H)
        return self.out(ctx), probs


class FeedForward(nn.Module):
    """H -> I -> H with the config's activation."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = activation(cfg.hidden_act)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nn.Module):
    """Post-LN layer: h = LN(x + Drop(Attn(x))); out = LN(h + Drop(FFN(h)))."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: Tensor, mask: Tensor | None, need_probs: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        a, probs = self.attn(x, mask, need_probs)
        h = self.attn_norm(x + self.dropout(a))
        return self.ffn_norm(h + self.dropout(self.ffn(h))), probs


class Pooler(nn.Module):
    """tanh(W h_0 + b) on the first token's state: (B, T, H) -> (B, H)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


def padding_mask(attention_mask: Tensor | None) -> Tensor | None:
    """(B, T) 1/0 mask -> (B, 1, 1, T) bool (True = attend), or None when nothing is padded."""
    if attention_mask is None:
        return None
    mask = attention_mask.bool()
    if bool(mask.all()):
        return None
    return mask[:, None, None, :]


class PreTrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for every bertkit model (HF directory layout)."""

    config: BertConfig
    config_class: type[BertConfig] = BertConfig  # the family's config (from config.json)
    hf_architecture: str = "BertModel"

    @classmethod
    def from_pretrained(cls, path: Any, **config_overrides: Any) -> Any:
        """Load a Hugging Face directory (config.json + model.safetensors or pytorch_model.bin)."""
        from bertkit.convert.hf import load_pretrained_into

        return load_pretrained_into(cls, path, **config_overrides)

    def save_pretrained(self, path: Any) -> None:
        """Write config.json + model.safetensors that bertkit and ``transformers`` both load."""
        from bertkit.convert.hf import save_pretrained

        save_pretrained(self, path)


def init_weights(module: nn.Module, std: float) -> None:
    """Google's init: truncated normal (2 std) for weights, zeros for biases, LayerNorm 1/0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class BertModel(PreTrainedMixin, nn.Module):
    """The BERT encoder: embeddings, L post-LN layers, and (optionally) the tanh pooler."""

    hf_architecture = "BertModel"

    def __init__(self, config: BertConfig, add_pooler: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Pooler(config) if add_pooler else None
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False
                ) -> BertOutput:
        """input_ids, attention_mask, token_type_ids, position_ids: (B, T)."""
        mask = padding_mask(attention_mask)  # built once per batch, shared by every layer
        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, H)
        return run_layers(x, mask, self.layers, self.pooler, output_hidden_states,
                          output_attentions)


def run_layers(x: Tensor, mask: Tensor | None, layers: Iterable[nn.Module],
               pooler: nn.Module | None, output_hidden_states: bool = False,
               output_attentions: bool = False) -> BertOutput:
    """Embedded (B, T, H) states through ``layers`` in order (a layer may recur, as ALBERT's
    shared ones do), the pooler on the last; ``hidden_states`` starts with ``x`` itself."""
    hidden: list[Tensor] = [x] if output_hidden_states else []
    attns: list[Tensor] = []
    for layer in layers:
        x, probs = layer(x, mask, output_attentions)
        if output_hidden_states:
            hidden.append(x)
        if probs is not None:
            attns.append(probs)
    return BertOutput(
        last_hidden_state=x,
        pooler_output=pooler(x) if pooler is not None else None,
        hidden_states=tuple(hidden) if output_hidden_states else None,
        attentions=tuple(attns) if output_attentions else None,
    )


class MaskedLMHead(nn.Module):
    """dense(H, E) + act + LayerNorm, then the tied decoder (word embeddings^T) + its own bias.

    E = H except for ALBERT; ``act`` defaults to the config's (RoBERTa's head is always GELU).
    """

    def __init__(self, cfg: BertConfig, width: int | None = None, act: str | None = None) -> None:
        super().__init__()
        width = width or cfg.hidden_size
        self.transform = nn.Linear(cfg.hidden_size, width)
        self.act = activation(act or cfg.hidden_act)
        self.norm = nn.LayerNorm(width, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h: Tensor, decoder_weight: Tensor) -> Tensor:
        """h (..., H), decoder_weight (V, E): the word embeddings -> (..., V) logits."""
        return F.linear(self.norm(self.act(self.transform(h))), decoder_weight, self.bias)


def gather_positions(hidden: Tensor, positions: Tensor) -> Tensor:
    """Pick rows of each sequence: hidden (B, T, H), positions (B, P) -> (B, P, H)."""
    index = positions.long()[..., None].expand(-1, -1, hidden.shape[-1])  # (B, P, H)
    return hidden.gather(1, index)


def masked_lm_loss(logits: Tensor, ids: Tensor, weights: Tensor | None) -> Tensor:
    """Google's MLM loss: weighted mean CE. logits (B, P, V); ids, weights (B, P)."""
    ce = F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten().long(), reduction="none")
    if weights is None:
        return ce.mean()
    w = weights.flatten().to(ce.dtype)
    return (ce * w).sum() / (w.sum() + 1e-5)


class BertForPreTraining(PreTrainedMixin, nn.Module):
    """BERT with the MLM and NSP heads of pre-training."""

    hf_architecture = "BertForPreTraining"

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooler=True)
        self.mlm = MaskedLMHead(config)
        self.nsp = nn.Linear(config.hidden_size, 2)
        self.mlm.apply(lambda m: init_weights(m, config.initializer_range))
        init_weights(self.nsp, config.initializer_range)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, masked_lm_positions: Tensor | None = None,
                masked_lm_ids: Tensor | None = None, masked_lm_weights: Tensor | None = None,
                next_sentence_labels: Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> PreTrainingOutput:
        """Vocabulary logits only at ``masked_lm_positions`` (B, P) when given, as Google does.

        masked_lm_ids, masked_lm_weights: (B, P); next_sentence_labels: (B,) or (B, 1),
        0 = B follows A, 1 = B is random.
        """
        out = self.bert(input_ids, attention_mask, token_type_ids,
                        output_hidden_states=output_hidden_states,
                        output_attentions=output_attentions)
        h = out.last_hidden_state
        if masked_lm_positions is not None:
            h = gather_positions(h, masked_lm_positions)  # (B, P, H)
        mlm_logits = self.mlm(h, self.bert.embeddings.word.weight)  # (B, P or T, V)
        assert out.pooler_output is not None
        nsp_logits = self.nsp(out.pooler_output)          # (B, 2)
        mlm_loss = nsp_loss = None
        if masked_lm_ids is not None:
            mlm_loss = masked_lm_loss(mlm_logits, masked_lm_ids, masked_lm_weights)
        if next_sentence_labels is not None:
            nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_labels.reshape(-1).long())
        losses = [x for x in (mlm_loss, nsp_loss) if x is not None]
        return PreTrainingOutput(
            loss=sum(losses[1:], losses[0]) if losses else None,
            mlm_loss=mlm_loss, nsp_loss=nsp_loss, mlm_logits=mlm_logits, nsp_logits=nsp_logits,
            hidden_states=out.hidden_states, attentions=out.attentions)
