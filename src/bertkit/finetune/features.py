"""Labelled examples -> model inputs for fine-tuning: classification/regression, NER, multiple choice.

Every :class:`Feature` holds unpadded ids in the tokenizer's template (BERT's class token, A,
separator (B, separator); RoBERTa's ``<s> A </s>(</s> B </s>)``: see
:mod:`bertkit.tokenization.base`); :func:`collate` pads a batch. "Pieces" below are the
tokenizer's tokens (WordPiece pieces, BPE tokens, SentencePiece pieces).
Long inputs are handled in one of two ways (``long_inputs``):

``"truncate"`` (Google's ``run_classifier.py``)
    A single text keeps its first ``max_seq_length - 2`` word pieces; a pair is cut longest-first
    (drop the last piece of the longer segment, of B on a tie). NER keeps the first
    ``max_seq_length - 2`` pieces: a word whose first piece is cut is not in the input, its tag
    defaults to ``"O"`` in :func:`aggregate_ner`, and the number of such words is logged.

``"window"`` (overlapping windows, no silent loss)
    An input that fits gives one feature, identical to ``"truncate"``. A longer one gives several
    windows. ``stride`` is the *step* between the starts of consecutive windows, in word pieces,
    as Google's ``doc_stride`` in ``run_squad.py`` (overlap = window length - stride); the default
    is half the window budget, so neighbouring windows overlap by about half. A stride larger than
    the budget is clipped to it, so no piece is ever skipped. The last window ends at the last piece
    (it may be shorter than the others).

    * Classification, single text: windows of ``max_seq_length - 2`` pieces at starts
      ``0, stride, 2*stride, ...``.
    * Classification, pair (budget ``max_seq_length`` minus the template's specials, 3 for
      BERT): the shorter segment (A on a tie) is
      kept whole in every window when it fits in half the budget (``<= budget // 2`` pieces) and
      the longer one (B on a tie) is windowed over the rest of the budget. When both are longer
      than half the budget, the shorter keeps its first ``budget // 2`` pieces (its tail is lost,
      as in truncation; logged) and the longer is windowed over ``budget - budget // 2`` pieces.
    * :func:`aggregate_classification` averages the logits of an example's windows (mean of
      logits, not of probabilities).
    * NER: windows hold whole words: a window starts at a word's first piece and ends at a word
      boundary, so no window starts in the middle of a word. The next window starts at the first
      word beginning at least ``stride`` pieces after the current start, or at the current
      window's end if that comes sooner (so every word is in some window). A single word longer
      than the budget fills a window alone with its first ``max_seq_length - 2`` pieces. Each word
      is predicted from exactly one window, the one where its first piece has the most context
      (Google's score ``min(left, right) + 0.01 * window length``, pieces of context within the
      window; the earliest window wins a tie); that position is marked in ``Feature.max_context``.

NER labels follow Google's README and Hugging Face's ``word_ids()`` convention: the word's label on
its first piece, ``-100`` (ignored by the loss) on the other pieces and on special tokens;
``label_all_pieces=True`` puts the word's label on every piece instead. A word with no pieces (e.g.
a lone control character) becomes one unknown token so that every word gets a prediction (Hugging
Face's tokenizer drops such a word). Each word is encoded as it is inside a text
(:meth:`~bertkit.tokenization.base.TokenizerBase.encode_words`: after a space for byte-level BPE).

>>> _windows(10, budget=4, stride=2)
[(0, 4), (2, 4), (4, 4), (6, 4)]
>>> _windows(3, budget=4, stride=2)
[(0, 3)]
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from bertkit.data.glue import Example
from bertkit.data.multiple_choice import MultipleChoiceExample
from bertkit.data.ner import NerSentence
from bertkit.inference.batcher import Encoded, pad_batch, pad_rows

logger = logging.getLogger(__name__)

__all__ = ["LongInputs", "Feature", "IGNORE_INDEX", "encode_classification",
           "aggregate_classification", "encode_ner", "aggregate_ner", "encode_multiple_choice",
           "collate", "feature_lengths", "length_grouped_order"]

LongInputs = Literal["truncate", "window"]
IGNORE_INDEX = -100  # label of positions the loss ignores (torch's cross_entropy default)
MEGA_BATCH_FACTOR = 50  # length_grouped_order sorts mega-batches of this many batches


@dataclass
class Feature:
    """One model input (one window of one example).

    ``input_ids``/``token_type_ids`` are the tokenizer's template without padding: a
    ``list[int]`` of length T, or for multiple choice a ``list[list[int]]`` of K rows (one per
    choice). ``label``: class id, regression target, per-token label ids (``-100`` = ignored), or
    None when unlabelled. ``word_ids`` (NER): the word index at each word's first piece, None at
    every other position. ``max_context`` (NER windows): True where this window is the one that
    predicts the word starting there.
    """

    example_index: int
    input_ids: list[int] | list[list[int]]
    token_type_ids: list[int] | list[list[int]]
    label: int | float | list[int] | None
    word_ids: list[int | None] | None = None
    max_context: list[bool] | None = None


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _check_mode(long_inputs: str, stride: int | None) -> None:
    if long_inputs not in ("truncate", "window"):
        raise ValueError(f"long_inputs must be 'truncate' or 'window', not {long_inputs!r}")
    if stride is not None and stride < 1:
        raise ValueError(f"stride must be >= 1 word piece, got {stride}")


def _step(stride: int | None, budget: int) -> int:
    """The window step: ``stride`` clipped to the budget, default half the budget (at least 1)."""
    return max(1, budget // 2) if stride is None else min(stride, budget)


def _windows(n: int, budget: int, stride: int) -> list[tuple[int, int]]:
    """``(start, length)`` of Google's doc spans over ``n`` pieces (``run_squad.py``'s loop).

    Windows start at ``0, stride, 2*stride, ...``; the last one ends at ``n``.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        length = min(n - start, budget)
        spans.append((start, length))
        if start + length >= n:
            return spans
        start += min(length, stride)


