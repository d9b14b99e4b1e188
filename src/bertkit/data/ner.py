"""CoNLL-style token-per-line NER files: one token per line, a blank line between sentences.

Token and tag are taken from configurable columns (``token_column``, ``tag_column``; negative
indices count from the end), split on any whitespace (``delimiter=None``, CoNLL-2003) or on one
character such as a tab (WNUT: ``token<TAB>tag``). ``-DOCSTART-`` lines are skipped. Tags are ``O``
or ``B-TYPE``/``I-TYPE`` (BIO = IOB2). IOB1 files (``B-`` only between two adjacent entities of
the same type) are converted to IOB2 with ``scheme="iob1"``. A bad line (too few columns, a tag
that is not O/B-X/I-X) raises :class:`~bertkit.data.errors.DataError` with file and line; with
``skip_bad_rows=True`` the whole sentence holding it is skipped and counted. With
``tags_optional=True`` (a file to predict) a line holding only a token is an untagged token; a
sentence of such lines has ``tags == ()``, and one mixing them with tagged lines is a bad line.

>>> iob1_to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC"])
['B-PER', 'I-PER', 'B-PER', 'O', 'B-LOC']
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bertkit.data.errors import BadRows
from bertkit.data.glue import utf8_errors

logger = logging.getLogger(__name__)

__all__ = ["NerSentence", "read_conll", "iob1_to_iob2", "ner_label_list"]

_TAG = re.compile(r"O|[BI]-\S+")


@dataclass(frozen=True)
class NerSentence:
    """Tokens and their tags; ``guid`` is ``<file stem>-<line of the first token>``."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    guid: str


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """Make every entity start with ``B-``: an ``I-X`` not continuing an ``X`` entity becomes
    ``B-X``. Idempotent on IOB2, so it also repairs ill-formed BIO."""
    out: list[str] = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def read_conll(path: str | os.PathLike[str], *, token_column: int = 0, tag_column: int = -1,
               delimiter: str | None = None, scheme: Literal["iob2", "bio", "iob1"] = "iob2",
               skip_bad_rows: bool = False, tags_optional: bool = False) -> list[NerSentence]:
    """Read sentences from a CoNLL-style file (see the module docstring).

    >>> read_conll("ner.txt", delimiter="\\t")[0].tags        # doctest: +SKIP
    ('O', 'B-person', 'I-person', 'O')
    """
    if scheme not in ("iob2", "bio", "iob1"):
        raise ValueError(f"scheme must be 'iob2', 'bio' or 'iob1', not {scheme!r}")
    path = Path(path)
    need = max(2, *(c + 1 if c >= 0 else -c for c in (token_column, tag_column)))
    bad = BadRows(path, skip=skip_bad_rows, logger=logger)
    out: list[NerSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    broken = False

    def flush() -> None:
        nonlocal tokens, tags, broken
        if tokens and not broken:
            final = iob1_to_iob2(tags) if scheme == "iob1" else tags
            out.append(NerSentence(tuple(tokens), tuple(final), f"{path.stem}-{first_line}"))
        tokens, tags, broken = [], [], False

    with utf8_errors(path), open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                flush()
                continue
            fields = line.split(delimiter)
            if fields[0].strip() == "-DOCSTART-":
                flush()
                continue
            if not tokens:
                first_line = line_no
            problem, token, tag = _parse_line(fields, need, token_column, tag_column,
                                              tags_optional)
            if not problem and tokens and bool(tag) != bool(tags):
                problem = "a sentence mixes tagged and untagged tokens"
            if problem:
                bad.report(line_no, problem)
                broken = True
                continue
            tokens.append(token)
            if tag:
                tags.append(tag)
    flush()
    bad.done(len(out))
    return out


def _parse_line(fields: list[str], need: int, token_column: int, tag_column: int,
                tags_optional: bool) -> tuple[str, str, str]:
    """``(problem, token, tag)`` of one non-blank line; ``tag`` is ``""`` for a lone token when
    ``tags_optional``; ``problem`` is ``""`` for a good line."""
    if tags_optional and len(fields) == 1:
        return "", fields[0].strip(), ""
    if len(fields) < need:
        return f"expected at least {need} columns, got {len(fields)}", "", ""
    token, tag = fields[token_column].strip(), fields[tag_column].strip()
    if not token or not _TAG.fullmatch(tag):
        return f"bad token/tag {token!r} {tag!r} (tags: O, B-TYPE, I-TYPE)", "", ""
    return "", token, tag


def ner_label_list(sentences: Sequence[NerSentence]) -> list[str]:
    """``O`` first, then each type's ``B-``/``I-`` tags in order of type name.

    >>> ner_label_list([NerSentence(("a", "b"), ("I-PER", "B-LOC"), "x-1")])
    ['O', 'B-LOC', 'I-LOC', 'B-PER', 'I-PER']
    """
    types = sorted({t[2:] for s in sentences for t in s.tags if t != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
