"""Metrics against their references: scikit-learn, scipy, seqeval and the official SQuAD rules.

The SQuAD expectations are worked out by hand from the official evaluation scripts' specification
(normalise: lower-case, drop ASCII punctuation, drop the words a/an/the, squash whitespace; EM and
token F1 take the max over gold answers; v2: answers that normalise to "" are dropped, no gold left
means only "" matches, a question counts as answerable when its raw answer list is non-empty, null
odds above the threshold turn a prediction into ""; the best-threshold search walks questions in
increasing null odds starting from "all no-answer").
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from bertkit import metrics
from bertkit.metrics import (
    accuracy,
    best_null_threshold,
    f1_score,
    get_entities,
    glue_metrics,
    matthews_corrcoef,
    ner_scores,
    normalize_answer,
    pearson,
    rankdata,
    spearman,
    squad_f1,
    squad_v1_scores,
    squad_v2_scores,
)

SEEDS = [0, 1, 2, 3, 4]


def test_doctests() -> None:
    assert doctest.testmod(metrics).failed == 0


# --- classification and correlation vs scikit-learn / scipy -------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [2, 3, 5])
def test_matthews_equals_sklearn(seed: int, k: int) -> None:
    from sklearn.metrics import matthews_corrcoef as sk_mcc

    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))  # correlated predictions
    assert matthews_corrcoef(p, y) == pytest.approx(sk_mcc(y, p), abs=1e-9)
    q = rng.integers(0, k, n)  # uncorrelated
    assert matthews_corrcoef(q, y) == pytest.approx(sk_mcc(y, q), abs=1e-9)


def test_matthews_degenerate_and_strings() -> None:
    from sklearn.metrics import matthews_corrcoef as sk_mcc

    assert matthews_corrcoef([1, 1, 1], [1, 0, 1]) == sk_mcc([1, 0, 1], [1, 1, 1]) == 0.0
    y, p = ["a", "b", "b", "c", "a"], ["a", "b", "c", "c", "b"]
    assert matthews_corrcoef(p, y) == pytest.approx(sk_mcc(y, p), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_f1_and_accuracy_equal_sklearn(seed: int) -> None:
    from sklearn.metrics import accuracy_score
    from sklearn.metrics import f1_score as sk_f1

    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert f1_score(p, y) == pytest.approx(sk_f1(y, p), abs=1e-12)
    assert accuracy(p, y) == pytest.approx(accuracy_score(y, p), abs=1e-12)
    y3, p3 = rng.integers(0, 4, 200), rng.integers(0, 3, 200)
    assert f1_score(p3, y3, average="macro") == pytest.approx(
        sk_f1(y3, p3, average="macro", zero_division=0), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["float", "ties"])
def test_pearson_spearman_equal_scipy(seed: int, kind: str) -> None:
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    if kind == "float":
        x = rng.normal(size=n)
        y = 0.5 * x + rng.normal(size=n)
    else:  # few distinct values: many ties, like STS-B's 0-5 scores in steps of 0.2
        x = rng.integers(0, 6, n).astype(float)
        y = np.round(x + rng.normal(scale=1.5, size=n))
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            pytest.skip("constant draw")
    assert pearson(x, y) == pytest.approx(pearsonr(x, y)[0], abs=1e-9)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y)[0], abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_rankdata_equals_scipy(seed: int) -> None:
    from scipy.stats import rankdata as sp_rank

    x = np.random.default_rng(seed).integers(0, 10, 50)
    np.testing.assert_allclose(rankdata(x), sp_rank(x, method="average"))


def test_constant_input_is_nan_and_glue_metrics() -> None:
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))
    assert set(glue_metrics("CoLA", [0, 1], [0, 1])) == {"matthews_corr"}
    assert set(glue_metrics("sts-b", [0.1, 1.0, 2], [0, 1, 3])) == {"pearson", "spearman"}
    assert set(glue_metrics("qqp", [0, 1], [0, 1])) == {"accuracy", "f1"}
    assert set(glue_metrics("mnli", [0, 1], [0, 1])) == {"accuracy"}
    with pytest.raises(ValueError):
        accuracy([1, 2], [1])


# --- NER vs seqeval ------------------------------------------------------------------------------

TYPES = ["PER", "LOC", "MISC"]


def _random_bio(rng: np.random.Generator, n: int, ill_formed: bool) -> list[str]:
    tags = []
    for i in range(n):
        r = rng.random()
        t = TYPES[int(rng.integers(len(TYPES)))]
        if r < 0.4:
            tags.append("O")
        elif r < 0.65:
            tags.append(f"B-{t}")
        elif ill_formed or (i > 0 and tags[-1] != "O"):
            # Ill-formed: I-X after O, at the start, or after another type.
            if not ill_formed:
                t = tags[-1][2:]
            tags.append(f"I-{t}")
        else:
            tags.append("O")
    return tags


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ill_formed", [False, True])
def test_ner_scores_equal_seqeval(seed: int, ill_formed: bool) -> None:
    from seqeval.metrics import f1_score as sq_f1
    from seqeval.metrics import precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities as sq_entities

    rng = np.random.default_rng(seed)
    true = [_random_bio(rng, int(rng.integers(1, 25)), ill_formed) for _ in range(40)]
    # Predictions: the truth with some tags perturbed, so scores are neither 0 nor 1.
    pred = [[t if rng.random() < 0.7 else _random_bio(rng, 1, True)[0] for t in s] for s in true]
    for s in true + pred:
        assert get_entities(s) == sq_entities(s)
    ours = ner_scores(true, pred)
    assert ours["precision"] == pytest.approx(precision_score(true, pred), abs=1e-12)
    assert ours["recall"] == pytest.approx(recall_score(true, pred), abs=1e-12)
    assert ours["f1"] == pytest.approx(sq_f1(true, pred), abs=1e-12)


def test_ner_iobes_and_untyped_match_seqeval() -> None:
    from seqeval.metrics.sequence_labeling import get_entities as sq_entities

    cases = [["S-PER", "B-LOC", "E-LOC", "I-LOC", "E-PER", "O", "E-ORG"],
             ["B", "I", "O", "I", "B-X", "I"], ["I-A", "I-A", "B-A", "I-B", "I-B"], ["O", "O"]]
    for tags in cases:
        assert get_entities(tags) == sq_entities(tags)


def test_ner_repair_and_empty() -> None:
    # I-LOC after B-PER starts a new LOC entity; I-PER after O starts a new PER entity.
    assert get_entities(["B-PER", "I-LOC", "O", "I-PER"]) == [
        ("PER", 0, 0), ("LOC", 1, 1), ("PER", 3, 3)]
    assert ner_scores([["O"]], [["O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(ValueError):
        ner_scores([["O"]], [["O", "O"]])


# --- SQuAD against the official rules (hand-computed) -------------------------------------------


def test_normalize_answer_rules() -> None:
    assert normalize_answer("The Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple a day") == "apple day"  # whole-word articles only
    assert normalize_answer("theater Anna") == "theater anna"  # not inside words
    assert normalize_answer("U.S.A.") == "usa"
    assert normalize_answer("state-of-the-art") == "stateoftheart"  # punct goes first: no \b
    assert normalize_answer("  New\tYork \n City ") == "new york city"
    assert normalize_answer("café—bar") == "café—bar"  # em dash is not ASCII punctuation
    assert normalize_answer("The") == ""


def test_squad_v1_cases() -> None:
    gold = {
        "q1": ["Denver Broncos"],                        # pred "The Denver Broncos!": EM 1, F1 1
        "q2": ["apple day"],                             # pred "an apple a day": EM 1, F1 1
        "q3": ["state of the art"],                      # "stateoftheart" vs [state, of, art]: 0, 0
        "q4": ["New York City"],                         # whitespace differences: 1, 1
        "q5": ["Santa Clara, California", "Levi's Stadium"],
        # pred "Santa Clara": vs gold 1 p=1, r=2/3 -> F1 0.8; vs gold 2 F1 0 -> max 0.8; EM 0
        "q6": ["cat sat on mat"],
        # pred "the the cat cat sat" -> [cat, cat, sat]; common = cat 1 + sat 1 = 2;
        # p = 2/3, r = 2/4 -> F1 = 2 (2/3)(1/2) / (7/6) = 4/7; EM 0
        "q7": ["café bar"],                              # pred "café—bar": one token, EM 0, F1 0
        "q8": ["missing"],                               # no prediction: 0, 0
    }
    preds = {"q1": "The Denver Broncos!", "q2": "an apple a day", "q3": "state-of-the-art",
             "q4": "  New\tYork \n City ", "q5": "Santa Clara", "q6": "the the cat cat sat",
             "q7": "café—bar"}
    s = squad_v1_scores(gold, preds)
    assert s["exact_match"] == pytest.approx(100 * 3 / 8)
    assert s["f1"] == pytest.approx(100 * (3 + 0.8 + 4 / 7) / 8)
    assert squad_f1("the the cat cat sat", "cat sat on mat") == pytest.approx(4 / 7)


V2_GOLD = {
    "q1": ["Paris", "paris France"],  # answerable
    "q2": [],                         # unanswerable
    "q3": [],                         # unanswerable
    "q4": ["the cat"],                # answerable
    "q5": ["1885"],                   # answerable
    "q6": ["the", "An"],              # answerable (raw list non-empty), but every answer
                                      # normalises to "" so only the prediction "" matches
}
V2_PREDS = {"q1": "Paris", "q2": "", "q3": "London", "q4": "", "q5": "in 1885", "q6": ""}
# Raw scores: EM q1..q6 = 1, 1, 0, 0, 0, 1; F1 = 1, 1, 0, 0 (one side empty), 2/3 (p 1/2 r 1), 1.
V2_ODDS = {"q1": -5.0, "q2": 3.0, "q3": 1.5, "q4": 2.0, "q5": 0.5, "q6": 0.0}


def test_squad_v2_without_null_odds() -> None:
    s = squad_v2_scores(V2_GOLD, V2_PREDS)
    assert s["exact"] == pytest.approx(100 * 3 / 6)
    assert s["f1"] == pytest.approx(100 * (3 + 2 / 3) / 6)
    # HasAns = q1, q4, q5, q6; NoAns = q2, q3.
    assert s["HasAns_exact"] == pytest.approx(100 * 2 / 4)
    assert s["HasAns_f1"] == pytest.approx(100 * (2 + 2 / 3) / 4)
    assert s["NoAns_exact"] == s["NoAns_f1"] == pytest.approx(50.0)
    assert (s["total"], s["HasAns_total"], s["NoAns_total"]) == (6, 4, 2)
    assert "best_exact" not in s


def test_squad_v2_threshold_and_best_threshold() -> None:
    s = squad_v2_scores(V2_GOLD, V2_PREDS, null_odds=V2_ODDS, null_threshold=1.0)
    # Odds > 1.0: q2, q3, q4 become "": q2 1 (no-ans), q3 1 (no-ans), q4 0 (has-ans).
    # EM = 1, 1, 1, 0, 0, 1 -> 4/6; F1 = 1, 1, 1, 0, 2/3, 1 -> (4 + 2/3)/6.
    assert s["exact"] == pytest.approx(100 * 4 / 6)
    assert s["f1"] == pytest.approx(100 * (4 + 2 / 3) / 6)
    assert s["HasAns_exact"] == pytest.approx(50.0)
    assert s["HasAns_f1"] == pytest.approx(100 * (2 + 2 / 3) / 4)
    assert s["NoAns_exact"] == s["NoAns_f1"] == pytest.approx(100.0)
    # Best EM threshold: start at 2 (the two no-ans right), walk by odds:
    # q1 (-5) +1 -> 3 best@-5; q6 (0.0) +1 -> 4 best@0.0; q5 (0.5) +0; q3 (1.5) "London" -1 -> 3;
    # q4 (2.0) +0; q2 (3.0) "" 0. Best 4/6 at 0.0.
    assert s["best_exact"] == pytest.approx(100 * 4 / 6)
    assert s["best_exact_thresh"] == 0.0
    # Best F1: 2 -> 3 (q1) -> 4 (q6) -> 4 + 2/3 at 0.5 (q5) -> then down by 1 at q3. Best at 0.5.
    assert s["best_f1"] == pytest.approx(100 * (4 + 2 / 3) / 6)
    assert s["best_f1_thresh"] == 0.5


def test_best_threshold_never_switching_and_ties() -> None:
    # Every answered prediction is wrong: best stays "all null" at threshold 0.0.
    score, thresh = best_null_threshold({"a": "x", "b": "y"}, {"a": 0.0, "b": 0.0},
                                        {"a": 0.2, "b": 0.3}, {"a": False, "b": True})
    assert (score, thresh) == (50.0, 0.0)
    # Ties follow the order of null_odds, as the official script: +1 first records 0.7.
    score, thresh = best_null_threshold({"a": "x", "b": "y"}, {"a": 1.0, "b": 0.0},
                                        {"a": 0.7, "b": 0.7}, {"a": True, "b": False})
    assert (score, thresh) == (100.0, 0.7)
