"""Fine-tuning readers: GLUE layouts, generic tables, SQuAD offsets, CoNLL NER, SWAG.

Every fixture is written by hand in tmp_path in the exact column layout of BERT_REFERENCE.md.
"""

from __future__ import annotations

import bz2
import doctest
import json
import logging
from pathlib import Path

import pytest
from realdata import fetch_or_skip, load_tool

from bertkit.artifacts import FileSpec, Package, fetch_file
from bertkit.data import errors, glue, multiple_choice, ner, squad
from bertkit.data.errors import DataError
from bertkit.data.glue import Example, glue_split_path, glue_task, label_list, read_glue, read_table
from bertkit.data.multiple_choice import read_swag
from bertkit.data.ner import iob1_to_iob2, ner_label_list, read_conll
from bertkit.data.squad import Answer, gold_answers, read_squad, whitespace_split
from bertkit.metrics import squad_v2_scores


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def tsv(*fields: str) -> str:
    return "\t".join(fields)


@pytest.mark.parametrize("module", [glue, squad, ner, multiple_choice, errors])
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


# --- GLUE: one fixture per task in its exact layout ---------------------------------------------

MNLI_TRAIN_HEADER = tsv("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                        "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
                        "sentence1", "sentence2", "label1", "gold_label")
MNLI_DEV_HEADER = tsv("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                      "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
                      "sentence1", "sentence2", "label1", "label2", "label3", "label4", "label5",
                      "gold_label")
STSB_HEADER = tsv("index", "genre", "filename", "year", "old_index", "source1", "source2",
                  "sentence1", "sentence2", "score")

