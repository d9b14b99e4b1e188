"""``BertTokenizer``: Google's FullTokenizer ids, with a reference path and a fast batch path.

Two engines give the same ids (the parity test checks it against Google's ``tokenization.py``):

* the **reference** path: :mod:`bertkit.tokenization.basic` + :mod:`~bertkit.tokenization.wordpiece`,
  readable pure Python, used by :meth:`BertTokenizer.tokenize`;
* the **fast** path: a Rust ``tokenizers.Tokenizer`` (WordPiece, 200-character word limit) whose
  normalizer and pre-tokenizer use character classes computed from *Python's* ``unicodedata`` (so the
  same Unicode tables as Google's code), used by ``__call__``, :meth:`BertTokenizer.encode_batch`
  and :meth:`BertTokenizer.tokenize_batch`.

Where the Rust engine provably cannot match, texts go to the reference path (see :class:`FastEngine`):
lone surrogates (not encodable as UTF-8), and when lower-casing: code points unassigned in Python's
Unicode version, ``Σ`` (Python lower-cases a final sigma in context, Rust per character), and the few
characters whose per-character normalisation differs between Python and Rust (Rust's case tables are
newer, its NFD tables older) or could interact with canonical reordering or CJK padding. A cheap
regex search picks those texts out; everything else goes through Rust.

Example:
    >>> tok = BertTokenizer.from_pretrained("path/to/dir")          # doctest: +SKIP
    >>> tok.tokenize("Unaffable!")                                  # doctest: +SKIP
    ['una', '##ffa', '##ble', '!']
    >>> tok(["a b", "c"], return_tensors=None)["input_ids"]         # doctest: +SKIP
    [[101, 1037, 1038, 102], [101, 1039, 102, 0]]
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bertkit.errors import BertkitError
from bertkit.tokenization import basic
from bertkit.tokenization.base import Span, TokenizerBase, truncate_longest_first  # noqa: F401 (re-exported)
from bertkit.tokenization.wordpiece import MAX_CHARS, PREFIX, wordpiece_spans

logger = logging.getLogger(__name__)

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
REQUIRED_TOKENS = (UNK, CLS, SEP)
CONFIG_NAME = "tokenizer_config.json"
VOCAB_NAME = "vocab.txt"

Ranges = list[tuple[int, int]]


def load_vocab(vocab_file: str | Path) -> dict[str, int]:
    """Read a ``vocab.txt`` (one token per line; id = line number - 1) as Google does.

    Each line is stripped of surrounding whitespace (Python ``str.strip``), so a line holding only
    U+2028 becomes the empty token, as in Google's ``load_vocab``.

    Raises:
        FileNotFoundError: the file does not exist (IsADirectoryError: it is a directory).
        ValueError: a duplicate entry (with both line numbers), [UNK]/[CLS]/[SEP] missing, or
            bytes that are not UTF-8 (file and line).
    """
    from bertkit.fileio import decode_line

    path = Path(vocab_file)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, expected a vocab.txt file",
                                str(path))
    if not path.is_file():
        raise FileNotFoundError(f"vocab file not found: {path}")
    vocab: dict[str, int] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            token = decode_line(raw, str(path), lineno).strip()
            if token in vocab:
                raise ValueError(f"{path}:{lineno}: duplicate vocab entry {token!r} "
                                 f"(first seen on line {vocab[token] + 1})")
            vocab[token] = lineno - 1
    for token in REQUIRED_TOKENS:
        if token not in vocab:
            raise ValueError(f"{path}: vocab has no {token} entry")
    return vocab


class VocabError(BertkitError, ValueError):
    """A vocabulary that cannot be used: not a vocab.txt, or not matching its model's config."""


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object file; VocabError names the file (and line) when it is malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise VocabError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise VocabError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise VocabError(f"{path}: expected a JSON object")
    return data


# ---------------------------------------------------------------------------------------------
# Fast engine


_CATEGORIES = ("Cc Cf Cn Co Cs Ll Lm Lo Lt Lu Mc Me Mn Nd Nl No Pc Pd Pe Pf Pi Po Ps "
               "Sc Sk Sm So Zl Zp Zs").split()
