"""``train-vocab --kind bpe|unigram``: RoBERTa's and ALBERT's files, loaded by bertkit and transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from realdata import fetch_or_skip

from bertkit.data.corpora import fetch_corpus, read_documents
from bertkit.tokenization import AutoTokenizer
from bertkit.tokenization.family_vocab import (
    ALBERT_USER_DEFINED,
    albert_preprocess,
    train_bpe,
    train_unigram,
)
from bertkit.tokenization.sentencepiece import CONTROL, UNKNOWN, read_spm_model
from bertkit.tokenization.vocab_training import TrainVocabArgs, run_train_vocab

TEXT = """The quick brown fox jumps over the lazy dog.
Résumé writing is an art; naïve writers fail! ``Quoted'' text (with parens) costs £5 - or €6.
The government of the United States shall report on the state of the Union.
Unbelievably, the unbelievers believed the believable belief.
北京是中国的首都。

Mr. Smith paid $1,500.25 for 3 tickets (two adults & one child).
Running runners ran; the runner runs quickly and repeatedly.
"""
PROBES = ["The naïve UNION believed (£5) writers.", "  Running   foxes, 北京! ", "<mask> and [MASK]",
          "``quoted'' text", "Ünïcödé ﬁne ½ café", "tabs\there\nand newlines"]
# bertkit's byte-level BPE encodes a "<mask>" written in the text as bytes, transformers as the
# special token (a difference of bpe.py, not of the trained files): left out of the BPE probes
BPE_PROBES = [p.replace("<mask>", "mask") for p in PROBES]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT * 20, encoding="utf-8")
    return path


def _same_ids(out: Path, hf_class: str, lines: list[str]) -> int:
    """Lines whose ids bertkit and transformers agree on (single texts and pairs)."""
    transformers = pytest.importorskip("transformers")
    ours = AutoTokenizer.from_pretrained(out)
    hf = getattr(transformers, hf_class).from_pretrained(str(out))
    same = 0
    for a, b in zip(lines, lines[1:] + lines[:1], strict=True):
        same += (ours.encode(a) == hf(a)["input_ids"] and
                 ours.encode(a, b) == hf(a, b)["input_ids"])
    return same


def test_bpe_layout_and_loaders(corpus: Path, tmp_path: Path) -> None:
    out = train_bpe([corpus], 400, out=tmp_path / "roberta")
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 400 and sorted(vocab.values()) == list(range(400))
    assert [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])][:5] == [
        "<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert {"Ġ", "Ċ", "Ã"} <= set(vocab), "all 256 byte symbols"
    merges = (out / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert merges[0] == "#version: 0.2" and len(merges) - 2 == 400 - 5 - 256
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "RobertaTokenizer"
    assert _same_ids(out, "RobertaTokenizerFast", BPE_PROBES) == len(BPE_PROBES)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.unk_token_id not in tok.encode("any bytes: ☃ 𝔘 \x00")
    assert not list(out.glob(".*tmp"))


def test_unigram_layout_and_loaders(corpus: Path, tmp_path: Path) -> None:
    out = train_unigram([corpus], 100, out=tmp_path / "albert")
    spm = read_spm_model(out / "spiece.model")
    pieces = [p for p, _, _ in spm.pieces]
    assert len(pieces) == 100
    assert pieces[:13] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]", *ALBERT_USER_DEFINED]
    kinds = [k for _, _, k in spm.pieces[:5]]
    assert kinds == [CONTROL, UNKNOWN, CONTROL, CONTROL, CONTROL]
    assert not any(c.isupper() for p in pieces[13:] for c in p), "uncased"
    assert "é" not in "".join(pieces), "accents stripped"
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "AlbertTokenizer" and config["do_lower_case"] is True
    assert _same_ids(out, "AlbertTokenizer", PROBES) == len(PROBES)


def test_unigram_cased(corpus: Path, tmp_path: Path) -> None:
    out = train_unigram([corpus], 100, lowercase=False, out=tmp_path / "albert")
    pieces = "".join(p for p, _, _ in read_spm_model(out / "spiece.model").pieces)
    assert "T" in pieces and "é" in pieces
    assert _same_ids(out, "AlbertTokenizer", PROBES) == len(PROBES)


def test_albert_preprocess() -> None:
    assert albert_preprocess("  ``Résumé''\t of  NAÏVE ") == '"resume" of naive'
    assert albert_preprocess("Résumé", lowercase=False) == "Résumé"


@pytest.mark.parametrize("train", [train_bpe, train_unigram])
def test_bad_input_writes_nothing(train, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.txt"):
        train([empty], 300, out=out)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("good line\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt:2: not valid UTF-8"):
        train([latin1], 300, out=out)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train([tmp_path / "missing.txt"], 300, out=out)
    text = tmp_path / "text.txt"
    text.write_text(TEXT * 5, encoding="utf-8")
    with pytest.raises(ValueError, match="vocab_size must exceed"):
        train([text], 12, out=out)
    assert not out.exists()


def test_unigram_vocab_the_text_cannot_fill(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("ab ab ba\n" * 5, encoding="utf-8")
    with pytest.raises(ValueError, match=r"text.txt: SentencePiece cannot train a 500-piece") as e:
        train_unigram([text], 500, out=tmp_path / "out")
    assert "\n" not in str(e.value) and "trainer_interface" not in str(e.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("kind", "files"), [("bpe", {"vocab.json", "merges.txt"}),
                                             ("unigram", {"spiece.model"})])
def test_cli(kind: str, files: set[str], corpus: Path, tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / kind
    size = 300 if kind == "bpe" else 100
    args = TrainVocabArgs(input=[str(corpus)], vocab_size=size, out=out, kind=kind)  # type: ignore[arg-type]
    assert run_train_vocab(args) == 0
    assert f"{size} tokens ({kind}" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == files | {"tokenizer_config.json"}
    bad = TrainVocabArgs(input=[str(corpus)], vocab_size=5, out=tmp_path / "bad",
                         kind=kind)  # type: ignore[arg-type]
    assert run_train_vocab(bad) == 2 and not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------- real SOTU


@pytest.fixture(scope="module")
def sotu_split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A quarter of SOTU's addresses to train on, and every 20th address held out."""
    path = fetch_or_skip(fetch_corpus, "sotu")
    d = tmp_path_factory.mktemp("sotu_family_vocab")
    held: list[str] = []
    with open(d / "train.txt", "w", encoding="utf-8") as f:
        for i, doc in enumerate(read_documents(path)):
            if i % 20 == 7:
                held.extend(doc)
            elif i % 4 == 0:
                f.write("\n".join(doc) + "\n\n")
    return d / "train.txt", held


