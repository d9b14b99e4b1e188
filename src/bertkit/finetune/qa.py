"""Extractive QA (SQuAD): features in windows with a doc stride, and answer post-processing.

Notation: B batch, T tokens of one feature (the tokenizer's pair template around the query and a
window of the context, no padding: BERT's class token, query, separator, window, separator;
RoBERTa's ``<s> query </s></s> window </s>``).

Features (Google's ``run_squad.py``, ``convert_examples_to_features``): the context's whitespace
words (:attr:`SquadExample.doc_tokens`) are tokenized one word at a time (as inside a text:
:meth:`~bertkit.tokenization.base.TokenizerBase.encode_words`), the query is cut to
``max_query_length`` pieces, and the context pieces are cut into windows of
``max_seq_length - len(query) - n_special`` pieces (``n_special`` the template's special tokens,
3 for BERT) whose starts are ``doc_stride`` apart (the last window ends at the last piece). Each context piece is *max-context* in the one window where
``min(left, right) + 0.01 * window length`` is highest (the earliest window on a tie); only there
may a predicted answer start. Training targets are the answer's first and last piece, moved to the
tightest span whose pieces equal the pieces of the answer text ("(1895-1943)." -> "1895"), or
``0/0`` (the first token) in a window that does not hold the whole answer and for impossible questions.

Post-processing (``write_predictions``/``get_final_text``): the ``n_best_size`` best start and end
positions of every window are paired; spans outside the context part, reversed, longer than
``max_answer_length`` pieces or starting where the window is not max-context are dropped; the rest
are ranked by start + end logit across windows. With WordPiece a span's text is its de-tokenized
pieces projected onto the original words (:func:`get_final_text`), so case, accents and characters
the vocabulary lacks come back from the context; with the other tokenizers it is the context's text
between the pieces' character offsets (exact by construction). Duplicate texts are skipped; softmax over the n-best scores gives
probabilities. SQuAD v2 adds the null answer, scored by the lowest first-token start + end logit of
the example's windows; ``null_odds`` = null score - best non-null score, and the prediction is
``""`` when it exceeds ``null_score_diff_threshold``.

Deliberate differences from Google's script:

* Features hold no padding (batches are padded by :func:`collate_qa`), so only real positions
  compete for the n-best starts and ends; Google ranks all ``max_seq_length`` positions, padding
  included (with dynamic padding, their number and so the answer would depend on the batch).
* Training with several answers uses the first one (Google raises).
* SQuAD v2 when no non-null span is valid in any window: Google's script crashes; here the
  prediction is ``""`` and ``null_odds`` is the null score (the best non-null counted as 0, as
  Hugging Face's "empty" entry does).

Speed: each distinct whitespace word of all contexts is tokenized once, in one call to the fast
batch encoder (Disfl-QA, 4,787 SQuAD questions: 1.6 s for the training features vs 32 s for
Google's code, same ids); post-processing caches the basic tokens of each word (3.7 s vs 30 s).
``token_to_word``/``token_is_max_context`` are built only when read (a window stores its offsets).

Example:
    >>> feats = convert_examples(read_squad("dev-v2.0.json"), tok)              # doctest: +SKIP
    >>> batch = collate_qa(feats[:32], tok.pad_token_id)   # input_ids (32, T) # doctest: +SKIP
    >>> preds = postprocess(examples, feats, start_logits, end_logits,
    ...                     version_2=True)                                    # doctest: +SKIP
    >>> write_qa_predictions("out", preds, version_2=True)                     # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertkit.data.squad import SquadExample
from bertkit.fileio import atomic_write_text
from bertkit.tokenization import basic
from bertkit.tokenization.base import Span
from bertkit.tokenization.wordpiece import PREFIX

logger = logging.getLogger(__name__)

__all__ = ["ContextPieces", "QAFeature", "QAPredictions", "convert_examples", "collate_qa",
           "postprocess", "get_final_text", "write_qa_predictions"]


@dataclass(frozen=True, eq=False)
class ContextPieces:
    """The word pieces of one context, shared by every window of every question on it.

    ``ids[k]``/``pieces[k]`` is piece ``k``; ``piece_to_word[k]`` the index in ``doc_tokens`` of
    the whitespace word it comes from; ``word_to_piece[w]`` the first piece of word ``w`` (the
    next word's first piece for a word with no pieces). ``spans[k]``: piece ``k``'s characters
    within its word, for the tokenizers whose answers are cut by offsets (None: WordPiece, whose
    answers Google's :func:`get_final_text` projects).
    """

    ids: list[int]
    pieces: list[str]
    piece_to_word: list[int]
    word_to_piece: list[int]
    spans: list[Span] | None = None


@dataclass(eq=False)
class QAFeature:
    """One window of one example: the pair template around the query and
    ``context[doc_start:doc_start+n]``.

    ``input_ids``/``token_type_ids``: length T, no padding (BERT: types 0 up to the first
    separator, 1 after). ``start_position``/``end_position``: training targets, positions in this
    feature (``0/0`` = the first token: the answer is not wholly inside this window, or there is
    none); None when built with ``is_training=False``. The context part starts at position
    ``doc_offset`` (BERT: ``len(query) + 2``) and holds pieces ``doc_start ...`` of ``context``; ``max_context[i]`` is
    True where this window is the max-context one for its ``i``-th context piece.
    """

    example_index: int
    input_ids: list[int]
    token_type_ids: list[int]
    start_position: int | None
    end_position: int | None
    is_impossible: bool
    window_index: int
    doc_offset: int
    doc_start: int
    max_context: np.ndarray = field(repr=False)  # (n,) bool
    context: ContextPieces = field(repr=False)

    @property
    def doc_length(self) -> int:
        """Number of context pieces in this window."""
        return len(self.max_context)

    @functools.cached_property
    def token_to_word(self) -> dict[int, int]:
        """Feature position -> index in ``doc_tokens`` (context positions only; Google's
        ``token_to_orig_map``; built on first use)."""
        words = self.context.piece_to_word
        return {self.doc_offset + i: words[self.doc_start + i] for i in range(self.doc_length)}

    @functools.cached_property
    def token_is_max_context(self) -> dict[int, bool]:
        """Feature position -> whether this window is the max-context one (context positions;
        built on first use)."""
        return {self.doc_offset + i: bool(m) for i, m in enumerate(self.max_context)}


# ---------------------------------------------------------------------------------------------
# Features


def _is_wordpiece(tokenizer: Any) -> bool:
    """Google's path (WordPiece, answers projected by :func:`get_final_text`) or offsets."""
    from bertkit.tokenization import BertTokenizer

    return isinstance(tokenizer, BertTokenizer)


def _encode(tokenizer: Any, texts: Sequence[str], fast: bool, words: bool
            ) -> list[tuple[list[int], list[Span]]]:
    """Ids and spans of ``texts`` (``words``: as words inside a text); ``fast=False`` is
    WordPiece's reference path."""
    if not fast:
        return tokenizer.encode_batch_with_offsets(texts, fast=False)
    return tokenizer.encode_words(texts) if words else tokenizer.encode_batch_with_offsets(texts)


def _context_pieces(examples: Sequence[SquadExample], tokenizer: Any, fast: bool
                    ) -> list[ContextPieces]:
    """Pieces of each example's context; every distinct word is encoded once, in one batch."""
    by_context: dict[tuple[str, ...], int] = {}
    for ex in examples:
        by_context.setdefault(ex.doc_tokens, len(by_context))
    words = list(dict.fromkeys(w for doc in by_context for w in doc))
    encoded = dict(zip(words, _encode(tokenizer, words, fast, words=True), strict=True))
    keep_spans = not _is_wordpiece(tokenizer)
    out: list[ContextPieces] = []
    for doc in by_context:
        ids: list[int] = []
        spans: list[Span] = []
        piece_to_word: list[int] = []
        word_to_piece: list[int] = []
        for w, word in enumerate(doc):
            word_to_piece.append(len(ids))
            pieces, word_spans = encoded[word]
            ids.extend(pieces)
            spans.extend(word_spans)
            piece_to_word.extend([w] * len(pieces))
        out.append(ContextPieces(ids, tokenizer.convert_ids_to_tokens(ids), piece_to_word,
                                 word_to_piece, spans if keep_spans else None))
    return [out[by_context[ex.doc_tokens]] for ex in examples]


def _doc_windows(n_pieces: int, max_tokens: int, stride: int) -> list[tuple[int, int]]:
    """``(start, length)`` of each window (Google's doc spans).

    >>> _doc_windows(10, 4, 3)
    [(0, 4), (3, 4), (6, 4)]
    >>> _doc_windows(10, 4, 6)
    [(0, 4), (4, 4), (8, 2)]
    """
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n_pieces:
        length = min(n_pieces - start, max_tokens)
        spans.append((start, length))
        if start + length == n_pieces:
            break
        start += min(length, stride)
    return spans


def _max_context_owner(spans: Sequence[tuple[int, int]], n_pieces: int) -> np.ndarray:
    """(n_pieces,) index of the window where each piece has the most context.

    Score ``min(left, right) + 0.01 * length``; the first window with the highest score wins.
    """
    owner = np.zeros(n_pieces, dtype=np.int64)
    if len(spans) < 2:
        return owner
    best = np.full(n_pieces, -np.inf)
    for j, (start, length) in enumerate(spans):
        pos = np.arange(length)
        score = np.minimum(pos, length - 1 - pos) + 0.01 * length
        better = score > best[start:start + length]
        best[start:start + length][better] = score[better]
        owner[start:start + length][better] = j
    return owner


def _answer_pieces(ex: SquadExample, ctx: ContextPieces, answer_ids: list[int]
                   ) -> tuple[int, int] | None:
    """First and last context piece of the (first) answer, improved as Google does.

    None when the answer's words do not contain its whitespace-normalised text (Google skips such
    training examples).
    """
    answer = ex.answers[0]
    first_word, last_word = ex.word_span(answer)
    actual = " ".join(ex.doc_tokens[first_word:last_word + 1])
    if actual.find(" ".join(answer.text.split())) == -1:
        return None
    start = ctx.word_to_piece[first_word]
    if last_word + 1 < len(ex.doc_tokens):
        end = ctx.word_to_piece[last_word + 1] - 1
    else:
        end = len(ctx.ids) - 1
    # The tightest span whose pieces are the answer's pieces: only spans of that length can match.
    n = len(answer_ids)
    for new_start in range(start, end + 1):
        new_end = new_start + n - 1
        if n and new_end <= end and ctx.ids[new_start:new_end + 1] == answer_ids:
            return new_start, new_end
    return start, end


def _window_target(target: tuple[int, int] | None, impossible: bool, start: int, length: int,
                   doc_offset: int) -> tuple[int, int]:
    """Feature positions of the answer in one window, ``(0, 0)`` when absent or impossible."""
    if impossible or target is None:
        return 0, 0
    first, last = target
    if first < start or last > start + length - 1:
        return 0, 0
    return first - start + doc_offset, last - start + doc_offset


def _check_lengths(max_seq_length: int, doc_stride: int, max_query_length: int,
                   n_special: int = 3) -> None:
    if max_seq_length <= max_query_length + n_special:
        raise ValueError(f"max_seq_length ({max_seq_length}) must be greater than "
                         f"max_query_length ({max_query_length}) + {n_special}")
    if doc_stride < 1 or max_query_length < 0:
        raise ValueError(f"doc_stride must be >= 1 and max_query_length >= 0, got {doc_stride} "
                         f"and {max_query_length}")


def convert_examples(examples: Sequence[SquadExample], tokenizer: Any, max_seq_length: int = 384,
                     doc_stride: int = 128, max_query_length: int = 64,
                     is_training: bool = False, *, fast: bool = True) -> list[QAFeature]:
    """Features of all examples, in example order then window order (Google's algorithm).

    ``tokenizer``: any family's (:class:`~bertkit.tokenization.base.TokenizerBase`); all
    questions, context words and answers go through its batch encoder (``fast=False``:
    WordPiece's reference path, same ids).
    With ``is_training``, an answerable example needs an answer; one whose answer text cannot be
    found in its words yields no feature (logged), as in Google's reader.
    """
    n_special = tokenizer.n_special(True)
    _check_lengths(max_seq_length, doc_stride, max_query_length, n_special)
    for ex in examples:
        if not ex.doc_tokens and ex.context.strip():
            raise ValueError(f"question {ex.qid}: doc_tokens is empty; build examples with "
                             f"make_example or read_squad")
    contexts = _context_pieces(examples, tokenizer, fast)
    queries = [ids for ids, _ in _encode(tokenizer, [ex.question for ex in examples], fast,
                                         words=False)]
    answer_ids: list[list[int]] = [[] for _ in examples]
    if is_training:
        for ex in examples:
            if not ex.is_impossible and not ex.answers:
                raise ValueError(f"question {ex.qid}: no answer for training (and not "
                                 f"is_impossible)")
        todo = [i for i, ex in enumerate(examples) if not ex.is_impossible]
        encoded = _encode(tokenizer, [examples[i].answers[0].text for i in todo], fast,
                          words=True)  # as the answer is inside its context
        for i, (ids, _) in zip(todo, encoded, strict=True):
            answer_ids[i] = ids
    features: list[QAFeature] = []
    skipped = 0
    for index, (ex, ctx, query) in enumerate(zip(examples, contexts, queries, strict=True)):
        query = query[:max_query_length]
        target = None
        if is_training and not ex.is_impossible:
            target = _answer_pieces(ex, ctx, answer_ids[index])
            if target is None:
                skipped += 1
                logger.warning("question %s: answer %r not found in its words; skipped",
                               ex.qid, ex.answers[0].text)
                continue
        spans = _doc_windows(len(ctx.ids), max_seq_length - len(query) - n_special, doc_stride)
        owner = _max_context_owner(spans, len(ctx.ids))
        for j, (start, length) in enumerate(spans):
            ids, types, _, _ = tokenizer.build_inputs(query, ctx.ids[start:start + length])
            offset = len(ids) - length - 1  # the context sits before the last separator
            positions = (_window_target(target, ex.is_impossible, start, length, offset)
                         if is_training else (None, None))
            features.append(QAFeature(
                example_index=index, input_ids=ids, token_type_ids=types,
                start_position=positions[0], end_position=positions[1],
                is_impossible=ex.is_impossible, window_index=j, doc_offset=offset,
                doc_start=start, max_context=owner[start:start + length] == j, context=ctx))
    if skipped:
        logger.warning("%d of %d training examples skipped (answer not in the context words)",
                       skipped, len(examples))
    return features


def collate_qa(features: Sequence[QAFeature], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest feature.

    Returns ``input_ids``, ``attention_mask`` (1 = real token), ``token_type_ids``: (B, T) long;
    plus ``start_positions``/``end_positions`` (B,) long when the features have training targets.
    """
    if not features:
        raise ValueError("collate_qa needs at least one feature")
    width = max(len(f.input_ids) for f in features)
    ids = np.full((len(features), width), pad_id, dtype=np.int64)  # (B, T)
    types = np.zeros((len(features), width), dtype=np.int64)
    mask = np.zeros((len(features), width), dtype=np.int64)
    for b, f in enumerate(features):
        n = len(f.input_ids)
        ids[b, :n] = f.input_ids
        types[b, :n] = f.token_type_ids
        mask[b, :n] = 1
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
             "token_type_ids": torch.from_numpy(types)}
    has = [f.start_position is not None for f in features]
    if any(has):
        if not all(has):
            raise ValueError("a batch mixes features with and without training targets")
        batch["start_positions"] = torch.tensor([f.start_position for f in features])
        batch["end_positions"] = torch.tensor([f.end_position for f in features])
    return batch


# ---------------------------------------------------------------------------------------------
# Post-processing


def _project(pred_text: str, orig_text: str, tok_text: str) -> str:
    """:func:`get_final_text` given ``tok_text``, the basic tokens of ``orig_text`` joined by spaces.

    Characters are aligned one-to-one after removing ``" "`` from both texts.
    """
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1
    if len(orig_text) - orig_text.count(" ") != len(tok_text) - tok_text.count(" "):
        return orig_text
    if end < start or tok_text[start] == " " or tok_text[end] == " ":
        return orig_text  # an empty prediction, or one that starts or ends on a space
    kept = [i for i, c in enumerate(orig_text) if c != " "]  # non-space index -> index
    first = kept[start - tok_text.count(" ", 0, start)]
    last = kept[end - tok_text.count(" ", 0, end)]
    return orig_text[first:last + 1]


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool) -> str:
    """Project de-tokenized prediction ``pred_text`` onto ``orig_text`` (the words it came from).

    ``orig_text`` goes through the basic tokenizer; ``pred_text`` is found in the tokens joined by
    spaces, and characters are aligned one-to-one after removing spaces. When the prediction is
    not found or the lengths differ (a character the tokenizer drops or expands), the whole
    ``orig_text`` is returned.

    >>> get_final_text("steve smith", "Steve Smith's", True)
    'Steve Smith'
    >>> get_final_text("1895", "(1895-1943).", True)
    '1895'
    """
    return _project(pred_text, orig_text,
                    " ".join(basic.basic_tokenize(orig_text, do_lower_case)))


@dataclass
class QAPredictions:
    """Answers per question id: the prediction, the n-best list and (v2) the null odds.

    ``nbest[qid]``: dicts with ``text``, ``probability``, ``start_logit``, ``end_logit``, best first.
    ``null_odds[qid]`` (v2 only): null score - best non-null score (higher: more likely no answer).
    ``no_span``: ids of the (v1) questions for which no span was valid; their prediction and
    n-best list hold Google's placeholder text ``"empty"``, which is no answer (``bertkit
    predict`` shows ``""`` and ``no_span``).
    """

    predictions: dict[str, str]
    nbest: dict[str, list[dict[str, Any]]]
    null_odds: dict[str, float]
    no_span: set[str] = field(default_factory=set)


def _rows(logits: Sequence[Any] | np.ndarray, features: Sequence[QAFeature], name: str
          ) -> list[np.ndarray]:
    """Per-feature float64 logits cut to the feature's length (padding dropped)."""
    if len(logits) != len(features):
        raise ValueError(f"{name}: {len(logits)} rows for {len(features)} features")
    out = []
    for k, (row, f) in enumerate(zip(logits, features, strict=True)):
        if isinstance(row, torch.Tensor):
            row = row.detach().cpu().to(torch.float64).numpy()
        arr = np.asarray(row, dtype=np.float64)
        if arr.ndim != 1 or len(arr) < len(f.input_ids):
            raise ValueError(f"{name}[{k}]: shape {arr.shape}, feature {k} has "
                             f"{len(f.input_ids)} tokens")
        out.append(arr[:len(f.input_ids)])
    return out


def _top(x: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest values, best first; equal values in position order."""
    return np.argsort(-x, kind="stable")[:n]


def _feature_candidates(f: QAFeature, start: np.ndarray, end: np.ndarray, n_best: int,
                        max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Valid ``(start, end)`` positions among the top starts x top ends, in Google's order."""
    s, e = np.meshgrid(_top(start, n_best), _top(end, n_best), indexing="ij")
    s, e = s.ravel(), e.ravel()
    lo, hi = f.doc_offset, f.doc_offset + f.doc_length
    ok = (s >= lo) & (s < hi) & (e >= lo) & (e < hi) & (e >= s) & (e - s + 1 <= max_len)
    ok[ok] = f.max_context[s[ok] - lo]
    return s[ok], e[ok]


class _WordTokens(dict[str, str]):
    """Whitespace word -> its basic tokens joined by spaces, computed on first use.

    The basic tokenizer treats whitespace words independently, so the basic tokens of words
    joined by spaces are the words' tokens joined by spaces (words without tokens left out).
    """

    def __init__(self, do_lower_case: bool) -> None:
        super().__init__()
        self.do_lower_case = do_lower_case

    def __missing__(self, word: str) -> str:
        value = self[word] = " ".join(basic.basic_tokenize(word, self.do_lower_case))
        return value


def _offset_text(ex: SquadExample, ctx: ContextPieces, a: int, b: int) -> str:
    """The context words of pieces ``a..b`` joined by spaces, cut at the pieces' offsets."""
    assert ctx.spans is not None
    words = ex.doc_tokens[ctx.piece_to_word[a]:ctx.piece_to_word[b] + 1]
    text = " ".join(words)
    return text[ctx.spans[a][0]:len(text) - len(words[-1]) + ctx.spans[b][1]]


def _span_text(ex: SquadExample, f: QAFeature, s: int, e: int, word_tokens: _WordTokens) -> str:
    """Original text of feature positions ``s..e``: de-tokenized pieces mapped onto the words
    (WordPiece, Google's way), or the text between the pieces' offsets."""
    a, b = f.doc_start + s - f.doc_offset, f.doc_start + e - f.doc_offset
    ctx = f.context
    if ctx.spans is not None:
        return _offset_text(ex, ctx, a, b)
    pred_text = " ".join(ctx.pieces[a:b + 1]).replace(" " + PREFIX, "").replace(PREFIX, "")
    pred_text = " ".join(pred_text.strip().split())
    words = ex.doc_tokens[ctx.piece_to_word[a]:ctx.piece_to_word[b] + 1]
    tok_text = " ".join(t for t in map(word_tokens.__getitem__, words) if t)
    return _project(pred_text, " ".join(words), tok_text)


def _softmax(scores: list[float]) -> list[float]:
    """Softmax in Python floats, summed in order (Google's ``_compute_softmax``)."""
    top = max(scores)
    exps = [math.exp(x - top) for x in scores]
    total = 0.0
    for x in exps:
        total += x
    return [x / total for x in exps]


_NO_SPAN = "empty"  # Google's n-best text when no span is valid: not an answer


def _predict_example(ex: SquadExample, feats: list[tuple[QAFeature, np.ndarray, np.ndarray]],
                     n_best: int, max_len: int, version_2: bool, word_tokens: _WordTokens
                     ) -> tuple[list[dict[str, Any]], float | None, bool]:
    """N-best entries of one example, (v2) its null score, and whether no span was valid."""
    cand_f, cand_s, cand_e, cand_score = [], [], [], []
    score_null, null_logits = 1_000_000.0, (0.0, 0.0)  # the lowest first-token score (Google's)
    for k, (f, start, end) in enumerate(feats):
        if version_2 and start[0] + end[0] < score_null:
            score_null, null_logits = start[0] + end[0], (start[0], end[0])
        s, e = _feature_candidates(f, start, end, n_best, max_len)
        cand_f.append(np.full(len(s), k))
        cand_s.append(s)
        cand_e.append(e)
        cand_score.append(start[s] + end[e])
    if version_2:  # the null answer (start 0) competes last among equal scores
        cand_f.append(np.array([0]))
        cand_s.append(np.array([0]))
        cand_e.append(np.array([0]))
        cand_score.append(np.array([null_logits[0] + null_logits[1]]))
    fs, ss, es = (np.concatenate(c) if c else np.zeros(0, np.int64)
                  for c in (cand_f, cand_s, cand_e))
    order = np.argsort(-np.concatenate(cand_score), kind="stable") if cand_score else []
    entries: list[tuple[str, float, float]] = []
    seen: set[str] = set()
    for i in order:
        if len(entries) >= n_best:
            break
        s, e = int(ss[i]), int(es[i])
        if s == 0:  # the null answer
            seen.add("")
            entries.append(("", float(null_logits[0]), float(null_logits[1])))
            continue
        f, start, end = feats[fs[i]]
        text = _span_text(ex, f, s, e, word_tokens)
        if text in seen:
            continue
        seen.add(text)
        entries.append((text, float(start[s]), float(end[e])))
    if version_2 and "" not in seen:
        entries.append(("", float(null_logits[0]), float(null_logits[1])))
    no_span = not entries
    if no_span:  # Google's placeholder (see QAPredictions.no_span)
        entries.append((_NO_SPAN, 0.0, 0.0))
    probs = _softmax([a + b for _, a, b in entries])
    nbest = [{"text": t, "probability": p, "start_logit": a, "end_logit": b}
             for (t, a, b), p in zip(entries, probs, strict=True)]
    return nbest, (float(score_null) if version_2 else None), no_span


def postprocess(examples: Sequence[SquadExample], features: Sequence[QAFeature],
                start_logits: Sequence[Any] | np.ndarray, end_logits: Sequence[Any] | np.ndarray,
                *, n_best_size: int = 20, max_answer_length: int = 30, version_2: bool = False,
                null_score_diff_threshold: float = 0.0, do_lower_case: bool = True
                ) -> QAPredictions:
    """Answers from per-feature logits (Google's ``write_predictions``).

    ``start_logits``/``end_logits``: one 1-D array (or list, or tensor) per feature, at least as
    long as the feature (longer rows, e.g. a padded (B, T) array, are cut to the feature), in the
    order of ``features``. ``do_lower_case`` must match the tokenizer that made the features.
    """
    if any(not 0 <= f.example_index < len(examples) for f in features):
        raise ValueError(f"a feature's example_index is outside the {len(examples)} examples")
    starts = _rows(start_logits, features, "start_logits")
    ends = _rows(end_logits, features, "end_logits")
    by_example: dict[int, list[tuple[QAFeature, np.ndarray, np.ndarray]]] = defaultdict(list)
    for f, s, e in zip(features, starts, ends, strict=True):
        by_example[f.example_index].append((f, s, e))
    out = QAPredictions({}, {}, {})
    word_tokens = _WordTokens(do_lower_case)
    for index, ex in enumerate(examples):
        nbest, score_null, no_span = _predict_example(
            ex, by_example.get(index, []), n_best_size, max_answer_length, version_2,
            word_tokens)
        out.nbest[ex.qid] = nbest
        if no_span:
            out.no_span.add(ex.qid)
        if score_null is None:
            out.predictions[ex.qid] = nbest[0]["text"]
            continue
        best = next((x for x in nbest if x["text"]), None)
        diff = score_null if best is None else score_null - best["start_logit"] - best["end_logit"]
        out.null_odds[ex.qid] = diff
        out.predictions[ex.qid] = "" if best is None or diff > null_score_diff_threshold \
            else best["text"]
    return out


def write_qa_predictions(out_dir: str | Path, preds: QAPredictions, version_2: bool
                         ) -> list[Path]:
    """Write ``predictions.json``, ``nbest_predictions.json`` and (v2) ``null_odds.json``."""
    out = Path(out_dir)
    files = {"predictions.json": preds.predictions, "nbest_predictions.json": preds.nbest}
    if version_2:
        files["null_odds.json"] = preds.null_odds
    paths = []
    for name, data in files.items():
        path = out / name
        atomic_write_text(path, json.dumps(data, indent=4, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths
