"""Tokenization: each family's tokenizer on one interface (:mod:`bertkit.tokenization.base`).

WordPiece (BERT, DistilBERT; Google's exact ids), byte-level BPE (RoBERTa) and SentencePiece
(ALBERT). ``AutoTokenizer.from_pretrained(dir)`` picks one by ``tokenizer_class`` in
``tokenizer_config.json``, else by the files present.
"""

from __future__ import annotations

import json
from pathlib import Path

from bertkit.tokenization.base import TokenizerBase
from bertkit.tokenization.tokenizer import BertTokenizer, VocabError, load_vocab

__all__ = ["AutoTokenizer", "BertTokenizer", "TokenizerBase", "load_vocab"]

_BY_CLASS = {"BertTokenizer": "wordpiece", "BertTokenizerFast": "wordpiece",
             "DistilBertTokenizer": "wordpiece", "DistilBertTokenizerFast": "wordpiece",
             "RobertaTokenizer": "bpe", "RobertaTokenizerFast": "bpe",
             "AlbertTokenizer": "spm", "AlbertTokenizerFast": "spm"}
_BY_FILE = (("spiece.model", "spm"), ("merges.txt", "bpe"), ("vocab.txt", "wordpiece"))


class AutoTokenizer:
    """The family's tokenizer for a model directory."""

    @staticmethod
    def kind(directory: str | Path) -> str:
        """``wordpiece``, ``bpe`` or ``spm`` for ``directory``."""
        d = Path(directory)
        config = d / "tokenizer_config.json"
        if config.is_file():
            try:
                name = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
                raise VocabError(f"{config}: not a JSON object ({e})") from e
            if name in _BY_CLASS:
                return _BY_CLASS[name]
        for filename, kind in _BY_FILE:
            if (d / filename).is_file():
                return kind
        raise VocabError(f"{d}: no tokenizer files (vocab.txt, vocab.json + merges.txt, or "
                         f"spiece.model)")

    @staticmethod
    def from_pretrained(directory: str | Path) -> TokenizerBase:
        kind = AutoTokenizer.kind(directory)
        if kind == "bpe":
            from bertkit.tokenization.bpe import ByteLevelBPETokenizer

            return ByteLevelBPETokenizer.from_pretrained(directory)
        if kind == "spm":
            from bertkit.tokenization.sentencepiece import SentencePieceTokenizer

            return SentencePieceTokenizer.from_pretrained(directory)
        return BertTokenizer.from_pretrained(directory)
