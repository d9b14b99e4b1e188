"""Extractive QA features and post-processing (``bertkit.finetune.qa``).

Parity with Google's ``run_squad.py``: features (ids, segment ids, token -> word map, max-context
flags, training targets), ``write_predictions`` (predictions, n-best with probabilities, null odds)
and ``get_final_text``, on 51 questions on real text in four configurations, compared with
``tests/fixtures/google_squad_uncased.json.gz`` (made by Google's code through
``tests/tools/make_google_squad_fixture.py``) and, when ``BERTKIT_GOOGLE_BERT`` names a folder with
Google's ``run_squad.py`` and ``tokenization.py``, with Google's code run here. Also: the fast
tokenizer path equals the reference path on the real SQuAD/Quoref/QuAC samples and 300 Wikipedia
leads; a 3,000-piece context cut
into 384/128 windows gives the same answer as one window holding it all; SQuAD v2 null answers.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from realdata import fetch_or_skip, load_tool

from bertkit import artifacts
from bertkit.data.squad import Answer, SquadExample, gold_answers, make_example
from bertkit.finetune.qa import (
    QAFeature,
    collate_qa,
    convert_examples,
    get_final_text,
    postprocess,
    write_qa_predictions,
)
from bertkit.metrics import squad_v1_scores, squad_v2_scores
from bertkit.tokenization import BertTokenizer

tool = load_tool("make_google_squad_fixture")
CONFIGS: dict[str, tuple[int, int, int, bool]] = tool.CONFIGS
RUNS: dict[str, tuple[bool, bool]] = tool.PREDICTION_RUNS


_fetch = fetch_or_skip


@pytest.fixture(scope="module")
def tokenizers(uncased_vocab: Path) -> dict[bool, BertTokenizer]:
    """do_lower_case -> tokenizer on Google's uncased vocab."""
    return {True: BertTokenizer(uncased_vocab), False: BertTokenizer(uncased_vocab, False)}


