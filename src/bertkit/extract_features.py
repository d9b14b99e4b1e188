"""``bertkit extract-features``: Google's ``extract_features.py`` -- per-token states of chosen layers.

Input: a UTF-8 text file (``-`` for stdin), one example per line; ``A ||| B`` (Google's regex
``^(.*) \\|\\|\\| (.*)$`` on the stripped line) makes a pair. Each example becomes
the tokenizer's single or pair template with token types 0/1, truncated as Google does (a pair longest-first
to ``max_seq_length - 3`` tokens, a single text to its first ``max_seq_length - 2``). Empty lines
are examples too (the two special tokens alone), and an empty input gives an empty, valid output.

Layers use Google's indexes: they count encoder layers only, ``-1`` is the last and ``0`` the
first (the embedding output is not selectable); see :func:`bertkit.inference.hidden_state_indices`.

Outputs (``--out PATH``):

* ``jsonl`` (default; ``--out -`` writes stdout): Google's layout, one object per input line in
  input order, values ``round(float(x), 6)``::

    {"linex_index": 0, "features": [{"token": "hello", "layers": [{"index": -1, "values": [...]},
     ...]}, ...]}

* ``npy``: ``PATH`` holds float32 (n_tokens, n_layers, H), the tokens of every line
  concatenated in input order (layers in ``--layers`` order); ``<stem>.offsets.npy`` int64
  (n_lines + 1,): line i is rows ``offsets[i]:offsets[i+1]``; ``<stem>.tokens.jsonl``:
  ``{"linex_index": i, "tokens": [...]}`` per line.
* ``safetensors``: ``PATH`` holds ``features`` F32 (n_tokens, n_layers, H), ``offsets`` I64
  (n_lines + 1,), ``token_ids`` and ``token_type_ids`` I64 (n_tokens,), and metadata ``layers``
  (e.g. ``"-1,-2,-3,-4"``); plus the same ``<stem>.tokens.jsonl``.

Memory stays flat in the number of lines: input is read lazily, in chunks of at most
``--chunk-lines`` lines and 2**24 output floats; each chunk is sorted by length into batches and
written in input order; binary outputs stream to disk (npy and safetensors headers are written
last into reserved space). Files appear atomically (temp file + rename): an error or Ctrl-C leaves
no output, except with ``--out -``, where lines already written stay written.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import struct
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, Protocol

import numpy as np

from bertkit.errors import BertkitError

logger = logging.getLogger(__name__)

__all__ = ["ExtractFeaturesArgs", "ExtractFeaturesError", "Feature", "parse_example",
           "run_extract_features", "sidecar_paths"]

_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")
_CHUNK_FLOATS = 1 << 24   # output floats held per chunk (64 MiB of float32)
_TOKENIZE_BLOCK = 256     # lines tokenized per call of the fast engine


class ExtractFeaturesError(BertkitError, ValueError):
    """Bad input or flags for extract-features; the message names the file and line, or the flag."""


@dataclass
class ExtractFeaturesArgs:
    """Write the per-token states of chosen layers for each input line (Google's
    extract_features.py). Formats: jsonl (Google's layout, one object per line), npy (PATH:
    float32 (n_tokens, n_layers, H) of all lines concatenated; <stem>.offsets.npy: int64
    (n_lines+1,), line i = rows offsets[i]:offsets[i+1]; <stem>.tokens.jsonl: the tokens per
    line), safetensors (PATH: features, offsets, token_ids, token_type_ids; plus
    <stem>.tokens.jsonl). Layer -1 is the last encoder layer, 0 the first."""

    input_file: Path = field(metadata={
        "help": "UTF-8 text, one example per line; 'A ||| B' makes a pair; - reads stdin",
        "aliases": ["--input"], "metavar": "FILE"})
    model: Path = field(metadata={"help": "model directory in Hugging Face layout "
                                  "(config.json, model.safetensors, vocab.txt)", "metavar": "DIR"})
    out: Path = field(metadata={
        "help": "output file (- for stdout, jsonl only); npy and safetensors also write "
                "<stem>.tokens.jsonl (and npy <stem>.offsets.npy) beside it",
        "aliases": ["--output-file", "--output_file"], "metavar": "PATH"})
    layers: list[int] = field(default_factory=lambda: [-1, -2, -3, -4], metadata={
        "help": "encoder layers, Google's indexes: -1 last, 0 first (--layers -1,-2 or "
                "--layers -1 -2)", "metavar": "N"})
    format: Literal["jsonl", "npy", "safetensors"] = field(default="jsonl", metadata={
        "help": "jsonl: Google's layout; npy / safetensors: float32 (n_tokens, n_layers, H)"})
    max_seq_length: int = field(default=128, metadata={
        "min": 3, "help": "tokens per example with the special tokens; longer ones are truncated"})
    batch_size: int = field(default=32, metadata={"min": 1, "help": "examples per forward pass"})
    chunk_lines: int = field(default=2048, metadata={
        "min": 1, "help": "lines read, length-sorted into batches and written per chunk"})
    threads: int = field(default=0, metadata={"min": 0,
                                              "help": "torch CPU threads (0: torch's default)"})
    progress: bool | None = field(default=None, metadata={
        "help": "progress bar on stderr (default: when stderr is a terminal)"})


@dataclass
class Feature:
    """One input line as the model sees it: tokens, ids and token types (all length T)."""

    index: int
    tokens: list[str]
    input_ids: list[int]
    type_ids: list[int]
    truncated: bool = False


def parse_example(line: str) -> tuple[str, str | None]:
    """Google's ``read_examples``: strip the line, split ``A ||| B`` into a pair.

    >>> parse_example("  Who? ||| Me.  ")
    ('Who?', 'Me.')
    >>> parse_example("a ||| b ||| c")
    ('a ||| b', 'c')
    """
    line = line.strip()
    m = _PAIR.match(line)
    return (line, None) if m is None else (m.group(1), m.group(2))


def sidecar_paths(out: Path, fmt: str) -> dict[str, Path]:
    """The files a format writes besides ``out``: ``tokens`` (and ``offsets`` for npy).

    >>> sorted(p.name for p in sidecar_paths(Path("f/x.npy"), "npy").values())
    ['x.offsets.npy', 'x.tokens.jsonl']
    """
    if fmt == "jsonl":
        return {}
    paths = {"tokens": out.with_suffix(".tokens.jsonl")}
    if fmt == "npy":
        paths["offsets"] = out.with_suffix(".offsets.npy")
    return paths


# ----------------------------------------------------------------------------- reading


def _open_input(path: Path) -> tuple[BinaryIO, str, int | None]:
    """(binary stream, name for messages, size in bytes or None)."""
    if str(path) == "-":
        return sys.stdin.buffer, "<stdin>", None
    if path.is_dir():
        raise ExtractFeaturesError(f"--input-file {path}: is a directory, not a text file")
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller's ExitStack
    return f, str(path), os.fstat(f.fileno()).st_size


def read_lines(stream: BinaryIO, name: str, bar: Any = None) -> Iterator[str]:
    """Decoded lines (split on ``\\n`` only, as Google's readline), strictly UTF-8.

    A line that is not UTF-8 raises :class:`ExtractFeaturesError` naming ``name`` and the line.
    """
    for lineno, raw in enumerate(stream, 1):
        if bar is not None:
            bar.update(len(raw))
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ExtractFeaturesError(
                f"{name}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start} of the line)"
            ) from e


def featurize(lines: Iterator[str], tokenizer: Any, max_seq_length: int,
              block: int = _TOKENIZE_BLOCK) -> Iterator[Feature]:
    """Google's ``convert_examples_to_features``, lazily, tokenizing ``block`` lines at a time.

    A pair is a pair only when B has tokens (Google's ``if tokens_b``).
    """
    index = 0
    while True:
        examples = [parse_example(line) for line in itertools.islice(lines, block)]
        if not examples:
            return
        texts = [a for a, _ in examples] + [b for _, b in examples if b is not None]
        ids = tokenizer.encode_batch(texts)
        pos_b = len(examples)
        for k, (_, b) in enumerate(examples):
            ids_a, ids_b = ids[k], None
            if b is not None:
                ids_b, pos_b = ids[pos_b] or None, pos_b + 1
            row, types, n_a, n_b = tokenizer.build_inputs(ids_a, ids_b, max_seq_length)
            cut = n_a < len(ids_a) or (ids_b is not None and n_b < len(ids_b))
            yield Feature(index, tokenizer.convert_ids_to_tokens(row), row, types, cut)
            index += 1


def chunks(features: Iterator[Feature], max_lines: int, max_floats: int,
           floats_per_token: int) -> Iterator[list[Feature]]:
    """Consecutive features, at most ``max_lines`` per chunk and about ``max_floats`` of output."""
    chunk: list[Feature] = []
    floats = 0
    for f in features:
        chunk.append(f)
        floats += len(f.input_ids) * floats_per_token
        if len(chunk) >= max_lines or floats >= max_floats:
            yield chunk
            chunk, floats = [], 0
    if chunk:
        yield chunk


# ----------------------------------------------------------------------------- the model


def _pad(chunk: Sequence[Feature], batch: Sequence[int], pad_id: int) -> tuple[Any, Any, Any]:
    """input_ids, token_type_ids, attention_mask: (B, T) long, right-padded."""
    import torch

    T = max(len(chunk[i].input_ids) for i in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    types = torch.zeros((len(batch), T), dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    for b, i in enumerate(batch):
        n = len(chunk[i].input_ids)
        ids[b, :n] = torch.tensor(chunk[i].input_ids)
        types[b, :n] = torch.tensor(chunk[i].type_ids)
        mask[b, :n] = 1
    return ids, types, mask


def layer_values(model: Any, chunk: Sequence[Feature], indices: Sequence[int], batch_size: int,
                 pad_id: int) -> list[np.ndarray]:
    """Per feature, float32 (T_i, n_layers, H): ``hidden_states[j]`` for j in ``indices``.

    Batches are length-sorted within the chunk; results come back in chunk order, as views of
    one buffer (n_tokens, n_layers, H) for the chunk: one allocation, freed whole, so the heap
    does not fragment into many small rows.
    """
    import torch

    from bertkit.inference import length_sorted_batches, select_layers

    lengths = [len(f.input_ids) for f in chunk]
    starts = np.cumsum([0, *lengths])
    buf = np.empty((int(starts[-1]), len(indices), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for batch in length_sorted_batches(lengths, batch_size):
            ids, types, mask = _pad(chunk, batch, pad_id)
            res = model(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
            h = select_layers(res.hidden_states, indices).float().numpy()  # (B, T, n, H)
            for row, i in enumerate(batch):
                buf[starts[i]:starts[i + 1]] = h[row, :lengths[i]]
    return [buf[starts[i]:starts[i + 1]] for i in range(len(chunk))]


# ----------------------------------------------------------------------------- writing


class Writer(Protocol):
    def write(self, feature: Feature, values: np.ndarray) -> None: ...

    def finish(self) -> None: ...


def google_round6(values: np.ndarray) -> np.ndarray:
    """float32 values -> float64, each exactly ``round(float(x), 6)`` (Google's JSON values).

    Exact, not approximate: a float32 times 1e6 is exact in float64 (24 + 20 bits), ``rint``
    rounds that half-even as ``round`` does, and the IEEE quotient by 1e6 is the double nearest
    to k / 10**6, which is what ``round`` returns.

    >>> x = np.array([0.1234565, -2.5e-7, 1.0000005], dtype=np.float32)
    >>> google_round6(x).tolist() == [round(float(v), 6) for v in x]
    True
    """
    if values.dtype != np.float32:
        raise TypeError(f"google_round6 needs float32 values, got {values.dtype}")
    return np.rint(values.astype(np.float64) * 1e6) / 1e6


class JsonlWriter:
    """Google's JSON lines: ``linex_index``, then ``features`` of ``token`` and ``layers``."""

    def __init__(self, f: IO[str], layers: Sequence[int]) -> None:
        self.f, self.layers = f, list(layers)

    def write(self, feature: Feature, values: np.ndarray) -> None:
        feats = [{"token": token, "layers": [
            {"index": li, "values": row[k]} for k, li in enumerate(self.layers)]}
            for token, row in zip(feature.tokens, google_round6(values).tolist(), strict=True)]
        self.f.write(json.dumps({"linex_index": feature.index, "features": feats}) + "\n")

    def finish(self) -> None:
        self.f.flush()


def _npy_header(descr: str, shape: tuple[int, ...], size: int = 128) -> bytes:
    """A version-1.0 .npy header of exactly ``size`` bytes (space-padded, as the format allows)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    pad = size - 10 - len(text) - 1
    if pad < 0 or size % 64:
        raise ValueError(f"npy header for shape {shape} does not fit {size} bytes")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", size - 10) + text + b" " * pad + b"\n"


class NpyStream:
    """A .npy file written row by row: a reserved header, the rows, then the real header."""

    HEADER = 128

    def __init__(self, path: Path, dtype: str, row_shape: tuple[int, ...]) -> None:
        self.f = open(path, "wb")  # noqa: SIM115 - closed in finish()
        self.dtype, self.row_shape, self.rows = np.dtype(dtype), tuple(row_shape), 0
        self.f.write(b" " * self.HEADER)

    def append(self, a: np.ndarray) -> None:
        """Rows (n, *row_shape) of the stream's dtype."""
        assert a.dtype == self.dtype and a.shape[1:] == self.row_shape, (a.dtype, a.shape)
        self.f.write(np.ascontiguousarray(a).tobytes())
        self.rows += a.shape[0]

    def finish(self) -> None:
        self.f.seek(0)
        self.f.write(_npy_header(self.dtype.str, (self.rows, *self.row_shape), self.HEADER))
        self.f.close()


class TokensWriter:
    """``<stem>.tokens.jsonl``: ``{"linex_index": i, "tokens": [...]}`` per line."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115

    def write(self, feature: Feature) -> None:
        self.f.write(json.dumps({"linex_index": feature.index, "tokens": feature.tokens}) + "\n")

    def finish(self) -> None:
        self.f.close()


class NpyWriter:
    """PATH: float32 (n_tokens, n_layers, H); offsets.npy int64 (n_lines + 1,); tokens.jsonl."""

    def __init__(self, path: Path, offsets: Path, tokens: Path, n_layers: int, hidden: int
                 ) -> None:
        self.values = NpyStream(path, "<f4", (n_layers, hidden))
        self.offsets = NpyStream(offsets, "<i8", ())
        self.offsets.append(np.zeros(1, dtype="<i8"))
        self.tokens = TokensWriter(tokens)

    def write(self, feature: Feature, values: np.ndarray) -> None:
        self.values.append(values)
        self.offsets.append(np.array([self.values.rows], dtype="<i8"))
        self.tokens.write(feature)

    def finish(self) -> None:
        for part in (self.values, self.offsets, self.tokens):
            part.finish()


class SafetensorsWriter:
    """One .safetensors: ``features`` streamed after a reserved header, then ``offsets``,
    ``token_ids`` and ``token_type_ids`` (kept in anonymous temp files until the end)."""

    NAMES = ("features", "offsets", "token_ids", "token_type_ids")

    def __init__(self, path: Path, tokens: Path, n_layers: int, hidden: int,
                 metadata: dict[str, str]) -> None:
        self.f = open(path, "wb")  # noqa: SIM115 - closed in finish()
        self.row_shape, self.metadata = (n_layers, hidden), metadata
        self.parts = {n: tempfile.TemporaryFile(dir=path.parent) for n in self.NAMES[1:]}
        self.counts = dict.fromkeys(self.NAMES, 0)
        self.reserve = len(self._header(10 ** 19, 10 ** 19))
        self.f.write(b" " * (8 + self.reserve))
        self._put("offsets", np.zeros(1, dtype="<i8"))
        self.tokens = TokensWriter(tokens)

    def _header(self, n_tokens: int, n_offsets: int) -> bytes:
        """The JSON header, space-padded so the data starts at a multiple of 64 bytes."""
        shapes = {"features": [n_tokens, *self.row_shape], "offsets": [n_offsets],
                  "token_ids": [n_tokens], "token_type_ids": [n_tokens]}
        sizes = {"features": 4 * n_tokens * self.row_shape[0] * self.row_shape[1],
                 "offsets": 8 * n_offsets, "token_ids": 8 * n_tokens,
                 "token_type_ids": 8 * n_tokens}
        head: dict[str, Any] = {"__metadata__": self.metadata}
        start = 0
        for name in self.NAMES:
            head[name] = {"dtype": "F32" if name == "features" else "I64", "shape": shapes[name],
                          "data_offsets": [start, start + sizes[name]]}
            start += sizes[name]
        text = json.dumps(head, separators=(",", ":")).encode()
        return text + b" " * (-(8 + len(text)) % 64)

    def _put(self, name: str, a: np.ndarray) -> None:
        self.parts[name].write(a.tobytes())
        self.counts[name] += len(a)

    def write(self, feature: Feature, values: np.ndarray) -> None:
        assert values.dtype == np.float32 and values.shape[1:] == self.row_shape
        self.f.write(np.ascontiguousarray(values).tobytes())
        self.counts["features"] += len(values)
        self._put("offsets", np.array([self.counts["features"]], dtype="<i8"))
        self._put("token_ids", np.asarray(feature.input_ids, dtype="<i8"))
        self._put("token_type_ids", np.asarray(feature.type_ids, dtype="<i8"))
        self.tokens.write(feature)

    def finish(self) -> None:
        for part in self.parts.values():
            part.seek(0)
            shutil.copyfileobj(part, self.f, 1 << 20)
            part.close()
        head = self._header(self.counts["features"], self.counts["offsets"])
        head += b" " * (self.reserve - len(head))
        self.f.seek(0)
        self.f.write(struct.pack("<Q", len(head)) + head)
        self.f.close()
        self.tokens.finish()


# ----------------------------------------------------------------------------- the command


def _check_args(args: ExtractFeaturesArgs) -> None:
    if str(args.out) == "-" and args.format != "jsonl":
        raise ExtractFeaturesError(f"--out -: stdout takes only --format jsonl, not {args.format}")


def _load(args: ExtractFeaturesArgs) -> tuple[Any, Any, list[int]]:
    """(model in eval mode, tokenizer, hidden_states indices of --layers)."""
    from bertkit.inference import hidden_state_indices
    from bertkit.models.bert import BertModel
    from bertkit.tokenization import BertTokenizer

    model = BertModel.from_pretrained(args.model).eval()
    cfg = model.config
    try:
        indices = hidden_state_indices(args.layers, cfg.num_hidden_layers, "--layers")
    except ValueError as e:
        raise ExtractFeaturesError(str(e)) from None
    if args.max_seq_length > cfg.max_position_embeddings:
        raise ExtractFeaturesError(
            f"--max-seq-length {args.max_seq_length} exceeds the model's "
            f"max_position_embeddings {cfg.max_position_embeddings}")
    return model, BertTokenizer.from_pretrained(args.model), indices


def _writer(args: ExtractFeaturesArgs, stack: contextlib.ExitStack, hidden: int) -> Writer:
    """The format's writer; every file it writes goes through an atomic temp path."""
    from bertkit.fileio import atomic_path

    if str(args.out) == "-":
        return JsonlWriter(sys.stdout, args.layers)
    side = sidecar_paths(args.out, args.format)
    tmp = stack.enter_context(atomic_path(args.out))  # renamed last: OUT means all are complete
    tmp_side = {k: stack.enter_context(atomic_path(p)) for k, p in side.items()}
    n = len(args.layers)
    if args.format == "jsonl":
        return JsonlWriter(stack.enter_context(open(tmp, "w", encoding="utf-8", newline="\n")),
                           args.layers)
    if args.format == "npy":
        return NpyWriter(tmp, tmp_side["offsets"], tmp_side["tokens"], n, hidden)
    meta = {"layers": ",".join(map(str, args.layers)), "max_seq_length": str(args.max_seq_length),
            "format": "bertkit extract-features"}
    return SafetensorsWriter(tmp, tmp_side["tokens"], n, hidden, meta)


def run_extract_features(args: ExtractFeaturesArgs) -> int:
    """The ``bertkit extract-features`` command; returns the exit status (0)."""
    import torch
    from tqdm.auto import tqdm

    _check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    with contextlib.ExitStack() as stack:
        stream, name, size = _open_input(args.input_file)
        if stream is not sys.stdin.buffer:
            stack.callback(stream.close)
        model, tok, indices = _load(args)
        H = model.config.hidden_size
        bar = stack.enter_context(tqdm(total=size, unit="B", unit_scale=True, desc="extract",
                                       disable=not progress, file=sys.stderr))
        writer = _writer(args, stack, H)
        n_lines = n_tokens = n_cut = 0
        feats = featurize(read_lines(stream, name, bar), tok, args.max_seq_length)
        for chunk in chunks(feats, args.chunk_lines, _CHUNK_FLOATS, len(indices) * H):
            values = layer_values(model, chunk, indices, args.batch_size, tok.pad_token_id)
            for f, v in zip(chunk, values, strict=True):
                writer.write(f, v)
                n_tokens += len(f.tokens)
                n_cut += f.truncated
            n_lines += len(chunk)
        writer.finish()
    if n_lines == 0:
        logger.warning("%s: no input lines; wrote an empty output", name)
    if n_cut:
        logger.info("%d of %d lines were truncated to --max-seq-length %d", n_cut, n_lines,
                    args.max_seq_length)
    logger.info("wrote layers %s of %d lines (%d tokens) to %s as %s",
                ",".join(map(str, args.layers)), n_lines, n_tokens, args.out, args.format)
    return 0
