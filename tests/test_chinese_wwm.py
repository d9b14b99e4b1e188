"""Chinese whole-word masking with supplied word boundaries, on the real People's Daily corpus.

Instances are made from the first ~1 MB of ``peoples-daily.words.txt`` (words separated by spaces)
with the real bert-base-chinese vocab (lower-cased, as Google uses it), ``--word-boundaries
whitespace``, Google's defaults otherwise and dupe_factor 2 (~6,000 instances). An independent
oracle tokenizes each word on its own, which gives the word of every token of the corpus; each
row's A and B segments are located in that token stream, so every row position is mapped back to
its word, and the masks are checked word by word.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from realdata import fetch_or_skip

from bertkit.data import pretraining as P
from bertkit.data.shards import PretrainingDataset

pytestmark = pytest.mark.real

_SLICE_BYTES = 1_000_000
_KEY = 8  # segments are located by (a hash of) their first _KEY tokens


@pytest.fixture(scope="module")
def words_slice(tmp_path_factory) -> Path:
    """The first documents of ``peoples-daily.words.txt``, about 1 MB."""
    from bertkit.data.corpora import fetch_corpus, words_path_for

    src = words_path_for(fetch_or_skip(fetch_corpus, "peoples-daily"))
    lines = src.read_text(encoding="utf-8").split("\n")
    n = size = 0
    while n < len(lines) and (size < _SLICE_BYTES or lines[n].strip()):
        size += len(lines[n].encode()) + 1
        n += 1
    out = tmp_path_factory.mktemp("pd") / "pd.words.txt"
    out.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return out


class _Oracle:
    """Token ids and word numbers of the whole slice, each word tokenized on its own."""

    def __init__(self, path: Path, vocab: Path) -> None:
        from bertkit.tokenization.tokenizer import BertTokenizer

        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").split("\n")]
        words = [w for ln in lines if ln for w in ln.split(" ")]
        unique = sorted(set(words))
        tok = BertTokenizer(vocab, do_lower_case=True)
        pieces = dict(zip(unique, tok.encode_batch(unique, fast=True), strict=True))
        ids = [pieces[w] for w in words]
        self.ids = np.fromiter((i for p in ids for i in p), dtype=np.int64)
        self.word = np.repeat(np.arange(len(words)), [len(p) for p in ids])
        # a line's tokens are its words' tokens (BERT splits on whitespace first)
        sample = [ln for ln in lines if ln][::50]
        assert tok.encode_batch(sample) == [[i for w in ln.split(" ") for i in pieces[w]]
                                            for ln in sample]
        self._keys: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _hash(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted hashes of every n-gram of the stream, and the n-grams' start positions."""
        if n not in self._keys:
            m = len(self.ids) - n + 1
            h = np.zeros(m, dtype=np.uint64)
            with np.errstate(over="ignore"):
                for k in range(n):
                    h = h * np.uint64(1_000_003) + self.ids[k:k + m].astype(np.uint64)
            order = np.argsort(h, kind="stable")
            self._keys[n] = (h[order], order)
        return self._keys[n]

    def words_of(self, seg: np.ndarray) -> np.ndarray | None:
        """Word numbers (relative to the first) of a segment of ids; None if not uniquely known."""
        n = len(seg)
        keys, pos = self._hash(min(n, _KEY))
        h = np.uint64(0)
        with np.errstate(over="ignore"):
            for i in seg[:_KEY].tolist():
                h = h * np.uint64(1_000_003) + np.uint64(i)
        starts = pos[np.searchsorted(keys, h):np.searchsorted(keys, h, side="right")]
        sigs = {tuple((self.word[p:p + n] - self.word[p]).tolist()) for p in starts.tolist()
                if np.array_equal(self.ids[p:p + n], seg)}
        return np.array(sigs.pop()) if len(sigs) == 1 else None


@pytest.fixture(scope="module")
def oracle(words_slice: Path, chinese_vocab: Path) -> _Oracle:
    return _Oracle(words_slice, chinese_vocab)


def _rows(d: Path) -> np.ndarray:
    index = json.loads((d / "index.json").read_text())
    return np.concatenate([np.load(d / s["file"]) for s in index["shards"]])


def _make(d: Path, words_slice: Path, vocab: Path, **kw) -> np.ndarray:
    settings = P.InstanceSettings(dupe_factor=2, word_boundaries="whitespace", **kw)
    P.create_pretraining_data([str(words_slice)], vocab, d, settings, workers=1, progress=False)
    return _rows(d)


def _google_num_to_predict(length: int) -> int:
    return min(20, max(1, int(round(length * 0.15))))


def _word_stats(rows: np.ndarray, oracle: _Oracle) -> tuple[np.ndarray, np.ndarray, int]:
    """Per word touched by a mask: (masked tokens, tokens of the word in the row); rows skipped.

    Positions are mapped to words through each row's original ids (``masked_lm_ids`` put back);
    a row is skipped when a segment cannot be located uniquely in the corpus.
    """
    n, L = rows["input_ids"].shape
    word = np.full((n, L), -1, dtype=np.int64)
    masked = np.zeros((n, L), dtype=bool)
    skipped = 0
    for r, row in enumerate(rows):
        pos = row["masked_lm_positions"][: int(row["num_masked"])].astype(np.int64)
        ids = row["input_ids"].astype(np.int64)
        ids[pos] = row["masked_lm_ids"][: len(pos)]
        length, a_len = int(row["length"]), int(row["a_length"])
        segs = [(lo, hi, oracle.words_of(ids[lo:hi]))
                for lo, hi in ((1, a_len - 1), (a_len, length - 1))]
        if any(w is None for _, _, w in segs):
            skipped += 1
            continue
        for (lo, hi, w), offset in zip(segs, (0, 1 << 20), strict=True):
            word[r, lo:hi] = (r << 21) + offset + w
        masked[r, pos] = True
    valid = word >= 0
    _, inv = np.unique(word[valid], return_inverse=True)
    total = np.bincount(inv)
    n_masked = np.bincount(inv, weights=masked[valid]).astype(np.int64)
    touched = n_masked > 0
    return n_masked[touched], total[touched], skipped


