"""``bertkit finetune`` with every family, on real Rotten Tomatoes snippets.

There are no real RoBERTa, DistilBERT or ALBERT weights on the registries, so each family's
pre-trained directory is a small ``transformers`` MLM model with seeded random weights and the
family's real tokenizer files: Google's uncased ``vocab.txt`` (BERT, DistilBERT), GPT-2's real
byte-level BPE files laid out as RoBERTa's ``vocab.json`` (specials first), and a SentencePiece
unigram model trained here on the Rotten Tomatoes text (ALBERT). A short run must train, export
``best/`` in the family's HF layout, and that directory must load in transformers'
``AutoModelForSequenceClassification`` (and ``AutoTokenizer``) with the same ids and logits
(1e-5) as bertkit's.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from realdata import fetch_or_skip

from bertkit import artifacts
from bertkit.cli import main
from bertkit.models.heads import load_task_model
from bertkit.tokenization import AutoTokenizer

transformers = pytest.importorskip("transformers")

FAMILIES = ("bert", "distilbert", "roberta", "albert")
FAMILY_NAMES = {"bert": "Bert", "distilbert": "DistilBert", "roberta": "Roberta",
                "albert": "Albert"}
SMALL = dict(layers=2, hidden=32, heads=2, ffn=64)
TEXTS = ["A gripping, beautifully made film.", "Tedious and badly acted from start to finish.",
         "Not bad.", "An overlong, self-indulgent mess that nonetheless has its moments of "
         "genuine wit and warmth."]


def _rt_texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").split("\n")
            if line]


@pytest.fixture(scope="module")
def rt(tmp_path_factory) -> dict[str, Path]:
    """Seeded samples of Rotten Tomatoes: 256 train, 64 dev, 32 test; and the full train split."""
    from bertkit.data.labelled import fetch_labelled, sample_split

    src = fetch_or_skip(fetch_labelled, "rotten-tomatoes")
    d = tmp_path_factory.mktemp("rt-families")
    return {"train": sample_split(src["train"], d / "train.jsonl", 256, seed=2),
            "dev": sample_split(src["dev"], d / "dev.jsonl", 64, seed=2),
            "test": sample_split(src["test"], d / "test.jsonl", 32, seed=2),
            "all_train": src["train"]}


def _wordpiece_files(d: Path, tokenizer_class: str) -> int:
    shutil.copyfile(fetch_or_skip(artifacts.uncased_vocab), d / "vocab.txt")
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": tokenizer_class, "do_lower_case": True}))
    return 30522


def _roberta_files(d: Path) -> int:
    """GPT-2's real encoder.json and merges, with RoBERTa's specials at RoBERTa's ids."""
    encoder, merges = fetch_or_skip(artifacts.gpt2_bpe_files)
    gpt2 = json.loads(encoder.read_text(encoding="utf-8"))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({t: i + 4 for t, i in gpt2.items()})
    vocab["<mask>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    shutil.copyfile(merges, d / "merges.txt")
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "RobertaTokenizer"}))
    return len(vocab)


def _albert_files(d: Path, text_file: Path) -> int:
    """A unigram SentencePiece model trained on the real Rotten Tomatoes training text."""
    spm = pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")  # transformers reads spiece.model with it
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(_rt_texts(text_file)), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(d / "spiece"), vocab_size=2000, model_type="unigram",
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"],
        character_coverage=0.9995, num_threads=1, minloglevel=2)
    corpus.unlink()
    (d / "spiece.vocab").unlink()
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "AlbertTokenizer", "do_lower_case": True}))
    return 2000


