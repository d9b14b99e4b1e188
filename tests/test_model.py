"""BertModel / BertForPreTraining against transformers, on the real all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from bertkit.config import BertConfig
from bertkit.models.bert import BertForPreTraining, BertModel, gather_positions

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def models(minilm_dir):
    ours = BertModel.from_pretrained(minilm_dir).eval()
    ref = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="sdpa").eval()
    return ours, ref


@pytest.fixture(scope="module")
def batch(minilm_dir, real_sentences):
    tok = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    enc = tok(real_sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
    assert enc["attention_mask"].sum(1).min() < enc["attention_mask"].shape[1], "needs padding"
    return dict(enc)


def _max_diff_at_tokens(a, b, mask):
    return (a - b)[mask.bool()].abs().max().item()


@pytest.mark.real
def test_real_weights_match_transformers(models, batch):
    ours, ref = models
    with torch.inference_mode():
        a = ours(**batch, output_hidden_states=True)
        b = ref(**batch, output_hidden_states=True)
    mask = batch["attention_mask"]
    assert _max_diff_at_tokens(a.last_hidden_state, b.last_hidden_state, mask) <= 1e-5
    assert (a.pooler_output - b.pooler_output).abs().max().item() <= 1e-5
    assert len(a.hidden_states) == len(b.hidden_states) == 7
    for layer, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states, strict=True)):
        assert _max_diff_at_tokens(x, y, mask) <= 1e-5, f"hidden state {layer}"
    m = mask[..., None].float()
    ea = (a.last_hidden_state * m).sum(1) / m.sum(1)
    eb = (b.last_hidden_state * m).sum(1) / m.sum(1)
    assert F.cosine_similarity(ea, eb).min().item() >= 0.99999


@pytest.mark.real
def test_attention_probabilities_match_eager_reference(minilm_dir, models, batch):
    ours, _ = models
    ref = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    with torch.inference_mode():
        a = ours(**batch, output_attentions=True)
        b = ref(**batch, output_attentions=True)
        fast = ours(**batch)
    mask = batch["attention_mask"].bool()
    for x, y in zip(a.attentions, b.attentions, strict=True):
        keep = mask[:, None, :, None] & mask[:, None, None, :]  # real query x real key
        assert (x - y)[keep.expand_as(x)].abs().max().item() <= 1e-5
        assert torch.all(x.masked_select(~mask[:, None, None, :].expand_as(x)) == 0)
    # the math path (oracle) and the SDPA path agree
    assert _max_diff_at_tokens(a.last_hidden_state, fast.last_hidden_state, mask) <= 1e-5


@pytest.mark.real
def test_padding_invariance(models, batch):
    ours, _ = models
    mask = batch["attention_mask"]
    with torch.inference_mode():
        full = ours(**batch).last_hidden_state
        for i in (0, len(mask) // 2, len(mask) - 1):
            n = int(mask[i].sum())
            alone = ours(batch["input_ids"][i:i + 1, :n],
                         token_type_ids=batch["token_type_ids"][i:i + 1, :n]).last_hidden_state
            assert (alone[0] - full[i, :n]).abs().max().item() <= 1e-5


@pytest.mark.real
def test_save_pretrained_loads_in_transformers(minilm_dir, models, batch, tmp_path):
    ours, _ = models
    ours.save_pretrained(tmp_path)
    ref, info = transformers.BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    original = transformers.BertModel.from_pretrained(minilm_dir).eval()
    with torch.inference_mode():
        a = ours(**batch)
        b = ref.eval()(**batch)
        c = original(**batch)
    mask = batch["attention_mask"]
    assert _max_diff_at_tokens(b.last_hidden_state, c.last_hidden_state, mask) <= 1e-6
    assert _max_diff_at_tokens(a.last_hidden_state, b.last_hidden_state, mask) <= 1e-6
    # and back into bertkit: bit-identical weights
    again = BertModel.from_pretrained(tmp_path)
    for (k, v), (k2, v2) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k


def _tiny(**kw) -> BertConfig:
    return BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=40, **kw)


def test_pretraining_heads_round_trip_from_transformers(tmp_path):
    torch.manual_seed(0)
    hf_cfg = transformers.BertConfig(**_tiny().to_dict())
    ref = transformers.BertForPreTraining(hf_cfg).eval()
    with torch.no_grad():  # non-zero biases so the test can see a mix-up
        ref.cls.predictions.bias.normal_()
        ref.cls.seq_relationship.bias.normal_()
    ref.save_pretrained(tmp_path)
    ours = BertForPreTraining.from_pretrained(tmp_path).eval()
    ids = torch.randint(5, 120, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    types = torch.zeros_like(ids)
    types[:, 9:] = 1
    with torch.inference_mode():
        a = ours(ids, mask, types)
        b = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert (a.mlm_logits - b.prediction_logits)[mask.bool()].abs().max().item() <= 1e-5
    assert (a.nsp_logits - b.seq_relationship_logits).abs().max().item() <= 1e-6

    # ours -> transformers, no missing or unexpected keys, same logits
    out = tmp_path / "ours"
    ours.save_pretrained(out)
    ref2, info = transformers.BertForPreTraining.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.inference_mode():
        c = ref2.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert (a.mlm_logits - c.prediction_logits)[mask.bool()].abs().max().item() <= 1e-6
    assert (a.nsp_logits - c.seq_relationship_logits).abs().max().item() <= 1e-6


def test_mlm_logits_only_at_masked_positions_and_google_loss():
    torch.manual_seed(1)
    model = BertForPreTraining(_tiny()).eval()
    ids = torch.randint(5, 120, (2, 12))
    positions = torch.tensor([[1, 4, 7, 0], [2, 3, 0, 0]])
    labels = torch.tensor([[11, 12, 13, 0], [21, 22, 0, 0]])
    weights = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    nsp = torch.tensor([0, 1])
    with torch.inference_mode():
        full = model(ids)
        part = model(ids, masked_lm_positions=positions, masked_lm_ids=labels,
                     masked_lm_weights=weights, next_sentence_labels=nsp)
    assert part.mlm_logits.shape == (2, 4, 120)
    torch.testing.assert_close(part.mlm_logits, gather_positions(full.mlm_logits, positions))
    real = weights.bool()
    expect_mlm = F.cross_entropy(part.mlm_logits[real], labels[real])
    torch.testing.assert_close(part.mlm_loss, expect_mlm, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(part.nsp_loss, F.cross_entropy(part.nsp_logits, nsp))
    torch.testing.assert_close(part.loss, part.mlm_loss + part.nsp_loss)


def test_decoder_is_tied_to_word_embeddings():
    model = BertForPreTraining(_tiny())
    with torch.no_grad():
        model.bert.embeddings.word.weight[7].fill_(0.5)
    h = torch.randn(1, 1, 32)
    logits = model.mlm(h, model.bert.embeddings.word.weight)
    manual = model.mlm.norm(model.mlm.act(model.mlm.transform(h))) @ \
        model.bert.embeddings.word.weight.T + model.mlm.bias
    torch.testing.assert_close(logits, manual)
    names = [n for n, _ in model.named_parameters()]
    assert "mlm.bias" in names and not any("decoder" in n for n in names)


def test_google_initialisation_is_truncated_normal():
    torch.manual_seed(0)
    model = BertModel(BertConfig.from_preset("mini"))
    w = model.layers[0].ffn.fc1.weight
    assert w.abs().max().item() <= 0.04 + 1e-7  # truncated at 2 std
    assert 0.015 < w.std().item() < 0.02  # truncated normal std = 0.88 * 0.02
    assert torch.all(model.layers[0].ffn.fc1.bias == 0)
    assert torch.all(model.layers[0].attn_norm.weight == 1)


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_activations_follow_config_like_transformers(act, tmp_path):
    torch.manual_seed(0)
    ours = BertModel(_tiny(hidden_act=act)).eval()
    ours.save_pretrained(tmp_path)
    ref = transformers.BertModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(5, 120, (2, 9))
    with torch.inference_mode():
        torch.testing.assert_close(ours(ids).last_hidden_state, ref(ids).last_hidden_state,
                                   rtol=0, atol=1e-5)


@pytest.mark.real
def test_first_layers_of_real_weights(minilm_dir, batch, caplog):
    """A 2-layer model loads the first two layers of MiniLM and equals transformers' 2 layers."""
    with caplog.at_level(logging.INFO, logger="bertkit"):
        ours = BertModel.from_pretrained(minilm_dir, num_hidden_layers=2).eval()
    assert any("not used" in r.message for r in caplog.records)
    ref = transformers.BertModel.from_pretrained(minilm_dir, num_hidden_layers=2).eval()
    with torch.inference_mode():
        a, b = ours(**batch), ref(**batch)
    assert _max_diff_at_tokens(a.last_hidden_state, b.last_hidden_state,
                               batch["attention_mask"]) <= 1e-5