_LABELS = ("other", "drop", "space", "punct", "mn", "cn", "cs")


@functools.lru_cache(maxsize=1)
def _unicode_tables() -> tuple[bytes, dict[str, Ranges]]:
    """Code point ranges, by Python's ``unicodedata``, of each class the Rust pipeline needs.

    ``drop``: U+0000, U+FFFD, Cc/Cf except tab/newline/CR. ``space``: tab/newline/CR, Zs, and Zl/Zp
    (U+2028/U+2029, on which Google's ``str.split()`` also splits; every other ``str.isspace``
    character is Cc and dropped first). ``punct``: :func:`basic.is_punctuation`. ``mn``, ``cn``,
    ``cs``: those categories. Returns the label index of every code point and the ranges.
    """
    label_of = dict.fromkeys(_CATEGORIES, 0)
    label_of.update(Cc=1, Cf=1, Zs=2, Zl=2, Zp=2, Mn=4, Cn=5, Cs=6)
    label_of.update((c, 3) for c in _CATEGORIES if c[0] == "P")
    labels = bytearray(map(label_of.__getitem__,
                           map(unicodedata.category, map(chr, range(0x110000)))))
    for cp in range(128):  # all non-alphanumeric printable ASCII counts as punctuation
        if basic.is_punctuation(chr(cp)):
            labels[cp] = 3
    labels[0x09] = labels[0x0A] = labels[0x0D] = 2
    labels[0xFFFD] = 1
    ranges: dict[str, Ranges] = {k: [] for k in _LABELS}
    for m in re.finditer(rb"(.)\1*", bytes(labels), re.S):
        ranges[_LABELS[labels[m.start()]]].append((m.start(), m.end() - 1))
    return bytes(labels), ranges


def _rust_class(ranges: Ranges) -> str:
    """An Oniguruma character class matching ``ranges``."""
    return "[" + "".join(f"\\x{{{lo:X}}}" + (f"-\\x{{{hi:X}}}" if hi > lo else "")
                         for lo, hi in ranges) + "]"


def _python_class(ranges: Ranges) -> str:
    """A Python ``re`` character class matching ``ranges``."""
    return "[" + "".join(f"\\U{lo:08X}" + (f"-\\U{hi:08X}" if hi > lo else "")
                         for lo, hi in ranges) + "]"


def _to_ranges(cps: Sequence[int]) -> Ranges:
    out: Ranges = []
    for cp in sorted(set(cps)):
        if out and out[-1][1] == cp - 1:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


def _cached_tables(name: str, build: Any) -> Any:
    """``build()`` (JSON-able), cached as JSON under ``$BERTKIT_CACHE/tokenizer``.

    The key covers everything the tables depend on: Python's Unicode version, the ``tokenizers``
    version and the source of this package's tokenization modules. A missing, damaged or stale
    file is rebuilt; a read-only cache costs only speed. Saves ~1 s per process start.
    """
    import hashlib
    import sys

    import tokenizers

    from bertkit.artifacts import cache_dir
    from bertkit.fileio import atomic_write_text

    h = hashlib.sha256(f"{name}|{sys.version}|{unicodedata.unidata_version}|"
                       f"{tokenizers.__version__}".encode())
    for src in sorted(Path(__file__).parent.glob("*.py")):
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    try:
        path = cache_dir() / "tokenizer" / f"{name}-{h.hexdigest()[:24]}.json"
    except OSError:
        return build()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    value = build()
    try:
        atomic_write_text(path, json.dumps(value))
    except OSError as e:
        logger.debug("tokenizer table cache %s not written: %s", path, e)
    return value


def _class_ranges() -> dict[str, Ranges]:
    """:func:`_unicode_tables`'s ranges, through the JSON cache."""
    raw = _cached_tables("ranges", lambda: _unicode_tables()[1])
    return {k: [(lo, hi) for lo, hi in v] for k, v in raw.items()}


