"""Greedy longest-match-first WordPiece, as in Google's ``WordpieceTokenizer``.

A word longer than ``max_chars`` (200) code points becomes ``[UNK]``. Otherwise pieces are taken
greedily from the left, each the longest vocabulary entry that matches there (continuation pieces
carry the ``##`` prefix); if some position matches nothing, the WHOLE word becomes ``[UNK]``.

Example:
    >>> vocab = {"un": 0, "##aff": 1, "##able": 2, "[UNK]": 3}
    >>> wordpiece("unaffable", vocab)
    ['un', '##aff', '##able']
    >>> wordpiece("unaffablex", vocab)
    ['[UNK]']
"""

from __future__ import annotations

from collections.abc import Container
from pathlib import Path

UNK = "[UNK]"
PREFIX = "##"
MAX_CHARS = 200


def wordpiece_spans(
    word: str,
    vocab: Container[str],
    unk: str = UNK,
    max_chars: int = MAX_CHARS,
    prefix: str = PREFIX,
    max_piece_chars: int | None = None,
) -> list[tuple[str, int, int]]:
    """Pieces of ``word`` with the character range ``[start, end)`` of ``word`` each one covers.

    ``max_piece_chars`` (the longest vocabulary entry, without prefix) only bounds the search;
    it never changes the result. An ``[UNK]`` covers the whole word.

    >>> wordpiece_spans("unaffable", {"un", "##aff", "##able"})
    [('un', 0, 2), ('##aff', 2, 5), ('##able', 5, 9)]
    """
    n = len(word)
    if n > max_chars:
        return [(unk, 0, n)]
    limit = n if max_piece_chars is None else max_piece_chars
    pieces: list[tuple[str, int, int]] = []
    start = 0
    while start < n:
        end = min(n, start + limit)
        while end > start:
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                pieces.append((piece, start, end))
                break
            end -= 1
        else:
            return [(unk, 0, n)]
        start = end
    return pieces


def wordpiece(
    word: str,
    vocab: Container[str],
    unk: str = UNK,
    max_chars: int = MAX_CHARS,
    prefix: str = PREFIX,
    max_piece_chars: int | None = None,
) -> list[str]:
    """The pieces of ``word`` (see :func:`wordpiece_spans`).

    >>> wordpiece("x" * 201, {"x", "##x"})
    ['[UNK]']
    """
    return [p for p, _, _ in wordpiece_spans(word, vocab, unk, max_chars, prefix, max_piece_chars)]


def guess_do_lower_case(vocab: str | Path) -> bool:
    """Lower-case unless over 0.5% of the pieces have upper case (Google's cased vocabs have
    thousands; the uncased and Chinese ones have two each, such as ``ℝ`` and ``<S>``)."""
    with open(vocab, encoding="utf-8") as f:
        pieces = [line.strip().removeprefix(PREFIX) for line in f]
    upper = sum(p != p.lower() for p in pieces if not (p[:1] in "[<" and p[-1:] in "]>"))
    return upper <= 0.005 * max(len(pieces), 1)
