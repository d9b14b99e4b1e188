"""Google's checkpoint directories load like any model and convert to Hugging Face, without TF.

The small fixtures in ``tests/fixtures/tf/`` were written by TensorFlow's own Saver
(``tests/tools/make_tf_fixtures.py``); their ``expected.safetensors`` is TensorFlow's read-back.
The real-weight checks use Google-layout copies of the real all-MiniLM-L6-v2 and BERT-Tiny MLM
that the same tool writes into the cache with ``--real``; transformers on the original
safetensors is the oracle.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from realdata import fetch_or_skip
from safetensors.torch import load_file

from bertkit import artifacts
from bertkit.convert.google import convert_google_dir, guess_do_lower_case
from bertkit.convert.hf import CheckpointError
from bertkit.models.bert import BertForPreTraining, BertModel
from bertkit.models.heads import BertForQuestionAnswering, BertForSequenceClassification

transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent / "fixtures" / "tf"


def _expected_hf(variant: str) -> dict[str, torch.Tensor]:
    """TensorFlow's read-back of a fixture in HF names, mapped here by Google's documented rules
    (independently of bertkit's map): kernels transposed, gamma/beta, the heads' own names."""
    heads = {"cls/predictions/output_bias": "cls.predictions.bias",
             "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
             "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
             "output_weights": "classifier.weight", "output_bias": "classifier.bias",
             "cls/squad/output_weights": "qa_outputs.weight",
             "cls/squad/output_bias": "qa_outputs.bias"}
    out = {}
    for name, value in load_file(FIXTURES / variant / "expected.safetensors").items():
        if name == "global_step" or name.endswith(("adam_m", "adam_v")) or name.startswith("extra/"):
            continue
        if name in heads:
            out[heads[name]] = value
            continue
        key = name.replace("/", ".")
        for i in range(24):
            key = key.replace(f"layer_{i}.", f"layer.{i}.")
        if key.endswith("_embeddings"):
            key += ".weight"
        if key.endswith(".kernel"):
            key, value = key[: -len("kernel")] + "weight", value.T
        key = key.replace(".gamma", ".weight").replace(".beta", ".bias")
        out[key] = value.contiguous()
    return out


def _ids(vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (3, 12), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return ids, mask, types


def _hf_model(cls_name: str, variant: str, **config_kw):
    """transformers' class built from the fixture's config and TF's values (our mapping unused)."""
    cfg = json.loads((FIXTURES / variant / "bert_config.json").read_text())
    config = transformers.BertConfig(**cfg, **config_kw)
    model = getattr(transformers, cls_name)(config).eval()
    state = _expected_hf(variant)  # Google's encoder names carry HF's ``bert.`` prefix already
    if cls_name == "BertForQuestionAnswering":  # HF's has no pooler; Google's code always makes one
        state = {k: v for k, v in state.items() if not k.startswith("bert.pooler.")}
    if cls_name == "BertModel":
        state = {k.removeprefix("bert."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("decoder" in k for k in missing), (missing, unexpected)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model


@pytest.mark.parametrize("variant", ["pretraining", "two_shards", "fp16"])
def test_google_dir_loads_as_bert_for_pretraining(variant):
    ours = BertForPreTraining.from_pretrained(FIXTURES / variant).eval()
    ref = _hf_model("BertForPreTraining", "pretraining" if variant == "fp16" else variant)
    ids, mask, types = _ids(ours.config.vocab_size)
    with torch.inference_mode():
        got = ours(ids, mask, types)
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
    if variant == "fp16":  # the same seeded weights stored as float16: close, not equal
        torch.testing.assert_close(got.mlm_logits, want.prediction_logits, atol=2e-2, rtol=0)
        return
    torch.testing.assert_close(got.mlm_logits, want.prediction_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.nsp_logits, want.seq_relationship_logits, atol=1e-5, rtol=0)


def test_fine_tuned_heads_of_run_classifier_and_run_squad():
    cls = BertForSequenceClassification.from_pretrained(FIXTURES / "classifier").eval()
    assert cls.classifier.out_features == 3  # from output_weights' shape: Google's config has none
    ref = _hf_model("BertForSequenceClassification", "classifier", num_labels=3)
    ids, mask, types = _ids(cls.config.vocab_size, seed=1)
    with torch.inference_mode():
        torch.testing.assert_close(cls(ids, mask, types), ref(ids, mask, types).logits,
                                   atol=1e-5, rtol=0)
    qa = BertForQuestionAnswering.from_pretrained(FIXTURES / "squad").eval()
    ref = _hf_model("BertForQuestionAnswering", "squad")
    with torch.inference_mode():
        start, end = qa(ids, mask, types)
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
    torch.testing.assert_close(start, want.start_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(end, want.end_logits, atol=1e-5, rtol=0)


def test_training_state_is_skipped_and_nothing_reported_unused(caplog):
    with caplog.at_level(logging.INFO, logger="bertkit"):
        BertForPreTraining.from_pretrained(FIXTURES / "pretraining")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "adam" not in text and "global_step" not in text and "not used" not in text


def test_unused_heads_reported_in_one_line(caplog):
    # A pre-training checkpoint loaded as a bare encoder: the MLM/NSP tensors are unused.
    with caplog.at_level(logging.INFO, logger="bertkit"):
        BertModel.from_pretrained(FIXTURES / "pretraining")
    lines = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert len(lines) == 1 and "bert_model.ckpt.index" in lines[0]
    assert "cls/predictions/output_bias" in lines[0]


def _copy(variant: str, tmp_path: Path) -> Path:
    dest = tmp_path / variant
    shutil.copytree(FIXTURES / variant, dest)
    return dest


def test_shapes_disagreeing_with_bert_config_name_the_tensor(tmp_path):
    d = _copy("pretraining", tmp_path)
    cfg = json.loads((d / "bert_config.json").read_text())
    cfg["intermediate_size"] = 48
    (d / "bert_config.json").write_text(json.dumps(cfg))
    for load in (BertModel.from_pretrained,
                 lambda src: convert_google_dir(src, tmp_path / "out")):
        with pytest.raises(CheckpointError, match=r"bert_model\.ckpt\.index: bert/encoder/"
                                                  r"layer_0/intermediate/dense/kernel has shape"):
            load(d)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_missing_config_vocab_and_checkpoint(tmp_path):
    d = _copy("pretraining", tmp_path)
    (d / "bert_config.json").unlink()
    with pytest.raises(CheckpointError, match="no bert_config.json"):
        BertModel.from_pretrained(d)
    d = _copy("classifier", tmp_path)
    (d / "vocab.txt").unlink()
    with pytest.raises(CheckpointError, match="no vocab.txt"):
        convert_google_dir(d, tmp_path / "out")
    with pytest.raises(CheckpointError, match="not a Google checkpoint directory"):
        convert_google_dir(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("variant, arch, hf_cls, kw", [
    ("pretraining", "BertForPreTraining", "BertForPreTraining", {}),
    ("classifier", "BertForSequenceClassification", "BertForSequenceClassification", {}),
    ("squad", "BertForQuestionAnswering", "BertForQuestionAnswering", {}),
])
def test_convert_loads_in_transformers_with_no_missing_keys(tmp_path, variant, arch, hf_cls, kw):
    from bertkit.cli import main

    out = tmp_path / "hf"
    assert main(["convert", str(FIXTURES / variant), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [arch]
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is True
    assert (out / "vocab.txt").read_bytes() == (FIXTURES / variant / "vocab.txt").read_bytes()
    model, info = getattr(transformers, hf_cls).from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ref = _hf_model(hf_cls, variant, **({"num_labels": 3} if variant == "classifier" else {}))
    ids, mask, types = _ids(config["vocab_size"], seed=2)
    with torch.inference_mode():
        got = model.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types)
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
    for key in want.keys():
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=0)


def test_convert_refuses_a_non_empty_out_and_errors_exit_2(tmp_path, capsys):
    from bertkit.cli import main

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert main(["convert", str(FIXTURES / "pretraining"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert main(["convert", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_guess_do_lower_case(tmp_path, uncased_vocab):
    assert guess_do_lower_case(uncased_vocab) is True
    cased = tmp_path / "vocab.txt"
    cased.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nThe\n##s\n", encoding="utf-8")
    assert guess_do_lower_case(cased) is False


# ----------------------------------------------------------------------------- real weights

def _real_google_dir(name: str) -> Path:
    d = artifacts.cache_dir() / "tf-fixtures" / name
    if not (d / "checkpoint").is_file():
        pytest.skip(f"{d} is absent: run tests/tools/make_tf_fixtures.py --real with "
                    f"tensorflow-cpu (in its own venv) to write it")
    return d


@pytest.mark.real
def test_real_minilm_from_google_layout_matches_transformers(minilm_dir, real_sentences, tmp_path):
    google = _real_google_dir("minilm")
    ours = BertModel.from_pretrained(google).eval()
    ref = transformers.BertModel.from_pretrained(minilm_dir).eval()
    tok = transformers.BertTokenizer.from_pretrained(minilm_dir)
    batch = tok(real_sentences[:8], padding=True, truncation=True, max_length=128,
                return_tensors="pt")
    with torch.inference_mode():
        got = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        want = ref(**batch)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=1e-5, rtol=0)
    out = tmp_path / "hf"
    convert_google_dir(google, out)
    conv, info = transformers.BertModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.inference_mode():
        again = conv.eval()(**batch)
    torch.testing.assert_close(again.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=0)


@pytest.mark.real
def test_real_bert_tiny_mlm_from_google_layout_matches_transformers(real_sentences, tmp_path):
    google = _real_google_dir("bert-tiny-mlm")
    hf_dir = fetch_or_skip(artifacts.bert_tiny_mlm_dir)
    ours = BertForPreTraining.from_pretrained(google).eval()
    ref = transformers.BertForMaskedLM.from_pretrained(hf_dir).eval()
    tok = transformers.BertTokenizer(str(hf_dir / "vocab.txt"))
    batch = tok(real_sentences[:8], padding=True, truncation=True, max_length=128,
                return_tensors="pt")
    with torch.inference_mode():
        got = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        want = ref(**batch)
    torch.testing.assert_close(got.mlm_logits, want.logits, atol=1e-4, rtol=0)
    out = tmp_path / "hf"
    convert_google_dir(google, out)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    conv, info = transformers.BertForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.inference_mode():
        torch.testing.assert_close(conv.eval()(**batch).logits, want.logits, atol=1e-4, rtol=0)


def test_tokenizer_of_a_google_dir_guesses_case_from_the_vocab(tmp_path):
    from bertkit import AutoTokenizer, BertTokenizer

    d = _copy("pretraining", tmp_path)
    assert BertTokenizer.from_pretrained(d).do_lower_case is True
    vocab = (d / "vocab.txt").read_text(encoding="utf-8").split("\n")
    cased = [w.capitalize() if w.isalpha() and not w.startswith("[") else w for w in vocab]
    (d / "vocab.txt").write_text("\n".join(cased), encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(d)
    assert isinstance(tok, BertTokenizer) and tok.do_lower_case is False


def _damage_index(d: Path) -> None:
    index = d / "bert_model.ckpt.index"
    data = bytearray(index.read_bytes())
    data[40] ^= 0xFF
    index.write_bytes(bytes(data))


def _truncate_shard(d: Path) -> None:
    shard = next(d.glob("*.data-*"))
    shard.write_bytes(shard.read_bytes()[:1000])


CONVERT_PROBES = [  # (setup(tmp, src) -> argv tail, what the one line must name)
    (lambda t, s: [str(t / "nowhere"), "--out", str(t / "o")], "nowhere"),
    (lambda t, s: [str(s / "vocab.txt"), "--out", str(t / "o")], "vocab.txt"),
    (lambda t, s: [str(t), "--out", str(t / "o")], "not a Google checkpoint directory"),
    (lambda t, s: (_damage_index(s), [str(s), "--out", str(t / "o")])[1], "bert_model.ckpt.index"),
    (lambda t, s: (_truncate_shard(s), [str(s), "--out", str(t / "o")])[1], "data-00000-of-00001"),
    (lambda t, s: ((t / "f").write_text("x"), [str(s), "--out", str(t / "f")])[1], "not a directory"),
    (lambda t, s: ((s / "bert_config.json").write_text("{oops"), [str(s), "--out", str(t / "o")])[1],
     "bert_config.json"),
]


@pytest.mark.parametrize("i", range(len(CONVERT_PROBES)))
def test_convert_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, i):
    from bertkit.cli import main

    src = _copy("pretraining", tmp_path / "src")
    setup, named = CONVERT_PROBES[i]
    argv = setup(tmp_path, src)
    assert main(["convert", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "o" / "model.safetensors").exists()
