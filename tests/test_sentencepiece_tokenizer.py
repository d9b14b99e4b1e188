"""ALBERT's SentencePiece tokenizer against transformers' AlbertTokenizer from the same model.

No real ``spiece.model`` is on the registries, so the test trains a unigram model with the
``sentencepiece`` library on real text (UDHR and Wikipedia lines of the parity corpus) with
ALBERT's specials at ALBERT's ids. bertkit reads the model file with its own protobuf reader;
transformers converts it with ``protobuf``. Compared on the 20,000 parity-corpus lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from realdata import fetch_or_skip
from tokenizer_corpus import adversarial_lines, pairs_in_chunks, real_lines

from bertkit.tokenization.base import truncate_balanced, truncate_longest_first
from bertkit.tokenization.sentencepiece import SentencePieceError, SentencePieceTokenizer

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")
pytest.importorskip("google.protobuf")  # transformers reads spiece.model with it


@pytest.fixture(scope="module")
def lines() -> list[str]:
    out = fetch_or_skip(real_lines) + adversarial_lines()
    assert len(out) == 20_000
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, lines) -> Path:
    d = tmp_path_factory.mktemp("albert-spm")
    (d / "train.txt").write_text("\n".join(lines[:14_000:2]), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(d / "train.txt"), model_prefix=str(d / "spiece"), vocab_size=4000,
        model_type="unigram", pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        control_symbols=["[CLS]", "[SEP]", "[MASK]"], character_coverage=0.9995,
        input_sentence_size=7000, shuffle_input_sentence=False, num_threads=1,
        minloglevel=2)
    (d / "train.txt").unlink()
    return d


@pytest.mark.real
def test_single_texts_ids_and_offsets_equal_transformers(model_dir, lines):
    ours = SentencePieceTokenizer(model_dir / "spiece.model")
    ref = transformers.AlbertTokenizer.from_pretrained(model_dir)
    got = ours(lines, max_length=None, truncation=False, padding=False, return_tensors=None,
               return_offsets=True)
    want = ref(lines, return_offsets_mapping=True)
    bad = [i for i in range(len(lines)) if got["input_ids"][i] != want["input_ids"][i]]
    assert not bad, (len(bad), lines[bad[0]][:80])
    bad = [i for i in range(len(lines))
           if got["offsets"][i] != [tuple(o) for o in want["offset_mapping"][i]]]
    assert not bad, (len(bad), lines[bad[0]][:80])
    # [MASK] written in the text is the mask token, as transformers has it
    assert ours.encode("a [MASK] b")[2] == ours.mask_token_id


@pytest.mark.real
def test_pairs_equal_transformers_but_for_googles_truncation_on_odd_budgets(model_dir, lines):
    ours = SentencePieceTokenizer(model_dir / "spiece.model")
    ref = transformers.AlbertTokenizer.from_pretrained(model_dir)
    a, b = lines[:4000:2], lines[1:4000:2]
    for max_length in (19, 67, 303):  # even budgets (16, 64, 300): the two rules agree
        got = ours(a, b, max_length=max_length, padding=False, return_tensors=None,
                   return_offsets=True)
        want = pairs_in_chunks(ref, a, b, ("input_ids", "token_type_ids", "offset_mapping"),
                               max_length=max_length, truncation=True,
                               return_offsets_mapping=True, return_token_type_ids=True)
        assert got["input_ids"] == want["input_ids"]
        assert got["token_type_ids"] == want["token_type_ids"]
        assert got["offsets"] == [[tuple(o) for o in row] for row in want["offset_mapping"]]
    # Odd budgets: bertkit keeps Google's _truncate_seq_pair (the original ALBERT's), which gives
    # the odd token to A; transformers' Rust rule gives it to B. Pinned, and the only difference.
    enc_a, enc_b = ours.encode_batch(a), ours.encode_batch(b)
    got = ours(a, b, max_length=64, padding=False, return_tensors=None)["input_ids"]
    want = pairs_in_chunks(ref, a, b, ("input_ids",), max_length=64, truncation=True)["input_ids"]
    differ = 0
    for x, y, g, w in zip(enc_a, enc_b, got, want, strict=True):
        google = truncate_longest_first(len(x), len(y), 61)
        assert len(g) == sum(google) + 3 and len(w) == sum(truncate_balanced(len(x), len(y), 61)) + 3
        assert g[1:1 + google[0]] == x[:google[0]]
        differ += g != w
    assert differ > 0 and all(len(g) <= 64 for g in got)


@pytest.mark.real
def test_word_starts_decode_and_round_trip(model_dir, tmp_path):
    ours = SentencePieceTokenizer(model_dir / "spiece.model")
    tokens = ours.tokenize("Hello   World, naïve")
    assert tokens[0].startswith("▁") and ours.is_word_start(tokens[0])
    assert [t for t in tokens if ours.is_word_start(t)] == [t for t in tokens if t.startswith("▁")]
    assert ours.decode(ours.encode("Hello   World, naïve")) == "hello world, naive"
    ours.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "AlbertTokenizer"
    again = SentencePieceTokenizer.from_pretrained(tmp_path)
    assert again.encode("Hello there", "again") == ours.encode("Hello there", "again")
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert ref("Hello there", "again")["input_ids"] == ours.encode("Hello there", "again")


def test_missing_corrupt_and_non_unigram_models_are_named(tmp_path, model_dir):
    with pytest.raises(SentencePieceError, match=r"nope\.model: cannot read"):
        SentencePieceTokenizer(tmp_path / "nope.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"\xff\xff\xff\xff not a model")
    with pytest.raises(SentencePieceError, match=r"bad\.model: not a SentencePiece model"):
        SentencePieceTokenizer(bad)
    (tmp_path / "text.txt").write_text("\n".join(["some real words here"] * 50))
    spm.SentencePieceTrainer.train(input=str(tmp_path / "text.txt"),
                                   model_prefix=str(tmp_path / "bpe"), vocab_size=30,
                                   model_type="bpe", minloglevel=2)
    with pytest.raises(SentencePieceError, match=r"bpe\.model: .* of type 2"):
        SentencePieceTokenizer(tmp_path / "bpe.model")
