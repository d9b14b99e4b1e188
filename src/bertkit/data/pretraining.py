"""Documents -> pre-training instances: Google's ``create_pretraining_data.py``, parallel and streaming.

Input is Google's format: text files, one sentence per line, a blank line between documents.
Output is a directory of fixed-length numpy shards plus ``index.json`` (see :mod:`.shards`).

The algorithm per document is Google's, step for step (``BERT_REFERENCE.md``, "Pre-training data"):
a target length (``max_seq_length - 3``, or with probability ``short_seq_prob`` uniform in
[2, target]) drawn once per document and copy; sentences accumulated into a chunk until it reaches
the target or the document ends; A = the first k sentences (k uniform in [1, len-1]); B the rest, or
with probability 0.5 (always for a one-sentence chunk) a span from a random sentence of a different
document, the chunk's unused sentences being put back; the pair truncated to the limit by removing
one token at a time from the front or back (equal odds) of the longer segment; then masking
(:mod:`.masking`).

How it differs from Google's program, and why the distributions still match:

* **Randomness.** Google draws everything from one ``random.Random(seed)`` in corpus order, so the
  output depends on the whole run. Here every *task* -- (pool block, part, dupe copy) -- seeds its
  own generators from ``SeedSequence([seed, block, part, dupe])``. Each draw has the same
  distribution as Google's, and the shards are byte-identical for any number of workers.
* **Random-next pool.** Google picks the "different document" from the whole corpus, which it holds
  in memory. Input is streamed here in *pool blocks* of about ``pool_mb`` MB of text (16 by default;
  a block ends at a document boundary): the random document is drawn uniformly from the same block.
  A corpus smaller than one block (e.g. the 10.8 MB SOTU) behaves exactly like Google's; a larger one
  draws from a 16 MB neighbourhood, ample variety for the random-next task. Memory is bounded by the
  block size, not the corpus size.
* **Truncation** is computed in closed form: which segment loses each token is deterministic
  (always the longer, B on ties), so only the front/back split is random: Binomial(n, 0.5), the same
  distribution as Google's token-by-token coin flips.
* **File boundaries** end a document (Google would glue the last document of one file to the first
  of the next when a file does not end with a blank line).
* **Order.** Google shuffles all instances at the end; here each shard is shuffled, and
  :class:`~bertkit.data.shards.PretrainingDataset` shuffles all rows deterministically per epoch.

Objectives: ``nsp`` (Google), ``sop`` (ALBERT: B is the real continuation, swapped with A half of
the time, label 1 = swapped; a one-sentence chunk takes a random B as in ALBERT's code), ``none``
(RoBERTa FULL-SENTENCES: the start token + whole contiguous sentences up to ``max_seq_length - 2``
tokens + a separator, crossing documents with a separator between them, no pair label; a sentence
longer than the limit is cut into pieces; ``short_seq_prob`` does not apply).

Special tokens and word starts come from the tokenizer (:mod:`bertkit.tokenization.base`): a pair
is laid out as ``start A sep B sep`` whatever the family calls those tokens.
"""

from __future__ import annotations

import glob
import logging
import os
import random
import signal
import sys
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bertkit.data import masking as M
from bertkit.data import shards as S
from bertkit.data.bulk_tokenize import (
    Encoder,
    WordPieceEncoder,
    encode_chunk,
    encoder_key,
    get_encoder,
    install_encoder,
)
from bertkit.errors import BertkitError

logger = logging.getLogger(__name__)

__all__ = ["CreatePretrainingDataArgs", "InputError", "InstanceSettings",
           "RunLockedError", "WordPieceEncoder",
           "create_pretraining_data", "expand_inputs", "iter_documents",
           "run_create_pretraining_data"]


class InputError(BertkitError, ValueError):
    """Bad input text (missing, empty, not UTF-8): the message names the file and line."""


@dataclass(frozen=True)
class InstanceSettings:
    """Everything that decides the content of the shards (recorded in ``index.json``)."""

    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    random_seed: int = 12345
    do_lower_case: bool = True
    do_whole_word_mask: bool = False
    word_boundaries: Literal["wordpiece", "whitespace"] = "wordpiece"
    objective: Literal["nsp", "sop", "none"] = "nsp"
    masking: Literal["static", "dynamic"] = "static"
    pool_mb: float = 16.0
    part_mb: float = 4.0
    ngram: int = 1  # mask spans of up to this many words (ALBERT: 3); 1 = Google's masking

    def as_dict(self) -> dict[str, Any]:
        """The settings recorded in ``index.json`` (``ngram`` only when used, so that data made
        before it existed keeps its index)."""
        out = asdict(self)
        if self.ngram == 1:
            del out["ngram"]
        return out

    def validate(self) -> None:
        if self.max_seq_length < 5:
            raise ValueError("max_seq_length must be >= 5 (start, A, separator, B, separator)")
        if not 0 < self.max_predictions_per_seq < self.max_seq_length:
            raise ValueError("max_predictions_per_seq must be in [1, max_seq_length)")
        if not 0.0 < self.masked_lm_prob < 1.0 or not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError("masked_lm_prob must be in (0, 1) and short_seq_prob in [0, 1]")
        if self.dupe_factor < 1 or self.pool_mb <= 0 or self.part_mb <= 0:
            raise ValueError("dupe_factor, pool_mb and part_mb must be positive")
        if not 1 <= self.ngram <= 10:
            raise ValueError(f"ngram must be in [1, 10], got {self.ngram}")
        if self.objective not in ("nsp", "sop", "none") or self.masking not in ("static",
                                                                                "dynamic"):
            raise ValueError(f"unknown objective/masking {self.objective}/{self.masking}")


