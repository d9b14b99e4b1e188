"""Tokenizer tests: unit cases in the style of Google's own, and parity with Google on 20,000 lines.

Parity: bertkit's reference path == bertkit's fast path == Google's ids (stored fixtures made by
``tests/tools/make_google_fixtures.py``; also Google's code directly when ``BERTKIT_GOOGLE_BERT``
points to its ``tokenization.py``), in three modes: uncased vocab, Chinese vocab, and cased mode
(``do_lower_case=False`` with the uncased vocab; no cased vocab is available here).
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import tokenizer_corpus as corpus
import torch
from realdata import fetch_or_skip

from bertkit import artifacts
from bertkit.tokenization import BertTokenizer, basic
from bertkit.tokenization.tokenizer import FastEngine, _unicode_tables, truncate_longest_first
from bertkit.tokenization.wordpiece import wordpiece, wordpiece_spans

SMALL_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "want", "##want", "##ed", "wa", "un",
               "runn", "##ing", ",", "low", "lowest", "中", "!", "hello", "world", "a", "b", "c",
               "##a", "é"]


@pytest.fixture()
def small(tmp_path: Path) -> BertTokenizer:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(SMALL_VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer(vocab)


# ---------------------------------------------------------------------------------------------
# Basic tokenizer (cases modelled on Google's tokenization_test.py, written afresh)


def test_character_classes() -> None:
    assert all(basic.is_whitespace(c) for c in " \t\r\n\u00a0\u3000")
    assert not any(basic.is_whitespace(c) for c in "A-\u2028")
    assert all(basic.is_control(c) for c in "\u0005\u200b\ufeff\x7f")
    assert not any(basic.is_control(c) for c in "A \t\r\n\ue000\U0001F600")
    assert all(basic.is_punctuation(c) for c in "-$`.^|~+<=>\u00bf\u3001")
    assert not any(basic.is_punctuation(c) for c in "A 1\u20ac\u00a9")
    assert basic.is_cjk("\u4e2d") and basic.is_cjk("\U0002B820") and not basic.is_cjk("\uac00")


def test_basic_lower() -> None:
    assert basic.basic_tokenize(" \tHeLLo!how  \n Are yoU?  ") == \
        ["hello", "!", "how", "are", "you", "?"]
    assert basic.basic_tokenize("H\u00e9llo") == ["hello"]
    assert basic.basic_tokenize("ah\u535a\u63a8zz") == ["ah", "\u535a", "\u63a8", "zz"]


def test_basic_cased() -> None:
    assert basic.basic_tokenize(" \tHäLLo!how  \n Are yoU?  ", do_lower_case=False) == \
        ["HäLLo", "!", "how", "Are", "yoU", "?"]


def test_basic_tricky() -> None:
    # control and zero-width characters vanish (joining words), U+2028 splits, private use stays
    assert basic.basic_tokenize("a\u200bb\x00c\ufffdd\u2028e\ue000") == ["abcd", "e\ue000"]
    # a word of only combining marks disappears after accent stripping
    assert basic.basic_tokenize("x \u0301\u0302 y") == ["x", "y"]
    # Python lower-cases a final sigma in context; İ lower-cases to i + U+0307 (then stripped)
    assert basic.basic_tokenize("ΟΔΥΣΣΕΥΣ İs") == ["οδυσσευς", "is"]
    assert basic.basic_tokenize("a--b...") == ["a", "-", "-", "b", ".", ".", "."]


def test_origins_follow_expansions() -> None:
    # "İ" -> "i̇" -> "i"; Hangul syllables decompose into 3 jamo, all from one character
    assert basic.basic_tokenize_with_origins("İ한,") == [("i한", [0, 1, 1, 1]), (",", [2])]
    assert basic.basic_tokenize_with_origins("e\u0301x") == [("ex", [0, 2])]
    for text in ["Ünïcödé straße 北京, ΣΟΦΟΣ!", "a\u0316\u0301b \u1d15e", "x\u00a0y"]:
        for lower in (True, False):
            words = basic.basic_tokenize_with_origins(text, lower)
            assert [w for w, _ in words] == basic.basic_tokenize(text, lower)


def test_unicode_tables_cover_python_whitespace() -> None:
    labels, _ = _unicode_tables()
    kinds = ("other", "drop", "space", "punct", "mn", "cn", "cs")
    for cp in range(0x110000):
        ch = chr(cp)
        if ch.isspace():
            assert kinds[labels[cp]] in ("drop", "space"), hex(cp)
        elif basic.is_control(ch):
            assert kinds[labels[cp]] == "drop", hex(cp)


# ---------------------------------------------------------------------------------------------
# WordPiece


def test_wordpiece() -> None:
    vocab = set(SMALL_VOCAB)
    assert wordpiece("", vocab) == []
    assert wordpiece("unwanted", vocab) == ["un", "##want", "##ed"]
    assert wordpiece("unwantedX", vocab) == ["[UNK]"]
    assert wordpiece("running", vocab) == ["runn", "##ing"]
    assert wordpiece_spans("running", vocab) == [("runn", 0, 4), ("##ing", 4, 7)]


def test_wordpiece_length_limit() -> None:
    vocab = {"a", "##a"}
    assert wordpiece("a" * 200, vocab) == ["a"] + ["##a"] * 199
    assert wordpiece("a" * 201, vocab) == ["[UNK]"]
    assert wordpiece("a" * 10, vocab, max_piece_chars=1) == wordpiece("a" * 10, vocab)


# ---------------------------------------------------------------------------------------------
# BertTokenizer API


def test_tokenize_and_ids(small: BertTokenizer) -> None:
    assert small.tokenize("UNwant\u00e9d,running") == ["un", "##want", "##ed", ",", "runn", "##ing"]
    assert small.tokenize_batch(["UNwant\u00e9d,running"]) == [small.tokenize("UNwant\u00e9d,running")]
    assert small.convert_tokens_to_ids(["un", "##want", "nope"]) == [9, 6, 1]
    assert small.convert_ids_to_tokens([9, 6]) == ["un", "##want"]
    assert (small.pad_token_id, small.unk_token_id, small.cls_token_id, small.sep_token_id,
            small.mask_token_id) == (0, 1, 2, 3, 4)
    assert len(small) == small.vocab_size == len(SMALL_VOCAB)


def test_encode_pairs_and_truncation(small: BertTokenizer) -> None:
    assert small.encode("hello world") == [2, 17, 18, 3]
    assert small.encode("hello", "world") == [2, 17, 3, 18, 3]
    assert small.encode_with_types("hello", "world") == ([2, 17, 3, 18, 3], [0, 0, 0, 1, 1])
    assert small.encode("a b c a b", max_length=4) == [2, 19, 20, 3]
    # longest first: A has 5, B has 2 -> drop from A's end until 3 + 2 fit in 8 - 3
    ids, types = small.encode_with_types("a b c a b", "c c", max_length=8)
    assert ids == [2, 19, 20, 21, 3, 21, 21, 3] and types == [0] * 5 + [1] * 3
    assert truncate_longest_first(4, 4, 5) == (3, 2)  # ties drop from B
    assert truncate_longest_first(1, 9, 4) == (1, 3)
    with pytest.raises(ValueError):
        small.encode("a", "b", max_length=2)


def test_call_batch(small: BertTokenizer) -> None:
    out = small(["hello world", "a"], ["a b", "c"])
    assert out["input_ids"].dtype == torch.long
    assert out["input_ids"].tolist() == [[2, 17, 18, 3, 19, 20, 3], [2, 19, 3, 21, 3, 0, 0]]
    assert out["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0]]
    assert out["attention_mask"].tolist() == [[1] * 7, [1] * 5 + [0, 0]]
    one = small("hello", return_tensors=None, padding="max_length", max_length=6)
    assert one["input_ids"] == [[2, 17, 3, 0, 0, 0]] and one["attention_mask"] == [[1, 1, 1, 0, 0, 0]]
    ragged = small(["a b c", "a"], return_tensors=None, padding=False)
    assert ragged["input_ids"] == [[2, 19, 20, 21, 3], [2, 19, 3]]
    assert small(["a b c"], max_length=3)["input_ids"].tolist() == [[2, 19, 3]]
    with pytest.raises(ValueError):
        small(["a b c", "a"], padding=False)


def test_call_offsets(small: BertTokenizer) -> None:
    out = small(["Hello, wOrld"], ["  unwanted"], return_offsets=True, return_tensors=None)
    assert out["offsets"] == [[(0, 0), (0, 5), (5, 6), (7, 12), (0, 0), (2, 4), (4, 8), (8, 10),
                               (0, 0)]]
    assert out["sequence_ids"] == [[None, 0, 0, 0, None, 1, 1, 1, None]]


def test_decode(small: BertTokenizer) -> None:
    ids = small.encode("unwanted running, hello")
    assert small.decode(ids) == "unwanted running , hello"
    assert small.decode(torch.tensor(ids), skip_special_tokens=False) == \
        "[CLS] unwanted running , hello [SEP]"


def test_save_load_roundtrip(small: BertTokenizer, tmp_path: Path) -> None:
    cased = BertTokenizer(small.vocab_file, do_lower_case=False)
    cased.save_pretrained(tmp_path / "out")
    again = BertTokenizer.from_pretrained(tmp_path / "out")
    assert again.vocab == small.vocab and again.do_lower_case is False
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert hf.do_lower_case is False if hasattr(hf, "do_lower_case") else True
    assert hf("hello world a")["input_ids"] == again.encode("hello world a")


def test_bad_vocab_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="nope"):
        BertTokenizer(missing)
    v = tmp_path / "v.txt"
    v.write_text("[PAD]\n[CLS]\n[SEP]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"v\.txt.*\[UNK\]"):
        BertTokenizer(v)
    v.write_text("[UNK]\n[CLS]\n[SEP]\nhello\n[CLS]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"v\.txt:5: duplicate .*line 2"):
        BertTokenizer(v)


def test_fast_engine_fallback(small: BertTokenizer) -> None:
    engine = small.engine
    assert engine.needs_fallback("ΟΔΥΣΣΕΥΣ") and not engine.needs_fallback("Hello, world é 中")
    assert engine.needs_fallback("bad \udc80 surrogate")
    assert small.encode_batch(["ΟΔΥΣΣΕΥΣ x\udc80"]) == small.encode_batch(["ΟΔΥΣΣΕΥΣ x\udc80"],
                                                                          fast=False)
    cased = FastEngine(small.vocab, do_lower_case=False)
    assert cased.unsafe_ranges == [(0xD800, 0xDFFF)]  # only lone surrogates: all classes exact


# ---------------------------------------------------------------------------------------------
# Parity with Google on the 20,000-line corpus


@pytest.fixture(scope="session")
def lines() -> list[str]:
    return fetch_or_skip(corpus.corpus)


@pytest.fixture(scope="session")
def encoded(lines: list[str]) -> dict[str, tuple[BertTokenizer, list, list]]:
    """Per mode: (tokenizer, reference ids+offsets, fast ids+offsets) for every corpus line."""
    cache: dict[str, tuple[BertTokenizer, list, list]] = {}

    def get(mode: str) -> tuple[BertTokenizer, list, list]:
        if mode not in cache:
            tok = BertTokenizer(fetch_or_skip(corpus.vocab_path, mode), corpus.MODES[mode][1])
            cache[mode] = (tok, tok.encode_batch_with_offsets(lines, fast=False),
                           tok.encode_batch_with_offsets(lines))
        return cache[mode]

    return get  # type: ignore[return-value]


@pytest.mark.real
def test_parity_corpus_is_real_and_multilingual(lines: list[str]) -> None:
    """14,000 real lines (UDHR translations and Wikipedia leads) in at least 10 scripts."""
    real = lines[: corpus.N_REAL]
    assert len(real) == 14_000 and len(lines) == corpus.N_REAL + corpus.N_ADVERSARIAL
    scripts = Counter(corpus.main_script(line) for line in real)
    assert len([s for s, n in scripts.items() if n >= 50 and s != "NONE"]) >= 30, scripts
    assert scripts["LATIN"] >= 5_000 and scripts["CJK"] >= 1_000 and scripts["ARABIC"] >= 500
    accented = sum(1 for line in real if any(ord(c) > 127 and c.isalpha() for c in line)
                   and corpus.main_script(line) == "LATIN")
    assert accented >= 4_000


def _mismatches(lines: list[str], got: list[list[int]], digests: list[str]) -> list[str]:
    bad = [i for i, ids in enumerate(got) if corpus.ids_digest(ids) != digests[i]]
    return [f"line {i}: {lines[i][:80]!r}" for i in bad]


@pytest.mark.real
@pytest.mark.parametrize("mode", list(corpus.MODES))
def test_parity_with_google(mode: str, lines: list[str], encoded) -> None:
    fixture = corpus.read_fixture(mode)
    assert fixture["corpus_sha256"] == corpus.corpus_sha256(lines), \
        "corpus changed: regenerate fixtures with tests/tools/make_google_fixtures.py"
    assert fixture["n_lines"] == len(lines) >= 20_000
    tok, ref, fast = encoded(mode)
    assert fixture["vocab_sha256"] == artifacts.sha256_file(tok.vocab_file)
    ref_ids = [ids for ids, _ in ref]
    fast_ids = [ids for ids, _ in fast]
    assert ref_ids[: len(fixture["ids_head"])] == fixture["ids_head"]
    assert _mismatches(lines, ref_ids, fixture["digests"]) == []
    assert _mismatches(lines, fast_ids, fixture["digests"]) == []
    assert [i for i in range(len(lines)) if ref[i][1] != fast[i][1]] == []  # identical offsets
    google_path = os.environ.get("BERTKIT_GOOGLE_BERT")
    if google_path:
        google = corpus.load_google_tokenization(google_path).FullTokenizer(
            str(tok.vocab_file), do_lower_case=tok.do_lower_case)
        google_ids = [google.convert_tokens_to_ids(google.tokenize(x)) for x in lines]
        assert [i for i, g in enumerate(google_ids) if g != ref_ids[i]] == []


@pytest.mark.real
def test_offsets_map_back(lines: list[str], encoded) -> None:
    tok, _, fast = encoded("uncased")
    checked = 0
    for text, (ids, offsets) in zip(lines[: corpus.N_REAL : 4], fast[: corpus.N_REAL : 4], strict=True):
        tokens = tok.convert_ids_to_tokens(ids)
        word_start, word = 0, ""
        for k, (token, (s, e)) in enumerate(zip(tokens, offsets, strict=True)):
            assert 0 <= s < e <= len(text)
            if token == "[UNK]":
                continue
            piece = token.removeprefix("##")
            assert piece in "".join(basic.basic_tokenize(text[s:e])), (text, token, s, e)
            if not token.startswith("##"):
                word_start, word = s, ""
            word += piece
            last = k + 1 == len(tokens) or not tokens[k + 1].startswith("##")
            if last:  # a whole word: its span normalises to exactly its pieces
                assert "".join(basic.basic_tokenize(text[word_start:e])) == word
            checked += 1
    assert checked > 50_000


# ---------------------------------------------------------------------------------------------
# transformers: where it follows Google and where it does not


def _hf_tokenizers(vocab: Path, lower: bool, tmp: Path) -> dict[str, object]:
    """transformers' Python port (``BertTokenizerLegacy``) and Rust-backed ``BertTokenizer``."""
    transformers = pytest.importorskip("transformers")
    out: dict[str, object] = {}
    if hasattr(transformers, "BertTokenizerLegacy"):
        out["legacy"] = transformers.BertTokenizerLegacy(vocab_file=str(vocab), do_lower_case=lower)
    # in transformers 5 the Rust class needs from_pretrained (vocab_file= alone gives all [UNK])
    BertTokenizer(vocab, do_lower_case=lower).save_pretrained(tmp)
    out["rust"] = transformers.BertTokenizer.from_pretrained(str(tmp))
    return out


