"""WordPiece vocabulary training: Google's layout, loads in transformers and bertkit alike."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from realdata import fetch_or_skip

from bertkit.data.corpora import fetch_corpus, read_documents
from bertkit.tokenization.vocab_training import (
    SPECIAL_TOKENS,
    TrainVocabArgs,
    expand_inputs,
    run_train_vocab,
    train_vocab,
)

TEXT = """The quick brown fox jumps over the lazy dog.
Résumé writing is an art; naïve writers fail!
The government of the United States shall report on the state of the Union.
Unbelievably, the unbelievers believed the believable belief.
北京是中国的首都。

Mr. Smith paid $1,500.25 for 3 tickets (two adults & one child).
Running runners ran; the runner runs quickly and repeatedly.
Internationalization and nationalization are national issues.
"""


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT * 20, encoding="utf-8")
    return path


def _vocab(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_layout(corpus: Path, tmp_path: Path) -> None:
    out = train_vocab([corpus], 300, out=tmp_path / "vocab.txt")
    vocab = _vocab(out)
    assert len(vocab) == 300 and len(set(vocab)) == 300
    assert vocab[:5] == list(SPECIAL_TOKENS)
    singles = {t for t in vocab if len(t) == 1}
    assert {"##" + c for c in singles} <= set(vocab), "every kept character also as ##piece"
    assert "é" not in singles and "e" in singles, "uncased: accents stripped"
    assert "T" not in singles, "uncased: lower-cased"
    assert "北" in singles and "##北" in vocab
    assert any(t.startswith("##") and len(t) > 3 for t in vocab)
    assert not list(tmp_path.glob(".*tmp"))


def test_cased(corpus: Path, tmp_path: Path) -> None:
    vocab = _vocab(train_vocab([corpus], 300, lowercase=False, out=tmp_path / "v.txt"))
    assert {"T", "é", "ï"} <= set(vocab)


def test_pads_with_unused_when_the_text_is_too_small(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    small = tmp_path / "small.txt"
    small.write_text("ab ab ab ba ba\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        vocab = _vocab(train_vocab([small], 40, out=tmp_path / "v.txt"))
    assert len(vocab) == 40 and vocab[-1].startswith("[unused")
    assert "padded" in caplog.text


def test_tokenizes_like_transformers(corpus: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    out = train_vocab([corpus], 300, out=tmp_path / "vocab.txt")
    hf = transformers.BertTokenizer(str(out), do_lower_case=True)
    toks = hf.tokenize("The believers ran quickly, naïvely! 北京")
    assert "[UNK]" not in toks and toks[-2:] == ["北", "京"]
    assert hf.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_vocab([tmp_path / "missing.txt"], 100, out=tmp_path / "v.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        train_vocab([empty], 100, out=tmp_path / "v.txt")
    with pytest.raises(ValueError):
        train_vocab([], 100, out=tmp_path / "v.txt")
    assert not (tmp_path / "v.txt").exists()


def test_too_small_vocab_size(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        train_vocab([corpus], 20, out=tmp_path / "v.txt")


def test_cli(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vocab.txt"
    args = TrainVocabArgs(input=[str(tmp_path / "*.txt")], vocab_size=250, out=out, cased=True)
    assert run_train_vocab(args) == 0
    assert "250 tokens (cased)" in capsys.readouterr().out and len(_vocab(out)) == 250
    assert expand_inputs([str(corpus), str(tmp_path / "c*.txt")]) == [corpus]
    bad = TrainVocabArgs(input=[str(tmp_path / "nothing*.txt")], vocab_size=250, out=out)
    assert run_train_vocab(bad) == 2


# ----------------------------------------------------------------------------- real SOTU


@pytest.fixture(scope="module")
def sotu_vocab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """An 8,000-piece uncased vocab trained on SOTU minus every 20th address (12 held out)."""
    path = fetch_or_skip(fetch_corpus, "sotu")
    d = tmp_path_factory.mktemp("sotu_vocab")
    held: list[str] = []
    with open(d / "train.txt", "w", encoding="utf-8") as f:
        for i, doc in enumerate(read_documents(path)):
            if i % 20 == 7:
                held.extend(doc)
            else:
                f.write("\n".join(doc) + "\n\n")
    return train_vocab([d / "train.txt"], 8000, out=d / "vocab.txt"), held


@pytest.mark.real
@pytest.mark.slow
def test_sotu_vocab_unk_rate_and_transformers(sotu_vocab: tuple[Path, list[str]]) -> None:
    transformers = pytest.importorskip("transformers")
    vocab_path, held = sotu_vocab
    assert len(_vocab(vocab_path)) == 8000 and len(held) > 2000
    hf = transformers.BertTokenizer(str(vocab_path), do_lower_case=True)
    tokens = [t for s in held for t in hf.tokenize(s)]
    unk = tokens.count("[UNK]") / len(tokens)
    print(f"SOTU held-out: {len(held)} sentences, {len(tokens)} tokens, UNK rate {unk:.5%}")
    assert unk < 0.005


@pytest.mark.real
@pytest.mark.slow
def test_sotu_vocab_bertkit_matches_transformers(sotu_vocab: tuple[Path, list[str]]) -> None:
    transformers = pytest.importorskip("transformers")
    try:
        from bertkit.tokenization import BertTokenizer
    except ImportError as e:  # pragma: no cover - the tokenizer lands in a sibling change
        pytest.skip(f"bertkit.tokenization.BertTokenizer is not available yet: {e}")
    vocab_path, held = sotu_vocab
    ours = BertTokenizer(vocab_path, do_lower_case=True)
    hf = transformers.BertTokenizer(str(vocab_path), do_lower_case=True)
    same = 0
    mismatches = []
    for s in held:
        a, b = ours.tokenize(s), hf.tokenize(s)
        if a == b and ours.convert_tokens_to_ids(a) == hf.convert_tokens_to_ids(b):
            same += 1
        elif len(mismatches) < 3:
            mismatches.append((s, a, b))
    print(f"bertkit vs transformers on held-out SOTU: {same}/{len(held)} sentences identical")
    assert same == len(held), mismatches
