"""Pre-training data for every family's tokenizer: whole-word masking, n-gram masking, SOP.

Real text (SOTU) with each tokenizer: Google's WordPiece vocabulary, the REAL GPT-2 byte-level BPE
files with RoBERTa's specials, and a SentencePiece unigram model trained here on SOTU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from realdata import fetch_or_skip

from bertkit import artifacts
from bertkit.data import masking as M
from bertkit.data.pretraining import InstanceSettings, create_pretraining_data
from bertkit.data.shards import PretrainingDataset, inspect_data
from bertkit.data.vocab_files import data_tokenizer

ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@pytest.fixture(scope="module")
def sotu(tmp_path_factory) -> Path:
    """The first 2,400 lines of the real SOTU corpus (documents kept whole, blank-line separated)."""
    from bertkit.data.corpora import fetch_corpus

    lines = fetch_or_skip(fetch_corpus, "sotu").read_text(encoding="utf-8").splitlines()
    path = tmp_path_factory.mktemp("sotu") / "sotu.txt"
    path.write_text("\n".join(lines[:2400]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    """GPT-2's real vocabulary and merges with RoBERTa's specials appended; a prefix space, so
    that every line's first word carries its ``Ġ`` like every other word."""
    encoder, merges = fetch_or_skip(artifacts.gpt2_bpe_files)
    d = tmp_path_factory.mktemp("gpt2-bpe")
    vocab = json.loads(encoder.read_text(encoding="utf-8"))
    for token in ROBERTA_SPECIALS:
        vocab[token] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (d / "merges.txt").write_bytes(merges.read_bytes())
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "RobertaTokenizer", "add_prefix_space": True}), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory, sotu: Path) -> Path:
    """A SentencePiece unigram model (2,000 pieces, ALBERT's specials) trained on SOTU."""
    spm = pytest.importorskip("sentencepiece")
    d = tmp_path_factory.mktemp("albert-spm")
    spm.SentencePieceTrainer.train(
        input=str(sotu), model_prefix=str(d / "spiece"), vocab_size=2000, model_type="unigram",
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"],
        character_coverage=1.0, num_threads=1, minloglevel=2)
    (d / "spiece.vocab").unlink()
    return d


@pytest.fixture(scope="module")
def tokenizer_dirs(uncased_vocab: Path, gpt2_dir: Path, spm_dir: Path) -> dict[str, Path]:
    return {"wordpiece": uncased_vocab, "bpe": gpt2_dir, "spm": spm_dir}


def _make(out: Path, text: Path, vocab: Path, workers: int = 1, **kw) -> dict:
    s = InstanceSettings(**{"dupe_factor": 1, **kw})
    return create_pretraining_data([str(text)], vocab, out, s, workers=workers, progress=False)


def _masked(ds: PretrainingDataset) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """bool [n, L] of the masked positions, and the features, of every row in stored order."""
    f = ds.features(np.arange(ds.total_rows))
    pos, w = f["masked_lm_positions"], f["masked_lm_weights"] > 0
    masked = np.zeros(f["input_ids"].shape, dtype=bool)
    np.put_along_axis(masked, np.where(w, pos, 0), w, axis=1)  # position 0 is never masked
    return masked, f


