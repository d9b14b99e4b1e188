"""Evaluation metrics for fine-tuning: GLUE, SQuAD v1.1/v2.0 and entity-level NER.

Pure functions on plain Python sequences or numpy arrays; no torch. Each one is tested against its
reference (scikit-learn, scipy, seqeval, the official SQuAD evaluation rules).

GLUE (Google's ``run_classifier.py`` and the GLUE paper): CoLA uses :func:`matthews_corrcoef`,
STS-B :func:`pearson` and :func:`spearman`, MRPC and QQP :func:`f1_score` and :func:`accuracy`,
the rest :func:`accuracy`. :func:`glue_metrics` returns the right set for a task name.

SQuAD: :func:`squad_v1_scores` and :func:`squad_v2_scores` follow the official evaluation scripts'
rules (normalisation by :func:`normalize_answer`, max over gold answers, v2 unanswerable questions,
has-answer/no-answer split, best null threshold from ``null_odds``). Scores are percentages.

NER: :func:`get_entities` decodes BIO/IOB2 (and IOBES) tags into ``(type, start, end)`` spans with
the CoNLL ``conlleval`` chunk rules that seqeval's default mode uses, so ill-formed sequences are
repaired the same way (an ``I-X`` that does not continue an ``X`` entity starts a new one).
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = [
    "accuracy", "f1_score", "matthews_corrcoef", "pearson", "spearman", "rankdata",
    "glue_metrics", "normalize_answer", "squad_exact", "squad_f1", "squad_v1_scores",
    "squad_v2_scores", "best_null_threshold", "get_entities", "ner_scores",
]

ArrayLike = Sequence[float] | Sequence[int] | Sequence[str] | npt.NDArray[np.generic]


def _pair(preds: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(preds), np.asarray(labels)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"predictions {p.shape} and labels {y.shape} must be 1-D and equal length")
    if p.size == 0:
        raise ValueError("no predictions")
    return p, y


# --- classification -----------------------------------------------------------------------------


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of predictions equal to their label.

    >>> accuracy([1, 0, 1, 1], [1, 0, 0, 1])
    0.75
    """
    p, y = _pair(preds, labels)
    return float(np.mean(p == y))


