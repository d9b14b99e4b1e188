"""Write Google's ``run_squad.py`` outputs on real-text QA examples to a test fixture.

Usage::

    mkdir -p /tmp/bert
    for f in run_squad.py tokenization.py; do
        git -C /path/to/google-research/bert show HEAD:$f > /tmp/bert/$f; done
    python tests/tools/make_google_squad_fixture.py /tmp/bert   # or BERTKIT_GOOGLE_BERT=/tmp/bert

Google's ``run_squad.py`` imports TensorFlow, ``six``, ``modeling`` and ``optimization``; none is
needed by the functions used here, so :func:`load_google_squad` imports it with stub modules
(``tf.flags`` records defaults, ``tf.logging`` is silent, ``tf.gfile`` is ``open``) and Google's
own ``tokenization.py`` from the same folder. For each configuration in :data:`CONFIGS` the fixture
``tests/fixtures/google_squad_uncased.json.gz`` stores what Google's code produced on
:func:`real_examples`: ``read_squad_examples`` + ``convert_examples_to_features`` in prediction and
training mode (ids, segment ids, ``token_to_orig_map``, ``token_is_max_context``, start/end
positions), and ``write_predictions`` (predictions, n-best, null odds) on the logits of
:func:`make_logits`, for SQuAD v1 and v2; plus ``get_final_text`` on :func:`final_text_cases`.
Digests of the inputs (examples, vocab, Google's files) are stored with it. Only data produced by
Google's code is stored, never its code. The test module imports this file for the examples.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import importlib.util
import json
import logging
import os
import random
import re
import sys
import tempfile
import time
import types
from pathlib import Path
from types import ModuleType
from typing import Any

from bertkit import artifacts
from bertkit.data.corpora import (
    PEOPLES_DAILY_FILE,
    SOTU_ARCHIVE,
    extract_members,
    udhr_declarations,
)
from bertkit.data.squad import Answer, SquadExample, make_example, read_squad, whitespace_split
from bertkit.tokenization import BertTokenizer

logger = logging.getLogger("make_google_squad_fixture")

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "google_squad_uncased.json.gz"
SOTU_PATTERN = r"package/sotu/data/\d{4}_[a-z_]+\.txt"  # the pattern of the sotu corpus recipe
SEED = 20240607

# name -> (max_seq_length, doc_stride, max_query_length, do_lower_case); vocab: bert-base-uncased
CONFIGS: dict[str, tuple[int, int, int, bool]] = {
    "default": (384, 128, 64, True),   # run_squad.py's defaults
    "small": (96, 24, 16, True),       # many overlapping windows, query cut to 16 pieces
    "wide_stride": (64, 128, 32, True),  # stride > window: windows meet without overlap
    "cased": (384, 128, 64, False),    # do_lower_case=False with the uncased vocab
}
# logits kinds for write_predictions: (version_2, integer logits with many ties)
PREDICTION_RUNS: dict[str, tuple[bool, bool]] = {
    "v1": (False, False), "v2": (True, False), "v1_ties": (False, True), "v2_ties": (True, True),
}
TINY_QID = "license-tiny"  # an example whose question logits are boosted (v1: "empty" fallback)


# ---------------------------------------------------------------------------------------------
# Real text


def sotu_text(name: str) -> str:
    """One raw State of the Union address (a single line of text)."""
    root = extract_members(SOTU_ARCHIVE, SOTU_PATTERN)
    return (root / "package/sotu/data" / name).read_text(encoding="utf-8").strip()


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of ``text`` (SQuAD whitespace)."""
    return [m.span() for m in re.finditer(r"[^ \t\r\n\u202f]+", text)]


def first_words(text: str, n: int, skip: int = 0) -> str:
    """Words ``skip .. skip+n-1`` of ``text`` with their original spacing."""
    spans = word_spans(text)[skip:skip + n]
    return text[spans[0][0]:spans[-1][1]]


@functools.lru_cache(maxsize=1)
def _udhr() -> dict[str, list[str]]:
    return dict(udhr_declarations())


def udhr_paragraphs(lang: str, n: int) -> str:
    """The first ``n`` paragraphs (joined by newlines) of the UDHR translation ``lang``."""
    return "\n".join(_udhr()[lang][:n])