def _unk_rate(out: Path, lines: list[str]) -> tuple[float, int]:
    tok = AutoTokenizer.from_pretrained(out)
    ids = [i for row in tok.encode_batch(lines) for i in row]
    return ids.count(tok.unk_token_id) / len(ids), len(ids)


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize(("kind", "hf_class"), [("bpe", "RobertaTokenizerFast"),
                                                ("unigram", "AlbertTokenizer")])
def test_sotu_held_out_ids_match_transformers(kind: str, hf_class: str,
                                              sotu_split: tuple[Path, list[str]],
                                              tmp_path: Path) -> None:
    train_file, held = sotu_split
    train = train_bpe if kind == "bpe" else train_unigram
    out = train([train_file], 8000, out=tmp_path / kind)
    assert len(held) > 2000
    unk, n = _unk_rate(out, held)
    same = _same_ids(out, hf_class, held)
    print(f"SOTU held-out, {kind} 8000: {len(held)} lines, {n} tokens, unk rate {unk:.5%}, "
          f"{same}/{len(held)} lines (single and pair) identical to transformers' {hf_class}")
    assert same == len(held)
    assert unk == 0.0 if kind == "bpe" else unk < 0.002
    if kind == "unigram":  # the file itself, in the sentencepiece library after ALBERT's cleanup
        spm = pytest.importorskip("sentencepiece")
        sp = spm.SentencePieceProcessor(model_file=str(out / "spiece.model"))
        ours = AutoTokenizer.from_pretrained(out).encode_batch(held)
        assert ours == [sp.encode(albert_preprocess(s)) for s in held]
