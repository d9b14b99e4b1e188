"""Task heads of RoBERTa, DistilBERT and ALBERT against transformers, both directions.

transformers builds each head model with seeded random weights and saves it; bertkit's Auto class
loads it with no missing or unused weight and gives the same logits (1e-5) on 16 real sentences
with padding; bertkit's own model, saved, loads in transformers' class with no missing or
unexpected key and the same logits (1e-6).
"""

from __future__ import annotations

import logging

import pytest
import torch
from test_families import _close_where_real, _hf_config, _inputs, _seeded

import bertkit
from bertkit.config import AutoConfig, ConfigError
from bertkit.convert.hf import CheckpointError
from bertkit.models.auto import AutoModelForMultipleChoice
from bertkit.models.heads import label_entries

transformers = pytest.importorskip("transformers")

FAMILY_NAMES = {"roberta": "Roberta", "distilbert": "DistilBert", "albert": "Albert"}
HEADS = {  # suffix -> bertkit Auto class
    "SequenceClassification": "AutoModelForSequenceClassification",
    "TokenClassification": "AutoModelForTokenClassification",
    "QuestionAnswering": "AutoModelForQuestionAnswering",
    "MultipleChoice": "AutoModelForMultipleChoice",
}
CASES = [(f, h, "plain") for f in FAMILY_NAMES for h in HEADS] + [
    ("albert", h, "shared") for h in HEADS]


def _logits(out) -> torch.Tensor:
    """One tensor of a head's output: (B, C), (B, T, C) or (B, T, 2) for QA."""
    if isinstance(out, tuple):
        return torch.stack(out, -1)
    if hasattr(out, "start_logits"):
        return torch.stack([out.start_logits, out.end_logits], -1)
    return out.logits if hasattr(out, "logits") else out


def _as_choices(head: str, ids: torch.Tensor, mask: torch.Tensor):
    """Multiple choice scores K=4 rows per example: the 16 sentences as (4, 4, T)."""
    if head != "MultipleChoice":
        return ids, mask
    return ids.reshape(4, 4, -1), mask.reshape(4, 4, -1)


def _compare(got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor, atol: float) -> None:
    if got.ndim == 2:  # per sequence
        torch.testing.assert_close(got, want, atol=atol, rtol=0)
    else:
        _close_where_real(got, want, mask, atol)


@pytest.fixture(scope="module")
def batch(real_sentences, uncased_vocab):
    tok = bertkit.BertTokenizer(uncased_vocab)
    enc = tok(real_sentences[:16], max_length=150, truncation=True, padding=True,
              return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("family, head, shape", CASES)
def test_transformers_heads_load_in_bertkit(tmp_path, batch, caplog, family, head, shape):
    config = _hf_config(family, "small", shape)
    config.num_labels = 2 if head == "QuestionAnswering" else 3
    name = f"{FAMILY_NAMES[family]}For{head}"
    ref = _seeded(name, config)
    ref.save_pretrained(tmp_path)
    ids, mask = _as_choices(head, *_inputs(family, batch))
    with caplog.at_level(logging.INFO, logger="bertkit.convert.hf"):
        ours = getattr(bertkit, HEADS[head]).from_pretrained(tmp_path).eval()
    assert type(ours).__name__ == name
    assert "initialised fresh" not in caplog.text and "not used" not in caplog.text, caplog.text
    types = torch.zeros_like(ids) if family != "roberta" else None
    with torch.inference_mode():
        want = _logits(ref(input_ids=ids, attention_mask=mask))
        got = _logits(ours(ids, mask, types))
    _compare(got, want, mask, 1e-5)


@pytest.mark.parametrize("family, head, shape", [c for c in CASES if c[2] == "plain"])
def test_bertkit_heads_load_in_transformers(tmp_path, batch, family, head, shape):
    hf_config = _hf_config(family, "small", shape)
    labels = ["a", "b"] if head == "QuestionAnswering" else ["a", "b", "c"]
    config = AutoConfig.from_dict({**hf_config.to_dict(), **label_entries(labels)})
    torch.manual_seed(11)
    ours = getattr(bertkit, HEADS[head]).from_config(config).eval()
    with torch.no_grad():  # biases away from 0, so a dropped head bias would show
        for p in ours.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    ours.save_pretrained(tmp_path)
    name = f"{FAMILY_NAMES[family]}For{head}"
    ref, info = getattr(transformers, name).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids, mask = _as_choices(head, *_inputs(family, batch))
    with torch.inference_mode():
        want = _logits(ref.eval()(input_ids=ids, attention_mask=mask))
        got = _logits(ours(ids, mask))
    _compare(got, want, mask, 1e-6)


def test_albert_masked_lm_both_ways(tmp_path, batch):
    config = _hf_config("albert", "small", "shared")
    ref = _seeded("AlbertForMaskedLM", config)
    ref.save_pretrained(tmp_path / "hf")
    ours = bertkit.AlbertForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    ids, mask = batch
    with torch.inference_mode():
        want = ref(input_ids=ids, attention_mask=mask).logits
        got = ours(ids, mask).mlm_logits
    _close_where_real(got, want, mask, 1e-5)
    ours.save_pretrained(tmp_path / "ours")
    back, info = transformers.AlbertForMaskedLM.from_pretrained(tmp_path / "ours",
                                                                output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.inference_mode():
        again = back.eval()(input_ids=ids, attention_mask=mask).logits
    _close_where_real(again, got, mask, 1e-6)


def test_fine_tuned_dirs_of_every_family_load_by_architecture(tmp_path):
    from bertkit.models.heads import load_task_model

    for family in FAMILY_NAMES:
        config = _hf_config(family, "small")
        config.num_labels = 2
        _seeded(f"{FAMILY_NAMES[family]}ForTokenClassification", config).save_pretrained(
            tmp_path / family)
        assert type(load_task_model(tmp_path / family)).__name__ == (
            f"{FAMILY_NAMES[family]}ForTokenClassification")


def test_an_unknown_family_and_a_foreign_checkpoint_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"no multiple-choice class for model_type 'gpt2'"):
        AutoModelForMultipleChoice.class_for("gpt2")
    _seeded("RobertaModel", _hf_config("roberta", "small")).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"config\.json: model_type is 'roberta', not 'albert'"):
        bertkit.AlbertForSequenceClassification.from_pretrained(tmp_path)
    # a config that says DistilBERT beside RoBERTa's weights: the missing keys are named
    (tmp_path / "config.json").write_text(
        _hf_config("distilbert", "small").to_json_string())
    with pytest.raises(CheckpointError, match=r"model\.safetensors: these are the weights of a "
                                              r"bert or roberta model, but config\.json says "
                                              r"model_type 'distilbert': key 'embeddings\."):
        bertkit.AutoModelForTokenClassification.from_pretrained(tmp_path)