_ALLENNLP = artifacts.Package("pypi", "allennlp", "0.9.0")
_FIXTURES = "allennlp/tests/fixtures/data/"
SQUAD_SAMPLES = {  # name -> the real SQuAD-layout samples allennlp ships as test fixtures
    "squad": artifacts.FileSpec(
        _ALLENNLP, _FIXTURES + "squad.json",
        "c65b72846ca32b0edaf604a37c1ba614b3030a1374811e5ac375254da9bb56cb"),
    "quoref": artifacts.FileSpec(
        _ALLENNLP, _FIXTURES + "quoref/quoref_sample.json",
        "62ce7637505d156e39a84250f4c80a555fb4f478164890eaf7373efe554ee6d9"),
    "quac": artifacts.FileSpec(
        _ALLENNLP, _FIXTURES + "quac_sample.json",
        "c4c02faa564220ff5d9ab7159ccf6b8cc419d8a6c19a69c2ebed80c8c11f51f7"),
}


def squad_samples() -> list[SquadExample]:
    """The 15 distinct questions of the SQuAD, Quoref and QuAC samples, each with its first
    answer (Google's ``read_squad_examples`` takes exactly one per training question). The QuAC
    sample holds its dialogue twice: the repeated ids are skipped as bad rows.
    """
    out = []
    for name, spec in SQUAD_SAMPLES.items():
        for e in read_squad(artifacts.fetch_file(spec), skip_bad_rows=True):
            out.append(make_example(f"{name}-{e.qid}", e.question, e.context,
                                    list(e.answers[:1]), is_impossible=e.is_impossible))
    return out


def peoples_daily_sentences(first: int, n: int) -> list[list[str]]:
    """Lines ``first .. first+n-1`` of People's Daily as lists of words (tags removed)."""
    lines = artifacts.fetch_file(PEOPLES_DAILY_FILE).read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines[first:first + n]:
        words = [w.rsplit("/", 1)[0].lstrip("[") for w in line.split()]
        out.append([w.split("]")[0] for w in words if w])
    return out


# ---------------------------------------------------------------------------------------------
# Examples


def _answer_at(context: str, first: int, last: int, strip: str = "") -> Answer:
    """The text of words ``first..last`` of ``context``, without leading/trailing ``strip`` chars."""
    spans = word_spans(context)
    start, end = spans[first][0], spans[last][1]
    while context[start] in strip:
        start += 1
    while context[end - 1] in strip:
        end -= 1
    return Answer(context[start:end], start)


def _find(context: str, text: str, occurrence: int = 0) -> Answer:
    """The ``occurrence``-th match of ``text`` in ``context`` (KeyError when absent)."""
    starts = [m.start() for m in re.finditer(re.escape(text), context)]
    if len(starts) <= occurrence:
        raise KeyError(f"{text!r} occurs {len(starts)} times in the context")
    return Answer(text, starts[occurrence])


def _question_before(context: str, answer: Answer, n_words: int = 8) -> str:
    """A question made of the words before the answer."""
    before = context[:answer.start].split()[-n_words:]
    if not before:
        return "How does the text begin?"
    return "What comes after \"" + " ".join(before) + "\"?"


def _qa(qid: str, context: str, answer: Answer | None, question: str | None = None
        ) -> SquadExample:
    if answer is None:
        assert question is not None
        return make_example(qid, question, context, [], is_impossible=True)
    assert context[answer.start:answer.end] == answer.text, qid
    return make_example(qid, question or _question_before(context, answer), context, [answer])


PUNCT = ".,;:!?\"'()[]“”‘’—–-"


def _crossing_answer(context: str, question: str, tokenizer: BertTokenizer, window: int,
                     config: str = "default") -> Answer:
    """Words whose pieces straddle the last piece of ``window`` (Google's windows, ``config``)."""
    max_seq, stride, max_query, _ = CONFIGS[config]
    n_query = min(len(tokenizer.tokenize(question)), max_query)
    last = window * stride + max_seq - n_query - 3 - 1  # last piece of the window
    doc, _ = whitespace_split(context)
    first_piece, count = [], 0
    for word in doc:
        first_piece.append(count)
        count += len(tokenizer.tokenize(word))
    w = max(i for i, p in enumerate(first_piece) if p <= last)  # the word holding that piece
    return _answer_at(context, max(w - 1, 0), min(w + 2, len(doc) - 1), strip=PUNCT)