@pytest.fixture(scope="module")
def google() -> dict[str, Any]:
    with gzip.open(tool.FIXTURE, "rt", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def examples(tokenizers: dict[bool, BertTokenizer], google: dict[str, Any],
             uncased_vocab: Path) -> list[SquadExample]:
    out = _fetch(tool.real_examples, tokenizers[True])
    stale = "inputs changed: regenerate the fixture with tests/tools/make_google_squad_fixture.py"
    assert tool.examples_digest(out) == google["examples_sha256"], stale
    assert artifacts.sha256_file(uncased_vocab) == google["vocab_sha256"], stale
    assert {k: list(v) for k, v in CONFIGS.items()} == google["configs_used"], stale
    return out


@pytest.fixture(scope="module")
def live(examples: list[SquadExample], uncased_vocab: Path) -> dict[str, Any] | None:
    """Google's outputs computed now, when BERTKIT_GOOGLE_BERT names its code (two configs)."""
    path = os.environ.get("BERTKIT_GOOGLE_BERT")
    if not path:
        return None
    return tool.google_outputs(path, examples, uncased_vocab, ["default", "small"])


def _references(google: dict[str, Any], live: dict[str, Any] | None, config: str
                ) -> list[tuple[str, dict[str, Any]]]:
    refs = [("fixture", google["configs"][config])]
    if live is not None and config in live["configs"]:
        refs.append(("google run now", live["configs"][config]))
    return refs


def _features(examples: list[SquadExample], tokenizers: dict[bool, BertTokenizer], config: str,
              is_training: bool = False) -> list[QAFeature]:
    max_seq, stride, max_query, lower = CONFIGS[config]
    return convert_examples(examples, tokenizers[lower], max_seq, stride, max_query, is_training)


def _record(examples: list[SquadExample], f: QAFeature) -> dict[str, Any]:
    """Our feature in the fixture's layout (Google's names), through the public dict views."""
    positions = sorted(f.token_to_word)
    return {"qid": examples[f.example_index].qid, "window": f.window_index,
            "input_ids": f.input_ids, "segment_ids": f.token_type_ids,
            "doc_offset": positions[0], "words": [f.token_to_word[p] for p in positions],
            "max_context": "".join("1" if f.token_is_max_context[p] else "0" for p in positions)}


# ---------------------------------------------------------------------------------------------
# Parity with Google's run_squad.py


@pytest.mark.real
@pytest.mark.parametrize("config", list(CONFIGS))
def test_features_match_google(config: str, examples, tokenizers, google, live) -> None:
    ours = [_record(examples, f) for f in _features(examples, tokenizers, config)]
    for name, ref in _references(google, live, config):
        assert len(ours) == len(ref["features"]), name
        bad = [(r["qid"], r["window"]) for o, r in zip(ours, ref["features"], strict=True) if o != r]
        assert bad == [], f"{name}: features differ for {bad[:5]}"
    max_seq, _, max_query, _ = CONFIGS[config]
    assert len({r["qid"] for r in ours if r["window"] > 0}) >= 8  # several long contexts
    assert any(r["doc_offset"] == max_query + 2 for r in ours)  # a query cut to max_query_length
    assert max(len(r["input_ids"]) for r in ours) == max_seq


@pytest.mark.real
@pytest.mark.parametrize("config", list(CONFIGS))
def test_training_targets_match_google(config: str, examples, tokenizers, google, live) -> None:
    train = _features(examples, tokenizers, config, is_training=True)
    pred = {(f.example_index, f.window_index): f for f in _features(examples, tokenizers, config)}
    ours = [[examples[f.example_index].qid, f.window_index, f.start_position, f.end_position]
            for f in train]
    for name, ref in _references(google, live, config):
        assert ours == ref["train_features"], name
    assert all(f.input_ids == pred[f.example_index, f.window_index].input_ids for f in train)
    assert "special-nbsp" not in {q for q, *_ in ours}  # Google skips it: answer not recoverable
    # Window-crossing answers: cut in one window (target [CLS]), whole in a later one.
    for qid, conf in (("biden-cross-0", "default"), ("biden-cross-1", "default"),
                      ("biden-cross-small", "small")):
        if conf == config:
            windows = [(w, s) for q, w, s, _ in ours if q == qid]
            first_hit = min(w for w, s in windows if s > 0)
            assert first_hit > 0 and any(w < first_hit and s == 0 for w, s in windows)


@pytest.mark.real
@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_postprocess_matches_google(config: str, run: str, examples, tokenizers, google,
                                    live) -> None:
    version_2, ties = RUNS[run]
    feats = _features(examples, tokenizers, config)
    records = google["configs"][config]["features"]
    lengths = [len(r["input_ids"]) for r in records]
    starts, ends = tool.make_logits(lengths, f"{tool.SEED}-{config}-{run}", ties,
                                    tool.tiny_boost(records, version_2))
    if version_2:  # a padded (B, T) array: padding logits (high here) must not matter
        width = max(lengths) + 3
        starts = np.array([s + [50.0] * (width - len(s)) for s in starts])
        ends = np.array([e + [50.0] * (width - len(e)) for e in ends])
    elif ties:  # one 1-D tensor per feature
        starts = [torch.tensor(s, dtype=torch.float64) for s in starts]
        ends = [torch.tensor(e, dtype=torch.float64) for e in ends]
    preds = postprocess(examples, feats, starts, ends, version_2=version_2,
                        do_lower_case=CONFIGS[config][3])
    for name, ref in _references(google, live, config):
        want = ref["predictions"][run]
        assert preds.predictions == want["predictions"], name
        assert preds.null_odds == want["null_odds"], name  # same float operations as Google
        assert preds.nbest.keys() == want["nbest"].keys()
        for qid, entries in want["nbest"].items():
            got = preds.nbest[qid]
            assert [(x["text"], x["start_logit"], x["end_logit"]) for x in got] == \
                [(x["text"], x["start_logit"], x["end_logit"]) for x in entries], (name, qid)
            assert [x["probability"] for x in got] == \
                pytest.approx([x["probability"] for x in entries], abs=1e-6)
    if run == "v1" and config == "default":
        assert preds.predictions[tool.TINY_QID] == "empty"  # no valid span among the top 20
    if version_2 and config == "default":  # the null answer wins for some questions
        assert 5 <= sum(p == "" for p in preds.predictions.values()) < len(examples) - 5


@pytest.mark.real
def test_get_final_text_matches_google(google, live) -> None:
    cases = google["final_text"] + (live["final_text"] if live else [])
    assert len(cases) >= 40
    got = [[p, o, lower, get_final_text(p, o, lower)] for p, o, lower, _ in cases]
    assert got == cases


# ---------------------------------------------------------------------------------------------
# Fast path == reference path on a real SQuAD-like set


def _wikipedia_examples(n: int) -> list[SquadExample]:
    """Questions on the first ``n`` English Wikipedia leads of 40+ words: words 20-22 (without
    their punctuation) as the answer, the 8 words before them as the question."""
    from bertkit.data.corpora import wikipedia_articles

    out = []
    for _, text in _fetch(wikipedia_articles, "en"):
        if len(text.split()) >= 40:
            answer = tool._answer_at(text, 20, 22, strip=tool.PUNCT)
            out.append(tool._qa(f"wiki-{len(out)}", text, answer))
        if len(out) == n:
            return out
    raise AssertionError(f"only {len(out)} articles of 40+ words")


@pytest.mark.real
def test_fast_path_equals_reference_on_real_squad_layout(tokenizers) -> None:
    examples = _fetch(tool.squad_samples) + _wikipedia_examples(300)
    tok = tokenizers[True]
    fast = convert_examples(examples, tok, 128, 32, 32, is_training=True)
    ref = convert_examples(examples, tok, 128, 32, 32, is_training=True, fast=False)
    assert len(fast) == len(ref) > len(examples)
    for a, b in zip(fast, ref, strict=True):
        assert (a.input_ids, a.token_type_ids, a.start_position, a.end_position) == \
            (b.input_ids, b.token_type_ids, b.start_position, b.end_position)
        assert a.token_to_word == b.token_to_word
    # The training targets decode back to the gold answer for most windows that hold it.
    hits = [f for f in fast if f.start_position]
    texts = [tok.decode(f.input_ids[f.start_position:f.end_position + 1]) for f in hits]
    golds = [tok.decode(tok.encode(examples[f.example_index].answers[0].text)) for f in hits]
    assert np.mean([t == g for t, g in zip(texts, golds, strict=True)]) > 0.95


# ---------------------------------------------------------------------------------------------
# Long context: windows vs one window, with a model that only looks at token identity


def _token_logits(f: QAFeature, start_id: int, end_id: int, null: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Logits that depend only on each token's id (never on its position)."""
    ids = np.array(f.input_ids, dtype=np.int64)
    noise = (ids * 2654435761 % 1000) / 1000.0  # a fixed pseudo-random score per vocab id
    cls = (ids == 101) * null
    return noise + 10.0 * (ids == start_id) + cls, noise + 10.0 * (ids == end_id) + cls


def _predict(examples: list[SquadExample], tok: BertTokenizer, max_seq: int,
             targets: dict[str, tuple[int, int, float]], version_2: bool = False,
             threshold: float = 0.0) -> tuple[list[QAFeature], Any]:
    feats = convert_examples(examples, tok, max_seq, 128, 64)
    logits = [_token_logits(f, *targets[examples[f.example_index].qid]) for f in feats]
    preds = postprocess(examples, feats, [s for s, _ in logits], [e for _, e in logits],
                        version_2=version_2, null_score_diff_threshold=threshold)
    return feats, preds


@pytest.fixture(scope="module")
def long_case(tokenizers) -> tuple[list[SquadExample], dict[str, tuple[int, int, float]]]:
    """A ~3,000-piece SOTU context with three answers: deep inside, and two across windows."""
    tok = tokenizers[True]
    words = _fetch(tool.sotu_text, "1861_abraham_lincoln_r.txt").split(" ")[:2600]
    question = "What did the President report to Congress?"
    n_q = len(tok.tokenize(question))
    max_doc = 384 - n_q - 3
    # Insert non-ASCII phrases so that they straddle the ends of windows 0 and 5.
    phrases = {max_doc - 2: ["(Café", "Zürich", "東京都", "naïve)."],
               5 * 128 + max_doc - 2: ["😀", "Ørsted", "İzmir"]}
    for piece, phrase in phrases.items():
        cum = np.cumsum([0, *map(len, tok.encode_batch(words))])  # cum[w] = first piece of word w
        w = int(np.searchsorted(cum, piece, side="right")) - 1
        words[w:w] = phrase
    context = " ".join(words)
    pieces = tok.encode(context)[1:-1]
    assert len(pieces) > 3000

    def unique(text: str) -> tuple[int, int]:
        ids = tok.encode(text)[1:-1]
        assert pieces.count(ids[0]) == 1 and pieces.count(ids[-1]) == 1, text
        return ids[0], ids[-1]

    # Deep inside: the first span of 4 words after word 2000 with unique first and last pieces.
    doc = context.split(" ")
    deep = next(" ".join(doc[i:i + 4]) for i in range(2000, len(doc))
                if all(c.isalpha() for c in doc[i] + doc[i + 3])
                and pieces.count(tok.encode(doc[i])[1]) == 1
                and pieces.count(tok.encode(doc[i + 3])[-2]) == 1)
    answers = {"deep": deep, "cross-accents": "Café Zürich 東京都 naïve",
               "cross-emoji": "😀 Ørsted İzmir"}
    examples = [make_example(qid, question, context, [Answer(text, context.index(text))])
                for qid, text in answers.items()]
    targets = {qid: (*unique(text), 0.0) for qid, text in answers.items()}
    return examples, targets


@pytest.mark.real
def test_long_context_windows_equal_one_window(long_case, tokenizers) -> None:
    examples, targets = long_case
    tok = tokenizers[True]
    feats, windowed = _predict(examples, tok, 384, targets)
    one_feats, whole = _predict(examples, tok, 4096, targets)
    assert len(one_feats) == len(examples) and len(feats) >= 3 * 20
    assert windowed.predictions == whole.predictions == \
        {e.qid: e.answers[0].text for e in examples}
    # The two inserted answers really cross a window boundary (cut in one, whole in the next).
    train = convert_examples(examples, tok, 384, 128, 64, is_training=True)
    for qid in ("cross-accents", "cross-emoji"):
        index = [e.qid for e in examples].index(qid)
        first, last = targets[qid][:2]
        cut = [f for f in train if f.example_index == index and first in f.input_ids
               and last not in f.input_ids[f.input_ids.index(first):]]
        assert cut and all(f.start_position == 0 for f in cut)
    assert squad_v1_scores(gold_answers(examples), windowed.predictions)["exact_match"] == 100.0


@pytest.mark.real
def test_v2_null_answer_and_null_odds(long_case, tokenizers, tmp_path: Path) -> None:
    examples, targets = long_case
    context = examples[0].context
    impossible = make_example("no-answer", "Which planet did the President visit?", context, [],
                              is_impossible=True)
    # Null = [CLS] start + end = 2 * 8; an answer scores about 2 * 10.
    targets = {**{q: (s, e, 8.0) for q, (s, e, _) in targets.items()}, "no-answer": (-1, -1, 8.0)}
    all_examples = [*examples, impossible]
    _, preds = _predict(all_examples, tokenizers[True], 384, targets, version_2=True)
    assert preds.predictions["no-answer"] == ""
    assert preds.null_odds["no-answer"] > 10.0
    assert all(preds.null_odds[e.qid] < -1.0 for e in examples)
    assert preds.predictions["deep"] == examples[0].answers[0].text
    assert any(x["text"] == "" for x in preds.nbest["no-answer"])
    paths = write_qa_predictions(tmp_path, preds, version_2=True)
    assert [p.name for p in paths] == ["predictions.json", "nbest_predictions.json",
                                       "null_odds.json"]
    odds = json.loads((tmp_path / "null_odds.json").read_text(encoding="utf-8"))
    written = json.loads((tmp_path / "predictions.json").read_text(encoding="utf-8"))
    assert written == preds.predictions and odds == pytest.approx(preds.null_odds)
    scores = squad_v2_scores(gold_answers(all_examples), written, odds)
    assert scores["exact"] == 100.0
    # Above the threshold the best non-null text is predicted instead.
    _, lenient = _predict(all_examples, tokenizers[True], 384, targets, version_2=True,
                          threshold=odds["no-answer"] + 1.0)
    assert lenient.predictions["no-answer"] != ""
    assert write_qa_predictions(tmp_path / "v1", preds, version_2=False)[-1].name == \
        "nbest_predictions.json"


@pytest.mark.real
def test_v2_without_any_valid_span_predicts_null(tokenizers) -> None:
    """Google's script crashes here; bertkit predicts "" with null odds = the null score."""
    ex = make_example("q", "What is it?", "Apache", [Answer("Apache", 0)])
    feats = convert_examples([ex], tokenizers[True])
    n = len(feats[0].input_ids)
    start = np.full(n, -5.0)
    end = np.full(n, -5.0)
    start[0], end[0] = 1.0, 2.0
    end[feats[0].doc_offset] = -50.0
    preds = postprocess([ex], feats, [start], [end], version_2=True, n_best_size=2)
    assert preds.predictions == {"q": ""} and preds.null_odds == {"q": 3.0}
    v1 = postprocess([ex], feats, [start], [end], n_best_size=2)
    assert v1.predictions == {"q": "empty"}


# ---------------------------------------------------------------------------------------------
# Collation


@pytest.mark.real
def test_collate_pads_and_matches_pair_encoding(examples, tokenizers) -> None:
    tok = tokenizers[True]
    short = [e for e in examples if e.qid.startswith("lincoln")]
    feats = convert_examples(short, tok, is_training=True)
    assert len(feats) == len(short)  # one window each
    for f, e in zip(feats, short, strict=True):  # word-by-word pieces == whole-text encoding
        ids, types = tok.encode_with_types(e.question, e.context)
        assert (f.input_ids, f.token_type_ids) == (ids, types)
    batch = collate_qa(feats, tok.pad_token_id)
    width = max(len(f.input_ids) for f in feats)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (len(feats), width)
    assert batch["attention_mask"].sum(1).tolist() == [len(f.input_ids) for f in feats]
    assert batch["start_positions"].tolist() == [f.start_position for f in feats]
    assert batch["end_positions"].tolist() == [f.end_position for f in feats]
    assert batch["start_positions"][-1] == 0 and all(batch["start_positions"][:-1] > 0)
    for row, f in zip(batch["input_ids"].tolist(), feats, strict=True):
        assert row == f.input_ids + [tok.pad_token_id] * (width - len(f.input_ids))
    plain = collate_qa(convert_examples(short, tok), tok.pad_token_id)
    assert "start_positions" not in plain and plain["input_ids"].equal(batch["input_ids"])