# ---------------------------------------------------------------------------------------------
# Classification and regression


def _class_label(example: Example, label_to_id: Mapping[str, int] | None) -> int | float | None:
    if example.label is None:
        return None
    if label_to_id is None:
        try:
            return float(example.label)
        except ValueError:
            raise ValueError(f"example {example.guid}: regression target {example.label!r} "
                             f"is not a number") from None
    label_id = label_to_id.get(example.label)  # type: ignore[arg-type]
    if label_id is None:
        raise ValueError(f"example {example.guid}: label {example.label!r} is not one of "
                         f"{sorted(label_to_id)}")
    return label_id


def _pair_windows(ids_a: list[int], ids_b: list[int], budget: int, stride: int | None
                  ) -> tuple[list[tuple[list[int], list[int]]], bool]:
    """Windows ``(a_part, b_part)`` of a pair longer than ``budget``; True when a tail was lost."""
    windowed_is_a = len(ids_a) > len(ids_b)  # B on a tie, as in longest-first
    long_ids, short_ids = (ids_a, ids_b) if windowed_is_a else (ids_b, ids_a)
    kept = min(len(short_ids), budget // 2)
    short_part = short_ids[:kept]
    room = budget - kept
    out = []
    for start, length in _windows(len(long_ids), room, _step(stride, room)):
        part = long_ids[start:start + length]
        out.append((part, short_part) if windowed_is_a else (short_part, part))
    return out, kept < len(short_ids)


def encode_classification(examples: Sequence[Example], tokenizer: Any,
                          label_to_id: Mapping[str, int] | None, max_seq_length: int = 128,
                          long_inputs: LongInputs = "truncate", stride: int | None = None
                          ) -> list[Feature]:
    """Features for sentence / pair classification (``label_to_id``) or regression (None).

    Texts are tokenized in one fast batch. Google's rule for pairs: an empty ``text_b`` counts as
    no B. Unlabelled examples get ``label=None``. See the module docstring for ``long_inputs``
    and ``stride`` (the step between windows, in word pieces).

    Raises:
        ValueError: a label not in ``label_to_id`` or a non-numeric regression target (naming
            the example's guid), a bad ``long_inputs``/``stride``, or ``max_seq_length`` too small.
    """
    _check_mode(long_inputs, stride)
    if max_seq_length < tokenizer.n_special(True) + 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for text")
    texts_b = [e.text_b for e in examples if e.text_b]
    enc = tokenizer.encode_batch([e.text_a for e in examples] + texts_b)
    ids_b_iter = iter(enc[len(examples):])
    out: list[Feature] = []
    n_cut = n_windowed = n_short_cut = 0
    for i, ex in enumerate(examples):
        label = _class_label(ex, label_to_id)
        ids_a = enc[i]
        ids_b = next(ids_b_iter) if ex.text_b else None
        budget = max_seq_length - tokenizer.n_special(ids_b is not None)
        total = len(ids_a) + (len(ids_b) if ids_b is not None else 0)
        if long_inputs == "truncate" or total <= budget:
            ids, types, _, _ = tokenizer.build_inputs(ids_a, ids_b, max_seq_length)
            out.append(Feature(i, ids, types, label))
            n_cut += total > budget
            continue
        n_windowed += 1
        if ids_b is None:
            parts = [(ids_a[s:s + n], None) for s, n in _windows(len(ids_a), budget,
                                                               _step(stride, budget))]
        else:
            parts, lost = _pair_windows(ids_a, ids_b, budget, stride)
            n_short_cut += lost
        for part_a, part_b in parts:
            ids, types, _, _ = tokenizer.build_inputs(part_a, part_b)
            out.append(Feature(i, ids, types, label))
    if n_cut:
        logger.info("%d of %d examples truncated to max_seq_length=%d", n_cut, len(examples),
                    max_seq_length)
    if n_windowed:
        logger.info("%d of %d examples split into overlapping windows (%d features in all)",
                    n_windowed, len(examples), len(out))
    if n_short_cut:
        logger.warning("%d pairs have both segments longer than half of max_seq_length=%d: the "
                       "shorter segment keeps only its first half-budget pieces", n_short_cut,
                       max_seq_length)
    return out


def aggregate_classification(features: Sequence[Feature], logits: np.ndarray, n_examples: int
                             ) -> np.ndarray:
    """Per-example logits: the mean of the logits of each example's windows.

    Args:
        features: the features the logits were computed for, in the same order.
        logits: (n_features, C), or (n_features,) for regression.
        n_examples: number of examples the features came from.

    Returns:
        (n_examples, C) (or (n_examples,)) float64 array.

    Raises:
        ValueError: a length mismatch, or an example with no feature.
    """
    arr = np.asarray(logits, dtype=np.float64)
    if arr.shape[0] != len(features):
        raise ValueError(f"{arr.shape[0]} rows of logits for {len(features)} features")
    index = np.fromiter((f.example_index for f in features), dtype=np.int64, count=len(features))
    if len(index) and (index.min() < 0 or index.max() >= n_examples):
        raise ValueError(f"feature example_index outside [0, {n_examples})")
    counts = np.bincount(index, minlength=n_examples)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        raise ValueError(f"{len(missing)} examples have no feature (first: {missing[0]})")
    sums = np.zeros((n_examples, *arr.shape[1:]), dtype=np.float64)
    np.add.at(sums, index, arr)
    return sums / counts.reshape(-1, *([1] * (arr.ndim - 1)))


# ---------------------------------------------------------------------------------------------
# Token classification (NER)


def _word_pieces(sentences: Sequence[NerSentence], tokenizer: Any) -> list[list[list[int]]]:
    """Pieces of every word of every sentence (one batch); an empty word -> the unknown token."""
    words = [w for s in sentences for w in s.tokens]
    enc = [ids for ids, _ in tokenizer.encode_words(words)]
    unk = tokenizer.unk_token_id
    n_empty = sum(not e for e in enc)
    if n_empty:
        logger.info("%d words have no word piece (e.g. a lone control character): the unknown "
                    "token", n_empty)
    out, pos = [], 0
    for s in sentences:
        out.append([e if e else [unk] for e in enc[pos:pos + len(s.tokens)]])
        pos += len(s.tokens)
    return out


def _tag_ids(sentence: NerSentence, label_to_id: Mapping[str, int]) -> list[int] | None:
    if not sentence.tags:
        return None
    if len(sentence.tags) != len(sentence.tokens):
        raise ValueError(f"sentence {sentence.guid}: {len(sentence.tokens)} tokens but "
                         f"{len(sentence.tags)} tags")
    ids = []
    for w, tag in enumerate(sentence.tags):
        if tag not in label_to_id:
            raise ValueError(f"sentence {sentence.guid}: tag {tag!r} of word {w} is not in the "
                             f"label list {list(label_to_id)}")
        ids.append(label_to_id[tag])
    return ids


def _ner_feature(index: int, pieces: list[list[int]], first: int, end: int, limit: int,
                 tag_ids: list[int] | None, label_all_pieces: bool, tokenizer: Any,
                 best: dict[int, int] | None, window: int) -> Feature:
    """The feature holding words ``[first, end)``, cut after ``limit`` pieces.

    ``best`` maps a word to its max-context window (None: no ``max_context``).
    """
    ids = [tokenizer.cls_token_id]
    word_ids: list[int | None] = [None]
    labels = [IGNORE_INDEX]
    for w in range(first, end):
        for k, piece in enumerate(pieces[w][:max(0, limit - len(ids) + 1)]):
            ids.append(piece)
            word_ids.append(w if k == 0 else None)
            if tag_ids is not None:
                labels.append(tag_ids[w] if k == 0 or label_all_pieces else IGNORE_INDEX)
    ids.append(tokenizer.sep_token_id)
    word_ids.append(None)
    labels.append(IGNORE_INDEX)
    max_context = None
    if best is not None:
        max_context = [w is not None and best[w] == window for w in word_ids]
    return Feature(index, ids, [0] * len(ids), labels if tag_ids is not None else None,
                   word_ids, max_context)


def _word_windows(starts: list[int], n_pieces: int, budget: int, stride: int
                  ) -> list[tuple[int, int, int, int]]:
    """Windows of whole words: ``(first_word, end_word, first_piece, end_piece)``.

    ``starts[w]`` is the piece offset of word w. See the module docstring for the rule.
    """
    n_words = len(starts)
    ends = starts[1:] + [n_pieces]
    out = []
    s = 0
    while True:
        lo = starts[s]
        e = bisect.bisect_right(ends, lo + budget, lo=s)  # words ending within the budget
        if e == s:  # one word longer than the budget
            out.append((s, s + 1, lo, lo + budget))
            e = s + 1
        else:
            out.append((s, e, lo, ends[e - 1]))
        if e >= n_words:
            return out
        s = min(bisect.bisect_left(starts, lo + stride, lo=s + 1), e)


def _max_context(windows: list[tuple[int, int, int, int]], starts: list[int]) -> dict[int, int]:
    """For each word, the window where its first piece scores best (Google's max-context rule)."""
    best: dict[int, int] = {}
    score: dict[int, float] = {}
    for k, (first, end, lo, hi) in enumerate(windows):
        for w in range(first, end):
            p = starts[w]
            sc = min(p - lo, hi - 1 - p) + 0.01 * (hi - lo)
            if w not in score or sc > score[w]:
                score[w], best[w] = sc, k
    return best


def encode_ner(sentences: Sequence[NerSentence], tokenizer: Any, label_to_id: Mapping[str, int],
               max_seq_length: int = 128, long_inputs: LongInputs = "truncate",
               stride: int | None = None, label_all_pieces: bool = False) -> list[Feature]:
    """Features for token classification; ``word_ids`` map first pieces back to words.

    A sentence with no tags gets ``label=None``. ``"truncate"``: one feature per sentence
    (``max_context`` None); ``"window"``: one or more, each with ``max_context`` (see the module
    docstring; ``stride`` is the step between window starts, in word pieces).

    Raises:
        ValueError: a tag not in ``label_to_id`` or tags/tokens of different lengths (naming the
            sentence's guid), bad ``long_inputs``/``stride``, ``max_seq_length`` below 3.
    """
    _check_mode(long_inputs, stride)
    if max_seq_length < tokenizer.n_special(False) + 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for text")
    budget = max_seq_length - tokenizer.n_special(False)
    out: list[Feature] = []
    n_cut_words = n_cut_sents = 0
    for i, (sent, pieces) in enumerate(zip(sentences, _word_pieces(sentences, tokenizer),
                                           strict=True)):
        tag_ids = _tag_ids(sent, label_to_id)
        starts = list(itertools.accumulate((len(p) for p in pieces[:-1]), initial=0))
        starts = starts if pieces else []
        n_pieces = sum(len(p) for p in pieces)
        if long_inputs == "truncate" or n_pieces <= budget or not pieces:
            best = None if long_inputs == "truncate" else dict.fromkeys(range(len(pieces)), 0)
            out.append(_ner_feature(i, pieces, 0, len(pieces), budget, tag_ids,
                                    label_all_pieces, tokenizer, best, 0))
            cut = sum(s >= budget for s in starts)
            n_cut_words += cut
            n_cut_sents += cut > 0
            continue
        windows = _word_windows(starts, n_pieces, budget, _step(stride, budget))
        best = _max_context(windows, starts)
        for k, (first, end, lo, hi) in enumerate(windows):
            out.append(_ner_feature(i, pieces, first, end, hi - lo, tag_ids, label_all_pieces,
                                    tokenizer, best, k))
    if n_cut_words:
        logger.warning("truncation to max_seq_length=%d cut %d words from %d of %d sentences: "
                       "they are predicted 'O' (use long_inputs='window' to keep them)",
                       max_seq_length, n_cut_words, n_cut_sents, len(sentences))
    return out


def aggregate_ner(features: Sequence[Feature], logits: Sequence[np.ndarray] | np.ndarray,
                  sentences: Sequence[NerSentence], id_to_label: Sequence[str]) -> list[list[str]]:
    """One tag per word: the argmax at the word's first piece in its max-context window.

    Args:
        features: from :func:`encode_ner`, in the order the logits were computed.
        logits: one (T_f, C) array per feature (T_f >= its length), or a padded (N, T, C) array.
        sentences: the sentences the features came from.
        id_to_label: tag of each class id.

    Returns:
        A list of tags per sentence, one per word; a word in no feature (cut by truncation) gets
        ``"O"``. A feature without ``max_context`` predicts every word it starts.
    """
    if len(logits) != len(features):
        raise ValueError(f"{len(logits)} logits arrays for {len(features)} features")
    tags: list[list[str | None]] = [[None] * len(s.tokens) for s in sentences]
    for f, feat_logits in zip(features, logits, strict=True):
        if f.word_ids is None:
            raise ValueError(f"feature of example {f.example_index} has no word_ids (not NER)")
        arr = np.asarray(feat_logits)
        if arr.ndim != 2 or arr.shape[0] < len(f.word_ids):
            raise ValueError(f"logits of shape {arr.shape} for a feature of {len(f.word_ids)} "
                             f"tokens (expected (T, C) with T >= {len(f.word_ids)})")
        row = tags[f.example_index]
        for p, w in enumerate(f.word_ids):
            if w is None or (f.max_context is not None and not f.max_context[p]):
                continue
            if row[w] is None:
                row[w] = id_to_label[int(arr[p].argmax())]
    n_missing = sum(t is None for row in tags for t in row)
    if n_missing:
        logger.info("%d words were in no feature (truncated): tagged 'O'", n_missing)
    return [[t if t is not None else "O" for t in row] for row in tags]


# ---------------------------------------------------------------------------------------------
# Multiple choice


def encode_multiple_choice(examples: Sequence[MultipleChoiceExample], tokenizer: Any,
                           max_seq_length: int = 128) -> list[Feature]:
    """One feature per example: K rows, context and choice as a pair, longest-first cut.

    ``input_ids``/``token_type_ids`` are ``list[list[int]]`` (one row per choice);
    ``label`` is the example's label (index of the right choice) or None.
    """
    if max_seq_length < tokenizer.n_special(True) + 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for text")
    choices = [c for e in examples for c in e.choices]
    enc = tokenizer.encode_batch([e.context for e in examples] + choices)
    pos = len(examples)
    out: list[Feature] = []
    n_cut = 0
    for i, ex in enumerate(examples):
        ids_rows, type_rows = [], []
        for ids_choice in enc[pos:pos + len(ex.endings)]:
            ids, types, _, _ = tokenizer.build_inputs(enc[i], ids_choice, max_seq_length)
            n_cut += len(enc[i]) + len(ids_choice) > max_seq_length - tokenizer.n_special(True)
            ids_rows.append(ids)
            type_rows.append(types)
        pos += len(ex.endings)
        out.append(Feature(i, ids_rows, type_rows, ex.label))
    if n_cut:
        logger.info("%d of %d context/choice pairs truncated to max_seq_length=%d", n_cut,
                    len(choices), max_seq_length)
    return out


# ---------------------------------------------------------------------------------------------
# Batching


def _labels(features: Sequence[Feature], width: int) -> torch.Tensor | None:
    labels = [f.label for f in features]
    if all(lab is None for lab in labels):
        return None
    if any(lab is None for lab in labels):
        raise ValueError("a batch mixes labelled and unlabelled features")
    if all(isinstance(lab, list) for lab in labels):
        return pad_rows(labels, width, IGNORE_INDEX)  # type: ignore[arg-type]
    if any(isinstance(lab, list) for lab in labels):
        raise ValueError("a batch mixes per-token and per-example labels")
    if any(isinstance(lab, float) for lab in labels):
        return torch.tensor(labels, dtype=torch.float32)
    return torch.tensor(labels, dtype=torch.long)


def collate(features: Sequence[Feature], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sequence.

    Returns ``input_ids``, ``attention_mask`` (1 = real token), ``token_type_ids``, each (B, T),
    or (B, K, T) for multiple choice; ``labels``: (B,) long (class ids, choice index), (B,) float
    (regression) or (B, T) long padded with -100 (NER); no ``labels`` key when all are None.
    """
    if not features:
        raise ValueError("collate needs at least one feature")
    batch = pad_batch([Encoded(f.input_ids, f.token_type_ids) for f in features], pad_id)
    width = batch["input_ids"].shape[-1]
    labels = _labels(features, width)
    if labels is not None:
        batch["labels"] = labels
    return batch


def feature_lengths(features: Sequence[Feature]) -> list[int]:
    """Tokens per feature (the longest choice row for multiple choice), for the batch orders."""
    return [max(map(len, f.input_ids)) if f.input_ids and isinstance(f.input_ids[0], list)
            else len(f.input_ids) for f in features]


def length_grouped_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                         group: int = MEGA_BATCH_FACTOR) -> list[list[int]]:
    """Training batches grouped by length: less padding, still random.

    A random permutation (seeded by ``(seed, epoch)``) is cut into mega-batches of
    ``group * batch_size`` indices (``group=1``: plain random batches); each is sorted by length (longest first) and cut into batches;
    the order of all batches is then shuffled. Every index appears exactly once; only the last
    batch of each mega-batch may be short.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got {seed} and {epoch}")
    rng = np.random.default_rng([seed, epoch])
    lens = np.asarray(lengths, dtype=np.int64)
    perm = rng.permutation(len(lens))
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    mega = group * batch_size
    batches: list[list[int]] = []
    for m in range(0, len(perm), mega):
        chunk = perm[m:m + mega]
        chunk = chunk[np.argsort(-lens[chunk], kind="stable")]
        batches += [chunk[b:b + batch_size].tolist() for b in range(0, len(chunk), batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]