def real_examples(tokenizer: BertTokenizer) -> list[SquadExample]:
    """51 questions on real text: SOTU, UDHR, People's Daily, the MiniLM licence, and the real
    SQuAD, Quoref and QuAC samples (:func:`squad_samples`).

    Answers are chosen by fixed rules: whole words, words without their punctuation, parts of
    words and hyphenated words, spans over a newline or across a window boundary, accented,
    Cyrillic, CJK and emoji text; questions include one longer than 64 pieces and v2 impossible
    ones. ``tokenizer`` (uncased) only places the window-crossing answers.
    """
    out: list[SquadExample] = []
    # SOTU 1861: short context, one window in the default configuration.
    ctx = first_words(sotu_text("1861_abraham_lincoln_r.txt"), 90)
    out += [
        _qa("lincoln-word", ctx, _answer_at(ctx, 7, 7, strip=PUNCT)),       # "Representatives"
        _qa("lincoln-span", ctx, _answer_at(ctx, 14, 19)),
        _qa("lincoln-hyphen", ctx, _find(ctx, "Fellow")),                  # part of "Fellow-Citizens"
        _qa("lincoln-subword", ctx, _find(ctx, "precedented")),            # inside "unprecedented"
        _qa("lincoln-impossible", ctx, None, "Which planet did the President visit in 1861?"),
    ]
    # SOTU 2021: a long context (curly quotes, dashes) cut into several windows.
    speech = sotu_text("2021_joseph_r_biden_d.txt")
    ctx = first_words(speech, 640, skip=40)
    fixed_q = first_words(speech, 14) + "?"
    long_q = first_words(speech, 70, skip=800) + "?"
    out += [
        _qa("biden-cross-0", ctx, _crossing_answer(ctx, fixed_q, tokenizer, 0), fixed_q),
        _qa("biden-cross-1", ctx, _crossing_answer(ctx, fixed_q, tokenizer, 1), fixed_q),
        _qa("biden-cross-small", ctx, _crossing_answer(ctx, fixed_q, tokenizer, 5, "small"),
            fixed_q),
        _qa("biden-quote", ctx, _find(ctx, "’s", 2)),
        _qa("biden-dash", ctx, _answer_at(ctx, 300, 303)),
        _qa("biden-long-question", ctx, _answer_at(ctx, 500, 502, strip=PUNCT), long_q),
        _qa("biden-impossible", ctx, None, long_q),
        _qa("biden-last", ctx, _answer_at(ctx, 637, 639)),
    ]
    # UDHR: German, French, Russian, Spanish paragraphs (accents, Cyrillic, newlines, numbers).
    for name, lang in (("de", "de-1996"), ("fr", "fr"), ("ru", "ru"), ("es", "es")):
        ctx = udhr_paragraphs(lang, 4)
        accented = next(i for i, (s, e) in enumerate(word_spans(ctx))
                        if any(ord(c) > 127 and c.isalpha() for c in ctx[s:e]))
        newline = ctx.index("\n")
        w_nl = sum(1 for s, _ in word_spans(ctx) if s < newline)  # first word of line 2
        out += [
            _qa(f"udhr-{name}-accent", ctx, _answer_at(ctx, accented, accented, strip=PUNCT)),
            _qa(f"udhr-{name}-newline", ctx, _answer_at(ctx, w_nl - 2, w_nl + 1, strip=PUNCT)),
        ]
    # People's Daily (a run of CJK with no spaces = one SQuAD word) inside English text.
    zh = peoples_daily_sentences(1, 3)
    ctx = (first_words(sotu_text("1790_george_washington_n.txt"), 25) + " "
           + "".join(zh[0]) + " " + " ".join(zh[1]) + " (" + "".join(zh[2]) + ")")
    out += [
        _qa("zh-word", ctx, _find(ctx, zh[0][3])),
        _qa("zh-run", ctx, _find(ctx, "".join(zh[0][1:3]))),
        _qa("zh-spaced", ctx, _find(ctx, " ".join(zh[1][1:4]))),
        _qa("zh-paren", ctx, _find(ctx, "".join(zh[2][:2]))),
    ]
    # Characters the tokenizer drops, splits, expands or does not know, inserted in SOTU text.
    base = first_words(sotu_text("1790_george_washington_n.txt"), 60, skip=30).split(" ")
    specials = ["naïve", "Ångström", "😀🎉", "x\u00a0y", "ﬁnance", "İstanbul", "zero\u200bwidth",
                "Straße", "東京都", "Œuvre,"]
    for k, word in enumerate(specials):
        base.insert(3 + 5 * k, word)
    ctx = " ".join(base)
    out += [
        _qa("special-emoji", ctx, _find(ctx, "😀🎉")),
        _qa("special-nbsp", ctx, _find(ctx, "x\u00a0y")),            # Google skips it in training
        _qa("special-ligature", ctx, _find(ctx, "ﬁnance")),
        _qa("special-dotted", ctx, _find(ctx, "İstanbul")),
        _qa("special-zero-width", ctx, _find(ctx, "zero\u200bwidth")),
        _qa("special-cjk", ctx, _find(ctx, "京都")),
        _qa("special-span", ctx, _find(ctx, "naïve")),
        _qa("special-impossible", ctx, None, "Where is Ångström?"),
    ]
    # The MiniLM licence: a tiny context with a long question, and section text.
    licence = re.sub(r"\s+", " ", (artifacts.minilm_dir() / "LICENSE").read_text(encoding="utf-8"))
    ctx = first_words(licence, 3)
    out.append(_qa(TINY_QID, ctx, _answer_at(ctx, 1, 1), first_words(licence, 40, skip=60) + "?"))
    ctx = first_words(licence, 120, skip=14)
    out += [_qa("license-definition", ctx, _find(ctx, "\"License\"")),
            _qa("license-percent", ctx, _find(ctx, "50%"))]
    return out + squad_samples()


