"""Tokenization: Google's BERT tokenizer (BasicTokenizer + WordPiece) with a fast batch engine."""

from __future__ import annotations

from bertkit.tokenization.tokenizer import BertTokenizer, load_vocab

__all__ = ["BertTokenizer", "load_vocab"]