def _binary_f1(p: np.ndarray, y: np.ndarray, pos: Hashable) -> float:
    tp = int(np.sum((p == pos) & (y == pos)))
    fp = int(np.sum((p == pos) & (y != pos)))
    fn = int(np.sum((p != pos) & (y == pos)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def f1_score(preds: ArrayLike, labels: ArrayLike, *, average: Literal["binary", "macro"] = "binary",
             pos_label: Hashable = 1) -> float:
    """F1 of the positive class (``binary``) or the unweighted mean over classes (``macro``).

    Classes for ``macro`` are those present in predictions or labels (as scikit-learn); a class
    with no true positive scores 0.

    >>> f1_score([1, 1, 0, 0], [1, 0, 1, 0])      # tp=1, fp=1, fn=1
    0.5
    >>> round(f1_score(["a", "b", "b"], ["a", "b", "a"], average="macro"), 4)   # (2/3 + 2/3) / 2
    0.6667
    """
    p, y = _pair(preds, labels)
    if average == "binary":
        return _binary_f1(p, y, pos_label)
    if average == "macro":
        classes = np.unique(np.concatenate([p, y]))
        return float(np.mean([_binary_f1(p, y, c) for c in classes]))
    raise ValueError(f"average must be 'binary' or 'macro', not {average!r}")


def matthews_corrcoef(preds: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation (multi-class form of Gorodkin 2004); 0.0 when undefined.

    With confusion matrix C, t_k = row sums (true), p_k = column sums (predicted), c = trace,
    s = total: ``(c*s - t.p) / sqrt((s^2 - p.p) * (s^2 - t.t))``. For two classes this is the
    usual ``(TP*TN - FP*FN) / sqrt(...)``.

    >>> round(matthews_corrcoef([1, 1, 0, 0], [1, 0, 0, 0]), 4)    # TP=1 TN=2 FP=1 FN=0
    0.5774
    """
    p, y = _pair(preds, labels)
    classes, inverse = np.unique(np.concatenate([y, p]), return_inverse=True)
    yi, pi = inverse[: y.size], inverse[y.size:]
    k = classes.size
    conf = np.bincount(yi * k + pi, minlength=k * k).reshape(k, k).astype(np.float64)
    t, pr = conf.sum(axis=1), conf.sum(axis=0)
    c, s = float(np.trace(conf)), float(conf.sum())
    denom = (s * s - float(pr @ pr)) * (s * s - float(t @ t))
    if denom == 0.0:
        return 0.0
    return float((c * s - float(t @ pr)) / np.sqrt(denom))


# --- correlation --------------------------------------------------------------------------------


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation coefficient; ``nan`` if either input is constant.

    >>> round(pearson([1, 2, 3], [2, 4, 6]), 12)
    1.0
    """
    a, b = _pair(x, y)
    a = a.astype(np.float64) - np.mean(a, dtype=np.float64)
    b = b.astype(np.float64) - np.mean(b, dtype=np.float64)
    na, nb = np.sqrt(a @ a), np.sqrt(b @ b)
    if na == 0.0 or nb == 0.0:
        return float("nan")
    r = float((a / na) @ (b / nb))
    return max(-1.0, min(1.0, r))


def rankdata(x: ArrayLike) -> np.ndarray:
    """1-based ranks; tied values get the average of the ranks they span.

    >>> rankdata([10, 20, 10, 30]).tolist()
    [1.5, 3.0, 1.5, 4.0]
    """
    a = np.asarray(x)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start index of each run of equal values in sorted order.
    new_run = np.concatenate([[True], sorted_a[1:] != sorted_a[:-1]])
    starts = np.flatnonzero(new_run)
    ends = np.concatenate([starts[1:], [a.size]])  # exclusive
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    run_id = np.cumsum(new_run) - 1
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = avg[run_id]
    return ranks


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation: Pearson of average ranks (ties handled); ``nan`` if constant.

    >>> round(spearman([1, 2, 3, 4], [1, 4, 9, 16]), 12)
    1.0
    """
    a, b = _pair(x, y)
    return pearson(rankdata(a), rankdata(b))


def glue_metrics(task: str, preds: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """The metrics GLUE reports for ``task`` (case-insensitive name, e.g. ``"cola"``, ``"sts-b"``).

    >>> glue_metrics("mrpc", [1, 0, 1], [1, 0, 0])
    {'accuracy': 0.6666666666666666, 'f1': 0.6666666666666666}
    """
    name = task.lower().replace("-", "").replace("_", "")
    if name == "cola":
        return {"matthews_corr": matthews_corrcoef(preds, labels)}
    if name == "stsb":
        return {"pearson": pearson(preds, labels), "spearman": spearman(preds, labels)}
    if name in ("mrpc", "qqp"):
        return {"accuracy": accuracy(preds, labels), "f1": f1_score(preds, labels, pos_label=1)}
    return {"accuracy": accuracy(preds, labels)}


# --- SQuAD --------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower-case, drop ASCII punctuation, drop articles, squash spaces.

    >>> normalize_answer("  The  Eiffel-Tower, (an) icon! ")
    'eiffeltower icon'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_exact(prediction: str, gold: str) -> int:
    """1 if the normalised strings are equal, else 0.

    >>> squad_exact("the Beatles", "Beatles.")
    1
    """
    return int(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str) -> float:
    """Token F1 of the normalised strings (bag of tokens); if either is empty, 1.0 iff both are.

    >>> squad_f1("the big red dog", "red dog")      # p = 2/3, r = 1
    0.8
    """
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _raw_scores(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
                drop_empty_gold: bool) -> tuple[dict[str, float], dict[str, float]]:
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    missing = 0
    for qid, answers in gold.items():
        golds = [a for a in answers if normalize_answer(a)] if drop_empty_gold else list(answers)
        if not golds:
            golds = [""]  # unanswerable: only the empty prediction matches
        if qid not in predictions:
            missing += 1
            exact[qid] = f1[qid] = 0.0
            continue
        pred = predictions[qid]
        exact[qid] = float(max(squad_exact(pred, g) for g in golds))
        f1[qid] = max(squad_f1(pred, g) for g in golds)
    if missing:
        logger.warning("%d of %d questions have no prediction; they score 0", missing, len(gold))
    return exact, f1


def squad_v1_scores(gold: Mapping[str, Sequence[str]],
                    predictions: Mapping[str, str]) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1 (percent), each the max over the gold answers of a question.

    ``gold`` maps question id to its answer texts; a missing prediction scores 0.

    >>> squad_v1_scores({"q1": ["Denver Broncos"], "q2": ["a cat", "dog"]},
    ...                 {"q1": "the Denver Broncos", "q2": "dogs"})
    {'exact_match': 50.0, 'f1': 50.0}
    """
    if not gold:
        raise ValueError("no gold questions")
    exact, f1 = _raw_scores(gold, predictions, drop_empty_gold=False)
    return {"exact_match": 100.0 * sum(exact.values()) / len(gold),
            "f1": 100.0 * sum(f1.values()) / len(gold)}


def best_null_threshold(predictions: Mapping[str, str], scores: Mapping[str, float],
                        null_odds: Mapping[str, float],
                        has_answer: Mapping[str, bool]) -> tuple[float, float]:
    """The null-odds threshold that maximises a v2 score, and that score (percent).

    A question is answered "" (no answer) when its null odds exceed the threshold. Starting from
    "everything is no-answer" (all unanswerable questions right), questions are switched to their
    predicted text in increasing order of null odds: an answerable one gains its raw ``score``; an
    unanswerable one loses 1 if the prediction is non-empty. The threshold is the odds of the last
    question switched at the best running total (strictly better only; 0.0 if switching never helps).

    >>> best_null_threshold({"a": "x", "b": "y"}, {"a": 1.0, "b": 0.0}, {"a": -2.0, "b": 3.0},
    ...                     {"a": True, "b": False})
    (100.0, -2.0)
    """
    current = best = float(sum(1 for qid in scores if not has_answer[qid]))
    best_thresh = 0.0
    # Walk in the order of ``null_odds`` (as the official script does: ties keep file order).
    for qid in sorted(null_odds, key=lambda q: null_odds[q]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            current += scores[qid]
        elif predictions.get(qid, ""):
            current -= 1.0
        if current > best:
            best, best_thresh = current, float(null_odds[qid])
    return 100.0 * best / len(scores), best_thresh


def squad_v2_scores(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
                    null_odds: Mapping[str, float] | None = None,
                    null_threshold: float = 1.0) -> dict[str, float]:
    """SQuAD v2.0 scores (percent), with the has-answer / no-answer split.

    ``gold`` maps question id to answer texts; an empty list (or answers that normalise to "")
    marks an unanswerable question, which only the prediction "" matches. With ``null_odds``
    (question id -> odds of no answer, as in ``null_odds.json``) a question whose odds exceed
    ``null_threshold`` counts as answered "", and ``best_exact``/``best_f1`` with their thresholds
    are added (:func:`best_null_threshold`). A missing prediction scores 0.

    >>> s = squad_v2_scores({"q1": ["Paris"], "q2": []}, {"q1": "paris", "q2": ""})
    >>> s["exact"], s["HasAns_exact"], s["NoAns_f1"], s["total"]
    (100.0, 100.0, 100.0, 2.0)
    """
    if not gold:
        raise ValueError("no gold questions")
    has_answer = {qid: bool(answers) for qid, answers in gold.items()}
    exact_raw, f1_raw = _raw_scores(gold, predictions, drop_empty_gold=True)
    odds = {qid: 0.0 for qid in gold} if null_odds is None else dict(null_odds)
    absent = [qid for qid in gold if qid not in odds]
    if absent:
        raise ValueError(f"null_odds lacks {len(absent)} question ids, e.g. {absent[0]!r}")

    def thresholded(raw: Mapping[str, float]) -> dict[str, float]:
        return {qid: (float(not has_answer[qid]) if odds[qid] > null_threshold else s)
                for qid, s in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)
    out: dict[str, float] = {}

    def add(prefix: str, qids: list[str]) -> None:
        if not qids:
            return
        out[f"{prefix}exact"] = 100.0 * sum(exact[q] for q in qids) / len(qids)
        out[f"{prefix}f1"] = 100.0 * sum(f1[q] for q in qids) / len(qids)
        out[f"{prefix}total"] = float(len(qids))

    add("", list(gold))
    add("HasAns_", [q for q in gold if has_answer[q]])
    add("NoAns_", [q for q in gold if not has_answer[q]])
    if null_odds is not None:
        out["best_exact"], out["best_exact_thresh"] = best_null_threshold(
            predictions, exact_raw, odds, has_answer)
        out["best_f1"], out["best_f1_thresh"] = best_null_threshold(
            predictions, f1_raw, odds, has_answer)
    return out


# --- NER ----------------------------------------------------------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``; ``"B"`` -> ``("B", "_")``."""
    if tag == "O":
        return "O", ""
    return tag[0], (tag[1:].split("-", 1)[-1] or "_")


def _ends(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    """Whether the chunk open at the previous tag closes before the current one (conlleval)."""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and cur in ("B", "S", "O"):
        return True
    return prev != "O" and prev_type != cur_type


def _starts(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
    """Whether a chunk opens at the current tag (conlleval)."""
    if cur in ("B", "S"):
        return True
    if prev in ("E", "S", "O") and cur in ("E", "I"):
        return True
    return cur != "O" and prev_type != cur_type


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, first, last)`` (inclusive) of one tag sequence.

    Ill-formed input is repaired as in conlleval / seqeval's default mode: an ``I-X`` after ``O``
    or after a different type opens a new entity.

    >>> get_entities(["B-PER", "I-PER", "O", "I-LOC", "I-ORG", "B-ORG", "I-ORG"])
    [('PER', 0, 1), ('LOC', 3, 3), ('ORG', 4, 4), ('ORG', 5, 6)]
    """
    entities: list[tuple[str, int, int]] = []
    prev, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        cur, cur_type = _split_tag(tag)
        if prev != "O" and _ends(prev, prev_type, cur, cur_type):
            entities.append((prev_type, begin, i - 1))
        if _starts(prev, prev_type, cur, cur_type):
            begin = i
        prev, prev_type = cur, cur_type
    return entities


def ner_scores(true_tags: Sequence[Sequence[str]],
               pred_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 over sentences (exact span and type match).

    Zero divisions give 0.0 (as seqeval with its warning).

    >>> ner_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} true vs {len(pred_tags)} predicted sentences")
    n_true = n_pred = n_correct = 0
    for i, (t, p) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true vs {len(p)} predicted tags")
        te, pe = set(get_entities(t)), set(get_entities(p))
        n_true, n_pred, n_correct = n_true + len(te), n_pred + len(pe), n_correct + len(te & pe)
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