@pytest.mark.real
def test_transformers_agrees_on_real_text(lines: list[str], encoded, tmp_path: Path) -> None:
    """On real multilingual Wikipedia lines transformers follows Google (measured: all 14,000)."""
    tok, ref, _ = encoded("uncased")
    sample = range(0, corpus.N_REAL, 20)
    for name, hf in _hf_tokenizers(tok.vocab_file, True, tmp_path).items():
        diff = [i for i in sample if hf.encode(lines[i], add_special_tokens=False) != ref[i][0]]
        assert diff == [], name


# (what, text, do_lower_case, legacy differs, rust differs) from Google (= bertkit)
KNOWN_DIFFERENCES = [
    ("word limit is 100 characters, Google's is 200", "a" * 150, True, True, True),
    ("Python port applies NFC (U+037E becomes ';')", "a\u037eb", False, True, False),
    ("Python port drops unassigned code points (old rule: all C* are control); Google keeps "
     "them", "a\u0378b", True, True, False),
    ("both drop private use (Co) characters; Google keeps them", "a\ue000b", True, True, True),
    ("Rust's older Unicode tables miss Mn marks new in Unicode 14 (Google strips them)",
     "a\u1ac1b", True, False, True),
]


@pytest.mark.real
@pytest.mark.parametrize("what,text,lower,legacy_differs,rust_differs", KNOWN_DIFFERENCES)
def test_transformers_known_differences(what: str, text: str, lower: bool, legacy_differs: bool,
                                        rust_differs: bool, tmp_path: Path) -> None:
    if "\u1ac1" in text and unicodedata.category("\u1ac1") != "Mn":
        pytest.skip("this Python's Unicode predates U+1AC1")
    vocab = fetch_or_skip(artifacts.uncased_vocab)
    ours = BertTokenizer(vocab, do_lower_case=lower).encode_batch([text])[0]
    expect = {"legacy": legacy_differs, "rust": rust_differs}
    for name, hf in _hf_tokenizers(vocab, lower, tmp_path).items():
        differs = hf.encode(text, add_special_tokens=False) != ours
        assert differs == expect[name], f"transformers {name} changed on: {what}"
