"""Real labelled fine-tuning data: seeded grouped 80/10/10 splits of six data set recipes.

Every split file is read back with bertkit's own readers (read_table, read_squad, read_swag,
read_conll) and checked against the raw source, re-parsed here independently. Three recipes fetch
from the registries; the totals below were counted on the pinned source files:

- rotten-tomatoes: 12,808 snippets, 7,403 fresh / 5,405 rotten (1,097 ``plot`` rows dropped).
- mmlu: 2,501 questions: 285 in each of 7 translations (lm-eval's YAML few-shot items), 225
  Korean KMMLU items, and 281 English chain-of-thought prompts with choices A-D (one with an
  (E) choice is dropped).
- wnut16: 2,394 tweets, 46,469 tokens, 10 entity types.

``vitaminc``, ``disfl-qa`` and ``social-iqa`` read BIG-bench 1.0.0's task files, which PyPI no
longer serves: they run here through ``--from`` on a ``bigbench-1.0.0.tar.gz`` holding task files
in BIG-bench's layout built from real text (``tests/bigbench_samples.py``), their totals counted
on those files; and a fetch without ``--from`` must fail naming ``bigbench==1.0.0``.
"""

from __future__ import annotations

import csv
import dataclasses
import doctest
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bigbench_samples import SOURCES, disfl_qa_task, social_iqa_task, vitaminc_task, write_archive
from realdata import fetch_or_skip, load_tool

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

FETCHED = [name for name, d in LABELLED.items() if not d.gone]
SAMPLED = [name for name, d in LABELLED.items() if d.gone]
REGISTERED = dict(LABELLED)  # the recipes as shipped (sampled_recipes patches LABELLED)
TOTALS = {"rotten-tomatoes": 12_808, "mmlu": 2_501, "wnut16": 2_394}
LABEL_TOTALS: dict[str, dict[str, int]] = {
    "rotten-tomatoes": {"fresh": 7_403, "rotten": 5_405},
    "wnut16": {"person": 449, "geo-loc": 276, "other": 225, "company": 171, "facility": 104,
               "product": 97, "musicartist": 55, "sportsteam": 51, "movie": 34, "tvshow": 34},
}


def _fetch(fn: Callable[[], Any]) -> Any:
    return fetch_or_skip(fn)


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


def _read_mmlu(path: Path) -> list[Item]:
    """read_swag's examples; the group (subject, all languages) from the ``video-id`` column."""
    with open(path, encoding="utf-8", newline="") as f:
        tags = [row[0] for row in list(csv.reader(f))[1:]]
    return [Item(e.guid.rsplit("-", 1)[1], (str(e.label),),
                 re.sub(r"^(k?mmlu)-[a-z]+-", r"\1-", tag), e)
            for e, tag in zip(read_swag(path), tags, strict=True)]


def _read_wnut(path: Path) -> list[Item]:
    return [Item(f"{path.stem}-{i}", tuple(t[2:] for t in s.tags if t.startswith("B-")),
                 " ".join(s.tokens), (s.tokens, s.tags))
            for i, s in enumerate(read_conll(path, delimiter="\t"))]


READERS: dict[str, Callable[[Path], list[Item]]] = {
    "rotten-tomatoes": _read_rt, "vitaminc": _read_vitaminc, "disfl-qa": _read_disfl,
    "social-iqa": _read_siqa, "mmlu": _read_mmlu, "wnut16": _read_wnut}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """BIG-bench-layout examples of the three recipes whose source left PyPI, from real text."""
    squad_tool = load_tool("make_google_squad_fixture")
    squad_files = [_fetch(lambda s=spec: fetch_file(s))
                   for spec in squad_tool.SQUAD_SAMPLES.values()]
    mmlu = _fetch(lambda: fetch_labelled("mmlu", tmp_path_factory.mktemp("mmlu")))
    return {"vitaminc": vitaminc_task()["examples"],
            "disfl-qa": disfl_qa_task(squad_files)["examples"],
            "social-iqa": social_iqa_task(read_swag(mmlu["train"]))["examples"]}


