"""ALBERT's SentencePiece tokenizer (``spiece.model``), on the ``tokenizers`` library's Unigram.

The model file is a protobuf ``ModelProto``, read here with bertkit's own wire reader: its pieces
with their log-probability scores and types, and the normalizer's precompiled character map
(NFKC-style rules compiled by SentencePiece). ALBERT's preprocessing comes first: ``````/``''``
become ``"``, accents are stripped (NFKD without combining marks) unless ``keep_accents``, the
text is lower-cased when ``do_lower_case``; then the character map, whitespace splitting, ``▁``
before every word, and the Unigram model's most probable segmentation. This is the pipeline
transformers' ``AlbertTokenizer`` builds from the same file. Template: ``[CLS] A [SEP] B [SEP]``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bertkit.errors import BertkitError
from bertkit.fileio import atomic_path, atomic_write_text
from bertkit.protowire import WireError, fields, float32, scalar
from bertkit.tokenization.base import EngineTokenizer, Span, read_tokenizer_config

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM = 1


class SentencePieceError(BertkitError, ValueError):
    """A ``spiece.model`` is missing, corrupt or not a unigram model; the message names the file."""


@dataclass
class SpmModel:
    """What bertkit uses of a SentencePiece ``ModelProto``."""

    pieces: list[tuple[str, float, int]]   # (piece, score, type) in id order
    charsmap: bytes                        # normalizer_spec.precompiled_charsmap (may be empty)
    model_type: int                        # trainer_spec.model_type (1 unigram, 2 BPE, ...)


def _piece(buf: bytes) -> tuple[str, float, int]:
    piece, score, kind = "", 0.0, NORMAL
    for field, wire, value in fields(buf):
        if field == 1 and isinstance(value, bytes):
            piece = value.decode("utf-8")
        elif field == 2:
            score = float32(wire, value)
        elif field == 3:
            kind = scalar(wire, value, 0)
    return piece, score, kind


def read_spm_model(path: Path) -> SpmModel:
    """Decode ``spiece.model`` (ModelProto: pieces = 1, trainer_spec = 2, normalizer_spec = 3)."""
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise SentencePieceError(f"{path}: cannot read the SentencePiece model ({e.strerror})"
                                 ) from e
    pieces: list[tuple[str, float, int]] = []
    charsmap, model_type = b"", UNIGRAM
    try:
        for field, _wire, value in fields(buf):
            if field == 1 and isinstance(value, bytes):
                pieces.append(_piece(value))
            elif field == 2 and isinstance(value, bytes):
                model_type = next((scalar(w, v, 0) for f, w, v in fields(value) if f == 3),
                                  UNIGRAM)
            elif field == 3 and isinstance(value, bytes):
                charsmap = next((v for f, _w, v in fields(value) if f == 2 and
                                 isinstance(v, bytes)), b"")
    except (WireError, UnicodeDecodeError) as e:
        raise SentencePieceError(f"{path}: not a SentencePiece model file ({e})") from e
    if not pieces:
        raise SentencePieceError(f"{path}: not a SentencePiece model file (no pieces)")
    return SpmModel(pieces, charsmap, model_type)


class SentencePieceTokenizer(EngineTokenizer):
    """ALBERT's tokenizer from ``spiece.model``.

    Args:
        model_file: the SentencePiece model (a unigram model, as ALBERT's).
        do_lower_case: lower-case the text first (ALBERT: True).
        keep_accents: keep accents (ALBERT: False, accents are stripped).
    """

    tokenizer_class = "AlbertTokenizer"

    def __init__(self, model_file: str | Path, do_lower_case: bool = True,
                 keep_accents: bool = False) -> None:
        from tokenizers import (
            AddedToken,
            Tokenizer,
            decoders,
            models,
            normalizers,
            pre_tokenizers,
        )

        self.model_file = Path(model_file)
        spm = read_spm_model(self.model_file)
        if spm.model_type != UNIGRAM:
            raise SentencePieceError(f"{self.model_file}: a SentencePiece model of type "
                                     f"{spm.model_type}; ALBERT's is a unigram model (type 1)")
        self.do_lower_case, self.keep_accents = do_lower_case, keep_accents
        self.vocab = {p: i for i, (p, _, _) in enumerate(spm.pieces)}
        self.ids_to_tokens = {i: p for p, i in self.vocab.items()}
        unk = next((i for i, (_, _, k) in enumerate(spm.pieces) if k == UNKNOWN), None)
        if unk is None:
            raise SentencePieceError(f"{self.model_file}: no piece has the unknown type")
        for name in ("[CLS]", "[SEP]", "<pad>"):
            if name not in self.vocab:
                raise SentencePieceError(f"{self.model_file}: lacks ALBERT's special piece {name}")
        steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        if not keep_accents:
            steps += [normalizers.NFKD(), normalizers.StripAccents()]
        if do_lower_case:
            steps.append(normalizers.Lowercase())
        if spm.charsmap:
            steps.append(normalizers.Precompiled(spm.charsmap))
        engine = Tokenizer(models.Unigram([(p, s) for p, s, _ in spm.pieces], unk_id=unk,
                                          byte_fallback=False))
        engine.normalizer = normalizers.Sequence(steps)
        engine.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
        engine.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        # Control and unknown pieces written in the text are those tokens, as in transformers
        # (SentencePiece itself would split "[MASK]" into "▁[", "mask", "]").
        engine.add_special_tokens([AddedToken(p, special=True, normalized=False)
                                   for p, _, kind in spm.pieces if kind in (CONTROL, UNKNOWN)])
        self._engine = engine
        self.cls_token_id, self.sep_token_id = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.pad_token_id, self.unk_token_id = self.vocab["<pad>"], unk
        self.mask_token_id = self.vocab.get("[MASK]")

    def encode_batch_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list[Span]]]:
        encodings = self._engine.encode_batch(list(texts), add_special_tokens=False)
        return [(e.ids, [tuple(o) for o in e.offsets]) for e in encodings]

    def tokenize(self, text: str) -> list[str]:
        return self._engine.encode(text, add_special_tokens=False).tokens

    def is_word_start(self, token: str) -> bool:
        """A piece that begins with ``▁`` (a word boundary), or a special piece."""
        return token.startswith("▁") or token in ("[CLS]", "[SEP]", "[MASK]", "<pad>")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> SentencePieceTokenizer:
        """``spiece.model`` (+ ``do_lower_case``/``keep_accents`` from tokenizer_config.json)."""
        d = Path(directory)
        config = read_tokenizer_config(d)
        return cls(d / "spiece.model", do_lower_case=bool(config.get("do_lower_case", True)),
                   keep_accents=bool(config.get("keep_accents", False)))

    def save_pretrained(self, directory: str | Path) -> list[Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if self.model_file.resolve() != (d / "spiece.model").resolve():
            with atomic_path(d / "spiece.model") as tmp:
                shutil.copyfile(self.model_file, tmp)
        config = {"tokenizer_class": self.tokenizer_class, "do_lower_case": self.do_lower_case,
                  "keep_accents": self.keep_accents, "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "pad_token": "<pad>", "unk_token": self.ids_to_tokens[self.unk_token_id],
                  "mask_token": "[MASK]"}
        atomic_write_text(d / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
        return [d / "spiece.model", d / "tokenizer_config.json"]
