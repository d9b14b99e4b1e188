"""Task heads vs transformers on the real all-MiniLM-L6-v2 encoder: same logits, both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bertkit.config import BertConfig
from bertkit.convert.hf import CheckpointError
from bertkit.models import heads
from bertkit.tokenization import BertTokenizer

transformers = pytest.importorskip("transformers")

HEADS = [
    ("BertForSequenceClassification", ["neg", "neu", "pos"]),
    ("BertForSequenceClassification", None),  # regression
    ("BertForTokenClassification", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
    ("BertForQuestionAnswering", None),
    ("BertForMultipleChoice", None),
]


def _hf_kwargs(arch: str, labels: list[str] | None) -> dict:
    if arch == "BertForSequenceClassification" and labels is None:
        return {"num_labels": 1, "problem_type": "regression"}
    if labels is not None:
        return {"id2label": dict(enumerate(labels)), "label2id": {x: i for i, x in enumerate(labels)}}
    return {}


def _inputs(tok: BertTokenizer, sentences: list[str], arch: str) -> dict[str, torch.Tensor]:
    enc = tok(sentences[:3], sentences[3:6], max_length=64)
    if arch == "BertForMultipleChoice":  # (B=1, K=3, T)
        return {k: v[None] for k, v in enc.items()}
    return dict(enc)


def _outputs(out) -> list[torch.Tensor]:
    if isinstance(out, tuple):
        return list(out)
    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "start_logits"):
        return [out.start_logits, out.end_logits]
    return [out.logits]


@pytest.mark.parametrize(("arch", "labels"), HEADS)
def test_head_matches_transformers_both_ways(arch: str, labels: list[str] | None, minilm_dir: Path,
                                             real_sentences: list[str], tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf_cls = getattr(transformers, arch)
    hf = hf_cls.from_pretrained(minilm_dir, **_hf_kwargs(arch, labels)).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = heads.ARCHITECTURES[arch].from_pretrained(tmp_path / "hf").eval()
    if arch == "BertForSequenceClassification":
        assert heads.is_regression(ours.config) == (labels is None)
        assert heads.label_names(ours.config) == (labels or ["LABEL_0"])
    tok = BertTokenizer(minilm_dir / "vocab.txt")
    x = _inputs(tok, real_sentences, arch)
    with torch.no_grad():
        want = _outputs(hf(**x))
        got = _outputs(ours(**x))
    mask = x["attention_mask"].bool()
    for w, g in zip(want, got, strict=True):
        if arch in ("BertForTokenClassification", "BertForQuestionAnswering"):
            w, g = w[mask], g[mask]  # padded positions are not compared
        torch.testing.assert_close(g, w, atol=2e-5, rtol=1e-5)

    # ours -> transformers: no missing or unexpected keys, same logits
    ours.save_pretrained(tmp_path / "ours")
    back, info = hf_cls.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        again = _outputs(back.eval()(**x))
    for w, g in zip(want, again, strict=True):
        if arch in ("BertForTokenClassification", "BertForQuestionAnswering"):
            g = g[mask]
            w = w[mask]
        torch.testing.assert_close(g, w, atol=2e-5, rtol=1e-5)
    assert heads.load_task_model(tmp_path / "ours").__class__.__name__ == arch


def test_base_checkpoint_gets_fresh_head_with_labels(minilm_dir: Path) -> None:
    model = heads.BertForSequenceClassification.from_pretrained(
        minilm_dir, id2label={"0": "fresh", "1": "rotten"}, label2id={"fresh": 0, "rotten": 1})
    assert model.classifier.weight.shape == (2, 384)
    assert heads.label_names(model.config) == ["fresh", "rotten"]
    cfg = heads.with_labels(BertConfig.from_preset("tiny"), ["a", "b", "c"])
    assert heads.BertForTokenClassification(cfg).classifier.out_features == 3
    with pytest.raises(ValueError, match="duplicate"):
        heads.with_labels(BertConfig.from_preset("tiny"), ["a", "a"])


def test_wrong_label_count_is_a_clear_error(minilm_dir: Path, tmp_path: Path) -> None:
    cfg = heads.with_labels(BertConfig.from_json_file(minilm_dir / "config.json"), ["a", "b", "c"])
    heads.BertForSequenceClassification(cfg).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="classifier.weight"):
        heads.BertForSequenceClassification.from_pretrained(
            tmp_path, id2label={"0": "x", "1": "y"}, label2id={"x": 0, "y": 1})


def test_losses_match_torch_reference() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 7, 5, generator=g)
    labels = torch.randint(0, 5, (4, 7), generator=g)
    labels[:, 0] = heads.IGNORE_INDEX
    keep = labels != heads.IGNORE_INDEX
    want = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(heads.token_classification_loss(logits, labels), want)
    s, e = torch.randn(4, 9, generator=g), torch.randn(4, 9, generator=g)
    sp, ep = torch.tensor([0, 3, 8, 20]), torch.tensor([0, 4, 8, 30])  # beyond T: no loss
    want = (torch.nn.functional.cross_entropy(s[:3], sp[:3])
            + torch.nn.functional.cross_entropy(e[:3], ep[:3])) / 2
    torch.testing.assert_close(heads.qa_loss(s, e, sp, ep), want)


def _fresh_head(method: str, minilm_dir: Path, n_labels: int) -> torch.Tensor:
    labels = [f"L{i}" for i in range(n_labels)]
    with heads.head_init(method):
        model = heads.BertForTokenClassification.from_pretrained(
            minilm_dir, **heads.label_entries(labels))
    return model.classifier.weight.detach().flatten()


def test_new_head_init_is_transformers_normal_by_default_or_googles_truncated(
        minilm_dir: Path) -> None:
    """A new head's weights follow transformers' N(0, 0.02) by default (two-sample KS test against
    transformers' own freshly initialised classifier), or Google's 2-std truncation on request."""
    from scipy import stats

    torch.manual_seed(0)
    n = 64  # 384 x 64 = 24,576 weights per head
    hf = transformers.BertForTokenClassification.from_pretrained(minilm_dir, num_labels=n)
    theirs = hf.classifier.weight.detach().flatten()
    ours = _fresh_head("normal", minilm_dir, n)
    truncated = _fresh_head("truncated", minilm_dir, n)
    assert stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > 1e-3
    assert stats.ks_2samp(truncated.numpy(), theirs.numpy()).pvalue < 1e-6
    # normal: about 4.6% beyond 2 std (binomial sd 0.13%); truncated: none, std 0.88 x 0.02
    assert 0.04 < (ours.abs() > 0.04).float().mean().item() < 0.051
    assert truncated.abs().max().item() <= 0.04
    assert truncated.std().item() == pytest.approx(0.02 * 0.8796, rel=0.03)
    with pytest.raises(ValueError, match="head init 'uniform'"), heads.head_init("uniform"):
        pass
