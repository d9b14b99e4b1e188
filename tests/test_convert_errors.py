"""Bad configs and damaged checkpoints fail loudly, naming the file and the key."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from bertkit.config import BertConfig, ConfigError
from bertkit.convert.hf import CheckpointError
from bertkit.models.bert import BertForPreTraining, BertModel


def _tiny() -> BertConfig:
    return BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=20)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = BertModel(_tiny())
    model.save_pretrained(tmp_path)
    return tmp_path, model


def test_config_heads_not_dividing_hidden_names_file_and_fields(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({"hidden_size": 100, "num_attention_heads": 12}))
    with pytest.raises(ConfigError, match=r"bert_config\.json.*hidden_size \(100\).*heads \(12\)"):
        BertConfig.from_json_file(path)


@pytest.mark.parametrize("bad, field", [({"hidden_act": "swishy"}, "hidden_act"),
                                        ({"num_hidden_layers": 0}, "num_hidden_layers"),
                                        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
                                        ({"vocab_size": "big"}, "vocab_size")])
def test_config_bad_values_name_the_field(tmp_path, bad, field):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=field):
        BertConfig.from_json_file(path)


def test_config_not_json_and_missing(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        BertConfig.from_json_file(tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        BertConfig.from_json_file(tmp_path / "nope.json")


def test_google_config_reads_and_round_trips(tmp_path):
    google = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
              "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
              "type_vocab_size": 2, "vocab_size": 30522}
    (tmp_path / "bert_config.json").write_text(json.dumps(google))
    cfg = BertConfig.from_json_file(tmp_path / "bert_config.json")
    assert cfg == BertConfig.from_preset("base")
    cfg.to_json_file(tmp_path / "config.json")
    assert BertConfig.from_json_file(tmp_path / "config.json") == cfg


def test_all_presets_are_valid():
    names = BertConfig.preset_names()
    assert len([n for n in names if n.startswith("L-")]) == 24
    for n in names:
        cfg = BertConfig.from_preset(n)
        assert cfg.hidden_size % cfg.num_attention_heads == 0
    assert BertConfig.from_preset("large").num_hidden_layers == 24
    with pytest.raises(ConfigError, match="unknown preset"):
        BertConfig.from_preset("huge")


def test_truncated_safetensors_names_the_file(saved):
    d, _ = saved
    path = d / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        BertModel.from_pretrained(d)


def test_wrong_shape_names_file_and_key(saved):
    d, _ = saved
    state = load_file(d / "model.safetensors")
    state["encoder.layer.1.intermediate.dense.weight"] = torch.zeros(31, 16)
    save_file(state, d / "model.safetensors")
    with pytest.raises(CheckpointError,
                       match=r"model\.safetensors.*encoder\.layer\.1\.intermediate\.dense\.weight"):
        BertModel.from_pretrained(d)


@pytest.mark.parametrize("piece", ["query", "key", "value"])
@pytest.mark.parametrize("shape", [(16, 15), (15, 16), (8, 16)])
def test_wrong_shaped_qkv_piece_names_file_and_key(saved, piece, shape):
    # Our q/k/v projection is fused: each HF piece is checked before the concatenation.
    d, _ = saved
    state = load_file(d / "model.safetensors")
    state[f"encoder.layer.0.attention.self.{piece}.weight"] = torch.zeros(shape)
    save_file(state, d / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"model\.safetensors: encoder\.layer\.0\.attention"
                       rf"\.self\.{piece}\.weight has shape \({shape[0]}, {shape[1]}\).*\(16, 16\)"):
        BertModel.from_pretrained(d)


def test_missing_encoder_key_names_file_and_key(saved):
    d, _ = saved
    state = load_file(d / "model.safetensors")
    del state["encoder.layer.0.attention.self.key.bias"]
    save_file(state, d / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*attention\.self\.key\.bias"):
        BertModel.from_pretrained(d)


def test_missing_heads_are_initialised_and_reported_once(saved, caplog):
    d, model = saved
    with caplog.at_level(logging.INFO, logger="bertkit"):
        pre = BertForPreTraining.from_pretrained(d)
    lines = [r.message for r in caplog.records if "initialised fresh" in r.message]
    assert len(lines) == 1 and "mlm" in lines[0] and "nsp" in lines[0]
    torch.testing.assert_close(pre.bert.layers[1].ffn.fc1.weight, model.layers[1].ffn.fc1.weight)


def test_legacy_bin_with_prefix_gamma_beta_and_position_ids(saved):
    d, model = saved
    state = load_file(d / "model.safetensors")
    legacy = {}
    for k, v in state.items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        legacy["bert." + k] = v
    legacy["bert.embeddings.position_ids"] = torch.arange(20)[None]
    (d / "model.safetensors").unlink()
    torch.save(legacy, d / "pytorch_model.bin")
    again = BertModel.from_pretrained(d)
    for (k, v), v2 in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(v, v2), k


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_in_bin_is_refused(saved):
    d, _ = saved
    (d / "model.safetensors").unlink()
    torch.save({"x": _Evil()}, d / "pytorch_model.bin")  # an arbitrary pickled object
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        BertModel.from_pretrained(d)


def test_missing_directory_and_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        BertModel.from_pretrained(tmp_path / "nowhere")
    _tiny().to_json_file(tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        BertModel.from_pretrained(tmp_path)


def test_save_is_atomic_on_failure(saved, monkeypatch):
    d, model = saved
    before = (d / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(d)
    assert (d / "model.safetensors").read_bytes() == before
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_of_another_family_is_refused_by_name(saved):
    d, _ = saved
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "distilbert"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"config\.json: model_type is 'distilbert', not 'bert'"):
        BertModel.from_pretrained(d)


def test_weight_map_round_trips_every_bert_key():
    from bertkit.convert.weight_maps import BERT, weight_map
    from bertkit.models.heads import BertForQuestionAnswering, BertForSequenceClassification

    assert weight_map("bert") is BERT
    with pytest.raises(KeyError, match="xlnet"):
        weight_map("xlnet")
    for cls in (BertForPreTraining, BertForSequenceClassification, BertForQuestionAnswering):
        for key in cls(_tiny()).state_dict():
            assert all(BERT.knows(n) for n in BERT.hf_names(key)), key