@pytest.fixture(scope="module")
def mmlu_labels() -> dict[str, int]:
    """Gold-choice counts of the MMLU source, counted here: the YAML items' answers, and each
    English prompt's last "The answer is (X)" unless it offers an (E) choice."""
    archive = _fetch(lambda: artifacts.fetch_archive(labelled.MMLU_ARCHIVE))
    gold: Counter[str] = Counter()
    yaml_items = _yaml_items(archive, r"lm_eval/tasks/(llama3/instruct/mmlu_(de|es|fr|hi|it|pt|th)"
                                      r"/mmlu|kmmlu/cot_hard/kmmlu_cot_hard)_\w+\.yaml")
    for samples in yaml_items.values():
        for x in samples:
            answer = x["input_correct_responses"][0] if "input_correct_responses" in x \
                else re.findall(r"\(([ABCD])\)", x["target"])[-1]
            gold[str("ABCD".index(answer))] += 1
    import zipfile

    with zipfile.ZipFile(archive) as z:
        prompts = json.loads(z.read("lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json"))
    for text in prompts.values():
        for block in text.split("\n\nQ: ")[1:]:
            if "(E) " not in block.split("\nA: ")[0]:
                gold[str("ABCD".index(re.findall(r"The answer is \(([A-E])\)", block)[-1]))] += 1
    return dict(gold)


def _placeholder(question: str) -> bool:
    return bool(re.fullmatch(r"(?i)# value !|((question|answer) )?n / a|no question|\W*",
                             question))


