"""SQuAD v1.1 / v2.0 JSON reader with Google's whitespace split of the context.

The JSON is ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"?, "plausible_answers"?}]}]}]}``.
``answer_start`` counts characters (code points) of ``context``, as Python strings do, so accents,
CJK and emoji need no special care. Every answer must satisfy
``context[start:start + len(text)] == text``; otherwise :class:`~bertkit.data.errors.DataError`
names the question id (or the question is skipped and counted with ``skip_bad_rows=True``).

Like ``run_squad.py``, the context is split into ``doc_tokens`` at whitespace (space, tab, CR, LF
and U+202F) and ``char_to_word_offset[i]`` is the index of the word that character ``i`` belongs
to (a whitespace character maps to the word before it, -1 before the first word). Feature building
(WordPiece, windows with a doc stride) starts from these two lists.

>>> doc, offs = whitespace_split("Paris  is\\tnice")
>>> doc, offs
(['Paris', 'is', 'nice'], [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit.data.errors import BadRows, DataError
from bertkit.data.glue import utf8_errors

logger = logging.getLogger(__name__)

__all__ = ["Answer", "SquadExample", "read_squad", "whitespace_split", "is_squad_whitespace",
           "gold_answers", "make_example", "DataError"]


@dataclass(frozen=True)
class Answer:
    """An answer text and the index of its first character in the context."""

    text: str
    start: int

    @property
    def end(self) -> int:
        """Index one past the last character."""
        return self.start + len(self.text)


@dataclass(frozen=True)
class SquadExample:
    """One question on one context.

    ``answers`` is empty for an unanswerable (v2) question; ``plausible_answers`` are v2's
    annotations of such questions. ``doc_tokens``/``char_to_word_offset`` come from
    :func:`whitespace_split` of ``context``.
    """

    qid: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    is_impossible: bool = False
    title: str = ""
    plausible_answers: tuple[Answer, ...] = ()
    doc_tokens: tuple[str, ...] = field(default=(), repr=False)
    char_to_word_offset: tuple[int, ...] = field(default=(), repr=False)

    def word_span(self, answer: Answer) -> tuple[int, int]:
        """First and last (inclusive) index in ``doc_tokens`` of the words the answer covers.

        >>> ex = make_example("q", "Who?", "Marie  Curie won", [Answer("Curie", 7)])
        >>> ex.word_span(ex.answers[0])
        (1, 1)
        """
        return (self.char_to_word_offset[answer.start],
                self.char_to_word_offset[answer.end - 1])


def is_squad_whitespace(ch: str) -> bool:
    """Google's ``run_squad.py`` whitespace: space, tab, CR, LF and NARROW NO-BREAK SPACE."""
    return ch in " \t\r\n" or ch == "\u202f"


def whitespace_split(context: str) -> tuple[list[str], list[int]]:
    """Split ``context`` into words at whitespace; map each character to its word index."""
    doc_tokens: list[str] = []
    char_to_word: list[int] = []
    prev_ws = True
    for ch in context:
        if is_squad_whitespace(ch):
            prev_ws = True
        else:
            if prev_ws:
                doc_tokens.append(ch)
            else:
                doc_tokens[-1] += ch
            prev_ws = False
        char_to_word.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word


def make_example(qid: str, question: str, context: str, answers: Sequence[Answer], *,
                 is_impossible: bool = False, title: str = "",
                 plausible_answers: Sequence[Answer] = ()) -> SquadExample:
    """Build a :class:`SquadExample` with its whitespace split (no answer check)."""
    doc, offs = whitespace_split(context)
    return SquadExample(qid, question, context, tuple(answers), is_impossible, title,
                        tuple(plausible_answers), tuple(doc), tuple(offs))


def _answers(raw: Any, context: str) -> tuple[list[Answer], str | None]:
    """Parse and check a list of answers; the second value is the reason if malformed."""
    if not isinstance(raw, list):
        return [], "answers must be a list"
    out = []
    for a in raw:
        if not isinstance(a, dict) or not isinstance(a.get("text"), str) or \
                not isinstance(a.get("answer_start"), int):
            return [], f"malformed answer {a!r}"
        ans = Answer(a["text"], a["answer_start"])
        if not ans.text:
            return [], "empty answer text"
        if ans.start < 0 or context[ans.start:ans.end] != ans.text:
            found = context[max(ans.start, 0):max(ans.end, 0)]
            return [], (f"answer {ans.text!r} does not match the context at {ans.start} "
                        f"(found {found!r})")
        out.append(ans)
    return out, None


def read_squad(path: str | os.PathLike[str], *, skip_bad_rows: bool = False,
               answers_optional: bool = False) -> list[SquadExample]:
    """Read a SQuAD v1.1 or v2.0 JSON file into examples (v2 when ``is_impossible`` appears).

    An answerable question needs at least one answer (``answers_optional``: a question with
    none, not ``is_impossible``, is kept as unlabelled, e.g. a file to predict); an impossible
    one must have none; every question needs an id of its own (predictions and metrics are keyed
    by it). Errors name the file and the question id.
    """
    path = Path(path)
    try:
        with utf8_errors(path), open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, f"invalid JSON: {e.msg}") from e
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(path, None, 'expected an object with a "data" list')
    bad = BadRows(path, skip=skip_bad_rows, logger=logger)
    out: list[SquadExample] = []
    seen: set[str] = set()
    for article in data["data"]:
        title = str(article.get("title", ""))
        for para in article.get("paragraphs", []):
            context = para.get("context")
            if not isinstance(context, str) or not context.strip():
                bad.report(None, f"article {title!r}: a paragraph has no context")
                continue
            doc, offs = whitespace_split(context)
            doc_t, offs_t = tuple(doc), tuple(offs)  # shared by the paragraph's questions
            for qa in para.get("qas", []):
                qid = qa.get("id")
                if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
                    bad.report(None, f"article {title!r}: a question has no id "
                                     f"(question {str(qa.get('question'))[:60]!r})")
                    continue
                qid = str(qid)
                if qid in seen:  # predictions and metrics are keyed by id
                    bad.report(None, f"question id {qid!r} appears more than once")
                    continue
                seen.add(qid)
                question = qa.get("question")
                if not isinstance(question, str) or not question.strip():
                    bad.report(None, f"question {qid}: empty question")
                    continue
                impossible = bool(qa.get("is_impossible", False))
                answers, why = _answers(qa.get("answers", []), context)
                plausible, why_p = _answers(qa.get("plausible_answers", []), context)
                why = why or why_p
                if why is None and not impossible and not answers and not answers_optional:
                    why = "no answers (and not is_impossible)"
                if why is None and impossible and answers:
                    why = "is_impossible but has answers (use plausible_answers)"
                if why is not None:
                    bad.report(None, f"question {qid}: {why}")
                    continue
                out.append(SquadExample(qid, question, context, tuple(answers), impossible,
                                        title, tuple(plausible), doc_t, offs_t))
    bad.done(len(out))
    return out


def gold_answers(examples: Sequence[SquadExample]) -> dict[str, list[str]]:
    """Question id -> answer texts, the ``gold`` argument of :mod:`bertkit.metrics`' SQuAD scores.

    >>> gold_answers([make_example("q1", "?", "a b", [Answer("b", 2)])])
    {'q1': ['b']}
    """
    return {e.qid: [a.text for a in e.answers] for e in examples}
