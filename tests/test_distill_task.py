"""``bertkit distill --task classification`` on real Rotten Tomatoes snippets (labelled) and the
corpus's plot synopses (unlabelled), with the real MiniLM encoder under a seeded head as teacher."""

from __future__ import annotations

import bz2
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from realdata import fetch_or_skip
from seeded_heads import head_dir

from bertkit.distill import general as G
from bertkit.distill.losses import DistillError


@pytest.fixture(scope="module")
def rt_small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """96 train and 48 dev snippets (seeded samples), 48 plot synopses without labels."""
    from bertkit.artifacts import fetch_file
    from bertkit.data.labelled import ROTTEN_TOMATOES_FILE, fetch_labelled, sample_split

    src = fetch_or_skip(fetch_labelled, "rotten-tomatoes")
    d = tmp_path_factory.mktemp("rt-distill")
    plots = []
    with bz2.open(fetch_or_skip(fetch_file, ROTTEN_TOMATOES_FILE), "rt", encoding="utf-8",
                  newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] == "plot" and row["text"].strip():
                plots.append(json.dumps({"text": row["text"]}))
            if len(plots) == 48:
                break
    (d / "plot.jsonl").write_text("\n".join(plots) + "\n", encoding="utf-8")
    return {"train": sample_split(src["train"], d / "train.jsonl", 96, seed=1),
            "dev": sample_split(src["dev"], d / "dev.jsonl", 48, seed=1),
            "unlabelled": d / "plot.jsonl"}