def _hf_mlm(family: str, vocab_size: int):
    """A small transformers MLM model of ``family`` with seeded random weights."""
    L, H, N, F = SMALL["layers"], SMALL["hidden"], SMALL["heads"], SMALL["ffn"]
    common = dict(vocab_size=vocab_size, max_position_embeddings=130)
    if family == "distilbert":
        config = transformers.DistilBertConfig(n_layers=L, dim=H, n_heads=N, hidden_dim=F,
                                               **common)
    elif family == "roberta":
        config = transformers.RobertaConfig(num_hidden_layers=L, hidden_size=H,
                                            num_attention_heads=N, intermediate_size=F,
                                            type_vocab_size=1, layer_norm_eps=1e-5,
                                            pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                            **common)
    else:
        cls = transformers.AlbertConfig if family == "albert" else transformers.BertConfig
        extra = dict(embedding_size=16) if family == "albert" else {}
        config = cls(num_hidden_layers=L, hidden_size=H, num_attention_heads=N,
                     intermediate_size=F, **extra, **common)
    name = {"bert": "BertForMaskedLM", "distilbert": "DistilBertForMaskedLM",
            "roberta": "RobertaForMaskedLM", "albert": "AlbertForMaskedLM"}[family]
    torch.manual_seed(0)
    return getattr(transformers, name)(config)


def pretrained_dir(family: str, d: Path, rt_train: Path) -> Path:
    """``d`` as a pre-trained model directory of ``family``: weights, config, tokenizer files."""
    d.mkdir(parents=True, exist_ok=True)
    if family in ("bert", "distilbert"):
        vocab_size = _wordpiece_files(d, "BertTokenizer" if family == "bert"
                                      else "DistilBertTokenizer")
    elif family == "roberta":
        vocab_size = _roberta_files(d)
    else:
        vocab_size = _albert_files(d, rt_train)
    _hf_mlm(family, vocab_size).save_pretrained(d)
    return d


