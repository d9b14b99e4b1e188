"""Bulk tokenization for pre-training data: Google's ids for millions of lines, fast.

:class:`WordPieceEncoder` wraps :class:`bertkit.tokenization.tokenizer.BertTokenizer` (Google-exact
ids) and encodes each unique whitespace chunk once (see :meth:`WordPieceEncoder.encode`).
:class:`TokenizerEncoder` does the same job for the other families' tokenizers (byte-level BPE,
SentencePiece), whose Rust engines encode whole lines fast enough. The encoder cache and pool
helpers let worker processes reuse the main process's built engine.
"""

from __future__ import annotations

import itertools
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TokenizerEncoder", "WordPieceEncoder", "encode_chunk", "encoder_key", "get_encoder",
           "install_encoder"]


class WordPieceEncoder:
    """Google's FullTokenizer ids in bulk (no specials), on :class:`bertkit.BertTokenizer`.

    ``encode(lines) -> (ids [T] int32, lengths [S] int64, cont)``: the ids of all lines
    concatenated. Text that looks like a special token is split like any other text, as in
    Google's code. ``tokenizer`` is the :class:`~bertkit.tokenization.base.TokenizerBase` (special
    ids, ``is_word_start``).
    """

    def __init__(self, vocab_file: str | os.PathLike[str], do_lower_case: bool = True) -> None:
        from bertkit.tokenization.tokenizer import BertTokenizer

        self.bert = BertTokenizer(vocab_file, do_lower_case=do_lower_case)
        self.tokenizer = self.bert
        self.vocab = self.bert.vocab
        self.tokens = [""] * (max(self.vocab.values()) + 1)
        for t, i in self.vocab.items():
            self.tokens[i] = t
        _set_special_ids(self, self.bert, vocab_file)
        self._word_index: dict[str, int] = {}  # unique chunk -> its row in the piece table
        self._piece_ids: list[int] = []
        self._piece_off: list[int] = [0]

    def prepare(self) -> None:
        """Build the Rust engine now, so that workers receive it built."""
        self.bert.engine  # noqa: B018

    def __getstate__(self) -> dict[str, Any]:  # pickled for workers: without the chunk table
        state = dict(self.__dict__)
        state.update(_word_index={}, _piece_ids=[], _piece_off=[0])
        return state

    def encode(self, lines: list[str], with_words: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """ids [T] int32, lengths [S] int64 and (``with_words``) continuation flags [T] bool.

        With ``with_words`` a token continues a word when it comes from the same
        whitespace-delimited chunk of the line as the token before it (supplied word boundaries;
        whitespace as BERT sees it: space, tab, newline, CR and Unicode space separators).

        BERT's tokenization of a line is the concatenation of that of its whitespace-separated
        chunks, so lines whose whitespace Python's ``str.split`` sees exactly as BERT does (no
        ``\x0b \x0c \x1c-\x1f \x85 \u2028 \u2029``) are encoded chunk by chunk, each unique chunk
        once through the Rust tokenizer and then by table lookup; the other lines go whole to the
        Rust tokenizer. Tested equal to whole-line encoding on real text and tricky strings.
        """
        if len(self._word_index) > 2_000_000:  # bound the cache
            self._word_index.clear()
            self._piece_ids, self._piece_off = [], [0]
        if _SPLIT_MISMATCH.search("\n".join(lines)) is None:  # the usual case: one search
            fast = np.ones(len(lines), dtype=bool)
        else:
            fast = np.fromiter((_SPLIT_MISMATCH.search(line) is None for line in lines),
                               dtype=bool, count=len(lines))
        fast_lines = [line for line, f in zip(lines, fast, strict=True) if f]
        split = [line.split() for line in fast_lines]
        words_per_line = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
        words = list(itertools.chain.from_iterable(split))
        index = self._word_index
        missing = list(set(words).difference(index))
        if missing:
            ids_new, counts = self._encode_words(missing)
            index.update(zip(missing, range(len(index), len(index) + len(missing)), strict=True))
            self._piece_ids.extend(ids_new.tolist())
            self._piece_off.extend((self._piece_off[-1] + np.cumsum(counts)).tolist())
        piece_ids = np.array(self._piece_ids, dtype=np.int32)
        piece_off = np.array(self._piece_off, dtype=np.int64)
        widx = np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))
        wlen = piece_off[widx + 1] - piece_off[widx]
        fast_ids = piece_ids[_ragged_arange(piece_off[widx], wlen)]
        line_of_word = np.repeat(np.arange(len(split)), words_per_line)
        fast_lens = np.bincount(line_of_word, weights=wlen, minlength=len(split)).astype(np.int64)
        fast_cont = None
        if with_words:  # every piece but a chunk's first continues the word
            fast_cont = np.ones(len(fast_ids), dtype=bool)
            fast_cont[(np.cumsum(wlen) - wlen)[wlen > 0]] = False
        if fast.all():
            return fast_ids, fast_lens, fast_cont
        slow_lines = [line for line, f in zip(lines, fast, strict=True) if not f]
        slow = self.bert.encode_batch_with_offsets(slow_lines)
        lens = np.zeros(len(lines), dtype=np.int64)
        lens[fast] = fast_lens
        lens[~fast] = [len(x) for x, _ in slow]
        starts = np.cumsum(lens) - lens
        ids = np.zeros(int(lens.sum()), dtype=np.int32)
        fast_pos = _ragged_arange(starts[fast], fast_lens)
        ids[fast_pos] = fast_ids
        cont = None if fast_cont is None else np.zeros(len(ids), dtype=bool)
        for st, line, (x, offsets) in zip(starts[~fast].tolist(), slow_lines, slow, strict=True):
            ids[st:st + len(x)] = x
            if cont is not None:
                cont[st:st + len(x)] = _whitespace_continuation(line, offsets)
        if cont is not None:
            cont[fast_pos] = fast_cont
        return ids, lens, cont

    def _encode_words(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of whitespace-free ``words`` (concatenated, int32) and the count per word.

        Words are joined by spaces into long strings (one Rust call per 4,096 words rather than
        per word) and each token goes back to its word by its character offset.
        """
        ids_parts, counts_parts = [], []
        step = 4096
        batches = [words[i:i + step] for i in range(0, len(words), step)]
        encs = self.bert.encode_batch_with_offsets([" ".join(b) for b in batches])
        for b, (e_ids, e_offsets) in zip(batches, encs, strict=True):
            wl = np.fromiter(map(len, b), dtype=np.int64, count=len(b))
            starts = np.cumsum(wl + 1) - (wl + 1)
            tok_start = np.array([o[0] for o in e_offsets], dtype=np.int64)
            word_of_tok = np.searchsorted(starts, tok_start, side="right") - 1
            ids_parts.append(np.array(e_ids, dtype=np.int32))
            counts_parts.append(np.bincount(word_of_tok, minlength=len(b)))
        return np.concatenate(ids_parts), np.concatenate(counts_parts)

    def encode_reference(self, lines: list[str]) -> list[list[int]]:
        """Ids per line, each line tokenized whole (the test oracle)."""
        return self.bert.encode_batch(lines)


class TokenizerEncoder:
    """Bulk ids (no specials) from any :class:`~bertkit.tokenization.base.TokenizerBase`.

    ``encode(lines) -> (ids [T] int32, lengths [S] int64, cont)`` as :class:`WordPieceEncoder`;
    lines go to the tokenizer's batch encoder 4,096 at a time.
    """

    def __init__(self, tokenizer: Any, source: str | os.PathLike[str]) -> None:
        self.tokenizer = tokenizer
        self.vocab: dict[str, int] = tokenizer.vocab
        self.tokens = [""] * (max(self.vocab.values()) + 1)
        for t, i in self.vocab.items():
            self.tokens[i] = t
        _set_special_ids(self, tokenizer, source)

    def prepare(self) -> None:
        """Nothing to build ahead: the engine exists once the tokenizer does."""

    def encode(self, lines: list[str], with_words: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """ids [T] int32, lengths [S] int64 and (``with_words``) continuation flags [T] bool
        (a token continues a word when it starts in the same whitespace-delimited chunk)."""
        ids: list[int] = []
        lens = np.zeros(len(lines), dtype=np.int64)
        conts: list[np.ndarray] = []
        step = 4096
        for lo in range(0, len(lines), step):
            batch = lines[lo:lo + step]
            for j, (x, offsets) in enumerate(self.tokenizer.encode_batch_with_offsets(batch)):
                ids.extend(x)
                lens[lo + j] = len(x)
                if with_words:
                    conts.append(_whitespace_continuation(batch[j], offsets))
        cont = None
        if with_words:
            cont = np.concatenate(conts) if conts else np.zeros(0, dtype=bool)
        return np.array(ids, dtype=np.int32), lens, cont

    def encode_reference(self, lines: list[str]) -> list[list[int]]:
        """Ids per line (the test oracle)."""
        return self.tokenizer.encode_batch(lines)


def _set_special_ids(encoder: Any, tokenizer: Any, source: str | os.PathLike[str]) -> None:
    """``cls_id``, ``sep_id``, ``mask_id``, ``pad_id`` of ``encoder`` from ``tokenizer``.

    Raises:
        ValueError: the vocabulary has no mask token (pre-training needs one), naming ``source``.
    """
    if tokenizer.mask_token_id is None:
        raise ValueError(f"{source}: vocabulary has no mask token (pre-training masks with it)")
    encoder.cls_id, encoder.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    encoder.mask_id, encoder.pad_id = tokenizer.mask_token_id, tokenizer.pad_token_id


_SPLIT_MISMATCH = re.compile("[\x0b\x0c\x1c-\x1f\x85\u2028\u2029]")


def _ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each (s, n): int64 [sum(lengths)].

    >>> _ragged_arange(np.array([10, 0, 5]), np.array([2, 0, 3])).tolist()
    [10, 11, 5, 6, 7]
    """
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(total)


def _whitespace_continuation(line: str, offsets: list[tuple[int, int]]) -> np.ndarray:
    """bool [T]: token t starts in the same whitespace-delimited chunk as token t-1 (BERT's
    whitespace: tab, newline, CR, Zs, Zl, Zp; other controls are dropped, not separators)."""
    if not offsets:
        return np.zeros(0, dtype=bool)
    space = np.fromiter((c in "\t\n\r" or unicodedata.category(c) in ("Zs", "Zl", "Zp")
                         for c in line), dtype=bool, count=len(line))
    word_of_char = np.cumsum(np.concatenate([[True], space[1:] & ~space[:-1]]))
    starts = np.array([s for s, _ in offsets], dtype=np.int64)
    w = word_of_char[np.minimum(starts, len(line) - 1)]
    out = np.zeros(len(starts), dtype=bool)
    out[1:] = w[1:] == w[:-1]
    return out


Encoder = WordPieceEncoder | TokenizerEncoder
_ENCODERS: dict[tuple[str, bool], Any] = {}


def encoder_key(vocab_file: str | os.PathLike[str], do_lower_case: bool) -> tuple[str, bool]:
    from bertkit.data.vocab_files import vocab_sha256

    return vocab_sha256(vocab_file), do_lower_case


def _build_encoder(vocab_file: str | os.PathLike[str], do_lower_case: bool) -> Encoder:
    """A WordPiece ``vocab.txt`` (or a directory holding only one): :class:`WordPieceEncoder`;
    another family's tokenizer directory: :class:`TokenizerEncoder` (its casing from its files)."""
    from bertkit.tokenization import AutoTokenizer

    path = Path(vocab_file)
    if path.is_dir():
        if AutoTokenizer.kind(path) == "wordpiece":
            return WordPieceEncoder(path / "vocab.txt", do_lower_case)
        return TokenizerEncoder(AutoTokenizer.from_pretrained(path), path)
    return WordPieceEncoder(path, do_lower_case)


def get_encoder(vocab_file: str | os.PathLike[str], do_lower_case: bool) -> Encoder:
    """One encoder per vocabulary (by content) and casing per process.

    Building one costs ~0.1 s once the tokenizer's Unicode tables are in the JSON cache (see
    ``bertkit.tokenization.tokenizer._cached_tables``); the pool's workers get the main process's
    encoder through the pool initializer (see :func:`install_encoder`).
    """
    key = encoder_key(vocab_file, do_lower_case)
    if key not in _ENCODERS:
        enc = _build_encoder(vocab_file, do_lower_case)
        enc.prepare()  # build it now, so that workers receive it built
        _ENCODERS[key] = enc
    return _ENCODERS[key]


def install_encoder(key: tuple[str, bool], path: str) -> None:
    """Pool initializer: unpickle the main process's encoder from ``path`` (~50 ms, not ~1 s).

    A path, not the bytes: spawn writes a new process's arguments through a pipe before the child
    runs, and a child that dies on start (an unguarded script re-imported) would leave the parent
    blocked writing megabytes into it instead of seeing a broken pool.
    """
    import pickle

    _ENCODERS[key] = pickle.loads(Path(path).read_bytes())


def encode_chunk(vocab_file: str, do_lower_case: bool, lines: list[str], with_words: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Tokenize ``lines`` in a worker."""
    return get_encoder(vocab_file, do_lower_case).encode(lines, with_words=with_words)