@pytest.fixture(scope="module")
def cls_teacher(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return head_dir(minilm_dir, tmp_path_factory.mktemp("t") / "cls",
                    "BertForSequenceClassification", ["fresh", "rotten"], seed=0)


def _args(rt_small, teacher: Path, out: Path, **kw) -> G.DistillArgs:
    base = dict(task="classification", teacher=str(teacher), train=str(rt_small["train"]),
                dev=str(rt_small["dev"]), unlabelled=str(rt_small["unlabelled"]), out=str(out),
                student_layers="0,2,4", epochs=3, batch_size=16, lr=2e-4, max_seq_length=48,
                eval_batch_size=32, threads=1, progress=False, device="cpu", seed=0)
    base.update(kw)
    return G.DistillArgs(**base)


def test_student_learns_the_teachers_soft_targets(rt_small, cls_teacher: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    from bertkit.finetune import run as finetune_run
    from bertkit.models.auto import AutoModelForSequenceClassification

    calls: list[tuple[str, int]] = []
    orig = finetune_run.predict_split

    def counting(task, model, split, *a, **k):
        calls.append((split.name, len(split.features)))
        return orig(task, model, split, *a, **k)

    monkeypatch.setattr(finetune_run, "predict_split", counting)
    args = _args(rt_small, cls_teacher, tmp_path / "run")
    assert G.run_distill(args) == 0
    # the teacher's logits on the 96 labelled + 48 unlabelled inputs: computed once, not per epoch
    assert [c for c in calls if c[0] == "train"] == [("train", 144)]
    history = [json.loads(line) for line in
               (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_soft_loss"] < 0.8 * history[0]["train_soft_loss"], history
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    results = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert summary["student_layers"] == 3 and summary["teacher_layers"] == 6
    assert summary["student_params"] < summary["teacher_params"]
    assert summary["student_dev_accuracy"] == results["dev"]["accuracy"]
    assert summary["share_kept"] == pytest.approx(
        summary["student_dev_accuracy"] / summary["teacher_dev_accuracy"])
    assert summary["student_tokens_per_s"] > 0 and summary["teacher_tokens_per_s"] > 0
    best = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "best")
    assert best.config.num_hidden_layers == 3
    assert (tmp_path / "run" / "dev_results.tsv").is_file()


@pytest.mark.parametrize("case", ["no-head", "other-task"])
def test_teacher_without_the_tasks_head_is_refused(case: str, rt_small, minilm_dir: Path,
                                                   tmp_path: Path) -> None:
    if case == "no-head":
        teacher, err, match = minilm_dir, ValueError, "not a fine-tuned model"
    else:
        teacher = head_dir(minilm_dir, tmp_path / "ner", "BertForTokenClassification",
                           ["O", "B-x", "I-x"])
        err, match = DistillError, "fine-tuned for ner.*not classification"
    out = tmp_path / "run"
    with pytest.raises(err, match=match):
        G.run_distill(_args(rt_small, teacher, out))
    assert not out.exists()


# ----------------------------------------------------------------------------- ner, --seeds


@pytest.fixture(scope="module")
def wnut_small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """48 train and 24 dev WNUT-16 sentences (seeded samples), 24 more as tokens alone."""
    from bertkit.data.labelled import fetch_labelled, sample_split
    from bertkit.data.ner import read_conll

    src = fetch_or_skip(fetch_labelled, "wnut16")
    d = tmp_path_factory.mktemp("wnut-distill")
    extra = read_conll(sample_split(src["test"], d / "extra.txt", 24, seed=2))
    (d / "untagged.txt").write_text("".join("\n".join(s.tokens) + "\n\n" for s in extra),
                                    encoding="utf-8")
    return {"train": sample_split(src["train"], d / "train.txt", 48, seed=1),
            "dev": sample_split(src["dev"], d / "dev.txt", 24, seed=1),
            "unlabelled": d / "untagged.txt",
            "labels": sorted({t for s in read_conll(src["train"]) for t in s.tags})}


@pytest.fixture(scope="module")
def ner_teacher(minilm_dir: Path, wnut_small, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return head_dir(minilm_dir, tmp_path_factory.mktemp("t") / "ner",
                    "BertForTokenClassification", wnut_small["labels"], seed=0)


def test_ner_rows_are_the_tokens_finetune_labels(wnut_small, ner_teacher: Path) -> None:
    """The soft-target rows of a labelled sentence are exactly the tokens bertkit finetune --task
    ner trains on (each word's first piece); an unlabelled sentence has the same rows, no labels."""

    from bertkit.distill.task import _targets
    from bertkit.finetune.run import FinetuneArgs, settings_from
    from bertkit.finetune.tasks import make_task
    from bertkit.tokenization import AutoTokenizer

    fa = FinetuneArgs(task="ner", model=str(ner_teacher), train="x", dev="x", out="x",
                      labels=wnut_small["labels"], max_seq_length=48)
    task = make_task("ner", settings_from(fa), AutoTokenizer.from_pretrained(ner_teacher))
    splits = task.load_all({"train": wnut_small["train"], "dev": wnut_small["dev"],
                            "test": wnut_small["unlabelled"]})
    feats = splits["train"].features[:6] + splits["test"].features[:2]
    logits = [np.full((len(f.input_ids), len(wnut_small["labels"])), i, np.float32)
              for i, f in enumerate(feats)]
    got = _targets("ner", feats, [f.label for f in feats], logits)
    gold = task.collate(feats[:6])["labels"]                        # (6, T) finetune's labels
    width = gold.shape[1]
    assert torch.equal(got["label_mask"][:6, :width], gold.ne(-100))
    assert torch.equal(got["labels"][:6, :width], gold)
    assert got["label_mask"][6:].any() and got["labels"][6:].eq(-100).all()
    for i, f in enumerate(feats):  # each row's own teacher logits, zeros in the padding
        assert got["teacher_logits"][i, :len(f.input_ids)].eq(i).all()
        assert got["teacher_logits"][i, len(f.input_ids):].eq(0).all()


def test_ner_distillation_over_seeds(wnut_small, ner_teacher: Path, tmp_path: Path,
                                     monkeypatch, capsys) -> None:
    import statistics

    from bertkit.finetune import run as finetune_run

    calls: list[str] = []
    orig = finetune_run.predict_split

    def counting(task, model, split, *a, **k):
        calls.append(split.name)
        return orig(task, model, split, *a, **k)

    monkeypatch.setattr(finetune_run, "predict_split", counting)
    run = tmp_path / "run"
    args = G.DistillArgs(task="ner", teacher=str(ner_teacher), train=str(wnut_small["train"]),
                         dev=str(wnut_small["dev"]), unlabelled=str(wnut_small["unlabelled"]),
                         out=str(run), student_layers="1,3,5", epochs=3, batch_size=8, lr=2e-4,
                         max_seq_length=48, eval_batch_size=32, threads=1, progress=False,
                         device="cpu", seeds=[3, 4])
    assert G.run_distill(args) == 0
    assert calls.count("train") == 1  # the teacher's logits: once for both seeds
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["metric"] == "f1" and summary["seeds"] == [3, 4]
    f1s = []
    for seed in (3, 4):
        history = [json.loads(line) for line in
                   (run / f"seed-{seed}" / "metrics.jsonl").read_text().splitlines()]
        assert history[-1]["train_soft_loss"] < 0.8 * history[0]["train_soft_loss"], history
        f1s.append(json.loads((run / f"seed-{seed}" / "results.json").read_text())["dev"]["f1"])
        assert (run / f"seed-{seed}" / "best" / "config.json").is_file()
    assert summary["student_dev_f1"]["mean"] == pytest.approx(statistics.fmean(f1s))
    assert summary["student_dev_f1"]["std"] == pytest.approx(statistics.stdev(f1s))
    assert [r["student_dev_f1"] for r in summary["per_seed"]] == f1s
    assert summary["student_layers"] == 3 and summary["speedup"]["n"] == 2
    shown = capsys.readouterr().out
    assert "student_dev_f1" in shown and "seed 4" in shown
