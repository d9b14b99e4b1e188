"""ONNX export and the onnxruntime backend: parity with torch for every family and head, int8.

Each model is exported at one (B, T) shape (2 x 8) and run at others on real, padded sentences.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
    pytest.skip("onnxruntime/onnx not installed (pip install 'bertkit[onnx]')",
                allow_module_level=True)

from realdata import fetch_or_skip

import bertkit
from bertkit.config import AlbertConfig, BertConfig, DistilBertConfig, RobertaConfig
from bertkit.inference.backend import Backend
from bertkit.inference.onnx import OnnxBackend, ffn_nodes, quantize_onnx
from bertkit.inference.onnx_export import ExportError, _architecture_classes, export_onnx
from bertkit.inference.onnx_outliers import (
    calibrate_channels,
    outlier_channels,
    split_outlier_channels,
)
from bertkit.models.heads import with_labels

TOL = 1e-4
SMALL = dict(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=128, max_position_embeddings=160)
CONFIGS = {"bert": BertConfig(**SMALL),
           "roberta": RobertaConfig(**{**SMALL, "max_position_embeddings": 162}),
           "distilbert": DistilBertConfig(**SMALL),
           "albert": AlbertConfig(**SMALL, embedding_size=32, num_hidden_groups=2,
                                  inner_group_num=1)}
CASES = sorted(_architecture_classes().items())


@pytest.fixture(scope="module")
def batches(real_sentences, uncased_vocab):
    """Two real batches of other shapes than the export's: (5, T1) and (3, T2), padded."""
    tok = bertkit.BertTokenizer(uncased_vocab)
    out = []
    for sents in (real_sentences[2:7], real_sentences[-3:]):
        enc = tok(sents, max_length=150, truncation=True, padding=True, return_tensors="pt")
        assert (enc["attention_mask"] == 0).any()
        out.append(enc)
    assert out[0]["input_ids"].shape != out[1]["input_ids"].shape
    return out


