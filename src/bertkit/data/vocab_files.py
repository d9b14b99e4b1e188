"""The vocabulary a data directory was made with: a WordPiece ``vocab.txt`` or a tokenizer directory.

``create-pretraining-data --vocab`` takes either Google's ``vocab.txt`` (BERT, DistilBERT) or a
tokenizer directory (RoBERTa's ``vocab.json`` + ``merges.txt``, ALBERT's ``spiece.model``, each
with an optional ``tokenizer_config.json``). The data directory keeps a copy of those files under
their own names, so that :func:`data_tokenizer` reads the same tokenizer back, and records one
sha256 over them (for a single ``vocab.txt``: the file's own sha256, as before).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bertkit.fileio import atomic_write_bytes, sha256_file
from bertkit.tokenization.base import TokenizerBase

__all__ = ["TOKENIZER_FILES", "copy_vocab", "data_tokenizer", "vocab_files", "vocab_sha256"]

TOKENIZER_FILES = ("vocab.txt", "vocab.json", "merges.txt", "spiece.model",
                   "tokenizer_config.json")


def vocab_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files that define the vocabulary at ``path`` (a file, or a tokenizer directory's files).

    Raises:
        FileNotFoundError: ``path`` does not exist, or is a directory without tokenizer files.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        found = [p / name for name in TOKENIZER_FILES if (p / name).is_file()]
        if not any(f.name != "tokenizer_config.json" for f in found):
            raise FileNotFoundError(f"vocab {p}: a directory without tokenizer files (vocab.txt, "
                                    "vocab.json + merges.txt, or spiece.model)")
        return found
    raise FileNotFoundError(f"vocab {p} not found")


def vocab_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a ``vocab.txt``; of a directory: over each tokenizer file's name and sha256."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()
    for f in vocab_files(p):
        h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def copy_vocab(path: str | os.PathLike[str], out: Path) -> list[str]:
    """Copy the vocabulary into ``out`` (a file as ``vocab.txt``); returns the names written."""
    p = Path(path)
    names = []
    for f in vocab_files(p):
        name = "vocab.txt" if p.is_file() else f.name
        atomic_write_bytes(out / name, f.read_bytes())
        names.append(name)
    return names


def data_tokenizer(data_dir: str | os.PathLike[str], do_lower_case: bool = True
                   ) -> TokenizerBase:
    """The tokenizer whose files a data (or run) directory holds."""
    from bertkit.tokenization import AutoTokenizer
    from bertkit.tokenization.tokenizer import BertTokenizer

    d = Path(data_dir)
    if AutoTokenizer.kind(d) == "wordpiece" and not (d / "tokenizer_config.json").is_file():
        return BertTokenizer(d / "vocab.txt", do_lower_case=do_lower_case)
    return AutoTokenizer.from_pretrained(d)