def _sample_counts(name: str, examples: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
    """Total and label counts of a BIG-bench-layout sample, counted from the raw examples."""
    if name == "vitaminc":
        labels = Counter(next(k for k, v in ex["target_scores"].items() if v == 1)
                         for ex in examples)
    elif name == "disfl-qa":
        kept = [ex for ex in examples
                if not _placeholder(ex["input"].split("\ncontext: ")[0].strip())]
        labels = Counter("unanswerable" if ex["target"] == "unknown" else "answerable"
                         for ex in kept)
    else:
        labels = Counter(str(list(ex["target_scores"].values()).index(1)) for ex in examples
                         if len(ex["target_scores"]) == 3)
    return sum(labels.values()), dict(labels)


@pytest.fixture(scope="module")
def sampled_recipes(raw: dict[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Path]:
    """The BIG-bench recipes pointed at the samples: a ``bigbench-1.0.0.tar.gz`` holding them
    at BIG-bench's member paths, pinned by their sha256 under a test package name (so the
    real bigbench cache path is never written). Yields the archive for ``--from``."""
    archive = tmp_path_factory.mktemp("bigbench") / "bigbench-1.0.0.tar.gz"
    sums = write_archive(archive, {SOURCES[n].member: {"examples": raw[n]} for n in SAMPLED})
    sample_pkg = artifacts.Package("pypi", "bigbench-test-sample", "1.0.0")
    with pytest.MonkeyPatch.context() as mp:
        for name in SAMPLED:
            ds = LABELLED[name]
            source = artifacts.FileSpec(sample_pkg, ds.source.member, sums[ds.source.member])
            total, labels = _sample_counts(name, raw[name])
            mp.setitem(LABELLED, name, dataclasses.replace(ds, source=source, examples=total))
            mp.setitem(TOTALS, name, total)
            mp.setitem(LABEL_TOTALS, name, labels)
        yield archive


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, sampled_recipes: Path
          ) -> dict[str, dict[int, dict[str, Path]]]:
    """Every data set split with seed 0 and seed 1: from the registry, or ``--from`` the
    samples' archive (fetched once for the module)."""
    root = tmp_path_factory.mktemp("labelled")
    out: dict[str, dict[int, dict[str, Path]]] = {}
    for name in LABELLED:
        source = sampled_recipes if name in SAMPLED else None
        out[name] = {seed: _fetch(lambda n=name, s=seed, src=source:
                                  fetch_labelled(n, root / f"{n}-{s}", s, source=src))
                     for seed in (0, 1)}
    return out


@pytest.fixture(scope="module")
def items(built: dict[str, dict[int, dict[str, Path]]]) -> dict[str, dict[str, list[Item]]]:
    """Seed-0 splits read back with bertkit's readers."""
    return {name: {split: READERS[name](p) for split, p in built[name][0].items()}
            for name in LABELLED}




@pytest.mark.parametrize("name", list(LABELLED))
def test_counts_labels_and_fractions(name: str, items: dict[str, dict[str, list[Item]]],
                                     mmlu_labels: dict[str, int]) -> None:
    splits = items[name]
    total = sum(len(v) for v in splits.values())
    assert total == TOTALS[name] == LABELLED[name].examples
    labels = Counter(label for v in splits.values() for it in v for label in it.labels)
    assert dict(labels) == (mmlu_labels if name == "mmlu" else LABEL_TOTALS[name])
    if LABELLED[name].labels:
        assert set(labels) == set(LABELLED[name].labels)
    largest = max(Counter(it.group for v in splits.values() for it in v).values())
    for split, frac in zip(SPLITS, labelled.FRACTIONS, strict=True):
        n = len(splits[split])  # within one group of the target (MMLU: 40-item subjects)
        assert abs(n - frac * total) <= max(0.005 * total + 2, largest), (split, n)


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


def test_vitaminc_matches_source(items: dict[str, dict[str, list[Item]]],
                                 raw: dict[str, list[dict[str, Any]]]) -> None:
    got = {it.id: it.data for v in items["vitaminc"].values() for it in v}
    assert len(got) == len(raw["vitaminc"])
    for i, ex in enumerate(raw["vitaminc"]):
        evidence, claim = ex["input"].split("\nClaim: ")
        (label,) = [k for k, v in ex["target_scores"].items() if v == 1]
        assert got[f"vitaminc-{i:05d}"] == (claim, evidence, label)
    # Evidence keeps its "<page title>: " prefix; repeated claims (contrastive pairs) stay grouped.
    claim, evidence, _ = got["vitaminc-00000"]
    assert evidence.startswith("20th-century classical music: ")
    assert len({c for c, _, _ in got.values()}) < len(got)


def test_disfl_qa_answers_and_source(items: dict[str, dict[str, list[Item]]],
                                     raw: dict[str, list[dict[str, Any]]]) -> None:
    examples = {it.id: it.data for v in items["disfl-qa"].values() for it in v}
    answerable = whitespace_only = 0
    for i, ex in enumerate(raw["disfl-qa"]):
        question, context = (s.strip() for s in ex["input"].split("\ncontext: "))
        e = examples.get(f"disfl-qa-{i:04d}")
        if e is None:  # dropped: only placeholders that are not questions
            assert _placeholder(question), question
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
        else:
            whitespace_only += 1
        answerable += 1
    assert len(examples) == len(raw["disfl-qa"]) - 2 and answerable > 150
    assert whitespace_only > 10  # tokenized contexts: answers found once whitespace is ignored


def test_social_iqa_matches_source(items: dict[str, dict[str, list[Item]]],
                                   raw: dict[str, list[dict[str, Any]]]) -> None:
    examples = raw["social-iqa"]
    got = {int(it.id): it.data for v in items["social-iqa"].values() for it in v}
    two_answers = [i for i, ex in enumerate(examples) if len(ex["target_scores"]) == 2]
    assert sorted(set(range(len(examples))) - set(got)) == two_answers != []
    for i, e in got.items():
        scores = examples[i]["target_scores"]
        assert e.context == examples[i]["input"].strip() and e.start_ending == ""
        assert e.endings == tuple(scores) and e.num_choices == 3
        assert e.choices == list(scores)  # an empty sent2 gives the answer alone
        assert list(scores.values())[e.label] == 1


def _yaml_items(archive: Path, member_pattern: str) -> dict[str, list[dict[str, Any]]]:
    """``{member: few-shot samples}`` of lm-eval's YAML task files (independent reader)."""
    import zipfile

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: None)
    out = {}
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if re.fullmatch(member_pattern, name):
                out[name] = yaml.load(z.read(name), Loader=Loader)["fewshot_config"]["samples"]
    return out