def _inputs(enc, config) -> dict[str, torch.Tensor]:
    mask = enc["attention_mask"]
    ids = enc["input_ids"].masked_fill(mask == 0, config.pad_token_id)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if config.has_token_types:
        types = torch.zeros_like(ids)
        if config.type_vocab_size > 1:
            types[:, ids.shape[1] // 2:] = 1
        inputs["token_type_ids"] = types * mask
    return inputs


def _torch_outputs(model, inputs) -> dict[str, torch.Tensor]:
    from bertkit.inference.onnx_export import _named_outputs

    with torch.inference_mode():
        return _named_outputs(model(**inputs))


def _max_diff(a: dict, b: dict, mask: torch.Tensor) -> float:
    """Largest |a - b| over every output, at real (unpadded) tokens for per-token outputs."""
    assert set(a) == set(b)
    worst = 0.0
    for k in a:
        d = (a[k] - b[k]).abs()
        if d.dim() >= 2 and d.shape[:2] == mask.shape:
            d = d * mask.reshape(*mask.shape, *([1] * (d.dim() - 2)))
        worst = max(worst, d.max().item())
    return worst


@pytest.mark.parametrize("arch,cls", CASES, ids=[c[0] for c in CASES])
def test_export_matches_torch(arch, cls, batches, tmp_path):
    config = CONFIGS.get(cls.config_class.model_type)
    if config is None:
        pytest.skip(f"no small config for {cls.config_class.model_type}")
    config = with_labels(type(config)(**{k: v for k, v in vars(config).items() if k != "extra"}),
                         ["neg", "neutral", "pos"])
    torch.manual_seed(0)
    model = cls(config).eval()
    model.save_pretrained(tmp_path / "model")
    out = export_onnx(tmp_path / "model", tmp_path / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.onnx"]  # no leftovers
    backend = OnnxBackend(out, threads=1)
    assert isinstance(backend, Backend)
    for i, enc in enumerate(batches):
        inputs = _inputs(enc, config)
        if "MultipleChoice" in arch:  # (B, K, T): (5, 1, T1), then (1, 3, T2)
            k = 1 if i == 0 else len(enc["input_ids"])
            inputs = {n: v.reshape(-1, k, v.shape[-1]) for n, v in inputs.items()}
        assert backend.input_names == tuple(inputs)
        got = backend(inputs)
        want = _torch_outputs(model, inputs)
        assert backend.output_names == tuple(want)
        assert all(t.dtype == torch.float32 for t in got.values())
        assert _max_diff(got, want, inputs["attention_mask"]) <= TOL, arch


def test_plain_onnx_without_contrib_ops(batches, tmp_path):
    """fused_attention=False: standard ONNX ops only, same numbers."""
    import onnx

    torch.manual_seed(0)
    model = bertkit.BertModel(CONFIGS["bert"]).eval()
    model.save_pretrained(tmp_path / "m")
    out = export_onnx(tmp_path / "m", tmp_path / "plain.onnx", fused_attention=False)
    assert {n.domain for n in onnx.load(str(out)).graph.node} <= {"", "ai.onnx"}
    inputs = _inputs(batches[0], CONFIGS["bert"])
    got = OnnxBackend(out, threads=1)(inputs)
    assert _max_diff(got, _torch_outputs(model, inputs), inputs["attention_mask"]) <= TOL


@pytest.fixture(scope="module")
def minilm_onnx(minilm_dir, tmp_path_factory) -> tuple[Path, Path]:
    """all-MiniLM-L6-v2 (real weights) exported fp32 and quantized to int8."""
    d = tmp_path_factory.mktemp("minilm")
    fp32 = export_onnx(minilm_dir, d / "fp32.onnx")
    return fp32, quantize_onnx(fp32, d / "int8.onnx")


def _mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[..., None].float()                                 # (B, T, 1)
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)   # (B, H)


def test_minilm_real_weights(minilm_dir, minilm_onnx, real_sentences):
    tok = bertkit.BertTokenizer.from_pretrained(minilm_dir)
    model = bertkit.AutoModel.from_pretrained(minilm_dir).eval()
    enc = tok(real_sentences, max_length=256, truncation=True, padding=True, return_tensors="pt")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    fp32, int8 = minilm_onnx
    got = OnnxBackend(fp32, threads=1)(inputs)
    want = _torch_outputs(model, inputs)
    assert _max_diff(got, want, inputs["attention_mask"]) <= TOL
    q = OnnxBackend(int8, threads=1)(inputs)
    e32 = _mean_pool(got["last_hidden_state"], inputs["attention_mask"])
    e8 = _mean_pool(q["last_hidden_state"], inputs["attention_mask"])
    cos = (e32 * e8).sum(-1)                                     # (B,)
    print(f"int8 vs fp32 embedding cosine on {len(cos)} sentences: min {cos.min():.4f} "
          f"mean {cos.mean():.4f}")
    assert cos.min() >= 0.99
    import onnx

    nodes = onnx.load(str(int8)).graph.node
    ops = [n.op_type for n in nodes]
    assert ops.count("QAttention") == 6
    assert ops.count("MatMulInteger") == 6 * 3 + 1  # attention out, fc1, fc2; + pooler
    fp32_matmuls = [n.name for n in nodes if n.op_type == "MatMul"]
    assert 1 <= len(fp32_matmuls) <= 12  # only the outlier channels' side MatMuls stay float32
    assert all(n.endswith("/outliers/MatMul") for n in fp32_matmuls), fp32_matmuls


def test_outlier_channels_by_hand():
    peaks = np.array([1.0, 1.2, 0.9, 5.0, 1.0, 0.5, 9.0])  # median 1.0
    assert outlier_channels(peaks, 4.0).tolist() == [3, 6]
    assert outlier_channels(peaks, 6.0).tolist() == [6]
    assert outlier_channels(peaks, 10.0).tolist() == []


def test_outlier_split_is_exact_and_finds_real_text_outliers(minilm_dir, minilm_onnx,
                                                             real_sentences, tmp_path):
    """The split graph computes the same function in float32 (Y = (X * keep) W + X[S] W[S]),
    and the channels that random-id calibration picks (peak > 4x the median channel) include,
    at every FFN MatMul, each channel whose |x| on real sentences exceeds 6x the median
    channel's (found by torch hooks on the torch model)."""
    fp32, _ = minilm_onnx
    nodes = ffn_nodes(fp32)
    assert len(nodes) == 12
    import onnx

    by_name = {n.name: n for n in onnx.load(str(fp32)).graph.node}
    calibrated = calibrate_channels(fp32, [by_name[n].input[0] for n in nodes])
    split = tmp_path / "split.onnx"
    added = split_outlier_channels(fp32, split, nodes, peaks=calibrated)
    assert added and all(a.endswith("/outliers/MatMul") for a in added)
    tok = bertkit.BertTokenizer.from_pretrained(minilm_dir)
    enc = tok(real_sentences, max_length=256, truncation=True, padding=True, return_tensors="pt")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    assert _max_diff(OnnxBackend(split, threads=1)(inputs), OnnxBackend(fp32, threads=1)(inputs),
                     inputs["attention_mask"]) <= TOL

    model = bertkit.AutoModel.from_pretrained(minilm_dir).eval()
    real: dict[str, torch.Tensor] = {}
    mask = inputs["attention_mask"].bool()

    def peak(name):
        def hook(module, args, output):
            real[name] = args[0][mask].abs().amax(0)                                # (C,)
        return hook

    for name, module in model.named_modules():
        if name.endswith(("ffn.fc1", "ffn.fc2")):
            module.register_forward_hook(peak(name))
    with torch.inference_mode():
        model(**inputs)
    found = 0
    for node in nodes:
        layer, part = node.split("/")[2], node.split("/")[4]            # layers.i, fc1|fc2
        strong = outlier_channels(real[f"{layer}.ffn.{part}"].numpy(), 6.0).tolist()
        picked = outlier_channels(calibrated[by_name[node].input[0]]).tolist()
        assert set(strong) <= set(picked), (node, strong, picked)
        found += len(strong)
    assert found >= 6  # e.g. MiniLM's channel 99 at every fc1


def test_int8_embeddings_keep_cosine_099_on_real_sentences_and_snippets(minilm_dir, minilm_onnx):
    """Every text, not the mean: int8 MiniLM's mean-pooled embedding through the
    feature-extraction pipeline at its default batching (2,048 padded tokens on a CPU) has
    cosine >= 0.99 to fp32's, on 1,000 Wikipedia sentences and on all 1,281 Rotten Tomatoes dev
    snippets (short texts: harder). onnxruntime picks the activations' int8 scale per batch, so
    a text's result depends on its batch-mates; before the outlier channels were split off
    (the first two layers' fc2 in float32 instead) the worst were 0.9899 and 0.986 here, with
    1 sentence and 24 snippets below 0.99."""
    import json

    from bertkit.data.corpora import fetch_corpus, spread_sentences
    from bertkit.data.labelled import fetch_labelled
    from bertkit.inference.pipelines import pipeline

    sentences = spread_sentences(fetch_or_skip(fetch_corpus, "wikipedia-en"), 1000)
    dev = fetch_or_skip(fetch_labelled, "rotten-tomatoes")["dev"]
    snippets = [json.loads(line)["text"] for line in dev.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    fp32, int8 = minilm_onnx
    e32, e8 = (pipeline("feature-extraction", model=minilm_dir, backend="onnx", onnx_file=f)
               for f in (fp32, int8))
    assert e32.max_batch_tokens == 2048
    for name, texts in (("Wikipedia sentences", sentences), ("RT dev snippets", snippets)):
        cos = (e32(texts, normalize=True) * e8(texts, normalize=True)).sum(-1)        # (N,)
        print(f"int8 vs fp32 embedding cosine on {len(cos)} {name}: min {cos.min():.4f} "
              f"p01 {cos.quantile(0.01):.4f} mean {cos.mean():.4f}")
        assert cos.min() >= 0.99, name
    assert len(sentences) == 1000 and len(snippets) == 1281


@pytest.mark.parametrize("arch", ["BertForMultipleChoice", "AlbertModel"])
def test_int8_of_other_graph_shapes(arch, batches, tmp_path):
    """quantize_onnx calibrates (B, K, T) multiple-choice inputs and ALBERT's shared layers
    too; the int8 outputs stay close to fp32's (cosine of the flattened real-token outputs)."""
    cls = dict(CASES)[arch]
    config = CONFIGS[cls.config_class.model_type]
    torch.manual_seed(0)
    cls(config).eval().save_pretrained(tmp_path / "m")
    fp32 = export_onnx(tmp_path / "m", tmp_path / "fp32.onnx")
    int8 = quantize_onnx(fp32, tmp_path / "int8.onnx")
    inputs = _inputs(batches[0], config)
    if arch == "BertForMultipleChoice":
        inputs = {n: v.reshape(-1, 1, v.shape[-1]) for n, v in inputs.items()}
    want, got = OnnxBackend(fp32, 1)(inputs), OnnxBackend(int8, 1)(inputs)
    for name in want:
        cos = torch.nn.functional.cosine_similarity(got[name].flatten(), want[name].flatten(), 0)
        assert cos > 0.99, (name, float(cos))


def test_bad_inputs(tmp_path):
    empty = tmp_path / "noweights"
    empty.mkdir()
    BertConfig(**SMALL).to_json_file(empty / "config.json")
    with pytest.raises(ExportError, match="no weights"):
        export_onnx(empty, tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="no such model directory"):
        export_onnx(tmp_path / "missing", tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="no config.json"):
        export_onnx(tmp_path, tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="no such ONNX file"):
        OnnxBackend(tmp_path / "x.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noweights"]


# -- bertkit export --format onnx, and the backend registry's entry point ----------------------

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny") / "model"
    bertkit.BertModel(CONFIGS["bert"]).eval().save_pretrained(d)
    return d


def test_cli_export_onnx(tiny_dir, tmp_path, batches, capsys):
    from bertkit.cli import main

    out = tmp_path / "m.onnx"
    assert main(["export", str(tiny_dir), "--format", "onnx", "--out", str(out)]) == 0
    assert main(["export", str(tiny_dir), "--format", "onnx", "--int8",
                 "--out", str(tmp_path / "q.onnx")]) == 0
    inputs = _inputs(batches[0], CONFIGS["bert"])
    model = bertkit.BertModel.from_pretrained(tiny_dir).eval()
    want = _torch_outputs(model, inputs)
    assert _max_diff(OnnxBackend(out, 1)(inputs), want, inputs["attention_mask"]) <= TOL
    q = OnnxBackend(tmp_path / "q.onnx", 1)(inputs)["pooler_output"]
    assert torch.nn.functional.cosine_similarity(q, want["pooler_output"]).min() > 0.99
    assert main(["export", str(tiny_dir), "--format", "onnx", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "q.onnx"]


@pytest.mark.parametrize("flags,message", [
    (["--format", "tf"], "invalid choice: 'tf'"),
    (["--format", "onnx"], "no weights"),
])
def test_cli_export_bad_input(flags, message, tmp_path, capsys):
    from bertkit.cli import main

    src = tmp_path / "noweights"
    src.mkdir()
    BertConfig(**SMALL).to_json_file(src / "config.json")
    out = tmp_path / "out" / "m.onnx"
    try:
        code = main(["export", str(src), *flags, "--out", str(out)])
    except SystemExit as e:  # argparse's own exit for a bad choice
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and "Traceback" not in "\n".join(err)
    assert not out.exists() and not any((tmp_path / "out").glob("*")) if (
        tmp_path / "out").exists() else True


def test_backend_registry_serves_the_export(tiny_dir, tmp_path, batches):
    """``load_backend("onnx", DIR)`` (the pipelines' entry) serves DIR/model.onnx."""
    import shutil

    from bertkit.inference.backends import load_backend

    d = tmp_path / "model"
    shutil.copytree(tiny_dir, d)
    export_onnx(d, d / "model.onnx")
    backend = load_backend("onnx", d, threads=1)
    inputs = _inputs(batches[1], CONFIGS["bert"])
    want = _torch_outputs(bertkit.BertModel.from_pretrained(d).eval(), inputs)
    assert _max_diff(backend(inputs), want, inputs["attention_mask"]) <= TOL


def test_cli_export_onnx_from_training_checkpoint(pretrain_args, tmp_path, capsys):
    """A pre-training run exports straight to ONNX (BertForPreTraining: MLM logits)."""
    from bertkit.cli import main
    from bertkit.train import pretrain as P

    args = pretrain_args(tmp_path / "run", max_steps=2, save_every=2)
    assert P.run_pretrain(args) == 0
    out = tmp_path / "run.onnx"
    assert main(["export", str(tmp_path / "run"), "--format", "onnx", "--out", str(out)]) == 0
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    model = bertkit.BertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(5, model.config.vocab_size, (3, 20))
    mask = torch.ones_like(ids)
    mask[0, 12:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    backend = OnnxBackend(out, 1)
    assert backend.output_names == ("logits",)
    assert _max_diff(backend(inputs), _torch_outputs(model, inputs), mask) <= TOL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "run", "run.onnx"]
