"""CUDA paths: encoder numerics on the GPU, SDPA kernels, bf16/fp16 pre-training, torch.compile and
bf16 fine-tuning. CI has no GPU, so every test here is skipped there (the reason says so); on a GPU
machine run ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from bertkit.models.bert import BertModel
from bertkit.tokenization import BertTokenizer
from bertkit.train import pretrain as P

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (CI machines have none)")


def _encoded(minilm_dir: Path, sentences: list[str], device: str) -> dict[str, torch.Tensor]:
    tok = BertTokenizer.from_pretrained(minilm_dir)
    return {k: v.to(device) for k, v in tok(sentences, max_length=128).items()}


@pytest.mark.real
def test_encoder_on_cuda_matches_cpu_and_transformers(minilm_dir: Path,
                                                      real_sentences: list[str]) -> None:
    """fp32 on CUDA equals CPU and transformers (padded batch); bf16 autocast stays close."""
    transformers = pytest.importorskip("transformers")
    cpu = BertModel.from_pretrained(minilm_dir).eval()
    gpu = BertModel.from_pretrained(minilm_dir).eval().cuda()
    hf = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="sdpa").eval().cuda()
    x_cpu = _encoded(minilm_dir, real_sentences, "cpu")
    x_gpu = {k: v.cuda() for k, v in x_cpu.items()}
    mask = x_cpu["attention_mask"].bool()
    with torch.no_grad():
        want = cpu(**x_cpu).last_hidden_state
        got = gpu(**x_gpu).last_hidden_state.cpu()
        ref = hf(**x_gpu).last_hidden_state.cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = gpu(**x_gpu).last_hidden_state.float().cpu()
    assert (got - want)[mask].abs().max().item() < 1e-4
    assert (got - ref)[mask].abs().max().item() < 1e-4
    cos = torch.nn.functional.cosine_similarity(half[mask], want[mask], dim=-1)
    assert cos.min().item() > 0.99, cos.min().item()


@pytest.mark.real
def test_flash_and_memory_efficient_sdpa_kernels(minilm_dir: Path,
                                                 real_sentences: list[str]) -> None:
    """Unpadded bf16 inputs run on the flash kernel alone; padded ones on the memory-efficient
    kernel alone (which takes the mask); both equal the math path within bf16 error."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = BertModel.from_pretrained(minilm_dir).eval().cuda()
    one = _encoded(minilm_dir, real_sentences[-1:], "cuda")  # one sentence: no padding
    many = _encoded(minilm_dir, real_sentences, "cuda")
    for x, backend in ((one, SDPBackend.FLASH_ATTENTION), (many, SDPBackend.EFFICIENT_ATTENTION)):
        mask = x["attention_mask"].bool()
        inputs = {**x, "attention_mask": None} if backend == SDPBackend.FLASH_ATTENTION else x
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            with sdpa_kernel([backend]):
                fast = model(**inputs).last_hidden_state.float()
            with sdpa_kernel([SDPBackend.MATH]):
                slow = model(**inputs).last_hidden_state.float()
        cos = torch.nn.functional.cosine_similarity(fast[mask], slow[mask], dim=-1)
        assert cos.min().item() > 0.999, (backend, cos.min().item())


def _train_losses(run: Path) -> list[float]:
    return [r["loss"] for r in P.read_metrics(run) if r["split"] == "train"]


@pytest.mark.parametrize(("precision", "compile_"),
                         [("fp32", False), ("bf16", False), ("fp16", False), ("bf16", True)])
def test_pretrain_on_cuda_learns_in_each_precision(precision: str, compile_: bool, tiny_data,
                                                   pretrain_args, tmp_path: Path) -> None:
    """40 BERT-Tiny steps on real text: finite losses, none skipped, the loss falls, and the
    checkpoint resumes on the CPU (it holds plain fp32 tensors)."""
    args = pretrain_args(tmp_path / "run", device="cuda", precision=precision, compile=compile_,
                         max_steps=40, save_every=40, batch_size=16)
    assert P.run_pretrain(args) == 0
    losses = _train_losses(tmp_path / "run")
    assert len(losses) == 40 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5, losses
    rows = P.read_metrics(tmp_path / "run")
    assert all(r.get("nonfinite_total", 0) == 0 for r in rows)
    resumed = pretrain_args(tmp_path / "run", device="cpu", resume=str(tmp_path / "run"),
                            max_steps=42, save_every=42, batch_size=16)
    assert P.run_pretrain(resumed) == 0
    assert len(_train_losses(tmp_path / "run")) == 42


@pytest.mark.real
def test_finetune_on_cuda_in_bf16(tmp_path: Path) -> None:
    """Rotten Tomatoes, 1,000 snippets, 2 epochs on the GPU in bf16: well above the majority class."""
    from bertkit import artifacts
    from bertkit.data.labelled import fetch_labelled, sample_split
    from bertkit.finetune.run import FinetuneArgs, finetune

    splits = fetch_labelled("rotten-tomatoes")
    train = sample_split(splits["train"], tmp_path / "train.jsonl", 1000, seed=0)
    dev = sample_split(splits["dev"], tmp_path / "dev.jsonl", 400, seed=0)
    args = FinetuneArgs(task="classification", model=str(artifacts.minilm_dir()), train=str(train),
                        dev=str(dev), out=str(tmp_path / "run"), epochs=2, precision="bf16",
                        device="cuda", save_best=False, progress=False)
    res = finetune(args, tmp_path / "run", 1)
    import json

    labels = [json.loads(line)["label"] for line in dev.read_text(encoding="utf-8").splitlines()]
    majority = max(labels.count(x) for x in set(labels)) / len(labels)
    assert res["dev"]["accuracy"] > majority + 0.08, (res["dev"], majority)
