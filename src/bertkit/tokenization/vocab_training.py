"""Train a WordPiece vocabulary (Google's ``vocab.txt``) from raw text with the ``tokenizers`` trainer.

The text is normalised exactly as Google's ``BasicTokenizer`` does before WordPiece (control
characters removed, whitespace unified, every CJK ideograph split off, lower-casing and accent
stripping when ``lowercase``; split on whitespace and punctuation), using ``tokenizers``'
``BertNormalizer`` and ``BertPreTokenizer``, and the pieces come from its ``WordPieceTrainer``.

Layout of the written ``vocab.txt`` (one token per line, line number = id), exactly ``vocab_size``
lines::

    [PAD] [UNK] [CLS] [SEP] [MASK]     ids 0-4 (Google's vocabularies put [PAD] at 0 too, but
                                       [UNK]/[CLS]/[SEP]/[MASK] at 100-103 after [unused0-98];
                                       BERT finds them by name, so the compact layout loads the same)
    single characters, then ##characters   every character kept by ``limit_alphabet``, both as a
                                       word start and as a ``##`` continuation, so no kept
                                       character ever turns a word into [UNK]
    learnt pieces                      whole-word pieces bare, continuation pieces with ``##``,
                                       in the order the trainer learnt them
    [unused0] ...                      only if the trainer ran out of pieces before vocab_size

>>> train_vocab([Path("corpus.txt")], 8000, out=Path("vocab.txt"))   # doctest: +SKIP
PosixPath('vocab.txt')
"""

from __future__ import annotations

import glob
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bertkit.fileio import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["SPECIAL_TOKENS", "train_vocab", "TrainVocabArgs", "run_train_vocab"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PREFIX = "##"


def _order_vocab(vocab: dict[str, int], vocab_size: int) -> list[str]:
    """Google's layout from the trainer's ``token -> id`` map (see the module docstring).

    >>> _order_vocab({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "a": 5,
    ...               "b": 6, "##b": 7, "ab": 8}, 12)
    ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', 'b', '##a', '##b', 'ab', '[unused0]', '[unused1]']
    """
    learnt = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in SPECIAL_TOKENS]
    chars = sorted({t[len(PREFIX):] if t.startswith(PREFIX) else t for t in learnt
                    if len(t) == 1 or (t.startswith(PREFIX) and len(t) == len(PREFIX) + 1)})
    alphabet = chars + [PREFIX + c for c in chars]
    taken = set(alphabet) | set(SPECIAL_TOKENS)
    pieces = [t for t in learnt if t not in taken]
    tokens = list(SPECIAL_TOKENS) + alphabet
    if len(tokens) > vocab_size:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the {len(tokens)} special tokens "
                         f"and characters; raise it or lower limit_alphabet")
    tokens += pieces[: vocab_size - len(tokens)]
    unused = 0
    while len(tokens) < vocab_size:
        tokens.append(f"[unused{unused}]")
        unused += 1
    if unused:
        logger.warning("the trainer learnt only %d pieces; padded with %d [unusedN] tokens",
                       len(tokens) - unused, unused)
    return tokens


def check_training_inputs(files: list[Path], vocab_size: int, min_vocab_size: int, out: Path,
                          out_is_dir: bool = False) -> tuple[list[Path], int]:
    """Check everything a vocabulary trainer needs before it runs, so a failure writes nothing.

    Returns the input paths and their total size; raises ``OSError`` (a missing input, an
    unwritable ``out``) or ``ValueError`` (no or empty input, ``vocab_size`` not above
    ``min_vocab_size``, bytes that are not UTF-8), each naming the file (and line).
    """
    from bertkit.fileio import (
        check_input_file,
        check_output_dir,
        check_output_file,
        check_utf8_file,
    )

    paths = [Path(f) for f in files]
    if not paths:
        raise ValueError("no input files given")
    (check_output_dir if out_is_dir else check_output_file)(out)  # before training, not after
    for p in paths:
        check_input_file(p, "input file")
    total = sum(p.stat().st_size for p in paths)
    if total == 0:
        raise ValueError(f"the input files are empty: {', '.join(map(str, paths))}")
    if vocab_size <= min_vocab_size:
        raise ValueError(f"vocab_size must exceed {min_vocab_size}, got {vocab_size}")
    for p in paths:  # the trainers' own errors name neither file nor line
        check_utf8_file(p)
    return paths, total


