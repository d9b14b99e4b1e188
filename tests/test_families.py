"""RoBERTa, ALBERT and DistilBERT against transformers, both directions, on real sentences.

transformers builds each model with seeded random weights (there are no real RoBERTa, ALBERT or
DistilBERT weights on the registries) and saves it; bertkit's Auto classes load the directory and
must give the same states at every layer, MLM logits and SOP logits; bertkit's save_pretrained
must load back in transformers with no missing or unexpected keys and the same outputs.
"""

from __future__ import annotations

import json

import pytest
import torch

import bertkit
from bertkit.config import AutoConfig, ConfigError

transformers = pytest.importorskip("transformers")

SIZES = {  # (layers, hidden, heads, intermediate)
    "small": (2, 64, 4, 128),
    "wider": (3, 96, 6, 192),
}
ALBERT_SHAPES = {"plain": (1, 1, 2), "shared": (2, 2, 4)}  # (groups, inner, layers)


def _hf_config(family: str, size: str, albert_shape: str = "plain"):
    layers, hidden, heads, inter = SIZES[size]
    common = dict(vocab_size=30522, max_position_embeddings=160)
    if family == "roberta":
        return transformers.RobertaConfig(
            num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
            intermediate_size=inter, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
            **{**common, "max_position_embeddings": 162})
    if family == "distilbert":
        return transformers.DistilBertConfig(n_layers=layers, dim=hidden, n_heads=heads,
                                             hidden_dim=inter, **common)
    groups, inner, n_layers = ALBERT_SHAPES[albert_shape]
    return transformers.AlbertConfig(
        num_hidden_layers=n_layers, hidden_size=hidden, num_attention_heads=heads,
        intermediate_size=inter, embedding_size=32, num_hidden_groups=groups,
        inner_group_num=inner, hidden_dropout_prob=0.0, **common)


HF_CLASSES = {"roberta": ("RobertaModel", "RobertaForMaskedLM"),
              "distilbert": ("DistilBertModel", "DistilBertForMaskedLM"),
              "albert": ("AlbertModel", "AlbertForPreTraining")}
CASES = [("roberta", s, "plain") for s in SIZES] + [("distilbert", s, "plain") for s in SIZES] + [
    ("albert", s, a) for s in SIZES for a in ALBERT_SHAPES]


@pytest.fixture(scope="module")
def batch(real_sentences, uncased_vocab):
    """16 real sentences of mixed lengths, padded: WordPiece ids, attention mask."""
    tok = bertkit.BertTokenizer(uncased_vocab)
    enc = tok(real_sentences[:16], max_length=150, truncation=True, padding=True,
              return_tensors="pt")
    assert (enc["attention_mask"] == 0).any() and enc["attention_mask"].sum(1).min() < 20
    return enc["input_ids"], enc["attention_mask"]


def _inputs(family: str, batch):
    """BERT's ids, with RoBERTa's <s>=0, </s>=2, <pad>=1 in place of [CLS], [SEP], [PAD]."""
    ids, mask = batch
    if family == "roberta":
        ids = ids.clone()
        ids[ids == 101], ids[ids == 102] = 0, 2
        ids[mask == 0] = 1
    return ids, mask


def _left_padded(ids, mask):
    """The same rows with their padding moved to the front."""
    shifts = (mask == 0).sum(1)
    rows = [(torch.roll(i, int(k)), torch.roll(m, int(k))) for i, m, k in zip(ids, mask, shifts, strict=True)]
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])


def _seeded(cls_name: str, config):
    torch.manual_seed(1234)
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():  # layer norms and biases away from 1/0, so a mapping slip shows
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def _close_where_real(a, b, mask, atol):
    m = mask.bool()
    torch.testing.assert_close(a[m], b[m], atol=atol, rtol=0)