def examples_digest(examples: list[SquadExample]) -> str:
    """sha256 of everything :func:`real_examples` decides (ids, texts, answers, flags)."""
    rows = [[e.qid, e.question, e.context, [[a.text, a.start] for a in e.answers],
             e.is_impossible] for e in examples]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def squad_json(examples: list[SquadExample]) -> dict[str, Any]:
    """The examples as a SQuAD v2.0 file (one paragraph per example)."""
    paragraphs = [{"context": e.context, "qas": [{
        "id": e.qid, "question": e.question, "is_impossible": e.is_impossible,
        "answers": [{"text": a.text, "answer_start": a.start} for a in e.answers]}]}
        for e in examples]
    return {"version": "v2.0", "data": [{"title": "real", "paragraphs": paragraphs}]}


def final_text_cases() -> list[tuple[str, str]]:
    """``(pred_text, orig_text)`` pairs for ``get_final_text`` (used in both casing modes)."""
    return [
        ("steve smith", "Steve Smith's"), ("1895", "(1895-1943)."), ("cafe", "Café,"),
        ("naive", "naïve"), ("京 都", "東京都"), ("[UNK]", "😀🎉"), ("x y", "x\u00a0y"),
        ("finance", "ﬁnance"), ("istanbul", "İstanbul"), ("zerowidth", "zero\u200bwidth"),
        ("strasse", "Straße"), ("smith ' s", "Smith's"), ("the union", "the Union."),
        ("Union", "the Union."), ("union", "UNION"), ("", "anything"), ("ab", "a b"),
        ("- 1943", "(1895-1943)."), ("ΣΟΦΟΣ", "ΣΟΦΟΣ"), ("σοφος", "ΣΟΦΟΣ"),
    ]


def make_logits(lengths: list[int], seed: str, ties: bool,
                boost: dict[int, range] | None = None
                ) -> tuple[list[list[float]], list[list[float]]]:
    """Deterministic start/end logits per feature (only ``random.Random.random`` is used).

    Uniform in [-6, 6) rounded to 4 decimals, or integers in [-4, 4] (``ties``); every third
    feature's ``[CLS]`` gets +7. ``boost`` (feature index -> positions) adds 100 there.
    """
    rng = random.Random(seed)
    starts, ends = [], []
    for k, n in enumerate(lengths):
        rows = []
        for _ in range(2):
            row = [float(int(rng.random() * 9) - 4) if ties else round(rng.random() * 12 - 6, 4)
                   for _ in range(n)]
            if k % 3 == 0:
                row[0] += 7.0
            for p in (boost or {}).get(k, ()):
                row[p] += 100.0
            rows.append(row)
        starts.append(rows[0])
        ends.append(rows[1])
    return starts, ends


