"""A rule-based sentence splitter for English and CJK text (no dependencies).

Google's pre-training input is one sentence per line, so every corpus recipe runs its paragraphs
through :func:`split_sentences`. The rules, in order:

* A boundary candidate is a run of terminators (``.``, ``!``, ``?``, ``…``, ``。``, ``！``, ``？``)
  plus any closing quotes or brackets right after it (``end." He`` keeps the quote).
* CJK terminators (``。！？``) always end a sentence; Latin ones only when followed by whitespace
  (so ``3.14``, ``U.S.A`` and ``www.x.org`` never split) or by a CJK character.
* The next word must look like a sentence start: not lower case, not ``,;:``-style punctuation.
* A single ``.`` after a known abbreviation is special: titles such as ``Mr.``, ``Dr.``,
  ``e.g.``, ``i.e.`` never end a sentence; ambiguous ones (``U.S.``, ``etc.``, ``Inc.``, ``Jan.``,
  ``No.``, initials like ``F.``) end it only before a typical sentence opener (``The``, ``He``,
  ``It``, ...) or an opening quote/bracket.
* An enumerator that opens a sentence (``1.``, ``IV.``) does not end it.

>>> split_sentences("Mr. Smith paid $1.5 million. Dr. Jones arrived at 3 p.m. on Jan. 5.")
['Mr. Smith paid $1.5 million.', 'Dr. Jones arrived at 3 p.m. on Jan. 5.']
>>> split_sentences('"It is over." He left... Then it rained! Why? Nobody knew.')
['"It is over."', 'He left...', 'Then it rained!', 'Why?', 'Nobody knew.']
>>> split_sentences("He moved to the U.S. He liked the U.S. Government.")
['He moved to the U.S.', 'He liked the U.S. Government.']
>>> split_sentences("今天天气很好。我们去公园吧！你来吗？")
['今天天气很好。', '我们去公园吧！', '你来吗？']
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["split_sentences", "iter_sentences", "split_paragraphs", "is_cjk_char"]

_LATIN_TERMINATORS = ".!?…"
_CJK_TERMINATORS = "。！？"
_CLOSERS = "\"'”’)]}»」』）》〉】〕"
_OPENERS = "\"'“‘([{«「『（《〈【〔"
_CURRENCY = "$£€¥"

_CANDIDATE = re.compile(
    rf"[{re.escape(_LATIN_TERMINATORS + _CJK_TERMINATORS)}]+[{re.escape(_CLOSERS)}]*"
)

# Abbreviations that are (practically) always followed by more of the same sentence.
NEVER_FINAL = frozenset("""
mr mrs ms messrs mme mlle dr prof rev hon fr gen col lt capt sgt maj cmdr adm gov sen rep pres
supt insp e.g i.e cf vs viz approx esp
""".split())

# Abbreviations that may also end a sentence ("... in the U.S. He ...").
AMBIGUOUS = frozenset("""
u.s u.k u.n u.s.a u.s.s.r e.u a.m p.m a.d b.c ph.d etc inc ltd co corp bros jr sr st ave blvd rd
mt ft no nos vol vols pp p fig figs ch sec art dept univ est ca al ed eds op cit ref nov dec jan
feb mar apr jun jul aug sep sept oct mon tue tues wed thu thur thurs fri sat sun
""".split())

# Capitalised words that usually open a sentence; after an ambiguous abbreviation only these split.
STARTERS = frozenset("""
the a an it he she we they i you this that these those there here in on at but and or so if
when what why how who where which our my your his her its their as for to from with by after
before while although though however yet now then thus since because let no not all some many
most one each every such nor also still today tonight yesterday tomorrow mr mrs ms dr
""".split())

_ENUMERATOR = re.compile(r"^(\d{1,3}|[ivxlc]{1,6}|[IVXLC]{1,6}|[a-zA-Z])$")
_DOTTED = re.compile(r"^([A-Za-z]\.)+[A-Za-z]$")


def is_cjk_char(ch: str) -> bool:
    """True for CJK ideographs, kana and hangul (the scripts written without spaces).

    >>> is_cjk_char("中"), is_cjk_char("a"), is_cjk_char("。")
    (True, False, False)
    """
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2FA1F
            or 0xF900 <= cp <= 0xFAFF or 0x3040 <= cp <= 0x30FF or 0xAC00 <= cp <= 0xD7AF)


def _next_word(text: str, pos: int) -> tuple[str, bool]:
    """The word starting at ``pos`` (openers stripped) and whether an opener preceded it."""
    end = pos
    while end < len(text) and not text[end].isspace():
        end += 1
    word = text[pos:end]
    stripped = word.lstrip(_OPENERS)
    return stripped, len(stripped) != len(word)


def _looks_like_start(word: str, opened: bool) -> bool:
    """Whether ``word`` can begin a sentence: not lower case, and a letter/digit/currency."""
    if not word:
        return opened
    ch = word[0]
    if ch.islower():
        return False
    return ch.isalnum() or ch in _CURRENCY or is_cjk_char(ch)


def _prev_token(text: str, start: int, end: int) -> str:
    """The non-space token that ends at ``end`` (exclusive), openers stripped."""
    i = end
    while i > start and not text[i - 1].isspace():
        i -= 1
    token = text[i:end].lstrip(_OPENERS)
    # "Lakes-St." / 'Rayburn-"Mr.': the abbreviation is the last piece after a dash or opener
    return re.split(r"[-—–/" + re.escape(_OPENERS) + "]", token)[-1]


def _is_boundary(text: str, sent_start: int, m: re.Match[str]) -> bool:
    run = m.group(0).rstrip(_CLOSERS)
    end = m.end()
    if any(c in _CJK_TERMINATORS for c in run):
        return True
    if end >= len(text):
        return True
    if not text[end].isspace():
        # "好吗?你" (ASCII ? between CJK) splits; "3.14", "U.S.A" and "a.m." do not
        return run[-1] in "!?" and is_cjk_char(text[end])
    nxt = end
    while nxt < len(text) and text[nxt].isspace():
        nxt += 1
    if nxt >= len(text):
        return True
    word, opened = _next_word(text, nxt)
    if not _looks_like_start(word, opened):
        return False
    if run != ".":
        return True  # "!", "?", "...", "?!"
    token = _prev_token(text, sent_start, m.start())
    low = token.lower()
    if low in NEVER_FINAL:
        return False
    if _ENUMERATOR.match(token) and text[sent_start:m.start()].strip() == token:
        return False  # "1. Introduction", "IV. The war"
    if low in AMBIGUOUS or _DOTTED.match(token) or (len(token) == 1 and token.isupper()):
        head = re.match(r"[A-Za-z]+", word)
        return opened or (head is not None and head.group(0).lower() in STARTERS
                          and head.group(0)[0].isupper())
    return True


def iter_sentences(text: str) -> Iterator[str]:
    """Yield the sentences of ``text`` with whitespace runs collapsed to one space.

    >>> list(iter_sentences("It cost 3.14 dollars, i.e. not much. (Applause.) Thank you."))
    ['It cost 3.14 dollars, i.e. not much.', '(Applause.)', 'Thank you.']
    >>> list(iter_sentences("John F. Kennedy spoke. 1. Introduction follows."))
    ['John F. Kennedy spoke.', '1. Introduction follows.']
    """
    start = 0
    for m in _CANDIDATE.finditer(text):
        if m.end() <= start or not _is_boundary(text, start, m):
            continue
        sentence = " ".join(text[start:m.end()].split())
        if sentence:
            yield sentence
        start = m.end()
    tail = " ".join(text[start:].split())
    if tail:
        yield tail


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` as a list (see :func:`iter_sentences`).

    >>> split_sentences('She said "Stop!" and he stopped. Good.')
    ['She said "Stop!" and he stopped.', 'Good.']
    >>> split_sentences("Prices rose 4.5%. Wages fell, etc. The Fed acted.")
    ['Prices rose 4.5%.', 'Wages fell, etc.', 'The Fed acted.']
    """
    return list(iter_sentences(text))


def split_paragraphs(text: str) -> list[str]:
    """Split ``text`` at blank lines into paragraphs (each stripped, empty ones dropped).

    >>> split_paragraphs("a\\nb\\n\\n\\n c \\n")
    ['a\\nb', 'c']
    """
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