def train_vocab(files: list[Path], vocab_size: int, lowercase: bool = True,
                min_frequency: int = 2, limit_alphabet: int = 1000, *, out: Path) -> Path:
    """Train a WordPiece vocabulary of exactly ``vocab_size`` tokens on ``files``; write ``out``.

    Args:
        files: UTF-8 text files (Google's pre-training format or any plain text).
        vocab_size: number of lines of the written vocab.txt, special tokens included.
        lowercase: uncased model (lower-case and strip accents, as Google's do_lower_case).
        min_frequency: a merge must occur at least this often to become a piece.
        limit_alphabet: keep at most this many distinct characters (the rest become [UNK]).
        out: the vocab.txt to write (atomically).

    Returns:
        ``out``.

    Raises:
        OSError: an input is missing or a directory, or ``out`` cannot be written (a directory,
            a read-only folder), each naming the path; checked before training.
        ValueError: empty input, a too small ``vocab_size``, or input that is not UTF-8
            (:class:`~bertkit.fileio.NotUTF8Error`, naming the file and line).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    out = Path(out)
    paths, total = check_training_inputs(files, vocab_size, len(SPECIAL_TOKENS), out)

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix=PREFIX))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        limit_alphabet=limit_alphabet, continuing_subword_prefix=PREFIX,
        show_progress=sys.stderr.isatty())
    logger.info("training a %d-piece %s WordPiece vocabulary on %d file(s), %.1f MB", vocab_size,
                "uncased" if lowercase else "cased", len(paths), total / 1e6)
    t0 = time.perf_counter()
    tok.train([str(p) for p in paths], trainer)
    tokens = _order_vocab(tok.get_vocab(with_added_tokens=True), vocab_size)
    atomic_write_text(out, "\n".join(tokens) + "\n")
    logger.info("wrote %s (%d tokens) in %.1f s", out, len(tokens), time.perf_counter() - t0)
    return out


@dataclass
class TrainVocabArgs:
    """``bertkit train-vocab --input FILES --vocab-size N [--cased] [--kind K] --out PATH``."""

    input: list[str] = field(metadata={"help": "text files or globs (one sentence per line)",
                                       "metavar": "FILE"})
    vocab_size: int = field(metadata={"min": 1,
        "help": "number of tokens (e.g. 30522 for BERT, 50265 RoBERTa, 30000 ALBERT)"})
    out: Path = field(metadata={"help": "vocab.txt to write (wordpiece), or the directory for "
                                "bpe (vocab.json, merges.txt) and unigram (spiece.model)",
                                "metavar": "PATH"})
    kind: Literal["wordpiece", "bpe", "unigram"] = field(default="wordpiece", metadata={
        "help": "wordpiece (BERT, DistilBERT), bpe (RoBERTa's byte-level BPE) or unigram "
                "(ALBERT's SentencePiece)"})
    cased: bool = field(default=False, metadata={
        "help": "keep case and accents (default: lower-case and strip accents, as uncased BERT "
                "and ALBERT; bpe is always cased, as RoBERTa)"})
    min_frequency: int = field(default=2, metadata={"min": 0,
        "help": "minimum count of a learnt piece (wordpiece, bpe)"})
    limit_alphabet: int = field(default=1000, metadata={"min": 1,
        "help": "maximum number of distinct characters kept (wordpiece)"})


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Expand globs (sorted, de-duplicated); a pattern matching nothing is kept as a path."""
    paths: list[Path] = []
    for pat in patterns:
        matches = sorted(glob.glob(pat)) if any(c in pat for c in "*?[") else [pat]
        if not matches:
            raise FileNotFoundError(f"no file matches {pat!r}")
        paths += [Path(m) for m in matches if Path(m) not in paths]
    return paths


def run_train_vocab(args: TrainVocabArgs) -> int:
    """CLI entry: train the vocabulary and print its path and size."""
    try:
        files = expand_inputs(args.input)
        if args.kind == "wordpiece":
            out = train_vocab(files, args.vocab_size, lowercase=not args.cased,
                              min_frequency=args.min_frequency,
                              limit_alphabet=args.limit_alphabet, out=args.out)
        else:
            from bertkit.tokenization import family_vocab

            out = (family_vocab.train_bpe(files, args.vocab_size, args.min_frequency,
                                          out=args.out) if args.kind == "bpe" else
                   family_vocab.train_unigram(files, args.vocab_size, lowercase=not args.cased,
                                              out=args.out))
    except (OSError, ValueError) as e:
        from bertkit.cli import _one_line

        logger.error("%s", _one_line(e))
        return 2
    if args.kind == "wordpiece":
        print(f"{out}: {args.vocab_size} tokens ({'cased' if args.cased else 'uncased'})")
    else:
        from bertkit.tokenization import AutoTokenizer

        case = "cased" if args.cased or args.kind == "bpe" else "uncased"
        print(f"{out}: {len(AutoTokenizer.from_pretrained(out))} tokens ({args.kind}, {case})")
    return 0