def tiny_boost(records: list[dict[str, Any]], version_2: bool) -> dict[int, range]:
    """Positions boosted in the features of :data:`TINY_QID` (``records``: fixture features).

    v1: the question, so no valid span is among the top starts (Google's "empty" fallback when
    the question has 20 pieces or more). v2: the context, since Google's script crashes when an
    example has no valid non-null span.
    """
    out = {}
    for k, r in enumerate(records):
        if r["qid"] == TINY_QID:
            offset = r["doc_offset"]
            out[k] = range(offset, len(r["input_ids"]) - 1) if version_2 else range(1, offset - 1)
    return out


# ---------------------------------------------------------------------------------------------
# Google's code


def load_google_squad(path: str | Path) -> ModuleType:
    """Import Google's ``run_squad.py`` (folder or file path) with stub TensorFlow and friends."""
    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    flags = types.SimpleNamespace(FLAGS=types.SimpleNamespace())

    def define(name: str, default: Any, *_: Any) -> None:
        setattr(flags.FLAGS, name, default)

    flags.DEFINE_string = flags.DEFINE_bool = flags.DEFINE_integer = define
    flags.DEFINE_float = define
    flags.mark_flag_as_required = lambda name: None

    def silent(*_: Any, **__: Any) -> None:
        return None

    tf = types.ModuleType("tensorflow")
    tf.flags = flags  # type: ignore[attr-defined]
    tf.logging = types.SimpleNamespace(info=silent, warning=silent, set_verbosity=silent,
                                       INFO=0)  # type: ignore[attr-defined]
    tf.gfile = types.SimpleNamespace(GFile=open, Open=open,
                                     MakeDirs=os.makedirs)  # type: ignore[attr-defined]
    six = types.ModuleType("six")
    six.PY2, six.PY3 = False, True  # type: ignore[attr-defined]
    six.iteritems = lambda d: iter(d.items())  # type: ignore[attr-defined]
    stubs: dict[str, ModuleType] = {"tensorflow": tf, "six": six,
                                    "modeling": types.ModuleType("modeling"),
                                    "optimization": types.ModuleType("optimization")}
    saved = {name: sys.modules.get(name) for name in [*stubs, "tokenization"]}
    sys.modules.update(stubs)
    try:
        sys.modules["tokenization"] = _load(folder / "tokenization.py", "tokenization")
        return _load(folder / "run_squad.py", "google_run_squad")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def google_features(rs: ModuleType, examples: list[SquadExample], vocab: Path, config: str,
                    is_training: bool) -> tuple[list[Any], list[Any]]:
    """Google's examples (read back from SQuAD JSON) and features for one configuration."""
    max_seq, stride, max_query, lower = CONFIGS[config]
    rs.FLAGS.version_2_with_negative = True
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "squad.json"
        path.write_text(json.dumps(squad_json(examples)), encoding="utf-8")
        g_examples = rs.read_squad_examples(str(path), is_training=is_training)
    tokenizer = rs.tokenization.FullTokenizer(vocab_file=str(vocab), do_lower_case=lower)
    features: list[Any] = []
    rs.convert_examples_to_features(g_examples, tokenizer, max_seq, stride, max_query,
                                    is_training, features.append)
    return g_examples, features


def feature_record(g_examples: list[Any], f: Any) -> dict[str, Any]:
    """One Google feature as stored in the fixture (padding removed)."""
    n = sum(f.input_mask)
    positions = sorted(f.token_to_orig_map)
    assert positions == list(range(positions[0], positions[-1] + 1))
    return {"qid": g_examples[f.example_index].qas_id, "window": f.doc_span_index,
            "input_ids": f.input_ids[:n], "segment_ids": f.segment_ids[:n],
            "doc_offset": positions[0], "words": [f.token_to_orig_map[p] for p in positions],
            "max_context": "".join("1" if f.token_is_max_context[p] else "0" for p in positions)}