@pytest.mark.parametrize("family, size, shape", CASES)
def test_transformers_checkpoints_load_in_bertkit(tmp_path, batch, family, size, shape):
    config = _hf_config(family, size, shape)
    base_name, mlm_name = HF_CLASSES[family]
    ids, mask = _inputs(family, batch)
    for name, auto in ((base_name, bertkit.AutoModel), (mlm_name, bertkit.AutoModelForMaskedLM)):
        ref = _seeded(name, config)
        ref.save_pretrained(tmp_path / name)
        ours = auto.from_pretrained(tmp_path / name).eval()
        assert type(ours).__name__ == name
        with torch.inference_mode():
            want = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            got = ours(ids, mask, output_hidden_states=True)
        assert len(got.hidden_states) == len(want.hidden_states)
        for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
            _close_where_real(g, w, mask, 1e-5)
        if name == base_name and family == "roberta":  # positions come from the ids: pad left
            left_ids, left_mask = _left_padded(ids, mask)
            with torch.inference_mode():
                want_left = ref(input_ids=left_ids, attention_mask=left_mask).last_hidden_state
                got_left = ours(left_ids, left_mask).last_hidden_state
            _close_where_real(got_left, want_left, left_mask, 1e-5)
        if name == base_name:
            _close_where_real(got.last_hidden_state, want.last_hidden_state, mask, 1e-5)
            if family == "albert":
                torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=1e-5,
                                           rtol=0)
            continue
        logits = want.logits if family != "albert" else want.prediction_logits
        _close_where_real(got.mlm_logits, logits, mask, 1e-5)
        if family == "albert":
            torch.testing.assert_close(got.sop_logits, want.sop_logits, atol=1e-5, rtol=0)
        # logits only at the masked positions equal the full logits there
        positions = torch.tensor([[1, 3, 5]] * ids.shape[0])
        with torch.inference_mode():
            at = ours(ids, mask, masked_lm_positions=positions).mlm_logits
        torch.testing.assert_close(at, got.mlm_logits[:, [1, 3, 5]], atol=1e-6, rtol=0)


@pytest.mark.parametrize("family, size, shape", [c for c in CASES if c[1] == "small"])
def test_bertkit_save_pretrained_loads_in_transformers(tmp_path, batch, family, size, shape):
    base_name, mlm_name = HF_CLASSES[family]
    ids, mask = _inputs(family, batch)
    config = AutoConfig.from_dict(_hf_config(family, size, shape).to_dict())
    torch.manual_seed(7)
    ours = bertkit.AutoModelForMaskedLM.from_config(config).eval()
    ours.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == family and saved["architectures"] == [mlm_name]
    ref, info = getattr(transformers, mlm_name).from_pretrained(tmp_path / "ours",
                                                                output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.inference_mode():
        want = ref.eval()(input_ids=ids, attention_mask=mask)
        got = ours(ids, mask)
    logits = want.logits if family != "albert" else want.prediction_logits
    _close_where_real(got.mlm_logits, logits, mask, 1e-6)


def test_albert_shares_each_group_once():
    config = AutoConfig.from_dict(_hf_config("albert", "small", "shared").to_dict())
    model = bertkit.AlbertModel(config)
    n_ours = sum(p.numel() for p in model.parameters())
    n_ref = sum(p.numel() for p in transformers.AlbertModel(_hf_config(
        "albert", "small", "shared")).parameters())
    assert n_ours == n_ref
    assert [model.group_of(i) for i in range(4)] == [0, 0, 1, 1]


def test_presets_and_hf_keys():
    for name in ("roberta-base", "roberta-large", "roberta-mini", "albert-base-v2",
                 "albert-large-v2", "albert-mini", "distilbert-base", "distilbert-mini"):
        config = AutoConfig.from_preset(name)
        assert config.model_type == name.split("-")[0]
        assert AutoConfig.from_dict(config.to_dict()) == config
    d = AutoConfig.from_preset("distilbert-base").to_dict()
    assert (d["dim"], d["n_layers"], d["n_heads"], d["hidden_dim"]) == (768, 6, 12, 3072)
    assert "hidden_size" not in d and "type_vocab_size" not in d


def test_unknown_family_and_wrong_class_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"x\.json: model_type 'xlnet' is not a family"):
        (tmp_path / "x.json").write_text(json.dumps({"model_type": "xlnet"}))
        AutoConfig.from_json_file(tmp_path / "x.json")
    ref = _seeded("DistilBertModel", _hf_config("distilbert", "small"))
    ref.save_pretrained(tmp_path / "d")
    with pytest.raises(ConfigError, match=r"model_type is 'distilbert', not 'bert'.*BertModel"):
        bertkit.BertModel.from_pretrained(tmp_path / "d")


def test_distilbert_sinusoidal_positions_equal_transformers_and_stay_fixed():
    hf_config = _hf_config("distilbert", "small")
    hf_config.sinusoidal_pos_embds = True
    ref = transformers.DistilBertModel(hf_config)
    ours = bertkit.DistilBertModel(AutoConfig.from_dict(hf_config.to_dict()))
    want = ref.embeddings.position_embeddings.weight
    got = ours.embeddings.position.weight
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert not got.requires_grad
