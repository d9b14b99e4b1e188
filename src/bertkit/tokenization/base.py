"""What every family's tokenizer offers, so data and fine-tuning code need no literal specials.

A tokenizer names its special tokens and ids, turns texts into ids with character offsets
(``encode_batch_with_offsets``), and wraps one text or a pair in the family's template:

    BERT, ALBERT   [CLS] A [SEP] B [SEP]        token types 0 for A, 1 for B
    RoBERTa        <s> A </s></s> B </s>        token types all 0

Pairs are truncated longest-first: Google's rule (BERT, ALBERT: one token at a time from the
longer, from B on ties) or transformers' (RoBERTa, which has no original rule of its own: the
shorter keeps up to half the budget); the two differ only when the budget is odd. ``is_word_start`` says
whether a token begins a word (for whole-word masking): WordPiece pieces do unless they start
with ``##``, byte-level BPE tokens when they start with ``Ġ`` (an encoded space), SentencePiece
pieces when they start with ``▁``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Span = tuple[int, int]


def truncate_longest_first(len_a: int, len_b: int, max_tokens: int) -> tuple[int, int]:
    """Google's pair truncation: drop the last token of the longer sequence (B on ties) until fit.

    >>> truncate_longest_first(10, 3, 8)
    (5, 3)
    >>> truncate_longest_first(4, 4, 5)
    (3, 2)
    """
    while len_a + len_b > max_tokens:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


def truncate_balanced(len_a: int, len_b: int, max_tokens: int) -> tuple[int, int]:
    """transformers' (Rust) longest-first: the shorter keeps at most half the budget (A counts as
    the shorter on ties), the longer gets the rest. Differs from Google's rule on odd budgets.

    >>> truncate_balanced(10, 3, 8), truncate_balanced(4, 4, 5)
    ((5, 3), (2, 3))
    """
    if len_a + len_b <= max_tokens:
        return len_a, len_b
    if len_a > len_b:
        kept_b = min(len_b, max_tokens // 2)
        return max_tokens - kept_b, kept_b
    kept_a = min(len_a, max_tokens // 2)
    return kept_a, max_tokens - kept_a


class TokenizerBase:
    """Shared template, truncation, batching and padding; subclasses supply the vocabulary."""

    tokenizer_class: str = ""        # HF's name, written to tokenizer_config.json
    seps_between: int = 1            # separators between A and B (RoBERTa: 2)
    b_token_type: int = 1            # token type of segment B (RoBERTa: 0)
    truncate_pair = staticmethod(truncate_longest_first)  # Google's; RoBERTa: transformers'
    word_prefix: str = ""            # what precedes a word inside a text (byte-level BPE: " ")
    cls_token_id: int
    sep_token_id: int
    pad_token_id: int
    unk_token_id: int
    mask_token_id: int | None

    # -- what a subclass implements -------------------------------------------------------------

    def encode_batch_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list[Span]]]:
        """Ids (no special tokens) and character spans of each text."""
        raise NotImplementedError

    def is_word_start(self, token: str) -> bool:
        raise NotImplementedError

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------

    @property
    def special_token_ids(self) -> set[int]:
        ids = {self.cls_token_id, self.sep_token_id, self.pad_token_id}
        return ids | ({self.mask_token_id} if self.mask_token_id is not None else set())

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text, without special tokens."""
        return [ids for ids, _ in self.encode_batch_with_offsets(texts)]

    def encode_words(self, words: Sequence[str]) -> list[tuple[list[int], list[Span]]]:
        """Ids and character spans (within each word) of whitespace words, each encoded as it is
        inside a text: byte-level BPE encodes it after a space (``Ġ``), as transformers does with
        ``is_split_into_words``; WordPiece and SentencePiece need nothing.

        For NER words and SQuAD's context words, which are split at whitespace first.
        """
        n = len(self.word_prefix)
        enc = self.encode_batch_with_offsets([self.word_prefix + w for w in words])
        return [(ids, [(max(s - n, 0), max(e - n, 0)) for s, e in spans]) for ids, spans in enc]

    def n_special(self, pair: bool) -> int:
        """Special tokens the template adds to one text (2) or a pair."""
        return 2 + (self.seps_between if pair else 0)

    def build_inputs(self, ids_a: list[int], ids_b: list[int] | None = None,
                     max_length: int | None = None) -> tuple[list[int], list[int], int, int]:
        """The family's template around A (and B), truncated to ``max_length``.

        A single text keeps its first ``max_length - 2`` tokens; a pair is truncated longest-first.
        Returns ``(input_ids, token_type_ids, kept_a, kept_b)``.
        """
        n_a, n_b = len(ids_a), 0 if ids_b is None else len(ids_b)
        if max_length is not None:
            n_special = self.n_special(ids_b is not None)
            if max_length < n_special:
                raise ValueError(f"max_length={max_length} leaves no room for {n_special} "
                                 f"special tokens")
            n_a, n_b = self.truncate_pair(n_a, n_b, max_length - n_special)
        ids = [self.cls_token_id, *ids_a[:n_a], self.sep_token_id]
        types = [0] * len(ids)
        if ids_b is not None:
            tail = [self.sep_token_id] * (self.seps_between - 1) + [*ids_b[:n_b], self.sep_token_id]
            ids += tail
            types += [self.b_token_type] * len(tail)
        return ids, types, n_a, n_b

    def encode_with_types(self, text: str, text_pair: str | None = None,
                          max_length: int | None = None) -> tuple[list[int], list[int]]:
        """``(input_ids, token_type_ids)`` of one text or pair (see :meth:`encode`)."""
        texts = [text] if text_pair is None else [text, text_pair]
        encoded = self.encode_batch(texts)
        ids, types, _, _ = self.build_inputs(
            encoded[0], None if text_pair is None else encoded[1], max_length)
        return ids, types

    def encode(self, text: str, text_pair: str | None = None,
               max_length: int | None = None) -> list[int]:
        """The template's ids for one text or pair, truncated to ``max_length`` (None: no limit)."""
        return self.encode_with_types(text, text_pair, max_length)[0]

    def __call__(
        self,
        texts: str | Sequence[str],
        text_pairs: str | Sequence[str] | None = None,
        max_length: int | None = 512,
        padding: bool | str = True,
        truncation: bool = True,
        return_tensors: str | None = "pt",
        return_offsets: bool = False,
    ) -> dict[str, Any]:
        """Encode a batch.

        Args:
            texts: one text or a list of texts (segment A).
            text_pairs: segment B for each text, or None.
            max_length: length limit applied when ``truncation`` (and for ``padding="max_length"``).
            padding: True/"longest" pads to the longest in the batch, "max_length" to
                ``max_length``, False leaves lengths ragged (only with ``return_tensors=None``).
            truncation: truncate to ``max_length`` (pairs longest-first).
            return_tensors: "pt" for ``torch.long`` tensors of shape (B, T), None for lists.
            return_offsets: add ``offsets`` (per text, unpadded, a ``(start, end)`` character span
                per token; ``(0, 0)`` for special tokens; spans of B tokens index into the B text)
                and ``sequence_ids`` (per token: None for specials, 0 for A, 1 for B).

        Returns:
            A dict with ``input_ids``, ``token_type_ids``, ``attention_mask`` (and the offsets).
        """
        batch_a = [texts] if isinstance(texts, str) else list(texts)
        batch_b: list[str] | None = None
        if text_pairs is not None:
            batch_b = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
            if len(batch_b) != len(batch_a):
                raise ValueError(f"{len(batch_a)} texts but {len(batch_b)} text_pairs")
        limit = max_length if truncation else None
        enc = self.encode_batch_with_offsets(batch_a + (batch_b or []))
        n = len(batch_a)
        ids_rows: list[list[int]] = []
        type_rows: list[list[int]] = []
        offsets: list[list[Span]] = []
        seq_ids: list[list[int | None]] = []
        for i in range(n):
            ids_a, off_a = enc[i]
            ids_b, off_b = enc[n + i] if batch_b is not None else (None, [])
            ids, types, k_a, k_b = self.build_inputs(ids_a, ids_b, limit)
            ids_rows.append(ids)
            type_rows.append(types)
            if return_offsets:
                offs = [(0, 0), *off_a[:k_a], (0, 0)]
                sid: list[int | None] = [None, *[0] * k_a, None]
                if ids_b is not None:
                    extra = self.seps_between - 1
                    offs += [(0, 0)] * extra + [*off_b[:k_b], (0, 0)]
                    sid += [None] * extra + [*[1] * k_b, None]
                offsets.append(offs)
                seq_ids.append(sid)
        if max_length is not None and not truncation and any(len(r) > max_length for r in ids_rows):
            logger.warning("some sequences are longer than max_length=%d (truncation=False)",
                           max_length)
        out = self._pad(ids_rows, type_rows, padding, max_length, return_tensors)
        if return_offsets:
            out["offsets"] = offsets
            out["sequence_ids"] = seq_ids
        return out

    def _pad(self, ids_rows: list[list[int]], type_rows: list[list[int]], padding: bool | str,
             max_length: int | None, return_tensors: str | None) -> dict[str, Any]:
        lengths = [len(r) for r in ids_rows]
        if padding is True or padding == "longest":
            width = max(lengths, default=0)
        elif padding == "max_length":
            if max_length is None:
                raise ValueError('padding="max_length" needs max_length')
            width = max(max(lengths, default=0), max_length)
        elif padding is False:
            width = None
        else:
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length': {padding!r}")
        if width is not None:
            ids_rows = [r + [self.pad_token_id] * (width - len(r)) for r in ids_rows]
            type_rows = [r + [0] * (width - len(r)) for r in type_rows]
        mask_rows = [[1] * n + [0] * (len(r) - n) for n, r in zip(lengths, ids_rows, strict=True)]
        out: dict[str, Any] = {"input_ids": ids_rows, "token_type_ids": type_rows,
                               "attention_mask": mask_rows}
        if return_tensors is None:
            return out
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        if width is None and len(set(lengths)) > 1:
            raise ValueError("padding=False gives ragged rows: use return_tensors=None")
        import torch

        return {k: torch.tensor(v, dtype=torch.long).reshape(len(v), -1) for k, v in out.items()}


class EngineTokenizer(TokenizerBase):
    """A tokenizer whose pieces come from a ``tokenizers`` engine (``self._engine``) over a
    ``self.vocab`` token -> id table; BPE and SentencePiece share these lookups."""

    vocab: dict[str, int]
    ids_to_tokens: dict[int, str]
    unk_token_id: int
    _engine: Any

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.ids_to_tokens[int(i)] for i in ids]

    def decode(self, ids: Sequence[int] | Any, skip_special_tokens: bool = True) -> str:
        """The text back, special tokens dropped unless asked."""
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.special_token_ids]
        return self._engine.decode(ids, skip_special_tokens=False)


def read_tokenizer_config(directory: Path) -> dict[str, Any]:
    """``directory/tokenizer_config.json`` as a dict, or ``{}`` where there is none."""
    path = directory / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