def google_predictions(rs: ModuleType, g_examples: list[Any], features: list[Any],
                       starts: list[list[float]], ends: list[list[float]], version_2: bool,
                       lower: bool) -> dict[str, Any]:
    """Google's ``write_predictions`` (n_best 20, max answer 30) read back from its files."""
    rs.FLAGS.version_2_with_negative = version_2
    rs.FLAGS.verbose_logging = False
    results = [rs.RawResult(unique_id=f.unique_id, start_logits=s, end_logits=e)
               for f, s, e in zip(features, starts, ends, strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        names = [os.path.join(tmp, n) for n in ("p.json", "nbest.json", "null.json")]
        rs.write_predictions(g_examples, features, results, 20, 30, lower, *names)
        loaded = [json.loads(Path(n).read_text()) if Path(n).exists() else {} for n in names]
    for entries in loaded[1].values():
        for entry in entries:  # 12 significant digits are plenty for a 1e-6 comparison
            entry["probability"] = float(f"{entry['probability']:.12g}")
    return {"predictions": loaded[0], "nbest": loaded[1], "null_odds": loaded[2]}


def google_outputs(google_dir: str | Path, examples: list[SquadExample], vocab: Path,
                   configs: list[str] | None = None) -> dict[str, Any]:
    """Everything the fixture stores, computed by Google's code (``configs``: default all)."""
    rs = load_google_squad(google_dir)
    out: dict[str, Any] = {"configs": {}, "final_text": []}
    for config in configs or list(CONFIGS):
        lower = CONFIGS[config][3]
        g_examples, feats = google_features(rs, examples, vocab, config, is_training=False)
        t_examples, train_feats = google_features(rs, examples, vocab, config, is_training=True)
        records = [feature_record(g_examples, f) for f in feats]
        train = [[t_examples[f.example_index].qas_id, f.doc_span_index, f.start_position,
                  f.end_position] for f in train_feats]  # same ids as in prediction mode
        assert [r["input_ids"] for r in records if r["qid"] in {t[0] for t in train}] == \
            [feature_record(t_examples, f)["input_ids"] for f in train_feats]
        preds = {}
        lengths = [len(r["input_ids"]) for r in records]
        for run, (version_2, ties) in PREDICTION_RUNS.items():
            starts, ends = make_logits(lengths, f"{SEED}-{config}-{run}", ties,
                                       tiny_boost(records, version_2))
            preds[run] = google_predictions(rs, g_examples, feats, starts, ends, version_2, lower)
        out["configs"][config] = {"features": records, "train_features": train,
                                  "predictions": preds}
    for lower in (True, False):
        for pred, orig in final_text_cases():
            out["final_text"].append([pred, orig, lower, rs.get_final_text(pred, orig, lower)])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("google", nargs="?", default=os.environ.get("BERTKIT_GOOGLE_BERT"),
                        help="folder with Google's run_squad.py and tokenization.py "
                             "(or env BERTKIT_GOOGLE_BERT)")
    args = parser.parse_args(argv)
    if not args.google:
        parser.error("give the folder of Google's run_squad.py or set BERTKIT_GOOGLE_BERT")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = Path(args.google)
    folder = folder.parent if folder.is_file() else folder
    vocab = artifacts.uncased_vocab()
    t0 = time.perf_counter()
    examples = real_examples(BertTokenizer(vocab))
    payload = {
        "examples_sha256": examples_digest(examples),
        "vocab_sha256": artifacts.sha256_file(vocab),
        "google_sha256": {n: artifacts.sha256_file(folder / n)
                          for n in ("run_squad.py", "tokenization.py")},
        "configs_used": CONFIGS, "seed": SEED,
        **google_outputs(folder, examples, vocab),
    }
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(FIXTURE, "wb", mtime=0) as f:  # mtime=0: identical bytes on regeneration
        f.write(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    n_feats = {c: len(v["features"]) for c, v in payload["configs"].items()}
    logger.info("%d examples, features %s, %.1fs -> %s (%d bytes)", len(examples), n_feats,
                time.perf_counter() - t0, FIXTURE, FIXTURE.stat().st_size)


if __name__ == "__main__":
    main()