@pytest.mark.real
@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "spm"])
def test_whole_word_masking_masks_every_piece_of_a_word(kind: str, tokenizer_dirs, sotu: Path,
                                                         tmp_path: Path) -> None:
    """Static whole-word masks against the words the tokenizer's ``is_word_start`` defines on the
    original ids (the same rows, unmasked, from a dynamic run with the same seed)."""
    vocab = tokenizer_dirs[kind]
    _make(tmp_path / "s", sotu, vocab, do_whole_word_mask=True)
    _make(tmp_path / "d", sotu, vocab, do_whole_word_mask=True, masking="dynamic")
    tok = data_tokenizer(tmp_path / "s")
    assert type(tok).__name__ == {"wordpiece": "BertTokenizer", "bpe": "ByteLevelBPETokenizer",
                                  "spm": "SentencePieceTokenizer"}[kind]
    d = PretrainingDataset(tmp_path / "d")
    raw = d.rows(np.arange(d.total_rows))
    orig, length = raw["input_ids"].astype(np.int64), raw["length"].astype(np.int64)
    tokens = tok.convert_ids_to_tokens(range(tok.vocab_size))
    cont = M.continuation_table(tokens, tok.is_word_start)[orig]
    gids = M.group_ids(M.candidate_mask(orig, length, tok.cls_token_id, tok.sep_token_id), cont)
    masked, f = _masked(PretrainingDataset(tmp_path / "s"))
    multi = 0
    for i in range(len(orig)):
        hit = np.unique(gids[i][masked[i]])
        assert (hit >= 0).all(), "a special token was masked"
        whole = np.isin(gids[i], hit)
        assert np.array_equal(whole, masked[i]), (kind, i, tok.convert_ids_to_tokens(orig[i]))
        multi += int((np.bincount(gids[i][masked[i]]) > 1).any())
    assert multi > len(orig) // 4, f"only {multi} of {len(orig)} rows mask a multi-piece word"
    assert "instances" in inspect_data(tmp_path / "s", 1)


@pytest.mark.real
def test_byte_level_bpe_line_starts_begin_words(gpt2_dir: Path, sotu: Path, tmp_path: Path
                                                ) -> None:
    """Without ``add_prefix_space`` (RoBERTa's default) a line's first word has no ``Ġ``; it
    still starts a word: whole-word groups follow ``is_word_start`` except at line starts."""
    d = tmp_path / "tok"
    d.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (d / name).write_bytes((gpt2_dir / name).read_bytes())
    _make(tmp_path / "d", sotu, d, do_whole_word_mask=True, masking="dynamic")
    tok = data_tokenizer(tmp_path / "d")
    assert not tok.add_prefix_space
    ds = PretrainingDataset(tmp_path / "d")
    raw = ds.rows(np.arange(ds.total_rows))
    L = raw["input_ids"].shape[1]
    stored = np.unpackbits(raw["continuation"], axis=1, count=L).astype(bool)
    tokens = tok.convert_ids_to_tokens(range(tok.vocab_size))
    oracle = M.continuation_table(tokens, tok.is_word_start)[raw["input_ids"].astype(np.int64)]
    assert not (stored & ~oracle).any()
    line_starts = (oracle & ~stored).sum(axis=1)  # the row's first sentence, unless truncated
    assert (line_starts >= 1).mean() > 0.9 and line_starts.mean() > 1.5


def test_ngram_draw_makes_the_spans_taken_follow_one_over_n() -> None:
    """Synthetic rows of 128 pieces (k = 19): spans of 1/2/3 pieces at 6/11, 3/11, 2/11 and
    exactly k predictions per row; ALBERT's plain 1/n draw would give about 57/27/16%."""
    rng = np.random.default_rng(0)
    N, L = 3000, 128
    ids = rng.integers(5, 1000, (N, L))
    ids[:, 0], ids[:, 60], ids[:, -1] = 1, 2, 2
    lengths = np.full(N, L)
    noise = M.generator_noise(rng, (N, L), 1000, ngram=True)
    out = M.mask_batch(ids, lengths, noise, cls_id=1, sep_id=2, mask_id=3, masked_lm_prob=0.15,
                       max_predictions_per_seq=20, ngram=3)
    share = out.span_counts.sum(0) / out.span_counts.sum()
    np.testing.assert_allclose(share, np.array([6, 3, 2]) / 11, atol=0.015)
    assert (out.counts == 19).all()
    assert not np.isin(out.positions[:, :19], [0, 60, L - 1]).any()
    assert M.mask_batch(ids[:2], lengths[:2], noise.__class__(*[a[:2] for a in (
        noise.group_keys, noise.u_mask, noise.u_keep, noise.random_ids)]), cls_id=1, sep_id=2,
        mask_id=3, masked_lm_prob=0.15, max_predictions_per_seq=20).span_counts is None
    with pytest.raises(ValueError, match="u_ngram"):
        M.mask_batch(ids[:2], lengths[:2], M.MaskNoise(*[a[:2] for a in (
            noise.group_keys, noise.u_mask, noise.u_keep, noise.random_ids)]), cls_id=1,
            sep_id=2, mask_id=3, masked_lm_prob=0.15, max_predictions_per_seq=20, ngram=3)


