"""``bertkit pretrain --config roberta-mini|albert-mini|distilbert-mini`` on real SOTU text.

Each family gets its own tokenizer trained here on the training text (byte-level BPE for RoBERTa
with ``tokenizers``, a SentencePiece unigram model for ALBERT, WordPiece for DistilBERT) and its
recipe's data: RoBERTa full sentences with dynamic masking, ALBERT SOP with n-gram masking,
DistilBERT MLM only. Checked: the family's model trains, resumes exactly, exports a directory
that transformers' ``AutoModelForMaskedLM`` loads with no missing or unexpected keys and the same
logits.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from realdata import fetch_or_skip

from bertkit.data.pretraining import InstanceSettings, create_pretraining_data
from bertkit.data.shards import PretrainingDataset
from bertkit.train import pretrain as P

FAMILIES = ("roberta", "albert", "distilbert")
RECIPE = {"roberta": dict(objective="none", masking="dynamic"),
          "albert": dict(objective="sop", ngram=3),
          "distilbert": dict(objective="none")}
HF_CLASS = {"roberta": "RobertaForMaskedLM", "albert": "AlbertForPreTraining",
            "distilbert": "DistilBertForMaskedLM"}


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    """``train.txt`` (3,000 SOTU lines) and ``eval.txt`` (the next 400) in one directory."""
    from bertkit.data.corpora import fetch_corpus

    lines = fetch_or_skip(fetch_corpus, "sotu").read_text(encoding="utf-8").splitlines()
    root = tmp_path_factory.mktemp("sotu-families")
    (root / "train.txt").write_text("\n".join(lines[:3000]) + "\n", encoding="utf-8")
    (root / "eval.txt").write_text("\n".join(lines[3000:3400]) + "\n", encoding="utf-8")
    return root


def _tokenizer(family: str, train: Path, out: Path) -> Path:
    """The family's tokenizer, 800 entries, trained on ``train``; returns what --vocab takes."""
    out.mkdir()
    if family == "roberta":
        tokenizers = pytest.importorskip("tokenizers")
        bpe = tokenizers.ByteLevelBPETokenizer()
        bpe.train([str(train)], vocab_size=800, min_frequency=2, show_progress=False,
                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        bpe.save_model(str(out))
        return out
    if family == "albert":
        spm = pytest.importorskip("sentencepiece")
        spm.SentencePieceTrainer.train(
            input=str(train), model_prefix=str(out / "spiece"), vocab_size=800,
            model_type="unigram", pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
            control_symbols=["[CLS]", "[SEP]", "[MASK]"], character_coverage=1.0,
            num_threads=1, minloglevel=2)
        (out / "spiece.vocab").unlink()
        return out
    from bertkit.tokenization.vocab_training import train_vocab

    train_vocab([train], 800, out=out / "vocab.txt")
    return out / "vocab.txt"


@pytest.fixture(scope="module")
def family_data(text: Path, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """{family: {"train": data dir, "eval": data dir}} with each family's tokenizer and recipe."""
    out: dict[str, dict[str, Path]] = {}
    for family in FAMILIES:
        root = tmp_path_factory.mktemp(f"data-{family}")
        vocab = _tokenizer(family, text / "train.txt", root / "tokenizer")
        s = InstanceSettings(max_seq_length=32, max_predictions_per_seq=5, dupe_factor=1,
                             **RECIPE[family])
        out[family] = {}
        for split in ("train", "eval"):
            create_pretraining_data([str(text / f"{split}.txt")], vocab, root / split, s,
                                    workers=1, progress=False)
            out[family][split] = root / split
    return out


def _args(family: str, data: dict[str, Path], out: Path, **kw) -> P.PretrainArgs:
    base = dict(data=str(data["train"]), out=str(out), config=f"{family}-mini", batch_size=8,
                max_steps=4, lr=1e-3, warmup_steps=1, log_every=1, eval_every=0, save_every=2,
                threads=1, progress=False, device="cpu", dropout=0.0)
    base.update(kw)
    return P.PretrainArgs(**base)


@pytest.mark.real
@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_resumes_exactly_and_exports(family: str, family_data, tmp_path: Path
                                                   ) -> None:
    data = family_data[family]
    # a constant lr: the schedule of a 2-step run would differ from a 4-step one's
    straight = _args(family, data, tmp_path / "straight", schedule="constant", warmup_steps=0)
    assert P.run_pretrain(straight) == 0
    first = replace(straight, out=str(tmp_path / "resumed"), max_steps=2)
    assert P.run_pretrain(first) == 0
    assert P.run_pretrain(replace(first, max_steps=4, resume=first.out)) == 0

    def losses(run: str) -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in P.read_metrics(run) if r["split"] == "train"]

    assert losses(straight.out) == losses(first.out)
    keys = {r for r in P.read_metrics(straight.out)[0]}
    assert ("nsp_loss" in keys) == (family == "albert")  # SOP's loss for ALBERT only

    out = tmp_path / "export"
    assert P.run_export(P.ExportArgs(checkpoint=straight.out, out=str(out))) == 0
    transformers = pytest.importorskip("transformers")
    hf, info = getattr(transformers, HF_CLASS[family]).from_pretrained(
        out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    auto, info = transformers.AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"], info
    # ALBERT's export is AlbertForPreTraining; AlbertForMaskedLM has no SOP head and no pooler
    pretraining_only = ("sop_classifier.", "albert.pooler.") if family == "albert" else ()
    assert all(k.startswith(pretraining_only) for k in info["unexpected_keys"]), info
    from bertkit.data.vocab_files import data_tokenizer
    from bertkit.models.auto import AutoModelForMaskedLM

    tok = data_tokenizer(out)  # the export holds the data's tokenizer
    assert tok.vocab_size == PretrainingDataset(data["train"]).index["vocab"]["size"]
    batch = tok(["The Congress shall have power.", "We the people"], return_tensors="pt")
    ours = AutoModelForMaskedLM.from_pretrained(out).eval()
    with torch.no_grad():
        want = hf.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        want = want.prediction_logits if family == "albert" else want.logits
        got = ours(batch["input_ids"], batch["attention_mask"]).mlm_logits
        mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got[mask], want[mask], rtol=1e-4, atol=1e-4)


@pytest.mark.real
def test_objective_must_fit_the_family(family_data, tmp_path: Path) -> None:
    """RoBERTa and DistilBERT have no sentence-pair head: SOP/NSP data is refused, naming both."""
    with pytest.raises(ValueError, match="objective sop .*roberta.*--objective none"):
        P.run_pretrain(_args("roberta", family_data["albert"], tmp_path / "r",
                             config="roberta-mini"))
    assert not (tmp_path / "r").exists()


@pytest.mark.real
def test_cli_data_pretrain_export_with_a_sentencepiece_directory(family_data, text: Path,
                                                                  tmp_path: Path) -> None:
    """``bertkit create-pretraining-data --vocab DIR --objective sop --ngram 3``, then
    ``bertkit pretrain --config albert-mini`` and ``bertkit export``, in-process."""
    from bertkit.cli import main

    spm_dir = family_data["albert"]["train"].parent / "tokenizer"
    data, run, exp = tmp_path / "data", tmp_path / "run", tmp_path / "export"
    assert main(["create-pretraining-data", "--input", str(text / "eval.txt"), "--vocab",
                 str(spm_dir), "--out", str(data), "--objective", "sop", "--ngram", "3",
                 "--max-seq-length", "32", "--max-predictions-per-seq", "5", "--dupe-factor",
                 "1", "--workers", "1"]) == 0
    assert {"spiece.model", "index.json"} <= {p.name for p in data.iterdir()}
    assert main(["pretrain", "--data", str(data), "--out", str(run), "--config", "albert-mini",
                 "--max-steps", "2", "--batch-size", "4", "--save-every", "2", "--device",
                 "cpu", "--threads", "1", "--no-progress"]) == 0
    assert main(["export", str(run), "--out", str(exp)]) == 0
    config = (exp / "config.json").read_text(encoding="utf-8")
    assert '"model_type": "albert"' in config and "AlbertForPreTraining" in config
    assert (exp / "spiece.model").read_bytes() == (spm_dir / "spiece.model").read_bytes()


def _unigram(data: dict[str, Path]) -> tuple[float, int]:
    """Accuracy on held-out masked tokens of always guessing the training data's most frequent
    masked token, and the number of held-out predictions."""
    import numpy as np

    def labels(d: Path) -> np.ndarray:
        ds = PretrainingDataset(d)
        f = ds.features(np.arange(ds.total_rows))
        return f["masked_lm_ids"][f["masked_lm_weights"] > 0]

    held = labels(data["eval"])
    return float((held == np.bincount(labels(data["train"])).argmax()).mean()), len(held)


# steps and lr per family, measured: ALBERT (one shared layer) stays at the unigram solution
# for 300 steps at lr 1e-3 or 2e-3 and leaves it at 2.5e-4; RoBERTa and DistilBERT stay there
# at 3e-3 (batch 16, 250 steps) and leave it at 1e-3. DistilBERT at 150 steps sat on the plateau
# (5.46% vs 5.48%) with one of the vocabularies train-vocab gives (its ties fall differently per
# process); at 300 steps it reached 12.1% and 12.9% with the two seen.
LEARN = {"roberta": dict(max_steps=150, lr=1e-3), "distilbert": dict(max_steps=300, lr=1e-3),
         "albert": dict(max_steps=300, lr=2.5e-4)}


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.parametrize("family", FAMILIES)
def test_mini_preset_leaves_the_unigram_baseline(family: str, family_data, tmp_path: Path
                                                 ) -> None:
    """Each family's Mini preset from scratch, batches of 32 sequences of 32 tokens, beats the
    unigram guess on held-out SOTU masked tokens by more than 0.5 point (RoBERTa ~6,000 held-out
    predictions, DistilBERT ~5,500, ALBERT ~1,900: one standard error 0.3-0.5 point)."""
    data = family_data[family]
    unigram, n = _unigram(data)
    steps = LEARN[family]["max_steps"]
    args = _args(family, data, tmp_path / "run", eval_data=str(data["eval"]), batch_size=32,
                 warmup_steps=steps // 10, eval_batches=0, save_every=steps, log_every=50,
                 dropout=0.0, **LEARN[family])
    assert P.run_pretrain(args) == 0
    final = [r for r in P.read_metrics(args.out) if r["split"] == "eval"][-1]
    print(f"{family}-mini: held-out masked_lm_accuracy {final['masked_lm_accuracy']:.4f} vs "
          f"unigram {unigram:.4f} on {n} predictions")
    assert final["masked_lm_accuracy"] > unigram + 0.005, (final, unigram)
