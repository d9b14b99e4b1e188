"""RoBERTa's byte-level BPE tokenizer (``vocab.json`` + ``merges.txt``), on the ``tokenizers`` library.

Text is split GPT-2's way (letters, numbers, punctuation runs and spaces, each with its leading
space), every byte is mapped to a printable character (a space becomes ``Ġ``), and the merges are
applied in rank order. With ``add_prefix_space`` the text gets a leading space first, so its
first word is encoded as every later one is. Offsets exclude the encoded leading space, as
transformers' ``trim_offsets`` does.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from bertkit.errors import BertkitError
from bertkit.fileio import atomic_path, atomic_write_text
from bertkit.tokenization.base import (
    EngineTokenizer,
    Span,
    read_tokenizer_config,
    truncate_balanced,
)

SPECIALS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}
# roberta-base's tokenizer_config.json form of a ``<mask>`` that takes the space before it.
MASK_LSTRIP = {"__type": "AddedToken", "content": "<mask>", "lstrip": True, "normalized": False,
               "rstrip": False, "single_word": False, "special": True}


class BPEFileError(BertkitError, ValueError):
    """A ``vocab.json`` or ``merges.txt`` is malformed; the message names the file and line."""


def read_vocab_json(path: Path) -> dict[str, int]:
    """``vocab.json``: an object of token -> id, ids unique."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BPEFileError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(data, dict):
        raise BPEFileError(f"{path}: expected a JSON object of token -> id, got "
                           f"{type(data).__name__}")
    bad = next((k for k, v in data.items() if not isinstance(v, int) or isinstance(v, bool)), None)
    if bad is not None:
        raise BPEFileError(f"{path}: the id of {bad!r} is not an integer: {data[bad]!r}")
    if len(set(data.values())) != len(data):
        raise BPEFileError(f"{path}: two tokens share an id")
    return data


def read_merges(path: Path, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """``merges.txt``: a ``#version`` header line, then one ``left right`` pair per line."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise BPEFileError(f"{path}: not a readable UTF-8 file ({e})") from e
    if not lines or not lines[0].startswith("#version"):
        raise BPEFileError(f"{path}: line 1: expected the '#version: 0.2' header, got "
                           f"{lines[0][:40]!r}")
    merges: list[tuple[str, str]] = []
    for n, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise BPEFileError(f"{path}: line {n}: expected two tokens separated by one space, "
                               f"got {line[:60]!r}")
        if parts[0] + parts[1] not in vocab:
            raise BPEFileError(f"{path}: line {n}: the merge {line!r} makes a token that is not "
                               f"in vocab.json")
        merges.append((parts[0], parts[1]))
    return merges


class ByteLevelBPETokenizer(EngineTokenizer):
    """RoBERTa's tokenizer: ``<s> A </s></s> B </s>``, token types all 0.

    Args:
        vocab_file: ``vocab.json`` (token -> id; must hold ``<s> <pad> </s> <unk> <mask>``).
        merges_file: ``merges.txt``.
        add_prefix_space: encode the first word as if a space preceded it.
    """

    tokenizer_class = "RobertaTokenizer"
    seps_between = 2
    word_prefix = " "
    b_token_type = 0
    truncate_pair = staticmethod(truncate_balanced)

    def __init__(self, vocab_file: str | Path, merges_file: str | Path,
                 add_prefix_space: bool = False, mask_lstrip: bool = False) -> None:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

        self.vocab_file, self.merges_file = Path(vocab_file), Path(merges_file)
        self.vocab = read_vocab_json(self.vocab_file)
        merges = read_merges(self.merges_file, self.vocab)
        missing = [t for t in SPECIALS.values() if t not in self.vocab]
        if missing:
            raise BPEFileError(f"{self.vocab_file}: lacks the special tokens {missing}")
        self.add_prefix_space = add_prefix_space
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        engine = Tokenizer(models.BPE(self.vocab, merges, unk_token=None,
                                      fuse_unk=False, byte_fallback=False))
        engine.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        engine.decoder = decoders.ByteLevel()
        self.cls_token_id = self.vocab[SPECIALS["bos"]]
        self.sep_token_id = self.vocab[SPECIALS["eos"]]
        # RoBERTa's offset trimming (leading spaces out of a token's span) lives in this
        # post-processor; encode_batch_with_offsets strips the two specials it adds.
        engine.post_processor = processors.RobertaProcessing(
            (SPECIALS["eos"], self.sep_token_id), (SPECIALS["bos"], self.cls_token_id),
            trim_offsets=True, add_prefix_space=add_prefix_space)
        # A special token written in the text is that token, as in transformers. With
        # ``mask_lstrip`` (the hub's roberta-base config) ``<mask>`` takes the space before it.
        self.mask_lstrip = mask_lstrip
        engine.add_special_tokens([
            AddedToken(t, special=True, normalized=False, lstrip=mask_lstrip and t == "<mask>")
            for t in SPECIALS.values()])
        self._engine = engine
        self.pad_token_id = self.vocab[SPECIALS["pad"]]
        self.unk_token_id = self.vocab[SPECIALS["unk"]]
        self.mask_token_id = self.vocab[SPECIALS["mask"]]

    def encode_batch_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list[Span]]]:
        encodings = self._engine.encode_batch(list(texts))
        return [(e.ids[1:-1], [tuple(o) for o in e.offsets[1:-1]]) for e in encodings]

    def tokenize(self, text: str) -> list[str]:
        return self._engine.encode(text).tokens[1:-1]

    def is_word_start(self, token: str) -> bool:
        """A token that begins with an encoded space (``Ġ``), or a special token."""
        return token.startswith("Ġ") or token in SPECIALS.values()

    # -- files ----------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ByteLevelBPETokenizer:
        """``vocab.json`` + ``merges.txt`` (+ ``add_prefix_space`` from tokenizer_config.json)."""
        d = Path(directory)
        config = read_tokenizer_config(d)
        mask = config.get("mask_token")
        return cls(d / "vocab.json", d / "merges.txt",
                   add_prefix_space=bool(config.get("add_prefix_space", False)),
                   mask_lstrip=isinstance(mask, dict) and bool(mask.get("lstrip", False)))

    def save_pretrained(self, directory: str | Path) -> list[Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for src, name in ((self.vocab_file, "vocab.json"), (self.merges_file, "merges.txt")):
            if src.resolve() != (d / name).resolve():
                with atomic_path(d / name) as tmp:
                    shutil.copyfile(src, tmp)
        config = {"tokenizer_class": self.tokenizer_class, "add_prefix_space":
                  self.add_prefix_space, "bos_token": "<s>", "eos_token": "</s>",
                  "cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>",
                  "unk_token": "<unk>", "mask_token": MASK_LSTRIP if self.mask_lstrip
                  else "<mask>"}
        atomic_write_text(d / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
        return [d / "vocab.json", d / "merges.txt", d / "tokenizer_config.json"]
