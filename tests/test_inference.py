"""bertkit.encode: length-sorted batching returns exactly the per-sentence results, in order."""

from __future__ import annotations

import pytest
import torch

from bertkit.inference import encode, length_sorted_batches, pool
from bertkit.models.bert import BertModel
from bertkit.tokenization import BertTokenizer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return BertModel.from_pretrained(minilm_dir).eval(), BertTokenizer.from_pretrained(minilm_dir)


def test_length_sorted_batches_cover_every_index_once():
    lengths = [5, 1, 9, 9, 2, 7, 3]
    batches = length_sorted_batches(lengths, 3)
    assert sorted(i for b in batches for i in b) == list(range(7))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)
    with pytest.raises(ValueError, match="batch_size"):
        length_sorted_batches(lengths, 0)


@pytest.mark.real
def test_encode_matches_transformers_mean_pooling_in_input_order(minilm, minilm_dir,
                                                                 real_sentences):
    model, tok = minilm
    ref = transformers.BertModel.from_pretrained(minilm_dir).eval()
    hf_tok = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    ours = encode(model, tok, real_sentences, batch_size=5, pooling="mean", normalize=True)
    with torch.inference_mode():
        enc = hf_tok(real_sentences, padding=True, return_tensors="pt")
        h = ref(**enc).last_hidden_state
        m = enc["attention_mask"][..., None].float()
        expect = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert ours.shape == (len(real_sentences), 384)
    assert (ours - expect).abs().max().item() <= 1e-5
    assert torch.nn.functional.cosine_similarity(ours, expect).min().item() >= 0.99999


@pytest.mark.real
def test_encode_token_states_and_cls(minilm, real_sentences):
    model, tok = minilm
    states = encode(model, tok, real_sentences[:6], batch_size=4, pooling=None)
    cls = encode(model, tok, real_sentences[:6], batch_size=4, pooling="cls")
    for i, s in enumerate(real_sentences[:6]):
        ids = torch.tensor([tok.encode(s)])
        with torch.inference_mode():
            alone = model(ids).last_hidden_state[0]
        assert states[i].shape == alone.shape
        assert (states[i] - alone).abs().max().item() <= 1e-5
        assert (cls[i] - alone[0]).abs().max().item() <= 1e-5


def test_encode_edge_cases():
    model = BertModel(_tiny_config()).eval()

    class Tok:
        pad_token_id = 0

        def __call__(self, texts, **kw):
            return {"input_ids": [[2] + [5] * len(t) + [3] for t in texts]}

    assert encode(model, Tok(), [], pooling="mean").shape == (0, 16)
    with pytest.raises(TypeError, match="sequence of texts"):
        encode(model, Tok(), "one string")
    with pytest.raises(ValueError, match="pooling"):
        pool(torch.zeros(1, 2, 3), torch.ones(1, 2), "max")  # type: ignore[arg-type]
    model.train()
    encode(model, Tok(), ["ab", "c"])
    assert model.training, "encode restores the training flag"


def _tiny_config():
    from bertkit.config import BertConfig

    return BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=16)