@pytest.mark.real
def test_albert_data_ngram_spans_sop_and_workers(spm_dir: Path, sotu: Path,
                                                 tmp_path: Path) -> None:
    """ALBERT's recipe on real text with its SentencePiece model: ``--objective sop --ngram 3``.

    Span lengths 1/2/3 at 6/11, 3/11, 2/11 (within 1.5 points) with Google's budget
    (min(20, max(1, round(0.15 * length))) predictions per row); SOP: the pair is swapped in
    50% +- 2% of the chunks that have two segments; shards byte-identical with 1 or 2 workers;
    dynamic n-gram masking keeps the budget too."""
    kw = dict(objective="sop", ngram=3, dupe_factor=3)
    one = _make(tmp_path / "one", sotu, spm_dir, workers=1, **kw)
    two = _make(tmp_path / "two", sotu, spm_dir, workers=2, **kw)
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]
    c = one["counts"]
    spans = np.array([c["ngram_spans_1"], c["ngram_spans_2"], c["ngram_spans_3"]])
    share = spans / spans.sum()
    print("n-gram span shares", share.round(4).tolist(), "of", int(spans.sum()), "spans")
    np.testing.assert_allclose(share, np.array([6, 3, 2]) / 11, atol=0.015)
    ds = PretrainingDataset(tmp_path / "one")
    f = ds.features(np.arange(ds.total_rows))
    length = f["input_mask"].sum(1)
    budget = M.num_to_predict(length, 0.15, 20)
    assert (f["masked_lm_weights"].sum(1) == budget).mean() > 0.999
    assert (f["masked_lm_weights"].sum(1) <= budget).all()
    multi = c["chunks"] - c["single_sentence_chunks"]
    swapped = c["random_next_multi"] / multi
    labels = f["next_sentence_labels"]
    print("SOP swapped share", round(swapped, 4), "of", multi, "two-segment chunks; label-1 "
          "share", round(float(labels.mean()), 4), "with", c["single_sentence_chunks"],
          "one-sentence chunks (random B)")
    assert abs(swapped - 0.5) < 0.02
    assert int(labels.sum()) == c["random_next_multi"] + c["random_next"]
    _make(tmp_path / "dyn", sotu, spm_dir, masking="dynamic", **kw)
    fd = PretrainingDataset(tmp_path / "dyn").features(np.arange(500))
    assert (fd["masked_lm_weights"].sum(1) == M.num_to_predict(fd["input_mask"].sum(1), 0.15,
                                                                20)).mean() > 0.99


@pytest.mark.real
def test_bpe_directory_tokenized_in_workers_gives_the_same_bytes(gpt2_dir: Path, sotu: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch) -> None:
    """The tokenizer directory's encoder is shipped to the worker processes (as WordPiece's is):
    with lines tokenized in 2 processes the shards equal those of 1 (RoBERTa's recipe + WWM)."""
    from bertkit.data import pretraining

    monkeypatch.setattr(pretraining, "_PARALLEL_TOKENIZE_LINES", 200)  # 2,400 lines: split
    kw = dict(objective="none", do_whole_word_mask=True, masking="dynamic")
    one = _make(tmp_path / "one", sotu, gpt2_dir, workers=1, **kw)
    two = _make(tmp_path / "two", sotu, gpt2_dir, workers=2, **kw)
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]
    assert one["vocab"]["tokenizer_class"] == "RobertaTokenizer"
    assert one["vocab"]["files"] == ["vocab.json", "merges.txt", "tokenizer_config.json"]
