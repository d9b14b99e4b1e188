"""``bertkit distill --task classification`` on real Rotten Tomatoes snippets (labelled) and the
corpus's plot synopses (unlabelled), with the real MiniLM encoder under a seeded head as teacher."""

from __future__ import annotations

import bz2
import csv
import json
from pathlib import Path

import pytest
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