def _python_char(ch: str, labels: bytes, do_lower_case: bool) -> str:
    """What Google's pipeline makes of one character before splitting (cleaned, normalised)."""
    label = _LABELS[labels[ord(ch)]]
    if label == "drop":
        return ""
    if label == "space":
        return " "
    return basic.lower_strip_accents(ch) if do_lower_case else ch


class FastEngine:
    """Rust ``tokenizers`` WordPiece configured to reproduce Google's ids, with a per-text fallback.

    The normalizer drops/maps the exact ``drop`` and ``space`` classes (from Python's tables),
    then, when lower-casing, applies Rust's ``Lowercase`` and ``NFD`` and drops the exact Mn class;
    the pre-tokenizer splits on spaces and isolates punctuation and CJK ideographs (exact classes).
    Only Rust's lower-case and NFD tables can disagree with Python. At construction every assigned
    code point where they might (all but CJK unified ideographs, private use and surrogates, which
    have no case or decomposition in any Unicode version) is pushed through Rust one by one and
    compared with Python; disagreeing characters join the *unsafe* set, along with code points
    unassigned in Python that Rust lower-cases, decomposes or gives a combining class (probed the
    same way), ``Σ`` (final-sigma context), characters whose
    normalised form contains a non-Mn combining character (canonical reordering would matter),
    whitespace, or changes CJK-ness (Google pads CJK before normalising), and lone surrogates.
    A text containing an unsafe character is tokenized by the reference path instead. NFD
    decompositions and combining classes of assigned characters are immutable across Unicode
    versions, so per-character agreement plus these exclusions gives whole-text agreement.
    """

    def __init__(self, vocab: dict[str, int], do_lower_case: bool) -> None:
        from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

        self.do_lower_case = do_lower_case
        ranges = _class_ranges()
        steps = [normalizers.Replace(Regex(_rust_class(ranges["drop"])), ""),
                 normalizers.Replace(Regex(_rust_class(ranges["space"])), " ")]
        if do_lower_case:
            steps += [normalizers.Lowercase(), normalizers.NFD(),
                      normalizers.Replace(Regex(_rust_class(ranges["mn"])), "")]
        tok = Tokenizer(models.WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=MAX_CHARS,
                                         continuing_subword_prefix=PREFIX))
        tok.normalizer = normalizers.Sequence(steps)
        cjk: Ranges = list(basic.CJK_RANGES)
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(" ", "removed"),
            pre_tokenizers.Split(Regex(_rust_class(ranges["punct"])), "isolated"),
            pre_tokenizers.Split(Regex(_rust_class(cjk)), "isolated"),
        ])
        self.tokenizer = tok
        unsafe = list(ranges["cs"])
        if do_lower_case:
            def probe() -> Ranges:
                labels = _unicode_tables()[0]
                return _to_ranges(self._disagreements(labels, ranges)
                                  + self._unassigned_disagreements(ranges))

            unsafe += [(lo, hi) for lo, hi in _cached_tables("unsafe-lower", probe)]
        self.unsafe_ranges: Ranges = sorted(unsafe)
        self._unsafe = re.compile(_python_class(self.unsafe_ranges)) if unsafe else None

    def _unassigned_disagreements(self, ranges: dict[str, Ranges]) -> list[int]:
        """Code points unassigned in Python's Unicode that Rust lower-cases, decomposes or reorders.

        Python leaves them untouched (no case, no decomposition, combining class 0). Each is probed
        through the Rust normalizer, and through Rust's NFD next to U+0334 (class 1) and U+05B0
        (class 10), which moves it exactly when Rust gives it a non-zero combining class.
        Unassigned planes 4-13 are sampled (one code point in 4093), not probed exhaustively.
        """
        from tokenizers import normalizers

        case_nfd = normalizers.Sequence([normalizers.Lowercase(), normalizers.NFD()])
        nfd = normalizers.NFD()
        sep = "\ue000"
        bad: list[int] = []
        for lo, hi in ranges["cn"]:
            # Planes 4-13 are empty in every Unicode version (through 16.0): probe a sample only.
            cps = [*range(lo, min(hi, 0x3FFFF) + 1), *range(max(lo, 0x40000), min(hi, 0xDFFFF) + 1,
                   4093), *range(max(lo, 0xE0000), hi + 1)]
            chars = "".join(map(chr, cps))
            probes = ((sep.join(chars), case_nfd),  # the other steps use Python's classes
                      (("\u0334" + sep).join(chars) + "\u0334", nfd),
                      ("\u05b0" + (sep + "\u05b0").join(chars), nfd))
            for text, norm in probes:
                got = norm.normalize_str(text)
                if got != text:
                    bad += [ord(c) for c, t, g in zip(chars, text.split(sep), got.split(sep), strict=True)
                            if g != t]
        return bad

    def _disagreements(self, labels: bytes, ranges: dict[str, Ranges]) -> list[int]:
        """Code points where Rust's lower-case/NFD path may differ from Python's (lower-case mode)."""
        skip = [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0x20000, 0x2A6DF), (0x2A700, 0x2EBEF),
                (0x30000, 0x323AF), (0xE000, 0xF8FF), (0xF0000, 0x10FFFF)]
        skip += ranges["cn"] + ranges["cs"]
        skip.sort()
        cps: list[int] = []
        lo = 0
        for s, e in skip:
            cps.extend(range(lo, s))
            lo = max(lo, e + 1)
        cps.extend(range(lo, 0x110000))
        sep = "\ue000"  # private use: untouched by every step, never produced by one
        rust = self.tokenizer.normalizer.normalize_str(sep.join(map(chr, cps))).split(sep)
        bad = [0x03A3]
        combining, category = unicodedata.combining, unicodedata.category
        for cp, got in zip(cps, rust, strict=True):
            ch = chr(cp)
            want = _python_char(ch, labels, True)
            if got != want:
                bad.append(cp)
            elif want == ch:
                if combining(ch) and category(ch) != "Mn":
                    bad.append(cp)
            elif want and want != " " and (
                any(combining(c) and category(c) != "Mn" for c in want)
                or any(c.isspace() for c in want)
                or basic.is_cjk(ch) != any(basic.is_cjk(c) for c in want)
                or (basic.is_cjk(ch) and len(want) != 1)
            ):
                bad.append(cp)
        return bad

    def needs_fallback(self, text: str) -> bool:
        """True when ``text`` holds a character the Rust pipeline might treat differently."""
        return self._unsafe is not None and self._unsafe.search(text) is not None

    def encode(self, texts: Sequence[str]) -> list[tuple[list[int], list[Span]] | None]:
        """Ids and character offsets per text, or None for texts that need the reference path."""
        out: list[tuple[list[int], list[Span]] | None] = [None] * len(texts)
        idx = [i for i, t in enumerate(texts) if not self.needs_fallback(t)]
        if len(idx) < len(texts):
            logger.debug("fast tokenizer: %d of %d texts use the reference path",
                         len(texts) - len(idx), len(texts))
        encs = self.tokenizer.encode_batch([texts[i] for i in idx], add_special_tokens=False)
        for i, enc in zip(idx, encs, strict=True):
            out[i] = (enc.ids, enc.offsets)
        return out