# ----------------------------------------------------------------------------- reading


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files named by ``patterns`` (paths, globs, Google's comma-separated lists), in order.

    Raises:
        InputError: a pattern matches no file.
    """
    paths: list[Path] = []
    for pattern in patterns:
        for item in (p for p in pattern.split(",") if p):
            matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
            if not glob.has_magic(item) and Path(item).is_dir():
                raise InputError(f"input {item!r} is a directory, not a text file (give its "
                                 f"files, e.g. '{item}/*.txt')")
            matches = [m for m in matches if Path(m).is_file()]
            if not matches:
                raise InputError(f"input {item!r}: no such file")
            paths.extend(Path(m) for m in matches)
    if not paths:
        raise InputError("no input files given")
    return paths


def iter_documents(paths: list[Path], errors: Literal["strict", "replace"] = "strict"
                   ) -> Iterator[tuple[list[str], int]]:
    """Stream ``(sentences, bytes read)`` per document; a blank line or a file end ends one.

    Lines are stripped like Google's (``str.strip``); empty documents are not yielded.

    Raises:
        InputError: bytes that are not UTF-8 (with ``errors="strict"``), naming file and line.
    """
    for path in paths:
        doc: list[str] = []
        nbytes = 0
        empty_file = True
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                nbytes += len(raw)
                try:
                    line = raw.decode("utf-8", errors=errors).strip()
                except UnicodeDecodeError as e:
                    raise InputError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte "
                                     f"{e.start} of the line); fix the file or pass "
                                     f"--errors replace") from None
                if line:
                    doc.append(line)
                    empty_file = False
                elif doc:
                    yield doc, nbytes
                    doc, nbytes = [], 0
        if doc:
            yield doc, nbytes
        elif nbytes:
            yield [], nbytes  # trailing blank lines: report the bytes
        if empty_file:
            logger.warning("%s has no text", path)


@dataclass
class _Block:
    """A pool block: documents (lists of sentences) and part boundaries (document indexes)."""

    index: int
    docs: list[list[str]]
    part_starts: list[int]
    nbytes: int


def _iter_blocks(paths: list[Path], settings: InstanceSettings, errors: Literal["strict", "replace"]
                 ) -> Iterator[_Block]:
    pool_b, part_b = settings.pool_mb * 1e6, settings.part_mb * 1e6
    docs: list[list[str]] = []
    part_starts: list[int] = [0]
    block_bytes = part_bytes = 0
    index = 0
    for doc, nbytes in iter_documents(paths, errors):
        if doc:
            if part_bytes >= part_b:
                part_starts.append(len(docs))
                part_bytes = 0
            docs.append(doc)
        block_bytes += nbytes
        part_bytes += nbytes
        if block_bytes >= pool_b:
            yield _Block(index, docs, part_starts, block_bytes)
            index += 1
            docs, part_starts, block_bytes, part_bytes = [], [0], 0, 0
    if docs or block_bytes:
        yield _Block(index, docs, part_starts, block_bytes)


# ----------------------------------------------------------------------------- instances


@dataclass
class _Tokenized:
    """A tokenized pool block. ids [T]; sent_off [S+1]; doc_off [D+1] (sentence indexes);
    part_off [parts+1] (document indexes); cont [T] bool or None."""

    ids: np.ndarray
    sent_off: np.ndarray
    doc_off: np.ndarray
    part_off: np.ndarray
    cont: np.ndarray | None


_PARALLEL_TOKENIZE_LINES = 2_000  # per worker; below it the main process tokenizes alone


def _tokenize_block(block: _Block, encoder: Encoder, settings: InstanceSettings,
                    pool: Any = None, vocab_file: str = "") -> _Tokenized:
    """Tokenize a block, split over ``pool``'s workers when given (same ids either way)."""
    lines = [s for d in block.docs for s in d]
    by_space = settings.do_whole_word_mask and settings.word_boundaries == "whitespace"
    n_chunks = 1 + (getattr(pool, "_max_workers", 1) if pool is not None else 0)
    if n_chunks > 1 and len(lines) >= _PARALLEL_TOKENIZE_LINES * n_chunks:
        step = -(-len(lines) // n_chunks)  # the first chunk here, meanwhile the rest in the pool
        futs = [_submit(pool, encode_chunk, vocab_file, settings.do_lower_case,
                        lines[i:i + step], by_space) for i in range(step, len(lines), step)]
        parts = [encoder.encode(lines[:step], with_words=by_space)] + [f.result() for f in futs]
        ids = np.concatenate([p[0] for p in parts])
        lens = np.concatenate([p[1] for p in parts])
        cont = np.concatenate([p[2] for p in parts]) if by_space else None  # type: ignore[misc]
    else:
        ids, lens, cont = encoder.encode(lines, with_words=by_space)
    if settings.do_whole_word_mask and cont is None:  # the tokenizer's word starts
        cont = M.continuation_table(encoder.tokens, encoder.tokenizer.is_word_start)[ids]
        # a line starts a word (byte-level BPE encodes a line's first word without its space)
        cont[(np.cumsum(lens) - lens)[lens > 0]] = False
    # drop sentences that tokenize to nothing, then documents left empty (Google does both)
    doc_of_line = np.repeat(np.arange(len(block.docs)), [len(d) for d in block.docs])
    keep = lens > 0
    lens, doc_of_line = lens[keep], doc_of_line[keep]
    kept_docs, sents_per_doc = np.unique(doc_of_line, return_counts=True)
    doc_off = np.concatenate([[0], np.cumsum(sents_per_doc)]).astype(np.int64)
    sent_off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    part_off = np.searchsorted(kept_docs, np.array(block.part_starts + [len(block.docs)]))
    return _Tokenized(ids, sent_off, doc_off, part_off.astype(np.int64), cont)


@dataclass
class _Stats:
    document_copies: int = 0  # documents x copies processed
    short_target_documents: int = 0
    chunks: int = 0
    single_sentence_chunks: int = 0
    random_next: int = 0
    random_next_multi: int = 0  # random B among chunks of >= 2 sentences
    ngram_spans: list[int] = field(default_factory=list)  # spans of 1, 2, ... words taken

    def as_dict(self) -> dict[str, int]:
        """The shard's stats (``ngram_spans_N`` only with n-gram masking)."""
        out = asdict(self)
        spans = out.pop("ngram_spans")
        out.update({f"ngram_spans_{n}": c for n, c in enumerate(spans, 1)})
        return out


def _pair_spans(tb: _Tokenized, doc_lo: int, doc_hi: int, rng: random.Random,
                settings: InstanceSettings, stats: _Stats) -> np.ndarray:
    """Google's ``create_instances_from_document`` for documents [doc_lo, doc_hi) of a block.

    Returns int64 [n, 5]: A start, A end, B start, B end (offsets into ``tb.ids``), label.
    """
    sent_off, doc_off = tb.sent_off.tolist(), tb.doc_off.tolist()
    n_docs = len(doc_off) - 1
    max_num_tokens = settings.max_seq_length - 3
    short_seq_prob = settings.short_seq_prob
    sop = settings.objective == "sop"
    out: list[int] = []  # flat: A start, A end, B start, B end, label, ...
    add = out.extend
    n_short = n_chunks = n_single = n_random = n_random_multi = 0
    rnd = rng.random  # randint(a, b) is written a + int(rnd() * (b - a + 1)): cheaper
    # Sentences are addressed globally: sentence g spans tokens sent_off[g]:sent_off[g + 1]. A
    # chunk from sentence f ends at the first sentence where the running length reaches the
    # target, or at the document's end: found by bisection on the offsets (same as Google's
    # sentence-by-sentence loop, without a Python step per sentence; bisecting in [f + 1, end)
    # returns the end when no sentence before it reaches the target).
    for d in range(doc_lo, doc_hi):
        s0, s_end = doc_off[d], doc_off[d + 1]
        target = max_num_tokens
        if rnd() < short_seq_prob:
            target = 2 + int(rnd() * (max_num_tokens - 1))
            n_short += 1
        f = s0
        while f < s_end:
            a_s = sent_off[f]
            e = bisect_left(sent_off, a_s + target, f + 1, s_end)
            k = e - f
            n_chunks += 1
            if k == 1:
                a_end = 1
            else:
                a_end = 1 + int(rnd() * (k - 1))
                if sop or rnd() >= 0.5:
                    a_e, c_e = sent_off[f + a_end], sent_off[e]
                    if sop and rnd() < 0.5:
                        add((a_e, c_e, a_s, a_e, 1))  # swapped order
                        n_random_multi += 1
                    else:
                        add((a_s, a_e, a_e, c_e, 0))
                    f = e
                    continue
            a_e = sent_off[f + a_end]
            target_b = target - (a_e - a_s)
            for _ in range(10):
                r = int(rnd() * n_docs)
                if r != d:
                    break
            r0, r1 = doc_off[r], doc_off[r + 1]
            j = r0 + int(rnd() * (r1 - r0))
            b_s = sent_off[j]
            add((a_s, a_e, b_s, sent_off[bisect_left(sent_off, b_s + target_b, j + 1, r1)], 1))
            n_random += 1
            if k == 1:
                n_single += 1
            else:
                n_random_multi += 1
            f += a_end  # put the unused sentences back
    stats.document_copies += doc_hi - doc_lo
    stats.short_target_documents += n_short
    stats.chunks += n_chunks
    stats.single_sentence_chunks += n_single
    stats.random_next += n_random
    stats.random_next_multi += n_random_multi
    return np.array(out, dtype=np.int64).reshape(-1, 5)


def _truncate(spans: np.ndarray, max_num_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """Google's ``truncate_seq_pair`` in closed form on spans [n, 5] (returns a copy)."""
    a_s, a_e, b_s, b_e = (spans[:, c].copy() for c in range(4))
    la, lb = a_e - a_s, b_e - b_s
    excess = np.maximum(la + lb - max_num_tokens, 0)
    ra = np.where(la > lb, np.minimum(excess, la - lb), 0)
    rb = np.where(lb > la, np.minimum(excess, lb - la), 0)
    rest = excess - ra - rb  # now equal lengths: B, A, B, A, ... (ties go to B)
    rb += (rest + 1) // 2
    ra += rest // 2
    fa, fb = rng.binomial(ra, 0.5), rng.binomial(rb, 0.5)
    out = spans.copy()
    out[:, 0], out[:, 1] = a_s + fa, a_e - (ra - fa)
    out[:, 2], out[:, 3] = b_s + fb, b_e - (rb - fb)
    return out


def _assemble_pairs(tb: _Tokenized, spans: np.ndarray, L: int, cls_id: int, sep_id: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``cls A sep B sep`` rows: ids [n, L] int64, lengths [n], a_lengths [n], cont [n, L]."""
    a_s, a_e, b_s, b_e = (spans[:, c] for c in range(4))
    la, lb = a_e - a_s, b_e - b_s
    length = la + lb + 3
    pos = np.arange(L)
    in_a = pos <= la[:, None]  # and the start token
    tail = pos >= (length - 1)[:, None]  # last separator and padding
    # Row r is the window of L tokens placing A at 1..la, then (where not in_a) the window
    # placing B at la+2..: windows of the token stream padded with L zeros on both sides.
    starts_a, starts_b = a_s - 1 + L, b_s - la - 2 + L

    def windows(x: np.ndarray) -> np.ndarray:
        pad = np.zeros(L, dtype=x.dtype)
        w = np.lib.stride_tricks.sliding_window_view(np.concatenate([pad, x, pad]), L)
        out = np.where(in_a, w[starts_a], w[starts_b])
        out[tail] = 0
        return out

    ids = windows(tb.ids).astype(np.int64)
    rows = np.arange(len(spans))
    ids[:, 0] = cls_id
    ids[rows, la + 1] = sep_id
    ids[rows, length - 1] = sep_id
    cont = None
    if tb.cont is not None:
        cont = windows(tb.cont)
        cont[:, 0] = cont[rows, la + 1] = False
    return ids, length, la + 2, cont


def _packed_rows(tb: _Tokenized, doc_lo: int, doc_hi: int, rng: random.Random, L: int,
                 cls_id: int, sep_id: int, stats: _Stats
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """RoBERTa FULL-SENTENCES rows for documents [doc_lo, doc_hi): ids [n, L], lengths [n]."""
    room = L - 2
    order = list(range(doc_lo, doc_hi))
    rng.shuffle(order)
    seqs: list[list[int]] = []  # flat [start, end, start, end, ...]; (-1, -1) is a separator
    cur: list[int] = []
    used = 0
    sent_off, doc_off = tb.sent_off, tb.doc_off
    for d in order:
        stats.document_copies += 1
        for si in range(int(doc_off[d]), int(doc_off[d + 1])):
            s, e = int(sent_off[si]), int(sent_off[si + 1])
            sep = 1 if (cur and si == doc_off[d]) else 0
            if used + sep + (e - s) > room and cur:
                seqs.append(cur)
                cur, used, sep = [], 0, 0
            if sep:
                cur += [-1, -1]
                used += 1
            while e - s > room:  # a sentence longer than a sequence: cut it
                seqs.append([s, s + room])
                s += room
            cur += [s, e]
            used += e - s
            if used >= room:
                seqs.append(cur)
                cur, used = [], 0
    if cur:
        seqs.append(cur)
    ids = np.zeros((len(seqs), L), dtype=np.int64)
    cont = None if tb.cont is None else np.zeros((len(seqs), L), dtype=bool)
    lengths = np.zeros(len(seqs), dtype=np.int64)
    for r, seq in enumerate(seqs):
        parts = [np.array([cls_id])]
        cparts = [np.zeros(1, bool)]
        for s, e in zip(seq[::2], seq[1::2], strict=True):
            parts.append(np.array([sep_id]) if s < 0 else tb.ids[s:e])
            if cont is not None:
                cparts.append(np.zeros(1, bool) if s < 0 else tb.cont[s:e])
        parts.append(np.array([sep_id]))
        row = np.concatenate(parts)
        ids[r, : len(row)] = row
        lengths[r] = len(row)
        if cont is not None:
            cparts.append(np.zeros(1, bool))
            cont[r, : len(row)] = np.concatenate(cparts)
    stats.chunks += len(seqs)
    return ids, lengths, cont


@dataclass(frozen=True)
class _Task:
    work_dir: str
    out_dir: str
    block: int
    part: int
    dupe: int
    settings: InstanceSettings
    vocab: dict[str, Any]  # size, cls/sep/mask ids, id dtype


_BLOCK_CACHE: dict[str, _Tokenized] = {}


def _load_block(work_dir: str) -> _Tokenized:
    if work_dir not in _BLOCK_CACHE:
        _BLOCK_CACHE.clear()
        p = Path(work_dir)
        cont = np.load(p / "cont.npy") if (p / "cont.npy").is_file() else None
        _BLOCK_CACHE[work_dir] = _Tokenized(np.load(p / "ids.npy"), np.load(p / "sent_off.npy"),
                                            np.load(p / "doc_off.npy"),
                                            np.load(p / "part_off.npy"), cont)
    return _BLOCK_CACHE[work_dir]


def _task_seed(settings: InstanceSettings, block: int, part: int, dupe: int
               ) -> tuple[random.Random, np.random.Generator, np.random.Generator]:
    """Generators of one task: segments (Python), truncation + masking, and the row shuffle."""
    ss = np.random.SeedSequence([settings.random_seed, block, part, dupe])
    state = ss.generate_state(2, dtype=np.uint64)
    masking_ss, shuffle_ss = ss.spawn(2)
    return (random.Random(int(state[0]) << 64 | int(state[1])),
            np.random.default_rng(masking_ss), np.random.default_rng(shuffle_ss))


def make_rows(tb: _Tokenized, part: int, dupe: int, block: int, settings: InstanceSettings,
              vocab: dict[str, Any]) -> tuple[np.ndarray, _Stats]:
    """The shard rows (structured array, see :func:`.shards.row_dtype`) of one task."""
    py_rng, np_rng, shuffle_rng = _task_seed(settings, block, part, dupe)
    lo, hi = int(tb.part_off[part]), int(tb.part_off[part + 1])
    L, P = settings.max_seq_length, settings.max_predictions_per_seq
    cls_id, sep_id = vocab["cls_id"], vocab["sep_id"]
    stats = _Stats()
    if settings.objective == "none":
        ids, lengths, cont = _packed_rows(tb, lo, hi, py_rng, L, cls_id, sep_id, stats)
        a_len, labels = lengths, np.zeros(len(lengths), dtype=np.int64)
    else:
        spans = _truncate(_pair_spans(tb, lo, hi, py_rng, settings, stats), L - 3, np_rng)
        ids, lengths, a_len, cont = _assemble_pairs(tb, spans, L, cls_id, sep_id)
        labels = spans[:, 4]
    rows = np.zeros(len(ids), dtype=S.row_dtype(settings, vocab["size"]))
    rows["length"], rows["a_length"], rows["next_sentence_label"] = lengths, a_len, labels
    wwm_cont = cont if settings.do_whole_word_mask else None
    if settings.masking == "static" and len(ids):
        noise = M.generator_noise(np_rng, ids.shape, vocab["size"], ngram=settings.ngram > 1)
        out = M.mask_batch(ids, lengths, noise, cls_id=cls_id, sep_id=sep_id,
                           mask_id=vocab["mask_id"], masked_lm_prob=settings.masked_lm_prob,
                           max_predictions_per_seq=P, continuation=wwm_cont,
                           ngram=settings.ngram)
        if out.span_counts is not None:
            stats.ngram_spans = out.span_counts.sum(axis=0).tolist()
        rows["input_ids"], rows["masked_lm_positions"] = out.input_ids, out.positions
        rows["masked_lm_ids"], rows["num_masked"] = out.labels, out.counts
    else:
        rows["input_ids"] = ids
        if wwm_cont is not None:
            rows["continuation"] = np.packbits(wwm_cont, axis=1)
    # static and dynamic runs with one seed give the same rows in the same order
    return rows[shuffle_rng.permutation(len(rows))], stats


def _run_task(task: _Task) -> dict[str, Any]:
    tb = _load_block(task.work_dir)
    rows, stats = make_rows(tb, task.part, task.dupe, task.block, task.settings, task.vocab)
    name = S.shard_name(task.block, task.part, task.dupe)
    return S.write_shard(Path(task.out_dir), name, rows, stats.as_dict())


# ----------------------------------------------------------------------------- driver


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _init_worker(key: tuple[str, bool], blob: str) -> None:
    """Pool initializer: the parent alone handles Ctrl-C and SIGTERM (and then ends the workers),
    so a worker never prints a KeyboardInterrupt traceback. The worker was started with both
    signals blocked (:func:`_submit`): ignore SIGINT, keep SIGTERM's default, then unblock."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    install_encoder(key, blob)


def _submit(pool: Any, fn: Any, *args: Any) -> Any:
    """``pool.submit``, with SIGINT/SIGTERM blocked meanwhile: a worker it starts inherits the
    mask, so a Ctrl-C during the worker's start-up cannot interrupt it with a traceback; the
    parent receives a signal that arrived meanwhile when the mask is restored."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        return pool.submit(fn, *args)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        return pool.submit(fn, *args)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _kill_pool(pool: Any) -> None:
    """End a ProcessPoolExecutor's workers at once (SIGTERM, then SIGKILL after 5 s)."""
    procs = list(getattr(pool, "_processes", {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join(1)
    pool.shutdown(wait=False, cancel_futures=True)


class _Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during :func:`create_pretraining_data` (``signum``); the
    workers were ended and finished shards kept (a rerun resumes)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum} ({signal.Signals(signum).name})")
        self.signum = signum


class _StopOnSignals:
    """SIGINT and SIGTERM raise :class:`_Interrupted` in the main thread (elsewhere: no-op)."""

    def __enter__(self) -> _StopOnSignals:
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._old[s] = signal.signal(s, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise _Interrupted(signum)

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class _OutLock:
    """An exclusive ``flock`` on ``OUT/.lock`` for the run: a second run into the same
    directory stops at once instead of racing the first (removed when the run ends)."""

    def __init__(self, out: Path) -> None:
        self.out, self.path, self.fd = out, out / ".lock", -1

    def __enter__(self) -> _OutLock:
        try:
            import fcntl
        except ImportError:  # Windows: no lock
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(f"another create-pretraining-data run is writing into "
                                     f"{self.out} (it holds {self.path}); wait for it to "
                                     "finish or choose another --out") from None
            try:  # the file may have been removed by the run that held it: lock the new one
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    self.fd = fd
                    return self
            except FileNotFoundError:
                pass
            os.close(fd)

    def __exit__(self, *exc: Any) -> None:
        if self.fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


class RunLockedError(BertkitError, RuntimeError):
    """Another create-pretraining-data run holds the output directory's lock."""


def _remove_stale_temps(out: Path) -> None:
    """Delete temp files of this format's writers left by a killed run (we hold the lock)."""
    import shutil

    from bertkit.data.vocab_files import TOKENIZER_FILES

    for pattern in (".shard-*.tmp", ".index.json.*.tmp", ".run.json.*.tmp",
                    *(f".{name}.*.tmp" for name in TOKENIZER_FILES)):
        for p in out.glob(pattern):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _undo_empty_run(out: Path, created: bool) -> None:
    """After a failure before any shard was written, remove what the run wrote (``run.json``,
    the vocabulary's files, ``.work``; ``out`` itself when this run created it), so that a rerun
    with corrected input is not refused as "an unfinished run with other inputs"."""
    import shutil

    from bertkit.data.vocab_files import TOKENIZER_FILES

    if any(out.glob("shard-*.npy")) or (out / "index.json").exists():
        return
    for name in ("run.json", *TOKENIZER_FILES):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / ".work", ignore_errors=True)
    if created:
        try:
            (out / ".lock").unlink(missing_ok=True)
            out.rmdir()
        except OSError:
            pass


def _check_inputs(paths: list[Path], errors: Literal["strict", "replace"]) -> None:
    """Raise InputError before anything is written when the input has no text, or (``strict``)
    bytes that are not UTF-8 (file and line): one fast pass over the files."""
    from bertkit.fileio import NotUTF8Error, check_utf8_file

    hint = "; fix the file or pass --errors replace"
    text = False
    for path in paths:
        if errors == "strict":
            try:
                check_utf8_file(path, hint)
            except NotUTF8Error as e:
                raise InputError(str(e)) from None
        if not text:
            with open(path, "rb") as f:
                text = any(block.strip() for block in iter(lambda: f.read(1 << 20), b""))
    if not text:
        raise InputError(f"no text in {', '.join(map(str, paths))}: nothing to make instances "
                         "from")


def _save_block(tb: _Tokenized, work_dir: Path, id_dtype: np.dtype) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    np.save(work_dir / "ids.npy", tb.ids.astype(id_dtype))
    for name in ("sent_off", "doc_off", "part_off"):
        np.save(work_dir / f"{name}.npy", getattr(tb, name))
    if tb.cont is not None:
        np.save(work_dir / "cont.npy", tb.cont)


def create_pretraining_data(inputs: list[str], vocab_file: str | os.PathLike[str],
                            out_dir: str | os.PathLike[str], settings: InstanceSettings,
                            workers: int = 0, errors: Literal["strict", "replace"] = "strict",
                            progress: bool | None = None) -> dict[str, Any]:
    """Write shards + ``index.json`` for ``inputs`` into ``out_dir``; returns the index.

    ``workers`` processes, this one included, create instances (0 = all cores). A rerun with the
    same settings skips shards already written (resume); other settings in a used directory raise.

    Raises:
        InputError: missing, empty or undecodable input.
        ValueError: bad settings, or ``out_dir`` holds data made with other settings.
    """
    from bertkit.data.vocab_files import vocab_files
    from bertkit.fileio import check_output_dir

    settings.validate()
    paths = expand_inputs(inputs)
    out = Path(out_dir)
    files = vocab_files(vocab_file)
    check_output_dir(out)
    encoder = get_encoder(vocab_file, settings.do_lower_case)
    vocab: dict[str, Any] = {"size": len(encoder.tokens), "cls_id": encoder.cls_id,
                             "sep_id": encoder.sep_id, "mask_id": encoder.mask_id,
                             "pad_id": encoder.pad_id}
    if Path(vocab_file).is_dir():  # a tokenizer directory: its files, under their names
        vocab.update(file=files[0].name, files=[f.name for f in files],
                     tokenizer_class=encoder.tokenizer.tokenizer_class)
    _check_inputs(paths, errors)  # undecodable or empty input: found before anything is written
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    with _OutLock(out), _StopOnSignals():
        _remove_stale_temps(out)
        fresh = not (out / "run.json").exists() and not (out / "index.json").exists()
        try:
            run = S.begin_run(out, settings_dict=settings.as_dict(), vocab_file=Path(vocab_file),
                              inputs=[{"path": str(p), "bytes": p.stat().st_size}
                                      for p in paths])
        except BaseException:
            if created:
                _undo_empty_run(out, created)
            raise
        if run.get("complete"):
            logger.info("%s is already complete", out)
            return run["index"]
        try:
            return _create(paths, vocab_file, out, settings, encoder, vocab, workers, errors,
                           progress)
        except BaseException as e:
            if fresh and not isinstance(e, KeyboardInterrupt):  # this run's files only
                _undo_empty_run(out, created)
            raise
        finally:
            _remove_stale_temps(out)


def _create(paths: list[Path], vocab_file: str | os.PathLike[str], out: Path,
            settings: InstanceSettings, encoder: Encoder, vocab: dict[str, Any],
            workers: int, errors: Literal["strict", "replace"], progress: bool | None
            ) -> dict[str, Any]:
    """The run itself, in a claimed ``out`` (see :func:`create_pretraining_data`)."""
    import shutil
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    id_dtype = np.dtype(S.row_dtype(settings, vocab["size"])["input_ids"].base)
    workers = workers or os.cpu_count() or 1
    total = sum(p.stat().st_size for p in paths)
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm import tqdm
    bar = tqdm(total=total / 1e6, unit="MB", disable=not progress, bar_format=(
        "{l_bar}{bar}| {n:.1f}/{total:.1f} MB [{elapsed}<{remaining}, {rate_fmt}{postfix}]"))
    # This process is one of the ``workers``: it reads, tokenizes its share of each block and
    # runs tasks like the ``workers - 1`` pool processes (one process less to start and feed).
    pool = None
    if workers > 1:
        import pickle

        encoder.prepare()  # build the Rust engine once, here, then ship it
        blob = out / ".work" / "encoder.pickle"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(pickle.dumps(encoder))
        pool = ProcessPoolExecutor(workers - 1, mp_context=get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(encoder_key(vocab_file, settings.do_lower_case),
                                             str(blob)))
    metas: list[dict[str, Any]] = []
    queue: deque[tuple[_Task, str]] = deque()  # tasks not started yet, with their block's dir
    pending: dict[Future[dict[str, Any]], str] = {}
    left: dict[str, int] = {}
    t0, n_rows, n_docs, seen = time.perf_counter(), 0, 0, 0

    def finished(meta: dict[str, Any], wd: str) -> None:
        nonlocal n_rows
        metas.append(meta)
        n_rows += meta["rows"]
        left[wd] -= 1
        if left[wd] == 0:
            shutil.rmtree(wd, ignore_errors=True)

    window = 2 * (workers - 1)  # tasks in the pool at a time: the rest stay here to share

    def run_tasks(until: int) -> None:
        """Run the queued tasks (pool and here) until none is queued and <= ``until`` run."""
        while queue or len(pending) > until:
            while pool is not None and queue and len(pending) < window:
                task, wd = queue.popleft()
                pending[_submit(pool, _run_task, task)] = wd
            if queue:
                task, wd = queue.pop()
                finished(_run_task(task), wd)
            if pending:
                done, _ = wait(list(pending), timeout=0 if queue else None,
                               return_when=FIRST_COMPLETED)
                for fut in done:
                    finished(fut.result(), pending.pop(fut))
        bar.set_postfix_str(f"{n_rows / max(time.perf_counter() - t0, 1e-9):,.0f} inst/s")

    try:
        for block in _iter_blocks(paths, settings, errors):
            seen += 1
            n_docs += len(block.docs)
            n_parts = len(block.part_starts) if block.docs else 0
            tasks = [(p, d) for p in range(n_parts) for d in range(settings.dupe_factor)]
            done_metas = [S.read_shard_meta(out, S.shard_name(block.index, p, d)) for p, d in tasks]
            metas.extend(m for m in done_metas if m is not None)
            todo = [t for t, m in zip(tasks, done_metas, strict=True) if m is None]
            if todo:
                tb = _tokenize_block(block, encoder, settings, pool, str(vocab_file))
                wd = out / ".work" / f"block-{block.index:05d}"
                _save_block(tb, wd, id_dtype)
                left[str(wd)] = len(todo)
                queue.extend((_Task(str(wd), str(out), block.index, p, d, settings, vocab),
                              str(wd)) for p, d in todo)
                run_tasks(until=window)  # the pool's last tasks overlap the next block
            bar.update(block.nbytes / 1e6)
        run_tasks(until=0)
    except BrokenProcessPool as e:
        raise RuntimeError(
            "a worker process died. Workers are started with 'spawn', which re-imports the "
            "calling script: call create_pretraining_data under `if __name__ == \"__main__\":`, "
            "or pass workers=1 (also check that the OS did not kill one for memory)") from e
    except BaseException:
        if pool is not None:  # an error or a signal: stop the workers now, not after their tasks
            _kill_pool(pool)
            pool = None
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if n_docs == 0:
        raise InputError(f"no text in {', '.join(map(str, paths))}: nothing to make instances from")
    index = S.finish_run(out, metas, vocab, n_input_bytes=total)
    shutil.rmtree(out / ".work", ignore_errors=True)
    dt = time.perf_counter() - t0
    logger.info("%d instances in %d shards from %.1f MB in %.1f s (%.1f MB/min)",
                index["counts"]["instances"], len(index["shards"]), total / 1e6, dt,
                total / 1e6 / dt * 60)
    return index


# ----------------------------------------------------------------------------- CLI


@dataclass
class CreatePretrainingDataArgs:
    """``bertkit create-pretraining-data``: Google's flags and defaults, plus bertkit's."""

    input: list[str] = field(metadata={"help": "input text files or globs (one sentence per "
                                       "line, blank line between documents)",
                                       "aliases": ["--input_file", "--input-file"]})
    vocab: str = field(metadata={"help": "WordPiece vocab.txt, or a tokenizer directory "
                                 "(vocab.json + merges.txt, or spiece.model)",
                                 "aliases": ["--vocab_file", "--vocab-file"]})
    out: str = field(metadata={"help": "output directory (shards + index.json)",
                               "aliases": ["--output_dir", "--output-dir"]})
    max_seq_length: int = field(default=128, metadata={"min": 8, "help": "tokens per instance"})
    max_predictions_per_seq: int = field(default=20, metadata={"min": 1,
        "help": "max masked positions"})
    masked_lm_prob: float = field(default=0.15, metadata={"above": 0, "below": 1,
        "help": "fraction of tokens masked"})
    short_seq_prob: float = field(default=0.1, metadata={"min": 0, "max": 1,
        "help": "probability of a shorter random target length per document"})
    dupe_factor: int = field(default=10, metadata={"min": 1,
        "help": "copies of the corpus, each with new segments and masks"})
    random_seed: int = field(default=12345, metadata={"min": 0, "help": "seed of all randomness"})
    do_lower_case: bool = field(default=True, metadata={"help": "lower-case and strip accents"})
    cased: bool = field(default=False, metadata={"help": "keep case (= --no-do-lower-case)"})
    do_whole_word_mask: bool = field(default=False, metadata={
        "help": "mask all pieces of a word together"})
    word_boundaries: Literal["wordpiece", "whitespace"] = field(default="wordpiece", metadata={
        "help": "words for whole-word masking: the tokenizer's word starts (WordPiece: not a "
                "continuation piece), or words separated by spaces in the input (e.g. a "
                "segmented Chinese corpus's .words.txt)"})
    objective: Literal["nsp", "sop", "none"] = field(default="nsp", metadata={
        "help": "nsp (BERT), sop (ALBERT sentence order), none (RoBERTa full sentences)"})
    masking: Literal["static", "dynamic"] = field(default="static", metadata={
        "help": "static (masked now, dupe_factor copies) or dynamic (masked at load time)"})
    ngram: int = field(default=1, metadata={"min": 1, "max": 10,
        "help": "mask spans of up to N words, p(n) proportional to 1/n (ALBERT: 3; 1 = off)"})
    workers: int = field(default_factory=lambda: os.cpu_count() or 1, metadata={
        "min": 1, "help": "processes (default: all cores)"})
    errors: Literal["strict", "replace"] = field(default="strict", metadata={
        "help": "non-UTF-8 input: strict (error naming file and line) or replace (U+FFFD)"})
    pool_mb: float = field(default=16.0, metadata={"above": 0,
        "help": "MB of text per block: the pool of 'random next' documents (bounds memory)"})
    part_mb: float = field(default=4.0, metadata={"above": 0,
        "help": "MB of text per shard (per copy)"})


def run_create_pretraining_data(args: CreatePretrainingDataArgs) -> int:
    """CLI entry point: create the shards, print a one-line summary; returns the exit code."""
    settings = InstanceSettings(
        max_seq_length=args.max_seq_length, max_predictions_per_seq=args.max_predictions_per_seq,
        masked_lm_prob=args.masked_lm_prob, short_seq_prob=args.short_seq_prob,
        dupe_factor=args.dupe_factor, random_seed=args.random_seed,
        do_lower_case=args.do_lower_case and not args.cased,
        do_whole_word_mask=args.do_whole_word_mask, word_boundaries=args.word_boundaries,
        objective=args.objective, masking=args.masking, pool_mb=args.pool_mb,
        part_mb=args.part_mb, ngram=args.ngram)
    try:
        index = create_pretraining_data(args.input, args.vocab, args.out, settings,
                                        workers=args.workers, errors=args.errors)
    except (InputError, ValueError, FileNotFoundError) as e:
        from bertkit.cli import _one_line

        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except _Interrupted as e:
        logger.error("%s: finished shards are kept in %s; rerun the same command to resume", e,
                     args.out)
        return 128 + e.signum
    c = index["counts"]
    print(f"{c['instances']:,} instances in {len(index['shards'])} shards from "
          f"{c['documents']:,} documents -> {args.out}")
    return 0