@pytest.mark.parametrize("family", FAMILIES)
def test_finetune_classification_each_family_and_load_in_transformers(rt, tmp_path, family,
                                                                      monkeypatch):
    model_dir = pretrained_dir(family, tmp_path / "pretrained", rt["all_train"])
    run = tmp_path / "run"
    assert main(["finetune", "--task", "classification", "--model", str(model_dir),
                 "--train", str(rt["train"]), "--dev", str(rt["dev"]), "--test", str(rt["test"]),
                 "--out", str(run), "--epochs", "1", "--batch-size", "16",
                 "--max-seq-length", "64", "--lr", "1e-3", "--seed", "1"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["best_epoch"] == 1 and 0.0 <= results["dev"]["accuracy"] <= 1.0
    assert all(math.isfinite(e["train_loss"]) for e in results["epochs"])
    assert len((run / "test_results.tsv").read_text().splitlines()) == 33
    best = run / "best"
    config = json.loads((best / "config.json").read_text())
    assert config["model_type"] == family
    ours = load_task_model(best).eval()
    assert type(ours).__name__ == config["architectures"][0]
    assert type(ours).__name__.lower() == f"{family}forsequenceclassification"

    tok = AutoTokenizer.from_pretrained(best)
    enc = tok(TEXTS, max_length=64)
    hf_tok = transformers.AutoTokenizer.from_pretrained(best)
    hf_enc = hf_tok(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(enc["input_ids"], hf_enc["input_ids"])
    hf, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        best, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert type(hf).__name__ == type(ours).__name__
    with torch.inference_mode():
        want = hf.eval()(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        got = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert config["id2label"] == {"0": "fresh", "1": "rotten"}
    _predict_and_embed_equal_transformers(best, tmp_path, want, hf_tok, monkeypatch)


def _predict_and_embed_equal_transformers(best: Path, tmp_path: Path, logits: torch.Tensor,
                                          hf_tok, monkeypatch) -> None:
    """``bertkit predict`` gives transformers' class probabilities (predict rounds to 6 digits)
    and ``bertkit embed`` the mean-pooled last states of transformers' base model (1e-5)."""
    inp, out, npy = tmp_path / "in.txt", tmp_path / "pred.jsonl", tmp_path / "emb.npy"
    inp.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["predict", "--model", str(best), "--input", str(inp), "--output", str(out),
                 "--max-seq-length", "64"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    got = torch.tensor([[r["probabilities"][n] for n in ("fresh", "rotten")] for r in rows],
                       dtype=torch.float64)
    torch.testing.assert_close(got, torch.softmax(logits.double(), -1), atol=1e-6, rtol=0)

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(TEXTS) + "\n"))
    assert main(["embed", "--model", str(best), "--output", str(npy)]) == 0
    base = transformers.AutoModel.from_pretrained(best).eval()
    enc = hf_tok(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        h = base(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    want = (h * m).sum(1) / m.sum(1)
    torch.testing.assert_close(torch.from_numpy(np.load(npy)), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["distilbert", "roberta", "albert"])
def test_multiple_choice_each_family_and_load_in_transformers(rt, tmp_path, family):
    """A short MMLU run per family; ``best/`` scores choices as transformers'
    ``AutoModelForMultipleChoice`` does (1e-5) on real questions encoded by its own tokenizer."""
    from bertkit.data.labelled import fetch_labelled, sample_split
    from bertkit.data.multiple_choice import read_swag

    src = fetch_or_skip(fetch_labelled, "mmlu")
    train = sample_split(src["train"], tmp_path / "train.csv", 32, seed=1)
    dev = sample_split(src["dev"], tmp_path / "dev.csv", 16, seed=1)
    model_dir = pretrained_dir(family, tmp_path / "pretrained", rt["all_train"])
    run = tmp_path / "run"
    assert main(["finetune", "--task", "multiple-choice", "--model", str(model_dir),
                 "--train", str(train), "--dev", str(dev), "--out", str(run), "--epochs", "1",
                 "--batch-size", "8", "--max-seq-length", "64", "--seed", "1"]) == 0
    best = run / "best"
    ours = load_task_model(best).eval()
    assert type(ours).__name__ == f"{FAMILY_NAMES[family]}ForMultipleChoice"
    hf, info = transformers.AutoModelForMultipleChoice.from_pretrained(
        best, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    hf_tok = transformers.AutoTokenizer.from_pretrained(best)
    examples = read_swag(dev)[:4]
    k = len(examples[0].endings)
    enc = hf_tok([e.context for e in examples for _ in range(k)],
                 [c for e in examples for c in e.endings], padding=True, truncation=True,
                 max_length=64, return_tensors="pt")
    shaped = {n: v.reshape(len(examples), k, -1) for n, v in enc.items()}
    with torch.inference_mode():
        want = hf.eval()(**shaped).logits
        got = ours(shaped["input_ids"], shaped["attention_mask"], shaped.get("token_type_ids"))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def tokenizers(rt, tmp_path_factory) -> dict[str, object]:
    """bertkit's RoBERTa (real GPT-2 files) and ALBERT (trained here) tokenizers, and their dirs."""
    out: dict[str, object] = {}
    for family in ("roberta", "albert"):
        d = tmp_path_factory.mktemp(family)
        _roberta_files(d) if family == "roberta" else _albert_files(d, rt["all_train"])
        out[family] = AutoTokenizer.from_pretrained(d)
        out[f"{family}_dir"] = d
    return out


def test_ner_words_are_encoded_as_transformers_splits_words(rt, tokenizers):
    from bertkit.data.ner import NerSentence
    from bertkit.finetune.features import encode_ner

    texts = _rt_texts(rt["dev"])[:20]
    sentences = [NerSentence(tuple(t.split()), ("O",) * len(t.split()), str(i))
                 for i, t in enumerate(texts)]
    feats = encode_ner(sentences, tokenizers["roberta"], {"O": 0}, max_seq_length=512)
    ref = transformers.RobertaTokenizerFast.from_pretrained(tokenizers["roberta_dir"],
                                                            add_prefix_space=True)
    want = ref([list(s.tokens) for s in sentences], is_split_into_words=True)
    assert [f.input_ids for f in feats] == want["input_ids"]
    first_pieces = [[w if i == 0 or ids[i - 1] != w else None for i, w in enumerate(ids)]
                    for ids in (want.word_ids(k) for k in range(len(feats)))]
    assert [f.word_ids for f in feats] == first_pieces


@pytest.mark.parametrize("family", ["roberta", "albert"])
def test_qa_features_and_answers_by_offsets(tokenizers, family):
    from bertkit.data.squad import Answer, make_example
    from bertkit.finetune.qa import convert_examples, postprocess

    tok = tokenizers[family]
    context = ("The film opened in  1998 to mixed reviews; critics praised Kate Winslet's "
               "performance and the score, but found the second half overlong.")
    answers = [("Kate Winslet's performance", "q1"), ("the second half", "q2"), ("1998", "q3")]
    examples = [make_example(qid, f"What about {text}?", context,
                             [Answer(text, context.index(text))]) for text, qid in answers]
    feats = convert_examples(examples, tok, max_seq_length=64, doc_stride=8,
                             max_query_length=8, is_training=True)
    assert all(f.input_ids[0] == tok.cls_token_id and f.input_ids[-1] == tok.sep_token_id
               for f in feats)
    assert all(len(f.input_ids) <= 64 for f in feats)
    starts, ends = [], []
    for f in feats:  # logits that point at the training target of the window holding it
        s, e = torch.full((len(f.input_ids),), -10.0), torch.full((len(f.input_ids),), -10.0)
        if f.start_position:
            s[f.start_position], e[f.end_position] = 10.0, 10.0
        starts.append(s)
        ends.append(e)
    assert sum(bool(f.start_position) for f in feats) >= len(examples)
    preds = postprocess(examples, feats, starts, ends, max_answer_length=12)
    assert preds.predictions == {qid: text for text, qid in answers}


def test_finetune_refuses_an_unknown_family_and_a_foreign_checkpoint(rt, tmp_path, capsys):
    model_dir = pretrained_dir("distilbert", tmp_path / "m", rt["all_train"])
    config = json.loads((model_dir / "config.json").read_text())
    flags = ["finetune", "--task", "classification", "--model", str(model_dir), "--train",
             str(rt["train"]), "--dev", str(rt["dev"]), "--epochs", "1"]
    (model_dir / "config.json").write_text(json.dumps({**config, "model_type": "xlnet"}))
    assert main([*flags, "--out", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err
    assert f"{model_dir / 'config.json'}: model_type 'xlnet' is not a family" in err, err
    # a BERT config beside DistilBERT's weights
    bert = {k: v for k, v in _hf_mlm("bert", 30522).config.to_dict().items()}
    (model_dir / "config.json").write_text(json.dumps(bert))
    assert main([*flags, "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert (f"{model_dir / 'model.safetensors'}: these are the weights of a distilbert model, "
            "but config.json says model_type 'bert': key 'distilbert.") in err, err
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_ner_and_qa_runs_with_roberta_and_albert(rt, tmp_path):
    """NER (WNUT-16) with RoBERTa and SQuAD-v2-layout QA with ALBERT: train, score, export a
    directory transformers loads with its family's head."""
    from bigbench_samples import squad_v2_splits

    from bertkit.data.labelled import fetch_labelled, sample_split
    from bertkit.data.ner import read_conll
    from bertkit.data.squad import read_squad

    src = fetch_or_skip(fetch_labelled, "wnut16")
    ner = {s: sample_split(src[s], tmp_path / f"{s}.txt", n, seed=1)
           for s, n in (("train", 64), ("dev", 24))}
    labels = sorted({t for s in read_conll(src["train"]) for t in s.tags})
    (tmp_path / "squad").mkdir()
    squad = squad_v2_splits(tmp_path / "squad")
    qa = {s: sample_split(squad[s], tmp_path / f"{s}.json", n, seed=1)
          for s, n in (("train", 16), ("dev", 12))}
    for family, task, data, extra in (
            ("roberta", "ner", ner, ["--labels", ",".join(labels)]),
            ("albert", "qa", qa, ["--max-seq-length", "128", "--doc-stride", "32"])):
        model_dir = pretrained_dir(family, tmp_path / family, rt["all_train"])
        run = tmp_path / f"run-{family}"
        assert main(["finetune", "--task", task, "--model", str(model_dir), "--train",
                     str(data["train"]), "--dev", str(data["dev"]), "--out", str(run),
                     "--epochs", "1", "--batch-size", "8", *extra]) == 0
        results = json.loads((run / "results.json").read_text())
        assert 0.0 <= results["dev"]["f1"] <= 100.0
        head = "TokenClassification" if task == "ner" else "QuestionAnswering"
        hf = getattr(transformers, f"AutoModelFor{head}").from_pretrained(run / "best")
        assert type(hf).__name__ == f"{FAMILY_NAMES[family]}For{head}"
    preds = json.loads((tmp_path / "run-albert" / "dev" / "predictions.json").read_text())
    for e in read_squad(qa["dev"]):  # every answer is a piece of its context
        assert preds[e.qid] == "" or preds[e.qid] in e.context