# ---------------------------------------------------------------------------------------------
# The tokenizer


class BertTokenizer(TokenizerBase):
    """Google's BERT tokenizer (BasicTokenizer + WordPiece) with Google's exact ids.

    Args:
        vocab_file: a ``vocab.txt``, one token per line.
        do_lower_case: lower-case and strip accents (True for uncased and Chinese models).
    """

    tokenizer_class = "BertTokenizer"

    def __init__(self, vocab_file: str | Path, do_lower_case: bool = True) -> None:
        self.vocab_file = Path(vocab_file)
        self.vocab: dict[str, int] = load_vocab(vocab_file)
        self.ids_to_tokens: dict[int, str] = {i: t for t, i in self.vocab.items()}
        self.do_lower_case = do_lower_case
        self.unk_token_id: int = self.vocab[UNK]
        self.cls_token_id: int = self.vocab[CLS]
        self.sep_token_id: int = self.vocab[SEP]
        self.pad_token_id: int = self.vocab.get(PAD, 0)  # 0 when the vocab has no [PAD]
        self.mask_token_id: int | None = self.vocab.get(MASK)
        self._max_piece = max(len(t) for t in self.vocab)
        self._engine: FastEngine | None = None

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        """Number of vocabulary entries."""
        return len(self.vocab)

    def __repr__(self) -> str:
        return (f"BertTokenizer(vocab_file={str(self.vocab_file)!r}, vocab_size={len(self)}, "
                f"do_lower_case={self.do_lower_case})")

    # -- reference path -------------------------------------------------------------------------

    def tokenize_with_offsets(self, text: str) -> list[tuple[str, int, int]]:
        """Reference path: WordPiece tokens, each with its ``[start, end)`` span in ``text``."""
        out: list[tuple[str, int, int]] = []
        for word, origins in basic.basic_tokenize_with_origins(text, self.do_lower_case):
            for piece, s, e in wordpiece_spans(word, self.vocab, max_piece_chars=self._max_piece):
                out.append((piece, *basic.span(origins, s, e)))
        return out

    def tokenize(self, text: str) -> list[str]:
        """Reference path: Google's ``FullTokenizer.tokenize``.

        >>> tok.tokenize("UNwant\\u00e9d,running")          # doctest: +SKIP
        ['un', '##want', '##ed', ',', 'running']
        """
        out: list[str] = []
        for word in basic.basic_tokenize(text, self.do_lower_case):
            for piece, _, _ in wordpiece_spans(word, self.vocab, max_piece_chars=self._max_piece):
                out.append(piece)
        return out

    def _reference(self, text: str) -> tuple[list[int], list[Span]]:
        toks = self.tokenize_with_offsets(text)
        return [self.vocab[t] for t, _, _ in toks], [(s, e) for _, s, e in toks]

    # -- fast path ------------------------------------------------------------------------------

    @property
    def engine(self) -> FastEngine:
        """The Rust engine, built on first use (about half a second)."""
        if self._engine is None:
            self._engine = FastEngine(self.vocab, self.do_lower_case)
        return self._engine

    def encode_batch_with_offsets(
        self, texts: Sequence[str], fast: bool = True
    ) -> list[tuple[list[int], list[Span]]]:
        """Ids (no special tokens) and offsets into each text; ``fast=False`` forces the reference."""
        if not fast:
            return [self._reference(t) for t in texts]
        return [r if r is not None else self._reference(t)
                for t, r in zip(texts, self.engine.encode(texts), strict=True)]

    def encode_batch(self, texts: Sequence[str], fast: bool = True) -> list[list[int]]:
        """Ids of each text, without special tokens (for pre-training data creation)."""
        return [ids for ids, _ in self.encode_batch_with_offsets(texts, fast)]

    def tokenize_batch(self, texts: Sequence[str], fast: bool = True) -> list[list[str]]:
        """WordPiece tokens of each text (the fast twin of :meth:`tokenize`)."""
        return [self.convert_ids_to_tokens(ids) for ids in self.encode_batch(texts, fast)]

    # -- ids ------------------------------------------------------------------------------------

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Vocabulary ids; tokens not in the vocabulary map to ``[UNK]``."""
        return [self.vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        """Tokens of ``ids`` (KeyError for an id outside the vocabulary)."""
        return [self.ids_to_tokens[int(i)] for i in ids]

    def is_word_start(self, token: str) -> bool:
        """A WordPiece token begins a word unless it is a ``##`` continuation."""
        return not token.startswith(PREFIX)

    # -- text back ------------------------------------------------------------------------------

    def decode(self, ids: Sequence[int] | Any, skip_special_tokens: bool = True) -> str:
        """Tokens joined by spaces with ``##`` pieces glued on (lossy: case, accents, spacing).

        ``skip_special_tokens`` drops [PAD], [CLS], [SEP] and [MASK]; [UNK] is kept.

        >>> tok.decode(tok.encode("Unaffable!"))            # doctest: +SKIP
        'unaffable !'
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        skip = {PAD, CLS, SEP, MASK} if skip_special_tokens else set()
        out = ""
        for tok in self.convert_ids_to_tokens(ids):
            if tok in skip:
                continue
            if tok.startswith(PREFIX) and out:
                out += tok[len(PREFIX):]
            else:
                out += (" " if out else "") + tok
        return out

    # -- files ----------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | Path, do_lower_case: bool | None = None
                        ) -> BertTokenizer:
        """Load ``vocab.txt`` and ``do_lower_case`` (default True) from ``tokenizer_config.json``.

        ``directory`` may also be a ``vocab.txt`` path itself. ``do_lower_case`` given overrides
        the directory's setting.

        A model directory's ``vocab.txt`` is checked against ``vocab_size`` in its ``config.json``:
        a vocabulary *longer* than ``vocab_size`` is an error (ids past the embedding table), naming
        both files and sizes; a *shorter* one is only logged as a warning, since real checkpoints
        pad ``vocab_size`` above the vocabulary (e.g. to a multiple of 8) and then simply never
        produce the extra ids.

        Raises:
            VocabError: ``directory`` is neither a model directory nor a vocab.txt (e.g. a text
                corpus), its vocab.txt is longer than config.json's ``vocab_size``, or one of
                its JSON files is malformed.
            FileNotFoundError: no such directory, or no vocab.txt in it.
        """
        path = Path(directory)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "model directory or vocab.txt not found",
                                    str(path))
        vocab = path if path.is_file() else path / VOCAB_NAME
        if path.is_dir() and not vocab.is_file():
            raise FileNotFoundError(f"{path} is not a model directory: it has no {VOCAB_NAME}")
        config_path = vocab.parent / CONFIG_NAME
        if do_lower_case is None:
            do_lower_case = True
            if config_path.is_file():
                do_lower_case = bool(_read_json(config_path).get("do_lower_case", True))
            elif (vocab.parent / "bert_config.json").is_file():  # Google's layout says nothing
                from bertkit.tokenization.wordpiece import guess_do_lower_case

                do_lower_case = guess_do_lower_case(vocab)
                logger.info("%s: do_lower_case=%s, guessed from the vocabulary (Google's "
                            "directories do not record it)", vocab, do_lower_case)
        try:
            tok = cls(vocab, do_lower_case=do_lower_case)
        except ValueError as e:
            if path.is_dir() or isinstance(e, VocabError):
                raise
            raise VocabError(f"{path} is not a model directory (config.json, vocab.txt) nor a "
                             f"vocab.txt: {e}") from e
        model_config = vocab.parent / "config.json"
        if path.is_dir() and model_config.is_file():
            size = _read_json(model_config).get("vocab_size")
            if isinstance(size, int) and len(tok) > size:
                raise VocabError(f"{vocab} has {len(tok)} entries but {model_config} has "
                                 f"vocab_size {size}: ids {size}..{len(tok) - 1} would be out "
                                 "of range; use the model's own vocab.txt")
            if isinstance(size, int) and len(tok) < size:
                logger.warning("%s has %d entries, fewer than vocab_size %d in %s (padded "
                               "embedding table?); ids %d.. are never produced", vocab,
                               len(tok), size, model_config, len(tok))
        return tok

    def save_pretrained(self, directory: str | Path) -> list[Path]:
        """Write ``vocab.txt`` and a ``tokenizer_config.json`` that transformers can load."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        vocab_path = out / VOCAB_NAME
        tokens = [self.ids_to_tokens[i] for i in range(len(self.ids_to_tokens))]
        vocab_path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.do_lower_case,
            "tokenize_chinese_chars": True,
            "strip_accents": None,
            "unk_token": UNK, "sep_token": SEP, "pad_token": PAD, "cls_token": CLS,
            "mask_token": MASK,
            "model_max_length": 512,
        }
        config_path = out / CONFIG_NAME
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return [vocab_path, config_path]
