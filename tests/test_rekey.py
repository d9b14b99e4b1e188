"""Real weights in every family: the real BERT-Tiny-shaped MLM checkpoint (DATA.md) re-keyed.

The checkpoint loads as BERT (bertkit and transformers agree); ``rekey_directory`` writes it as
DistilBERT and as RoBERTa, which transformers' classes load with no missing or unexpected key and
which give BERT's hidden states and MLM logits on 16 real sentences with padding; bertkit's Auto
classes give transformers' outputs on the re-keyed directories.
"""

from __future__ import annotations

import json

import pytest
import torch
from realdata import fetch_or_skip

import bertkit
from bertkit import artifacts
from bertkit.config import ConfigError
from bertkit.convert.rekey import bert_config_as, rekey_directory

transformers = pytest.importorskip("transformers")

HF_MLM = {"distilbert": "DistilBertForMaskedLM", "roberta": "RobertaForMaskedLM"}


@pytest.fixture(scope="module")
def tiny():
    return fetch_or_skip(artifacts.bert_tiny_mlm_dir)


@pytest.fixture(scope="module")
def batch(tiny, real_sentences):
    tok = bertkit.BertTokenizer.from_pretrained(tiny)
    enc = tok(real_sentences[:16], max_length=128, truncation=True, padding=True,
              return_tensors="pt")
    assert (enc["attention_mask"] == 0).any()
    return enc["input_ids"], enc["attention_mask"]


@pytest.fixture(scope="module")
def bert_out(tiny, batch):
    ids, mask = batch
    ref = transformers.BertForMaskedLM.from_pretrained(tiny).eval()
    with torch.inference_mode():
        return ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)


def _close(a, b, mask, atol, rtol=0.0):
    m = mask.bool()
    torch.testing.assert_close(a[m], b[m], atol=atol, rtol=rtol)


def test_real_checkpoint_loads_as_bert(tiny, batch, bert_out):
    ids, mask = batch
    ours = bertkit.AutoModelForMaskedLM.from_pretrained(tiny).eval()
    with torch.inference_mode():
        got = ours(ids, mask, output_hidden_states=True)
    _close(got.mlm_logits, bert_out.logits, mask, 1e-5)
    for g, w in zip(got.hidden_states, bert_out.hidden_states, strict=True):
        _close(g, w, mask, 1e-5)


@pytest.mark.parametrize("family", ["distilbert", "roberta"])
def test_real_checkpoint_rekeyed_equals_bert_and_transformers(tmp_path, tiny, batch, bert_out,
                                                              family):
    ids, mask = batch
    rekey_directory(tiny, tmp_path, family)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == family and config["architectures"] == [HF_MLM[family]]
    assert (tmp_path / "vocab.txt").read_bytes() == (tiny / "vocab.txt").read_bytes()
    ref, info = getattr(transformers, HF_MLM[family]).from_pretrained(tmp_path,
                                                                      output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ours = bertkit.AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    with torch.inference_mode():
        want = ref.eval()(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        got = ours(ids, mask, output_hidden_states=True)
    # the same network: the re-keyed model in transformers equals BERT in transformers (DistilBERT:
    # up to the rounding of the folded sum, about 1e-6 of logits of magnitude 15)
    _close(want.logits, bert_out.logits, mask, 1e-5, rtol=1e-5)
    for w, b in zip(want.hidden_states, bert_out.hidden_states, strict=True):
        _close(w, b, mask, 1e-5)
    # and bertkit equals transformers on the re-keyed directory
    _close(got.mlm_logits, want.logits, mask, 1e-5)
    for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
        _close(g, w, mask, 1e-5)


def test_base_model_keeps_the_pooler_as_roberta(tmp_path):
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=40)
    torch.manual_seed(3)
    bert = transformers.BertModel(config).eval()
    bert.save_pretrained(tmp_path / "bert")
    model = rekey_directory(tmp_path / "bert", tmp_path / "roberta", "roberta")
    assert type(model).__name__ == "RobertaModel"
    ref = transformers.RobertaModel.from_pretrained(tmp_path / "roberta").eval()
    ids = torch.tensor([[2, 5, 7, 9, 3], [2, 8, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        want, got = bert(input_ids=ids, attention_mask=mask), ref(input_ids=ids,
                                                                 attention_mask=mask)
    _close(got.last_hidden_state, want.last_hidden_state, mask, 1e-5)
    torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=1e-5, rtol=0)


def test_what_cannot_be_rekeyed_is_named(tmp_path, tiny):
    with pytest.raises(ValueError, match=r"cannot re-key BERT as 'albert'"):
        rekey_directory(tiny, tmp_path / "a", "albert")
    cfg = bertkit.AutoConfig.from_pretrained(tiny)
    cfg.layer_norm_eps = 1e-5
    with pytest.raises(ConfigError, match=r"no exact DistilBERT"):
        bert_config_as("distilbert", cfg)
    rekey_directory(tiny, tmp_path / "d", "distilbert")
    with pytest.raises(ConfigError, match=r"d/config\.json: model_type is 'distilbert'; only a "
                                          r"BERT checkpoint"):
        rekey_directory(tmp_path / "d", tmp_path / "r", "roberta")