# task -> (labelled file lines, expected (text_a, text_b, label) per row, test file lines,
#          expected (guid, text_a, text_b) per test row)
GLUE_CASES: dict[str, tuple[list[str], list[tuple], list[str], list[tuple]]] = {
    "cola": (
        [tsv("gj04", "1", "", "Our friends won't buy this analysis, let alone the next one."),
         tsv("gj04", "0", "*", 'He said "hi to me.')],  # unbalanced quote: QUOTE_NONE
        [("Our friends won't buy this analysis, let alone the next one.", None, "1"),
         ('He said "hi to me.', None, "0")],
        [tsv("index", "sentence"), tsv("0", "Bill whistled past the house.")],
        [("0", "Bill whistled past the house.", None)],
    ),
    "sst-2": (
        [tsv("sentence", "label"), tsv("hide new secretions from the parental units ", "0"),
         tsv("the greatest musicians ", "1")],
        [("hide new secretions from the parental units ", None, "0"),
         ("the greatest musicians ", None, "1")],
        [tsv("index", "sentence"), tsv("0", "uneasy mishmash of styles and genres .")],
        [("0", "uneasy mishmash of styles and genres .", None)],
    ),
    "mrpc": (
        [tsv("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
         tsv("1", "702876", "702977", 'Amrozi accused his brother , whom he called " the '
             'witness " , of distorting his evidence .', 'Referring to him as only " the '
             'witness " , Amrozi accused his brother .'),
         tsv("0", "2108705", "2108831", "Yucaipa owned Dominick 's before selling the chain .",
             "Yucaipa bought Dominick 's in 1995 for $ 693 million .")],
        [('Amrozi accused his brother , whom he called " the witness " , of distorting his '
          'evidence .', 'Referring to him as only " the witness " , Amrozi accused his brother .',
          "1"),
         ("Yucaipa owned Dominick 's before selling the chain .",
          "Yucaipa bought Dominick 's in 1995 for $ 693 million .", "0")],
        [tsv("index", "#1 ID", "#2 ID", "#1 String", "#2 String"),
         tsv("0", "1089874", "1089925", "PCCW 's chief will be leaving .", "The chief leaves .")],
        [("0", "PCCW 's chief will be leaving .", "The chief leaves .")],
    ),
    "sts-b": (
        [STSB_HEADER,
         tsv("0", "main-captions", "MSRvid", "2012test", "0001", "none", "none",
             "A plane is taking off.", "An air plane is taking off.", "5.000"),
         tsv("1", "main-captions", "MSRvid", "2012test", "0004", "none", "none",
             "A man is playing a flute.", "A man is playing a bamboo flute.", "3.800")],
        [("A plane is taking off.", "An air plane is taking off.", 5.0),
         ("A man is playing a flute.", "A man is playing a bamboo flute.", 3.8)],
        [tsv(*STSB_HEADER.split("\t")[:9]),
         tsv("0", "main-news", "headlines", "2015", "0001", "none", "none", "Hey.", "Ho.")],
        [("0", "Hey.", "Ho.")],
    ),
    "qqp": (
        [tsv("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
         tsv("133273", "213221", "213222", "How is the life of a math student?",
             "Which level of prepration is enough for the exam jlpt5?", "0")],
        [("How is the life of a math student?",
          "Which level of prepration is enough for the exam jlpt5?", "0")],
        [tsv("id", "question1", "question2"), tsv("0", "Why do rockets look white?", "Why?")],
        [("0", "Why do rockets look white?", "Why?")],
    ),
    "mnli": (
        [MNLI_TRAIN_HEADER,
         tsv("0", "31193", "31193n", "government", "( ( Conceptually cream ) skimming )",
             "( Product ( and geography ) )", "(ROOT (S ...))", "(ROOT (S ...))",
             "Conceptually cream skimming has two basic dimensions.",
             "Product and geography are what make cream skimming work. ", "neutral", "neutral")],
        [("Conceptually cream skimming has two basic dimensions.",
          "Product and geography are what make cream skimming work. ", "neutral")],
        [tsv(*MNLI_TRAIN_HEADER.split("\t")[:10]),
         tsv("0", "31193", "31193n", "fiction", "( a )", "( b )", "(ROOT a)", "(ROOT b)",
             "The new rights are nice enough", "Everyone really likes the newest benefits")],
        [("0", "The new rights are nice enough", "Everyone really likes the newest benefits")],
    ),
    "qnli": (
        [tsv("index", "question", "sentence", "label"),
         tsv("0", "What came into force after the new constitution was herald?",
             "As of that day, the new constitution came into force.", "entailment")],
        [("What came into force after the new constitution was herald?",
          "As of that day, the new constitution came into force.", "entailment")],
        [tsv("index", "question", "sentence"), tsv("0", "What is it?", "It is a test.")],
        [("0", "What is it?", "It is a test.")],
    ),
    "rte": (
        [tsv("index", "sentence1", "sentence2", "label"),
         tsv("0", "No Weapons of Mass Destruction Found in Iraq Yet.",
             "Weapons of Mass Destruction Found in Iraq.", "not_entailment")],
        [("No Weapons of Mass Destruction Found in Iraq Yet.",
          "Weapons of Mass Destruction Found in Iraq.", "not_entailment")],
        [tsv("index", "sentence1", "sentence2"), tsv("0", "Mangla was built.", "It was built.")],
        [("0", "Mangla was built.", "It was built.")],
    ),
    "wnli": (
        [tsv("index", "sentence1", "sentence2", "label"),
         tsv("0", "I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
             "The carrot had a hole.", "1")],
        [("I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
          "The carrot had a hole.", "1")],
        [tsv("index", "sentence1", "sentence2"), tsv("0", "The cat sat.", "It sat.")],
        [("0", "The cat sat.", "It sat.")],
    ),
}


@pytest.mark.parametrize("task", sorted(GLUE_CASES))
def test_glue_layouts(task: str, tmp_path: Path) -> None:
    lines, expected, test_lines, test_expected = GLUE_CASES[task]
    train = read_glue(task, _write(tmp_path / "train.tsv", lines))
    assert [(e.text_a, e.text_b, e.label) for e in train] == expected
    assert all(isinstance(e, Example) for e in train)
    labels = glue_task(task).labels
    assert all(e.label in labels for e in train) if labels else all(
        isinstance(e.label, float) for e in train)
    test = read_glue(task, _write(tmp_path / "test.tsv", test_lines))
    assert [(e.guid, e.text_a, e.text_b) for e in test] == test_expected
    assert all(e.label is None for e in test)


def test_glue_task_names_labels_and_splits(tmp_path: Path) -> None:
    assert glue_task("SST2") is glue_task("sst-2") is glue_task("sst_2")
    assert glue_task("mnli").labels == ("contradiction", "entailment", "neutral")
    assert glue_task("rte").labels == ("entailment", "not_entailment")
    assert glue_task("sts-b").is_regression and not glue_task("cola").is_regression
    with pytest.raises(KeyError, match="unknown GLUE task"):
        glue_task("squad")
    # MNLI dev_matched (16 columns) and dev_mismatched via the split helper.
    row = tsv("9", "63735", "63735n", "slate", "( a )", "( b )", "(ROOT a)", "(ROOT b)",
              "The new rights are nice enough", "Everyone likes the benefits", "neutral",
              "entailment", "neutral", "neutral", "neutral", "neutral")
    _write(tmp_path / "dev_matched.tsv", [MNLI_DEV_HEADER, row])
    _write(tmp_path / "dev_mismatched.tsv", [MNLI_DEV_HEADER, row.replace("slate", "letters")])
    for split in ("dev", "dev_matched", "dev_mismatched"):
        (ex,) = read_glue("mnli", glue_split_path("mnli", tmp_path, split))
        assert (ex.text_b, ex.label, ex.guid) == ("Everyone likes the benefits", "neutral", "9")
    assert glue_split_path("rte", tmp_path, "train") == tmp_path / "train.tsv"
    with pytest.raises(ValueError, match="no split"):
        glue_split_path("rte", tmp_path, "dev_matched")


def test_glue_malformed_rows_name_file_and_line(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    header = tsv("index", "sentence1", "sentence2", "label")
    path = _write(tmp_path / "train.tsv", [
        header,
        tsv("0", "Fine.", "Fine too.", "entailment"),
        tsv("1", "Too few columns.", "entailment"),                  # line 3
        tsv("2", "Bad label.", "Really.", "maybe"),                  # line 4
        tsv("3", "   ", "Empty first text.", "entailment"),          # line 5
        "",                                                           # blank: ignored
        tsv("4", "Last.", "Good.", "not_entailment"),                 # line 7
    ])
    with pytest.raises(DataError, match=r"train\.tsv:3: .*expected 4 .* got 3") as info:
        read_glue("rte", path)
    assert (Path(info.value.path).name, info.value.line) == ("train.tsv", 3)
    with caplog.at_level(logging.WARNING, logger="bertkit.data.glue"):
        kept = read_glue("rte", path, skip_bad_rows=True)
    assert [e.guid for e in kept] == ["0", "4"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3 bad rows" in warnings[0].getMessage()
    assert "train.tsv:3" in warnings[0].getMessage()

    bad_label = _write(tmp_path / "dev.tsv", [header, tsv("0", "a", "b", "entailment"),
                                               tsv("1", "a", "b", "maybe")])
    with pytest.raises(DataError, match=r"dev\.tsv:3: .*label 'maybe'"):
        read_glue("rte", bad_label)
    sts = _write(tmp_path / "sts.tsv", [STSB_HEADER, tsv(*["x"] * 9, "high")])
    with pytest.raises(DataError, match=r"sts\.tsv:2: .*score 'high'"):
        read_glue("sts-b", sts)
    cola = _write(tmp_path / "cola.tsv", [tsv("gj04", "1", "", "")])
    with pytest.raises(DataError, match=r"cola\.tsv:1: empty text"):
        read_glue("cola", cola)


# --- generic tables -----------------------------------------------------------------------------


def test_read_table_csv_tsv_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "reviews.csv"
    csv_path.write_text('id,text,other,label\n1,"A fine, quoted ""film""",x,fresh\n'
                        '2,"two\nlines",y,rotten\n3,Plain,z,fresh\n', encoding="utf-8")
    ex = read_table(csv_path, "text", label_column="label", id_column="id")
    assert [(e.guid, e.text_a, e.label) for e in ex] == [
        ("1", 'A fine, quoted "film"', "fresh"), ("2", "two\nlines", "rotten"),
        ("3", "Plain", "fresh")]
    assert label_list(ex) == ["fresh", "rotten"]

    tsv_path = _write(tmp_path / "pairs.tsv", [tsv("claim", "evidence", "y"),
                                               tsv('"quoted', "evidence 1", "True")])
    (pair,) = read_table(tsv_path, "claim", "evidence", "y")
    assert (pair.text_a, pair.text_b, pair.label, pair.guid) == (
        '"quoted', "evidence 1", "True", "pairs-2")

    jl = _write(tmp_path / "data.jsonl", [json.dumps({"s": "naïve 🎉", "score": 3.5}),
                                          json.dumps({"s": "zero", "score": 0})])
    reg = read_table(jl, "s", label_column="score", regression=True)
    assert [(e.text_a, e.label) for e in reg] == [("naïve 🎉", 3.5), ("zero", 0.0)]
    (unl,) = read_table(_write(tmp_path / "u.jsonl", ['{"s": "hi"}']), "s", label_column=None)
    assert unl.label is None
    # Compressed, like the Rotten Tomatoes corpus (rotten_tomatoes_corpus_full.csv.bz2).
    bz = tmp_path / "rt.csv.bz2"
    bz.write_bytes(bz2.compress(b'category,text\nfresh,"Good, really."\n'))
    (rt,) = read_table(bz, "text", label_column="category")
    assert (rt.text_a, rt.label, rt.guid) == ("Good, really.", "fresh", "rt.csv-2")


def test_read_table_errors(tmp_path: Path) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text('text,label\n"multi\nline",pos\nok,neg,extra\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv:4: expected 2 columns, got 3"):
        read_table(csv_path, "text")  # line 4: the quoted field took lines 2-3
    with pytest.raises(DataError, match=r"bad\.csv:1: no column\(s\) \['sentence'\]"):
        read_table(csv_path, "sentence")
    jl = _write(tmp_path / "bad.jsonl", ['{"t": "a", "l": "x"}', "{not json", '{"t": "b"}',
                                         '{"t": "c", "l": "z"}'])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        read_table(jl, "t", label_column="l")
    kept = read_table(jl, "t", label_column="l", labels=["x", "y"], skip_bad_rows=True)
    assert [e.text_a for e in kept] == ["a"]
    labels_jl = _write(tmp_path / "labels.jsonl", ['{"t": "a", "l": "x"}', '{"t": "c", "l": "z"}'])
    with pytest.raises(DataError, match=r"labels\.jsonl:2: bad label 'z'"):
        read_table(labels_jl, "t", label_column="l", labels=["x", "y"])
    with pytest.raises(DataError, match=r"labels\.jsonl:1: missing keys \['l'\]"):
        read_table(_write(labels_jl, ['{"t": "b"}']), "t", label_column="l")
    with pytest.raises(ValueError, match="cannot tell the format"):
        read_table(tmp_path / "data.txt", "t")



def test_read_table_optional_labels_for_test_files(tmp_path: Path) -> None:
    """A test file may lack the label column or leave labels empty; labels that are there count."""
    csv_path = _write(tmp_path / "test.csv", ["id,text", "1,First", "2,Second"])
    ex = read_table(csv_path, "text", label_column="label", id_column="id", label_optional=True)
    assert [(e.guid, e.text_a, e.label) for e in ex] == [("1", "First", None), ("2", "Second", None)]
    with pytest.raises(DataError, match=r"test\.csv:1: no column\(s\) \['label'\]"):
        read_table(csv_path, "text", label_column="label")  # a training file must have them
    jl = _write(tmp_path / "mixed.jsonl", [json.dumps({"t": "a", "l": 0}), json.dumps({"t": "b"}),
                                           json.dumps({"t": "c", "l": ""}),
                                           json.dumps({"t": "d", "l": False})])
    got = read_table(jl, "t", label_column="l", label_optional=True)
    assert [e.label for e in got] == ["0", None, None, "False"]  # JSON 0 and false are labels
    with pytest.raises(DataError, match=r"mixed\.jsonl:4: bad label False"):
        read_table(jl, "t", label_column="l", labels=["0", "1"], label_optional=True)
    scores = _write(tmp_path / "scores.jsonl", [json.dumps({"t": "a", "l": 2.5}),
                                                 json.dumps({"t": "b"}),
                                                 json.dumps({"t": "c", "l": "high"})])
    with pytest.raises(DataError, match=r"scores\.jsonl:3: label 'high' is not a finite number"):
        read_table(scores, "t", label_column="l", regression=True, label_optional=True)
    reg = read_table(scores, "t", label_column="l", regression=True, label_optional=True,
                     skip_bad_rows=True)
    assert [(e.text_a, e.label) for e in reg] == [("a", 2.5), ("b", None)]


# --- SQuAD --------------------------------------------------------------------------------------

# Non-ASCII on purpose: precomposed and combining accents, CJK, an emoji (one code point outside
# the BMP), a narrow no-break space (U+202F, whitespace for run_squad) and a tab.
CONTEXT = ("Café Müller opened in 1898 in Zu\u0308rich; 北京大学 was founded the same year 🎉 by "
           "naïve\u202fJosé\tand friends.")


def _squad_file(tmp_path: Path, qas: list[dict], context: str = CONTEXT) -> Path:
    data = {"version": "v2.0", "data": [{"title": "Tést", "paragraphs": [
        {"context": context, "qas": qas}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _ans(text: str, occurrence: int = 0, context: str = CONTEXT) -> dict:
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(text, start + 1)
    return {"text": text, "answer_start": start}


def test_squad_offsets_map_back_exactly_non_ascii(tmp_path: Path) -> None:
    answers = ["Café Müller", "Zu\u0308rich", "北京大学", "🎉", "naïve\u202fJosé", "José\tand"]
    qas = [{"id": f"q{i}", "question": f"Q {i}?", "answers": [_ans(a)]}
           for i, a in enumerate(answers)]
    examples = read_squad(_squad_file(tmp_path, qas))
    assert [e.qid for e in examples] == [f"q{i}" for i in range(len(answers))]
    # Offsets count code points (by hand: "Zu\u0308rich;" is 8, 北京大学 is 4, so 🎉 starts at
    # 70); the emoji is one code point, so "naïve" after " by " starts at 75 (76 in UTF-16).
    assert examples[3].answers[0].start == 70
    assert examples[4].answers[0].start == 75
    for ex, text in zip(examples, answers, strict=True):
        (ans,) = ex.answers
        assert ex.context[ans.start:ans.end] == text == ans.text
        first, last = ex.word_span(ans)
        # The words the answer covers contain it (exactly, when it is aligned with whitespace:
        # all here except "Zürich" whose word is "Zürich;").
        words = "".join(ex.doc_tokens[first:last + 1])
        assert "".join(text.split()) in words
        assert (words == "".join(text.split())) == (text != "Zu\u0308rich")
        assert not ex.is_impossible and ex.title == "Tést"
    # U+202F and tab split words as in run_squad.py.
    doc = examples[0].doc_tokens
    assert doc[-4:] == ("naïve", "José", "and", "friends.")
    assert doc[6] == "Zu\u0308rich;" and "北京大学" in doc


def test_whitespace_split_map() -> None:
    doc, offs = whitespace_split(" a  bc ")
    assert doc == ["a", "bc"]
    assert offs == [-1, 0, 0, 0, 1, 1, 1]  # leading space: -1; spaces map to the word before


def test_squad_bad_offset_names_question(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    good = {"id": "ok", "question": "Where?", "answers": [_ans("Zu\u0308rich")]}
    off_by_one = {"id": "56be4db0acb8001400a502ec", "question": "Who?",
                  "answers": [{"text": "北京大学", "answer_start": CONTEXT.index("北京大学") + 1}]}
    path = _squad_file(tmp_path, [good, off_by_one])
    with pytest.raises(DataError, match=r"question 56be4db0acb8001400a502ec: answer '北京大学'"):
        read_squad(path)
    with caplog.at_level(logging.WARNING, logger="bertkit.data.squad"):
        assert [e.qid for e in read_squad(path, skip_bad_rows=True)] == ["ok"]
    assert "skipped 1 bad rows" in caplog.text
    no_answer = _squad_file(tmp_path, [{"id": "x", "question": "?", "answers": []}])
    with pytest.raises(DataError, match="question x: no answers"):
        read_squad(no_answer)
    unlabelled = read_squad(no_answer, answers_optional=True)  # a question to predict
    assert [(e.qid, e.answers, e.is_impossible) for e in unlabelled] == [("x", (), False)]
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [\n{', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json:2: invalid JSON"):
        read_squad(broken)


@pytest.mark.parametrize("ids, message", [
    (["a", "b", "a"], "question id 'a' appears more than once"),
    (["a", None, "c"], "a question has no id"),
    (["a", "", "c"], "a question has no id"),
    (["a", True, "c"], "a question has no id"),
])
def test_squad_question_ids_are_present_and_unique(ids: list, message: str,
                                                   tmp_path: Path) -> None:
    """Predictions and metrics are keyed by id: a missing or repeated id is a bad row."""
    qas = [{"question": f"Where {i}?", "answers": [_ans("Zu\u0308rich")],
            **({} if qid is None else {"id": qid})} for i, qid in enumerate(ids)]
    path = _squad_file(tmp_path, qas)
    with pytest.raises(DataError, match=message) as err:
        read_squad(path)
    assert path.name in str(err.value)
    assert len(read_squad(path, skip_bad_rows=True)) == 2


def test_squad_v2_and_metrics_round_trip(tmp_path: Path) -> None:
    qas = [{"id": "has", "question": "When?", "is_impossible": False,
            "answers": [_ans("1898"), _ans("in 1898")]},
           {"id": "none", "question": "Why?", "is_impossible": True, "answers": [],
            "plausible_answers": [_ans("the same year")]},
           {"id": "bad", "question": "Hm?", "is_impossible": True, "answers": [_ans("Café")]}]
    with pytest.raises(DataError, match="question bad: is_impossible but has answers"):
        read_squad(_squad_file(tmp_path, qas))
    ex = read_squad(_squad_file(tmp_path, qas[:2]))
    assert [e.is_impossible for e in ex] == [False, True]
    assert ex[1].answers == () and ex[1].plausible_answers[0].text == "the same year"
    assert ex[0].answers[1] == Answer("in 1898", CONTEXT.index("in 1898"))
    gold = gold_answers(ex)
    assert gold == {"has": ["1898", "in 1898"], "none": []}
    s = squad_v2_scores(gold, {"has": "1898", "none": ""})
    assert (s["exact"], s["HasAns_total"], s["NoAns_total"]) == (100.0, 1.0, 1.0)


# --- CoNLL NER ----------------------------------------------------------------------------------


def test_conll_2003_layout(tmp_path: Path) -> None:
    path = _write(tmp_path / "eng.train", [
        "-DOCSTART- -X- -X- O", "",
        "EU NNP B-NP B-ORG", "rejects VBZ B-VP O", "German JJ B-NP B-MISC", "call NN I-NP O",
        ". . O O", "",
        "Peter NNP B-NP B-PER", "Blackburn NNP I-NP I-PER", "", "",
        "-DOCSTART- -X- -X- O", "",
        "BRUSSELS NNP B-NP B-LOC",
    ])
    sents = read_conll(path)
    assert [s.tokens for s in sents] == [("EU", "rejects", "German", "call", "."),
                                         ("Peter", "Blackburn"), ("BRUSSELS",)]
    assert sents[0].tags == ("B-ORG", "O", "B-MISC", "O", "O")
    assert [s.guid for s in sents] == ["eng-3", "eng-9", "eng-15"]
    assert ner_label_list(sents) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG",
                                     "I-ORG", "B-PER", "I-PER"]
    # The chunk column as tags (column 2).
    assert read_conll(path, tag_column=2)[1].tags == ("B-NP", "I-NP")


def test_conll_tab_iob1_and_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wnut = _write(tmp_path / "ner.txt", ["@paul\tO", "New York\tI-location", "City\tI-location",
                                         "Paris\tB-location", "", "#sf\tI-geo-loc"])
    sents = read_conll(wnut, delimiter="\t", scheme="iob1")
    assert sents[0].tokens[1] == "New York"  # a tab-separated token may hold spaces
    assert sents[0].tags == ("O", "B-location", "I-location", "B-location")
    assert sents[1].tags == ("B-geo-loc",)
    assert read_conll(wnut, delimiter="\t")[1].tags == ("I-geo-loc",)  # iob2: kept as given
    assert iob1_to_iob2(["B-A", "I-B", "I-B", "O"]) == ["B-A", "B-B", "I-B", "O"]

    bad = _write(tmp_path / "bad.txt", ["a O", "b B-PER", "", "c PER", "d O", "", "e", "",
                                        "f I-LOC"])
    with pytest.raises(DataError, match=r"bad\.txt:4: bad token/tag 'c' 'PER'"):
        read_conll(bad)
    with caplog.at_level(logging.WARNING, logger="bertkit.data.ner"):
        kept = read_conll(bad, skip_bad_rows=True)
    assert [s.tokens for s in kept] == [("a", "b"), ("f",)]  # sentences with bad lines dropped
    assert "skipped 2 bad rows" in caplog.text


def test_conll_untagged_tokens_to_predict(tmp_path: Path) -> None:
    path = _write(tmp_path / "test.txt", ["New York", "rocks", "", "-DOCSTART-", "", "Paris"])
    with pytest.raises(DataError, match=r"test\.txt:1: expected at least 2 columns, got 1"):
        read_conll(path, delimiter="\t")  # tags are required unless asked otherwise
    sents = read_conll(path, delimiter="\t", tags_optional=True)
    assert [(s.tokens, s.tags, s.guid) for s in sents] == [
        (("New York", "rocks"), (), "test-1"), (("Paris",), (), "test-6")]
    tagged = read_conll(_write(tmp_path / "t.txt", ["a O", "b B-PER"]), tags_optional=True)
    assert tagged[0].tags == ("O", "B-PER")  # tagged lines read as before
    mixed = _write(tmp_path / "mixed.txt", ["a O", "b", "", "c", "d B-LOC", "", "e"])
    with pytest.raises(DataError, match=r"mixed\.txt:2: a sentence mixes tagged and untagged"):
        read_conll(mixed, tags_optional=True)
    kept = read_conll(mixed, tags_optional=True, skip_bad_rows=True)
    assert [(s.tokens, s.tags) for s in kept] == [(("e",), ())]


# --- SWAG ---------------------------------------------------------------------------------------

SWAG_HEADER = ",video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2," \
              "ending3,label"


def test_swag_layout(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.csv", [
        SWAG_HEADER,
        '0,anetv_jkn6uvmqwh4,3416,"Members of the group, smiling, hold. The people","Members of '
        'the group, smiling, hold.",The people,gold,are playing.,"sit, quietly.",run.,fly.,1',
        '1,lsmdc1052,18313,He waves. Someone,He waves.,Someone,gen,nods.,smiles.,leaves.,jumps.,3',
    ])
    ex = read_swag(path)
    assert ex[0].context == "Members of the group, smiling, hold."
    assert ex[0].endings == ("are playing.", "sit, quietly.", "run.", "fly.")
    assert ex[0].choices[1] == "The people sit, quietly."
    assert [e.label for e in ex] == [1, 3] and ex[1].guid == "train-18313"
    test = _write(tmp_path / "test.csv", [
        "video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3",
        "v,7,S,Ctx.,Start,gold,a,b,c,d"])
    (t,) = read_swag(test)
    assert (t.label, t.choices) == (None, ["Start a", "Start b", "Start c", "Start d"])


def test_swag_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "val.csv", [SWAG_HEADER, "0,v,1,s,Ctx.,St,gold,a,b,c,d,4",
                                         "1,v,2,s,Ctx.,St,gold,a,b,c"])
    with pytest.raises(DataError, match=r"val\.csv:2: label '4' is not 0-3"):
        read_swag(path)
    assert read_swag(path, skip_bad_rows=True) == []
    with pytest.raises(DataError, match=r"val\.csv:1: no column"):
        read_swag(_write(tmp_path / "val.csv", ["a,b", "1,2"]))


def test_swag_any_number_of_endings(tmp_path: Path) -> None:
    """N = the number of ending<i> columns (Social IQa has 3); labels must be 0..N-1."""
    three = "video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,label"
    path = _write(tmp_path / "siqa.csv",
                  [three, 's,5,Q,"Jan sat. Why?",,gold,Tired,Bored,"Late, ok",2'])
    (ex,) = read_swag(path)
    assert (ex.endings, ex.label, ex.num_choices, ex.guid) == (("Tired", "Bored", "Late, ok"), 2,
                                                               3, "siqa-5")
    assert ex.choices == ["Tired", "Bored", "Late, ok"]  # empty sent2: the ending alone
    bad = _write(tmp_path / "bad.csv", [three, "s,6,Q,Ctx.,,gold,a,b,c,3"])
    with pytest.raises(DataError, match=r"bad\.csv:2: label '3' is not 0-2"):
        read_swag(bad)
    two = _write(tmp_path / "two.csv", ["sent1,sent2,ending0,ending1,label", "C.,S,a,b,1"])
    assert read_swag(two)[0].choices == ["S a", "S b"]
    one = _write(tmp_path / "one.csv", ["sent1,sent2,ending0,label", "C.,S,a,0"])
    with pytest.raises(DataError, match=r"one\.csv:1: no column\(s\) \['ending1'\]"):
        read_swag(one)
    gap = _write(tmp_path / "gap.csv", ["sent1,sent2,ending0,ending1,ending3", "C.,S,a,b,c"])
    with pytest.raises(DataError, match=r"gap\.csv:1: ending columns must be ending0\.\.ending2"):
        read_swag(gap)


# ----------------------------------------------------------------------------- real samples

_ALLENNLP = Package("pypi", "allennlp", "0.9.0")
SNLI_SAMPLES = [
    FileSpec(_ALLENNLP, "allennlp/tests/fixtures/data/snli.jsonl",
             "e4b5d37abd4125002465d0d13d7e7f03349a74bad58f7f234d00e4891af47ad4"),
    FileSpec(_ALLENNLP, "allennlp/tests/fixtures/data/snli2.jsonl",
             "3350557a9f7ae084071527130b3ee0d3f0bddde344ec494734098497c5fc6954"),
]


@pytest.mark.real
@pytest.mark.parametrize("spec", SNLI_SAMPLES, ids=lambda s: Path(s.member).name)
def test_read_table_on_real_snli_pairs(spec: FileSpec) -> None:
    """SNLI's own JSON lines (the MNLI role; no NLI set at scale is on the registries)."""
    path = fetch_or_skip(fetch_file, spec)
    got = read_table(path, "sentence1", "sentence2", "gold_label", id_column="pairID",
                     labels=("entailment", "neutral", "contradiction"))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(e.guid, e.text_a, e.text_b, e.label) for e in got] == \
        [(r["pairID"], r["sentence1"], r["sentence2"], r["gold_label"]) for r in rows]


@pytest.mark.real
def test_read_squad_on_real_samples() -> None:
    """The real SQuAD, Quoref and QuAC samples: every answer maps back to its context; the QuAC
    sample repeats its dialogue (6 ids twice), which is an error unless bad rows are skipped."""
    tool = load_tool("make_google_squad_fixture")
    n = 0
    for name, spec in tool.SQUAD_SAMPLES.items():
        path = fetch_or_skip(fetch_file, spec)
        raw = json.loads(path.read_text(encoding="utf-8"))
        ids = [qa["id"] for art in raw["data"] for par in art["paragraphs"] for qa in par["qas"]]
        if name == "quac":
            with pytest.raises(DataError, match="appears more than once"):
                read_squad(path)
        examples = read_squad(path, skip_bad_rows=True)
        assert [e.qid for e in examples] == list(dict.fromkeys(ids))
        for e in examples:
            for a in e.answers:
                assert e.context[a.start:a.start + len(a.text)] == a.text
        n += len(examples)
    assert n == 15
