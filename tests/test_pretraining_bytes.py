"""The exact bytes of the shards for fixed small inputs and seeds, pinned.

Speed work on instance creation (segment loop, row assembly, masking, bulk tokenization) must not
change a single output byte for a given seed. The digests below were computed with the code
before that work (commit 32573b7) and are asserted after it; a change in the semantics on purpose
has to update them, saying why in the commit.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from realdata import fetch_or_skip

from bertkit import artifacts
from bertkit.data import pretraining as P

pytestmark = pytest.mark.real

# name -> (corpus, vocab, bytes of input, settings, sha256 over the shards' sha256 in order)
_SOP = {"objective": "sop", "masking": "dynamic", "do_whole_word_mask": True}
_NONE = {"objective": "none", "max_seq_length": 64, "max_predictions_per_seq": 10}
_WORDS = {"do_whole_word_mask": True, "word_boundaries": "whitespace"}
CASES: dict[str, tuple[str, str, int, dict[str, Any], str]] = {
    "nsp-static": ("sotu", "uncased", 300_000, {}, "8da3ab511d24658413720c638b650a2daa77b4d0828d84fec0a3744428dbc0eb"),
    "nsp-wwm": ("sotu", "uncased", 300_000, {"do_whole_word_mask": True, "random_seed": 7},
                "35411fb7c4e807e50cc53efb3e2aab44591999492d02a57ad28e1c8addd0b53e"),
    "sop-dynamic-wwm": ("sotu", "uncased", 300_000, _SOP, "baf2cc041b342fb0c0804b0fee2dc3d25f52c2cacca20627e913f668ecefc1c4"),
    "none-static": ("sotu", "uncased", 300_000, _NONE, "0d99b639c3ce9d5311fb30cda6425c04e54d92b4e794e6daf8294578a04b3cfd"),
    "chinese-words-wwm": ("peoples-daily", "chinese", 200_000, _WORDS, "bce7638e20e2349670c06922599abfa6524c925a79750a043ba7e4e1fa7440e9"),
}


def _head(src: Path, n_bytes: int, dst: Path) -> Path:
    """The first lines of ``src`` up to a blank line after ``n_bytes``."""
    lines = src.read_text(encoding="utf-8").split("\n")
    n = size = 0
    while n < len(lines) and (size < n_bytes or lines[n].strip()):
        size += len(lines[n].encode()) + 1
        n += 1
    dst.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return dst


def shards_digest(case: str, tmp: Path) -> str:
    """sha256 over the shards' sha256 (in index order) for ``case`` (1 worker, dupe_factor 2)."""
    from bertkit.data.corpora import fetch_corpus, words_path_for

    corpus, vocab_name, n_bytes, kw, _ = CASES[case]
    src = fetch_or_skip(fetch_corpus, corpus)
    vocab = fetch_or_skip(artifacts.uncased_vocab if vocab_name == "uncased"
                          else artifacts.chinese_vocab)
    if kw.get("word_boundaries") == "whitespace":
        src = words_path_for(src)
    inp = _head(src, n_bytes, tmp / f"{case}.txt")
    index = P.create_pretraining_data([str(inp)], vocab, tmp / case,
                                      P.InstanceSettings(dupe_factor=2, **kw), workers=1,
                                      progress=False)
    return hashlib.sha256("".join(s["sha256"] for s in index["shards"]).encode()).hexdigest()


@pytest.mark.parametrize("case", list(CASES))
def test_shard_bytes_are_unchanged(case: str, tmp_path: Path) -> None:
    assert shards_digest(case, tmp_path) == CASES[case][4]


def test_tokenizer_tables_are_cached_as_json(chinese_vocab: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The Unicode tables behind the fast engine are cached as JSON, reloaded, and rebuilt if
    damaged; the encoder gives the same ids whichever way the tables came."""
    from bertkit.data import bulk_tokenize as B

    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(B, "_ENCODERS", {})
    lines = ["中华人民共和国 成立 了", "Ünïcödé text, 1998年"]
    want = B.get_encoder(chinese_vocab, True).encode(lines)[0].tolist()
    cached = sorted((tmp_path / "tokenizer").glob("*.json"))
    assert [p.name.split("-")[0] for p in cached] == ["ranges", "unsafe"]
    for damage in (False, True):
        if damage:
            for p in cached:
                p.write_text("{not json")
        monkeypatch.setattr(B, "_ENCODERS", {})
        enc = B.get_encoder(chinese_vocab, True)
        assert enc.bert._engine is not None and enc.encode(lines)[0].tolist() == want
        assert enc.encode_reference(lines) == [enc.encode([x])[0].tolist() for x in lines]
    assert all(p.read_text().startswith(("{", "[")) for p in cached)  # rewritten as JSON