def test_mmlu_matches_source(items: dict[str, dict[str, list[Item]]]) -> None:
    archive = _fetch(lambda: artifacts.fetch_archive(labelled.MMLU_ARCHIVE))
    got = [it.data for v in items["mmlu"].values() for it in v]
    rows = Counter((e.context, e.endings, e.label) for e in got)
    translated = _yaml_items(archive, r"lm_eval/tasks/llama3/instruct/mmlu_(de|es|fr|hi|it|pt|th)"
                                      r"/mmlu_\w+\.yaml")
    assert len(translated) == 7 * 57
    want = Counter((x["input_question"].strip(),
                    tuple(str(x["input_choice_list"][k]).strip() for k in "ABCD"),
                    "ABCD".index(x["input_correct_responses"][0]))
                   for samples in translated.values() for x in samples)
    assert sum(want.values()) == 7 * 285 and not want - rows
    korean = _yaml_items(archive, r"lm_eval/tasks/kmmlu/cot_hard/kmmlu_cot_hard_\w+\.yaml")
    assert sum(map(len, korean.values())) == 225
    assert sum(1 for e in got if re.search("[\uac00-\ud7a3]", e.context)) >= 225
    # English: the rest, each with its four choices.
    assert len(got) - 7 * 285 - 225 == 281 and all(len(e.endings) == 4 for e in got)
    # A subject's questions, in every language, are in one split.
    subjects = {s: {it.group for it in v} for s, v in items["mmlu"].items()}
    assert len(set().union(*subjects.values())) == 102


def test_bigbench_recipes_fail_naming_the_missing_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --from, the vanished source is an ArtifactError naming it, never a skip."""
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(LABELLED, "vitaminc", REGISTERED["vitaminc"])
    with pytest.raises(artifacts.ArtifactError) as err:
        fetch_or_skip(fetch_labelled, "vitaminc", tmp_path / "out")
    assert "bigbench==1.0.0" in str(err.value) and "--from" in str(err.value)
    assert not (tmp_path / "out" / "info.json").exists()


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
    assert all(name in table for name in LABELLED) and "2,501 questions" in table
    assert "vitaminc, disfl-qa, social-iqa: PyPI serves only bigbench 0.0.1" in table
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, DatasetFetchArgs)
    out = built["mmlu"][1]["train"].parent
    args = dataclass_from_namespace(
        DatasetFetchArgs, parser.parse_args(["mmlu", "--out", str(out), "--seed", "1"]), parser)
    assert args == DatasetFetchArgs("mmlu", str(out), 1)
    assert run_dataset_fetch(args) == 0
    printed = capsys.readouterr().out
    assert str(out / "train.csv") in printed and str(out / "info.json") in printed
    assert run_dataset_fetch(DatasetFetchArgs("no-such-set")) == 2
    info = json.loads((out / "info.json").read_text())
    assert info["seed"] == 1 and info["notes"]["dropped_english_items_not_4_choices"] == 1
    with open(out / "test.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header[-5:] == ["ending0", "ending1", "ending2", "ending3", "label"]
    sampled = built["social-iqa"][1]["train"].parent
    from_args = dataclass_from_namespace(DatasetFetchArgs, parser.parse_args(
        ["social-iqa", "--out", str(sampled), "--seed", "1", "--from", "x.tar.gz"]), parser)
    assert from_args.source == "x.tar.gz"


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
