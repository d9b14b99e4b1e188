"""Google's BasicTokenizer as small pure functions (the readable reference path).

The pipeline, applied to raw text before WordPiece (see ``BERT_REFERENCE.md``, "Tokenizer"):

1. :func:`clean_text` drops U+0000, U+FFFD and control characters and maps whitespace to a space.
2. :func:`pad_cjk` puts spaces around every CJK ideograph.
3. :func:`whitespace_split` splits on whitespace.
4. When lower-casing, :func:`lower_strip_accents` lower-cases, applies NFD and drops marks (Mn).
5. :func:`split_punctuation` makes every punctuation character a token of its own.

Two facts from Google's ``tokenization.py`` (its current version) that the prose summary glosses:
"control" means Unicode category ``Cc`` or ``Cf`` (emoji-era change: private use, surrogates and
unassigned code points are kept, and usually become ``[UNK]`` later), and the whitespace split is
Python's ``str.split()``, so U+2028/U+2029 (categories Zl/Zp) also separate words.

Example:
    >>> basic_tokenize(" \\tHeLLo!how  \\n Are yoU?  ")
    ['hello', '!', 'how', 'are', 'you', '?']
    >>> basic_tokenize("HäLLo!how  \\n Are yoU?  ", do_lower_case=False)
    ['HäLLo', '!', 'how', 'Are', 'yoU', '?']
"""

from __future__ import annotations

import functools
import unicodedata

# Each CJK block Google pads with spaces, as inclusive code point ranges. Hangul, kana, Thai: not here.
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

# A word is an (text, origins) pair: origins[i] is the index in the ORIGINAL text of text[i].
Word = tuple[str, list[int]]


@functools.lru_cache(maxsize=1 << 16)
def is_whitespace(ch: str) -> bool:
    """Space, tab, newline, carriage return or category Zs.

    >>> [is_whitespace(c) for c in " \\t\\u00a0\\u2028x"]
    [True, True, True, False, False]
    """
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


@functools.lru_cache(maxsize=1 << 16)
def is_control(ch: str) -> bool:
    """Category Cc or Cf, except tab, newline and carriage return (they are whitespace).

    >>> [is_control(c) for c in "\\x07\\u200b\\t\\ue000"]
    [True, True, False, False]
    """
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf")


@functools.lru_cache(maxsize=1 << 16)
def is_punctuation(ch: str) -> bool:
    """ASCII 33-47, 58-64, 91-96, 123-126 (all non-alphanumeric ASCII) or category P*.

    >>> [is_punctuation(c) for c in "$^`~a\\u00bf\\u20ac"]
    [True, True, True, True, False, True, False]
    """
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


@functools.lru_cache(maxsize=1 << 16)
def is_cjk(ch: str) -> bool:
    """True for a CJK ideograph in one of :data:`CJK_RANGES`.

    >>> [is_cjk(c) for c in "中한あ"]
    [True, False, False]
    """
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def clean_text(text: str) -> str:
    """Drop U+0000, U+FFFD and control characters; map every whitespace character to a space.

    >>> clean_text("a\\x00b\\ufffdc\\u200bd\\te\\u00a0f")
    'abcd e f'
    """
    out = []
    for ch in text:
        if ch in "\x00\ufffd" or is_control(ch):
            continue
        out.append(" " if is_whitespace(ch) else ch)
    return "".join(out)


def pad_cjk(text: str) -> str:
    """Put a space on each side of every CJK ideograph.

    >>> pad_cjk("ab中文c")
    'ab 中  文 c'
    """
    return "".join(f" {ch} " if is_cjk(ch) else ch for ch in text)


def whitespace_split(text: str) -> list[str]:
    """Split on whitespace as Python's ``str.split()`` does (Google's ``whitespace_tokenize``).

    >>> whitespace_split("  a b\\u2028c  ")
    ['a', 'b', 'c']
    """
    return text.split()


def lower_strip_accents(word: str) -> str:
    """Lower-case, decompose (NFD) and drop non-spacing marks (category Mn).

    >>> lower_strip_accents("Ünïcödé")
    'unicode'
    """
    if word.isascii():
        return word.lower()
    nfd = unicodedata.normalize("NFD", word.lower())
    return "".join(ch for ch in nfd if unicodedata.category(ch) != "Mn")


def split_punctuation(word: str) -> list[str]:
    """Make every punctuation character a token of its own.

    >>> split_punctuation("a.b,,c")
    ['a', '.', 'b', ',', ',', 'c']
    """
    out: list[str] = []
    start_new = True
    for ch in word:
        if is_punctuation(ch):
            out.append(ch)
            start_new = True
        else:
            if start_new:
                out.append("")
            start_new = False
            out[-1] += ch
    return out