@pytest.fixture(scope="module")
def wwm_rows(words_slice: Path, chinese_vocab: Path, tmp_path_factory) -> np.ndarray:
    return _make(tmp_path_factory.mktemp("wwm"), words_slice, chinese_vocab,
                 do_whole_word_mask=True)


@pytest.fixture(scope="module")
def plain_rows(words_slice: Path, chinese_vocab: Path, tmp_path_factory) -> np.ndarray:
    return _make(tmp_path_factory.mktemp("plain"), words_slice, chinese_vocab)


def test_whole_words_are_masked_in_all_their_tokens(wwm_rows: np.ndarray,
                                                   oracle: _Oracle) -> None:
    assert len(wwm_rows) > 5000
    masked, in_row, skipped = _word_stats(wwm_rows, oracle)
    assert skipped < 0.02 * len(wwm_rows)  # rows with a segment not located uniquely
    assert (masked == in_row).all(), "a word is masked in only some of its tokens"
    # multi-token words are masked as groups, and often (most Chinese words have 2+ characters)
    share_multi = float((in_row >= 2).mean())
    assert share_multi > 0.4, share_multi
    assert in_row.sum() > 30_000


def test_masked_count_never_exceeds_googles_rule(wwm_rows: np.ndarray) -> None:
    rule = np.array([_google_num_to_predict(int(n)) for n in wwm_rows["length"]])
    counts = wwm_rows["num_masked"].astype(np.int64)
    assert (counts <= rule).all() and (counts >= 1).all()
    assert (counts == rule).mean() > 0.5  # groups rarely have to be skipped
    for row in wwm_rows[:500]:  # never [CLS], [SEP] or padding
        pos = row["masked_lm_positions"][: int(row["num_masked"])]
        a_len, length = int(row["a_length"]), int(row["length"])
        assert (pos > 0).all() and (pos < length - 1).all() and (pos != a_len - 1).all()
        assert len(set(pos.tolist())) == len(pos)


def test_without_whole_word_masking_groups_are_single_tokens(plain_rows: np.ndarray,
                                                             wwm_rows: np.ndarray,
                                                             oracle: _Oracle) -> None:
    rule = np.array([_google_num_to_predict(int(n)) for n in plain_rows["length"]])
    assert (plain_rows["num_masked"] == rule).all()  # exactly Google's number, token by token
    masked, in_row, skipped = _word_stats(plain_rows, oracle)
    assert skipped < 0.02 * len(plain_rows)
    multi = in_row >= 2
    whole = float((masked[multi] == in_row[multi]).mean())
    assert whole < 0.3, whole  # a touched multi-token word is rarely masked whole by chance
    # same segments and row order with or without whole-word masking: only the masks differ
    np.testing.assert_array_equal(plain_rows["length"], wwm_rows["length"])
    np.testing.assert_array_equal(plain_rows["a_length"], wwm_rows["a_length"])


def test_dynamic_whole_word_masking_keeps_the_words(words_slice: Path, chinese_vocab: Path,
                                                    oracle: _Oracle, tmp_path: Path) -> None:
    _make(tmp_path, words_slice, chinese_vocab, do_whole_word_mask=True, masking="dynamic")
    b = {k: np.asarray(v) for k, v in PretrainingDataset(tmp_path, seed=3).batch(
        list(range(600))).items()}
    length = b["input_mask"].sum(axis=1)
    rows = np.zeros(600, dtype=[("input_ids", np.int64, (128,)), ("length", np.int64),
                                ("a_length", np.int64), ("num_masked", np.int64),
                                ("masked_lm_positions", np.int64, (20,)),
                                ("masked_lm_ids", np.int64, (20,))])
    rows["input_ids"], rows["length"] = b["input_ids"], length
    rows["a_length"] = (b["segment_ids"] == 0).sum(axis=1) - (128 - length)  # padding is 0 too
    rows["num_masked"] = b["masked_lm_weights"].sum(axis=1)
    rows["masked_lm_positions"], rows["masked_lm_ids"] = (b["masked_lm_positions"],
                                                          b["masked_lm_ids"])
    masked, in_row, skipped = _word_stats(rows, oracle)
    assert skipped < 20 and (masked == in_row).all()
    assert float((in_row >= 2).mean()) > 0.4


def test_supplied_words_are_whitespace_chunks(chinese_vocab: Path) -> None:
    """A word is a chunk between BERT's whitespace (also on lines that take the slow path)."""
    from bertkit.data.bulk_tokenize import WordPieceEncoder

    enc = WordPieceEncoder(chinese_vocab, do_lower_case=True)
    cases = {"中国 人民\x0b银行 ＡＢＣ": [0, 1, 0, 1, 1, 1],  # \x0b is dropped, not a space
             "x\u3000y\u00a0z": [0, 0, 0], "日本\u2028东京 大阪": [0, 1, 0, 1, 0, 1],
             "\x0c开头 结尾\x85": [0, 1, 0, 1], "\x00\x01 空": [0]}
    for line, want in cases.items():
        ids, lens, cont = enc.encode([line], with_words=True)
        assert cont is not None and cont.astype(int).tolist()[: len(want)] == want, line
        assert ids.tolist() == enc.encode([line])[0].tolist() == enc.encode_reference([line])[0]
