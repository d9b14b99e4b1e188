"""Train RoBERTa's and ALBERT's vocabularies: byte-level BPE and a SentencePiece unigram model.

Both write a directory that :class:`bertkit.AutoTokenizer` and transformers load:

    bpe       vocab.json + merges.txt + tokenizer_config.json (RobertaTokenizer)
              trained with the ``tokenizers`` BPE trainer on GPT-2's byte-level pre-tokenization
              (no prefix space, as RoBERTa); ids 0-4 are ``<s> <pad> </s> <unk> <mask>``, as in
              RoBERTa's vocab.json, then the 256 byte symbols, then the merges' tokens.
    unigram   spiece.model + tokenizer_config.json (AlbertTokenizer)
              trained with the ``sentencepiece`` library with ALBERT's settings: ids 0-4 are
              ``<pad> <unk> [CLS] [SEP] [MASK]`` (pad and the three markers are control pieces,
              no ``<s>``/``</s>``), then ALBERT's user-defined pieces ``( ) " - . – £ €``;
              character coverage 0.99995. The text is preprocessed as ALBERT's tokenizer does
              before training (whitespace collapsed, ``````/``''`` as ``"``, accents stripped,
              lower-cased), so the pieces are the ones the tokenizer will look for.

Every check (inputs, their UTF-8, the output directory, the size) runs before training and the
result is loaded back with bertkit's tokenizer before anything is written.

>>> train_bpe([Path("corpus.txt")], 8000, out=Path("roberta-vocab"))   # doctest: +SKIP
PosixPath('roberta-vocab')
"""

from __future__ import annotations

import io
import json
import logging
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from bertkit.tokenization.bpe import SPECIALS as ROBERTA_SPECIALS
from bertkit.tokenization.bpe import ByteLevelBPETokenizer
from bertkit.tokenization.sentencepiece import SentencePieceTokenizer
from bertkit.tokenization.vocab_training import check_training_inputs

logger = logging.getLogger(__name__)

__all__ = ["train_bpe", "train_unigram", "albert_preprocess"]

BPE_SPECIALS = tuple(ROBERTA_SPECIALS[k] for k in ("bos", "pad", "eos", "unk", "mask"))
N_BYTES = 256
ALBERT_CONTROL = ("[CLS]", "[SEP]", "[MASK]")
ALBERT_USER_DEFINED = ("(", ")", '"', "-", ".", "–", "£", "€")
ALBERT_COVERAGE = 0.99995


def _bpe_files(tokenizer_json: str) -> tuple[str, str]:
    """``vocab.json`` (ids ascending) and ``merges.txt`` (with its header) from a trained model."""
    model = json.loads(tokenizer_json)["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return (json.dumps(vocab, ensure_ascii=False) + "\n",
            "#version: 0.2\n" + "".join(m + "\n" for m in merges))


def train_bpe(files: list[Path], vocab_size: int, min_frequency: int = 2, *, out: Path) -> Path:
    """Train RoBERTa's byte-level BPE (``vocab_size`` tokens at most) on ``files``; write ``out``/.

    Raises:
        OSError, ValueError: as :func:`~bertkit.tokenization.vocab_training.train_vocab`;
            ``vocab_size`` must exceed the 5 specials + 256 byte symbols.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    out = Path(out)
    paths, total = check_training_inputs(files, vocab_size, len(BPE_SPECIALS) + N_BYTES, out,
                                         out_is_dir=True)
    engine = Tokenizer(models.BPE())
    engine.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(BPE_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=sys.stderr.isatty())
    logger.info("training a %d-token byte-level BPE on %d file(s), %.1f MB", vocab_size,
                len(paths), total / 1e6)
    t0 = time.perf_counter()
    engine.train([str(p) for p in paths], trainer)
    vocab_json, merges_txt = _bpe_files(engine.to_str())
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(vocab_json, encoding="utf-8")
        (Path(tmp) / "merges.txt").write_text(merges_txt, encoding="utf-8")
        tok = ByteLevelBPETokenizer(Path(tmp) / "vocab.json", Path(tmp) / "merges.txt")
        tok.save_pretrained(out)
    logger.info("wrote %s (%d tokens, %d merges) in %.1f s", out, len(tok),
                merges_txt.count("\n") - 1, time.perf_counter() - t0)
    return out


def albert_preprocess(text: str, lowercase: bool = True) -> str:
    """ALBERT's text preprocessing: whitespace collapsed, quotes unified, accents stripped, lower.

    >>> albert_preprocess("  ``Résumé''   of  NAÏVE  users ")
    '"resume" of naive users'
    """
    text = " ".join(text.split()).replace("``", '"').replace("''", '"')
    if lowercase:  # ALBERT strips accents unless keep_accents, and is uncased: cased keeps both
        text = "".join(c for c in unicodedata.normalize("NFKD", text)
                       if not unicodedata.combining(c)).lower()
    return text


def _sentences(paths: list[Path], lowercase: bool) -> Iterator[str]:
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for line in f:
                if line := albert_preprocess(line, lowercase):
                    yield line


def train_unigram(files: list[Path], vocab_size: int, lowercase: bool = True,
                  character_coverage: float = ALBERT_COVERAGE, *, out: Path) -> Path:
    """Train ALBERT's SentencePiece unigram model of ``vocab_size`` pieces; write ``out``/.

    Args:
        lowercase: ALBERT's uncased preprocessing (``do_lower_case``, accents stripped); False
            keeps case and accents (``keep_accents``).

    Raises:
        OSError, ValueError: as :func:`~bertkit.tokenization.vocab_training.train_vocab`; a
            ``vocab_size`` SentencePiece cannot reach on this text is a ValueError naming the
            files.
    """
    import sentencepiece as spm

    out = Path(out)
    n_fixed = 2 + len(ALBERT_CONTROL) + len(ALBERT_USER_DEFINED)
    paths, total = check_training_inputs(files, vocab_size, n_fixed, out, out_is_dir=True)
    logger.info("training a %d-piece %s unigram SentencePiece model on %d file(s), %.1f MB",
                vocab_size, "uncased" if lowercase else "cased", len(paths), total / 1e6)
    t0 = time.perf_counter()
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(paths, lowercase), model_writer=buf,
            model_type="unigram", vocab_size=vocab_size, character_coverage=character_coverage,
            pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=list(ALBERT_CONTROL),
            user_defined_symbols=list(ALBERT_USER_DEFINED), shuffle_input_sentence=True,
            input_sentence_size=10_000_000, num_threads=2, minloglevel=2)
    except RuntimeError as e:
        names = ", ".join(map(str, paths))
        reason = " ".join(str(e).split()).rsplit("] ", 1)[-1]  # drop the C++ source location
        raise ValueError(f"{names}: SentencePiece cannot train a {vocab_size}-piece model "
                         f"on this text: {reason}") from e
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "spiece.model"
        model.write_bytes(buf.getvalue())
        tok = SentencePieceTokenizer(model, do_lower_case=lowercase, keep_accents=not lowercase)
        tok.save_pretrained(out)
    logger.info("wrote %s (%d pieces) in %.1f s", out, len(tok), time.perf_counter() - t0)
    return out