def basic_tokenize(text: str, do_lower_case: bool = True) -> list[str]:
    """The whole BasicTokenizer: clean, pad CJK, split, (lower + strip accents), split punctuation.

    >>> basic_tokenize("Héllo, 世界!")
    ['hello', ',', '世', '界', '!']
    """
    tokens: list[str] = []
    for word in whitespace_split(pad_cjk(clean_text(text))):
        if do_lower_case:
            word = lower_strip_accents(word)
        tokens.extend(split_punctuation(word))
    # Google re-joins with spaces and splits again: empty pieces vanish (a word made only of marks).
    return whitespace_split(" ".join(tokens))


# ----------------------------------------------------------------------------------------------
# The same pipeline, tracking for every output character the original character it came from.
# Lower-casing ("İ" -> "i̇") and NFD ("한" -> three jamo) expand one character into several;
# nothing ever merges characters, so each output character has exactly one origin.


_KEEP, _DROP, _SPACE, _CJK = range(4)


@functools.lru_cache(maxsize=1 << 16)
def _kind(ch: str) -> int:
    """How steps 1-3 treat a character: kept, dropped, a separator, or a CJK word of its own."""
    if ch in "\x00\ufffd" or is_control(ch):
        return _DROP
    if is_whitespace(ch) or ch.isspace():  # isspace: U+2028/U+2029 also split in str.split()
        return _SPACE
    return _CJK if is_cjk(ch) else _KEEP


def _clean_and_split(text: str) -> list[Word]:
    """Steps 1-3 with origins: the whitespace-separated words of the cleaned, CJK-padded text."""
    words: list[Word] = []
    cur: list[int] = []  # original indices of the current word's characters
    for i, ch in enumerate(text):
        kind = _kind(ch)
        if kind == _KEEP:
            cur.append(i)
        elif kind != _DROP:
            if cur:
                words.append(("".join(text[j] for j in cur), cur))
                cur = []
            if kind == _CJK:
                words.append((ch, [i]))
    if cur:
        words.append(("".join(text[j] for j in cur), cur))
    return words


def _canonical_order(chars: list[str], origins: list[int]) -> None:
    """Stable-sort each run of combining characters (ccc > 0) by combining class, in place."""
    n = len(chars)
    i = 0
    while i < n:
        if unicodedata.combining(chars[i]) == 0:
            i += 1
            continue
        j = i
        while j < n and unicodedata.combining(chars[j]) != 0:
            j += 1
        run = sorted(zip(chars[i:j], origins[i:j], strict=True), key=lambda p: unicodedata.combining(p[0]))
        chars[i:j] = [c for c, _ in run]
        origins[i:j] = [o for _, o in run]
        i = j


def _lower_strip_accents_word(word: Word) -> Word:
    """:func:`lower_strip_accents` on a word, carrying origins through each expansion."""
    text, origins = word
    if text.isascii():
        return text.lower(), origins
    lowered = text.lower()  # whole-word lower: Python applies the final-sigma rule in context
    chars: list[str] = []
    orig: list[int] = []
    pos = 0
    for ch, o in zip(text, origins, strict=True):
        n = len(ch.lower())  # the expansion length does not depend on context
        for lc in lowered[pos:pos + n]:
            for dc in unicodedata.normalize("NFD", lc):
                chars.append(dc)
                orig.append(o)
        pos += n
    _canonical_order(chars, orig)
    keep = [k for k, c in enumerate(chars) if unicodedata.category(c) != "Mn"]
    return "".join(chars[k] for k in keep), [orig[k] for k in keep]


def _split_punctuation_word(word: Word) -> list[Word]:
    """:func:`split_punctuation` with origins; also splits on whitespace and drops empty words."""
    text, origins = word
    out: list[Word] = []
    start = 0
    for k, ch in enumerate(text):
        if is_punctuation(ch) or ch.isspace():
            if k > start:
                out.append((text[start:k], origins[start:k]))
            if not ch.isspace():
                out.append((ch, [origins[k]]))
            start = k + 1
    if len(text) > start:
        out.append((text[start:], origins[start:]))
    return out


def basic_tokenize_with_origins(text: str, do_lower_case: bool = True) -> list[Word]:
    """:func:`basic_tokenize`, returning each token with the original index of each character.

    >>> basic_tokenize_with_origins("İs 中,")
    [('is', [0, 1]), ('中', [3]), (',', [4])]
    """
    out: list[Word] = []
    for word in _clean_and_split(text):
        if do_lower_case:
            word = _lower_strip_accents_word(word)
        out.extend(_split_punctuation_word(word))
    return out


def span(origins: list[int], start: int, end: int) -> tuple[int, int]:
    """Character span in the original text covered by characters ``start:end`` of a token.

    >>> span([3, 3, 3, 4], 1, 3)
    (3, 4)
    """
    sel = origins[start:end]
    return min(sel), max(sel) + 1
