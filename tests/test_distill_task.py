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


@pytest.fixture
def predict_calls(monkeypatch) -> list[tuple[str, int, int]]:
    """Every ``finetune.run.predict_split`` call of the test, as (split name, features, model
    layers): which model ran over which data how often."""
    from bertkit.finetune import run as finetune_run

    calls: list[tuple[str, int, int]] = []
    orig = finetune_run.predict_split

    def counting(task, model, split, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append((split.name, len(split.features), model.config.num_hidden_layers))
        return orig(task, model, split, *a, **k)

    monkeypatch.setattr(finetune_run, "predict_split", counting)
    return calls


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
                                                  predict_calls) -> None:
    from bertkit.models.auto import AutoModelForSequenceClassification

    args = _args(rt_small, cls_teacher, tmp_path / "run")
    assert G.run_distill(args) == 0
    # the teacher's logits on the 96 labelled + 48 unlabelled inputs: computed once, not per epoch
    assert [c[:2] for c in predict_calls if c[0] == "train"] == [("train", 144)]
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
                                     predict_calls, capsys) -> None:
    import statistics

    run = tmp_path / "run"
    args = G.DistillArgs(task="ner", teacher=str(ner_teacher), train=str(wnut_small["train"]),
                         dev=str(wnut_small["dev"]), unlabelled=str(wnut_small["unlabelled"]),
                         out=str(run), student_layers="1,3,5", epochs=3, batch_size=8, lr=2e-4,
                         max_seq_length=48, eval_batch_size=32, threads=1, progress=False,
                         device="cpu", seeds=[3, 4])
    assert G.run_distill(args) == 0
    assert [c[0] for c in predict_calls].count("train") == 1  # teacher logits: once, both seeds
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


# ----------------------------------------------------------------------------- regression, qa, mc
# Teachers: MiniLM's layers 0 and 5 under a seeded head (fast); students: MiniLM's layer 3 under
# a fresh head of the task (--student DIR). Each test checks, apart from the run's own logging,
# that the distilled student is nearer the teacher on the training inputs than a fresh student,
# and that the files carry finetune's metric names.


@pytest.fixture(scope="module")
def student_dir(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM's layer 3 alone, no task head, with the teacher's tokenizer files."""
    import shutil

    from bertkit.distill.student import build_student
    from bertkit.models.auto import AutoModel

    out = tmp_path_factory.mktemp("student") / "L1"
    build_student(AutoModel.from_pretrained(minilm_dir), (3,)).save_pretrained(out)
    for f in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_dir / f, out / f)
    return out


def _outputs(kind: str, model, model_dir: Path, data: Path, max_seq_length: int) -> list:
    """``model``'s per-feature outputs on ``data`` (read as a dev file), each cut to its
    feature's own tokens."""
    from bertkit.finetune.run import FinetuneArgs, predict_split, settings_from
    from bertkit.finetune.tasks import make_task
    from bertkit.tokenization import AutoTokenizer

    fa = FinetuneArgs(task=kind, model=str(model_dir), train="x", dev="x", out="x",
                      max_seq_length=max_seq_length, doc_stride=32, max_query_length=32)
    task = make_task(kind, settings_from(fa), AutoTokenizer.from_pretrained(model_dir))
    split = task.load_all({"dev": data})["dev"]
    outs = predict_split(task, model.eval(), split, 32, torch.device("cpu"))
    if kind == "qa":
        return [np.stack([s[:len(f.input_ids)], e[:len(f.input_ids)]])
                for (s, e), f in zip(outs, split.features, strict=True)]
    return outs


def _distance(kind: str, student: list, teacher: list) -> float:
    """Mean over features of the squared error (regression) or KL(teacher || student) at
    T = 1 over choices (multiple-choice) or over tokens, start and end averaged (qa)."""
    if kind == "regression":
        return float(np.mean([(s[0] - t[0]) ** 2 for s, t in zip(student, teacher, strict=True)]))

    def kl(s: np.ndarray, t: np.ndarray) -> float:
        ls = torch.log_softmax(torch.tensor(s, dtype=torch.float64), -1)
        lt = torch.log_softmax(torch.tensor(t, dtype=torch.float64), -1)
        return float((lt.exp() * (lt - ls)).sum(-1).mean())  # qa: mean of start and end rows

    return float(np.mean([kl(s, t) for s, t in zip(student, teacher, strict=True)]))


def _moves_toward_teacher(kind: str, teacher_dir: Path, student_dir: Path | None, run: Path,
                          data: Path, max_seq_length: int) -> tuple[float, float]:
    """(distance to the teacher on ``data`` of the starting student, of the run's best one).
    The starting student: ``student_dir`` under a fresh head, or (None) the teacher's layer 0
    under the teacher's head (``--student-layers 0``)."""
    from bertkit.distill.student import build_student
    from bertkit.finetune.run import FinetuneArgs, settings_from
    from bertkit.finetune.tasks import make_task
    from bertkit.tokenization import AutoTokenizer

    fa = FinetuneArgs(task=kind, model=str(teacher_dir), train="x", dev="x", out="x")
    task = make_task(kind, settings_from(fa), AutoTokenizer.from_pretrained(teacher_dir))
    teacher = task.model_class(teacher_dir).from_pretrained(teacher_dir)
    torch.manual_seed(0)
    fresh = build_student(teacher, (0,)) if student_dir is None else task.build_model(student_dir)
    best = task.model_class(run / "best").from_pretrained(run / "best")
    t, s0, s1 = (_outputs(kind, m, teacher_dir, data, max_seq_length)
                 for m in (teacher, fresh, best))
    return _distance(kind, s0, t), _distance(kind, s1, t)


def _task_args(kind: str, teacher: Path, data: dict[str, Path], out: Path, **kw
               ) -> G.DistillArgs:
    base = dict(task=kind, teacher=str(teacher), train=str(data["train"]), dev=str(data["dev"]),
                unlabelled=str(data["unlabelled"]), out=str(out), epochs=4,
                batch_size=16, lr=5e-4, max_seq_length=64, eval_batch_size=32, threads=1,
                progress=False, device="cpu", seed=0)
    base.update(kw)
    return G.DistillArgs(**base)


def _history(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text(encoding="utf-8").split("\n")
            if x]


@pytest.fixture(scope="module")
def rt_scores(rt_small) -> dict[str, Path]:
    """rt_small as a regression set: the score 1.0 for a fresh snippet, 0.0 for a rotten one
    (real text, a target by rule); the plot synopses stay unlabelled."""
    out = {"unlabelled": rt_small["unlabelled"]}
    for split in ("train", "dev"):
        rows = [json.loads(x) for x in rt_small[split].read_text(encoding="utf-8").split("\n")
                if x]
        path = rt_small[split].with_name(f"{split}-scores.jsonl")
        path.write_text("".join(json.dumps({"text": r["text"],
                                            "label": float(r["label"] == "fresh")}) + "\n"
                                for r in rows), encoding="utf-8")
        out[split] = path
    return out


@pytest.fixture(scope="module")
def reg_teacher(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return head_dir(minilm_dir, tmp_path_factory.mktemp("t") / "reg",
                    "BertForSequenceClassification", None, seed=0, regression=True, layers=(0, 5))


def test_regression_student_learns_the_teachers_predictions(rt_scores, reg_teacher: Path,
                                                            student_dir: Path,
                                                            tmp_path: Path) -> None:
    """--max-steps overrides --epochs (3 epochs of 9 updates would be 27)."""
    run = tmp_path / "run"
    assert G.run_distill(_task_args("regression", reg_teacher, rt_scores, run, epochs=3,
                                    max_steps=20, student=str(student_dir))) == 0
    history = _history(run)
    assert [h["step"] for h in history] == [9, 18, 20]  # 144 rows / 16; the last epoch cut short
    assert history[-1]["train_soft_loss"] < history[0]["train_soft_loss"], history
    before, after = _moves_toward_teacher("regression", reg_teacher, student_dir, run,
                                          rt_scores["train"], 64)
    assert after < 0.5 * before, (before, after)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert results["steps"] == 20 and {"pearson", "spearman", "mse"} <= set(results["dev"])
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["metric"] == "pearson"
    assert summary["student_dev_pearson"] == results["dev"]["pearson"]
    assert (run / "dev_results.tsv").read_text().startswith("guid\tprediction\n")


@pytest.fixture(scope="module")
def qa_small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SQuAD v2 files of real text (the disfl-qa recipe's layout, tests/bigbench_samples.py):
    24 train, 16 dev and 16 test questions, and 16 more with their answers and impossible
    flags removed (unlabelled)."""
    from bigbench_samples import squad_v2_splits

    from bertkit.data.labelled import sample_split

    d = tmp_path_factory.mktemp("qa-distill")
    (d / "src").mkdir()
    src = squad_v2_splits(d / "src")
    extra = json.loads(sample_split(src["train"], d / "extra.json", 16, seed=2).read_text())
    for article in extra["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                qa["answers"], qa["id"] = [], f"u-{qa['id']}"
                qa.pop("is_impossible", None)
                qa.pop("plausible_answers", None)
    (d / "unlabelled.json").write_text(json.dumps(extra), encoding="utf-8")
    return {"train": sample_split(src["train"], d / "train.json", 24, seed=1),
            "dev": sample_split(src["dev"], d / "dev.json", 16, seed=1),
            "test": sample_split(src["test"], d / "test.json", 16, seed=1),
            "unlabelled": d / "unlabelled.json"}


@pytest.fixture(scope="module")
def qa_teacher(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return head_dir(minilm_dir, tmp_path_factory.mktemp("t") / "qa",
                    "BertForQuestionAnswering", None, seed=0, layers=(0, 5))


def test_qa_student_learns_the_teachers_spans_per_window(qa_small, qa_teacher: Path,
                                                         student_dir: Path, tmp_path: Path,
                                                         predict_calls) -> None:
    from bertkit.data.squad import read_squad

    run = tmp_path / "run"
    args = _task_args("qa", qa_teacher, qa_small, run, test=str(qa_small["test"]),
                      max_seq_length=96, doc_stride=32, max_query_length=32,
                      student=str(student_dir))
    assert G.run_distill(args) == 0
    unanswered = read_squad(qa_small["unlabelled"], answers_optional=True)
    assert unanswered and not any(e.answers or e.is_impossible for e in unanswered)
    teacher_calls = [n for name, n, _ in predict_calls if name == "train"]
    assert len(teacher_calls) == 1  # every window of both files, once
    assert teacher_calls[0] > len(read_squad(qa_small["train"])) + len(unanswered)  # windows
    before, after = _moves_toward_teacher("qa", qa_teacher, student_dir, run,
                                          qa_small["train"], 96)
    assert after < 0.7 * before, (before, after)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert {"exact", "f1"} <= set(results["dev"]) and {"exact", "f1"} <= set(results["test"])
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["metric"] == "f1" and summary["student_test_f1"] == results["test"]["f1"]
    for split in ("dev", "test"):
        preds = json.loads((run / split / "predictions.json").read_text(encoding="utf-8"))
        assert set(preds) == {e.qid for e in read_squad(qa_small[split])}


@pytest.fixture(scope="module")
def mmlu_small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MMLU (SWAG layout): 48 train, 24 dev questions; 24 more without the label column
    (unlabelled) and 16 test questions, also without it (predicted, not scored)."""
    from bertkit.data.labelled import fetch_labelled, sample_split

    src = fetch_or_skip(fetch_labelled, "mmlu")
    d = tmp_path_factory.mktemp("mmlu-distill")

    def unlabelled(name: str, n: int, seed: int) -> Path:
        rows = list(csv.reader(sample_split(src["test"], d / f"{name}-l.csv", n, seed=seed)
                               .open(encoding="utf-8", newline="")))
        keep = [i for i, c in enumerate(rows[0]) if c != "label"]
        with (d / f"{name}.csv").open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows([[r[i] for i in keep] for r in rows])
        return d / f"{name}.csv"

    return {"train": sample_split(src["train"], d / "train.csv", 48, seed=1),
            "dev": sample_split(src["dev"], d / "dev.csv", 24, seed=1),
            "unlabelled": unlabelled("unlabelled", 24, 2), "test": unlabelled("test", 16, 3)}


@pytest.fixture(scope="module")
def mc_teacher(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return head_dir(minilm_dir, tmp_path_factory.mktemp("t") / "mc",
                    "BertForMultipleChoice", None, seed=0, layers=(0, 5), scale=400.0)


def _teachers_choices(mc_teacher: Path, dev: Path, out: Path) -> Path:
    """``dev`` with the teacher's choice (its highest score, by finetune's inference path) as
    the label: dev accuracy is then the student's agreement with the teacher, so the best epoch
    is the one nearest the teacher (a random teacher's choices are not MMLU's answers)."""
    from bertkit.finetune.run import FinetuneArgs, settings_from
    from bertkit.finetune.tasks import make_task
    from bertkit.tokenization import AutoTokenizer

    fa = FinetuneArgs(task="multiple-choice", model=str(mc_teacher), train="x", dev="x", out="x")
    task = make_task("multiple-choice", settings_from(fa), AutoTokenizer.from_pretrained(mc_teacher))
    teacher = task.model_class(mc_teacher).from_pretrained(mc_teacher)
    choices = [int(np.argmax(o)) for o in _outputs("multiple-choice", teacher, mc_teacher, dev, 64)]
    rows = list(csv.reader(dev.open(encoding="utf-8", newline="")))
    at = rows[0].index("label")
    for r, c in zip(rows[1:], choices, strict=True):
        r[at] = str(c)
    with out.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return out


def test_multiple_choice_student_learns_the_teachers_choice_scores(mmlu_small, mc_teacher: Path,
                                                                   tmp_path: Path) -> None:
    """A student of the teacher's layer 0 (its head copied; a fresh 0.02-sized head would need
    far more than 20 updates to reach the teacher's scaled choice scores), without dropout
    (--dropout 0: with the scaled head, dropout moves a choice's score more than the teacher's
    choices differ); unlabelled questions and an unlabelled --test file."""
    from bertkit.data.multiple_choice import read_swag

    run = tmp_path / "run"
    dev = _teachers_choices(mc_teacher, mmlu_small["dev"], tmp_path / "dev-teacher.csv")
    args = _task_args("multiple-choice", mc_teacher, {**mmlu_small, "dev": dev}, run,
                      test=str(mmlu_small["test"]), student_layers="0", dropout=0.0,
                      alpha_hard=0.0)
    assert G.run_distill(args) == 0
    history = _history(run)
    assert [h["step"] for h in history] == [5, 10, 15, 20]  # 48 + 24 rows in batches of 16
    assert history[-1]["train_soft_loss"] < 0.8 * history[0]["train_soft_loss"], history
    before, after = _moves_toward_teacher("multiple-choice", mc_teacher, None, run,
                                          mmlu_small["train"], 64)
    assert after < 0.8 * before, (before, after)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert set(results["dev"]) == {"accuracy"} and "test" not in results  # test: no labels
    test_rows = (run / "test_results.tsv").read_text(encoding="utf-8").splitlines()
    assert len(test_rows) == 1 + len(read_swag(mmlu_small["test"]))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["metric"] == "accuracy" and summary["teacher_dev_accuracy"] == 1.0
    assert summary["student_dev_accuracy"] == results["dev"]["accuracy"]


@pytest.mark.parametrize("task, teacher, match", [
    ("multiple-choice", "qa", "fine-tuned for qa.*not multiple-choice"),
    ("classification", "regression", "fine-tuned for regression.*not classification"),
    ("qa", "multiple-choice", "fine-tuned for multiple-choice.*not qa")])
def test_new_kinds_refuse_a_teacher_of_another_task(task: str, teacher: str, match: str,
                                                    request, tmp_path: Path) -> None:
    teacher_dir = request.getfixturevalue({"qa": "qa_teacher", "regression": "reg_teacher",
                                           "multiple-choice": "mc_teacher"}[teacher])
    out = tmp_path / "run"
    args = G.DistillArgs(task=task, teacher=str(teacher_dir), train=str(tmp_path / "t"),
                         dev=str(tmp_path / "d"), out=str(out), threads=1, device="cpu")
    with pytest.raises(DistillError, match=match):
        G.run_distill(args)
    assert not out.exists()


def test_test_file_without_task_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = G.DistillArgs(teacher=str(tmp_path), data=str(tmp_path), out=str(out),
                         test=str(tmp_path / "test.jsonl"), threads=1, device="cpu")
    with pytest.raises(ValueError, match="--test: only with --task"):
        G.run_distill(args)
    assert not out.exists()


def test_qa_window_rows_do_not_depend_on_batch_padding() -> None:
    """A window's soft and hard loss is the same alone or padded beside a longer window, however
    large the student's logits at the padding (the KL and cross-entropy run over its own
    tokens): checked against the loss of the window alone, unpadded."""
    from types import SimpleNamespace

    from bertkit.distill.losses import task_distill_loss
    from bertkit.distill.task_targets import loss_inputs, targets

    g = torch.Generator().manual_seed(0)
    short, long_ = SimpleNamespace(input_ids=[0] * 5), SimpleNamespace(input_ids=[0] * 9)
    t_short, t_long = (torch.randn(2, n, generator=g).numpy() for n in (5, 9))
    s_short, s_long = torch.randn(2, 5, generator=g), torch.randn(2, 9, generator=g)

    def loss(feats, labels, teacher, student, mask):
        batch = {**targets("qa", feats, labels, teacher), "attention_mask": mask}
        return task_distill_loss("qa", *loss_inputs("qa", student, batch), alpha_hard=0.5)

    alone = loss([short], [(1, 3)], [t_short], (s_short[0:1], s_short[1:2]), torch.ones(1, 5))
    pad = torch.full((4,), 50.0)  # junk the student puts at the padding
    mask = torch.tensor([[1] * 5 + [0] * 4, [1] * 9])
    both = loss([short, long_], [(1, 3), (-100, -100)], [t_short, t_long],
                (torch.stack([torch.cat([s_short[0], pad]), s_long[0]]),
                 torch.stack([torch.cat([s_short[1], pad]), s_long[1]])), mask)
    only_long = loss([long_], [(-100, -100)], [t_long], (s_long[0:1], s_long[1:2]),
                     torch.ones(1, 9))
    # mean over the 2 rows of the soft loss; the hard loss is the short window's alone
    assert float(both.soft) == pytest.approx((float(alone.soft) + float(only_long.soft)) / 2)
    assert float(both.hard) == pytest.approx(float(alone.hard))


# ----------------------------------------------------------------------------- resume
# A tiny random BERT (2 layers, width 128) on MiniLM's first 5,000 vocabulary entries under a
# seeded classification head as teacher, its layer 0 as student (dropout on: the RNG must be
# restored too): each run takes seconds. On the CPU, threads 1 (bitwise equality).


@pytest.fixture(scope="module")
def tiny_teacher(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    from bertkit.config import BertConfig
    from bertkit.models.bert import BertModel

    root = tmp_path_factory.mktemp("tiny-teacher")
    torch.manual_seed(0)
    BertModel(BertConfig.from_preset("tiny", vocab_size=5000)).save_pretrained(root / "base")
    vocab = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines(True)[:5000]
    (root / "base" / "vocab.txt").write_text("".join(vocab), encoding="utf-8")
    shutil.copyfile(minilm_dir / "tokenizer_config.json", root / "base" / "tokenizer_config.json")
    return head_dir(root / "base", root / "cls", "BertForSequenceClassification",
                    ["fresh", "rotten"], seed=0)


def _cli(rt_small, teacher: Path, out: Path, *extra: str) -> list[str]:
    """2 epochs of 9 updates (96 labelled + 48 unlabelled rows, batch 16); a checkpoint every 4
    steps and at each epoch's end."""
    return ["distill", "--task", "classification", "--teacher", str(teacher),
            "--train", str(rt_small["train"]), "--dev", str(rt_small["dev"]),
            "--unlabelled", str(rt_small["unlabelled"]), "--out", str(out),
            "--student-layers", "0", "--epochs", "2", "--batch-size", "16", "--lr", "2e-3",
            "--max-seq-length", "48", "--eval-batch-size", "32", "--save-every", "4",
            "--threads", "1", "--device", "cpu", "--no-progress", *extra]


def _task_outcome(run: Path) -> dict:
    """results.json, summary.json and metrics.jsonl less timings; best weights, dev predictions."""
    res = json.loads((run / "results.json").read_text())
    for e in res["epochs"]:
        e.pop("train_seconds")
    res["files"] = [str(Path(f).relative_to(run)) for f in res["files"]]
    summary = json.loads((run / "summary.json").read_text())
    for k in ("teacher_tokens_per_s", "student_tokens_per_s", "speedup"):
        summary.pop(k)
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        m.pop("train_seconds")
    return {"results": res, "summary": summary, "metrics": metrics,
            **{f: (run / f).read_bytes() for f in ("best/model.safetensors", "dev_results.tsv")}}


@pytest.fixture(scope="module")
def task_straight(rt_small, tiny_teacher: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Path:
    """The uninterrupted run of :func:`_cli`, its checkpoints kept (read-only)."""
    from bertkit.cli import main

    run = tmp_path_factory.mktemp("td-straight") / "run"
    assert main(_cli(rt_small, tiny_teacher, run, "--keep-checkpoints")) == 0
    return run


def test_task_distill_killed_mid_epoch_then_resumed_equals_straight(
        rt_small, tiny_teacher: Path, task_straight: Path, tmp_path: Path, caplog) -> None:
    """SIGKILL right after checkpoint-12 (epoch 2, batch 3 of 9), then ``--resume RUN`` alone:
    metrics, results, summary (less timings), best weights, dev predictions and the last
    checkpoint's weights and Adam moments equal the straight run's."""
    import logging

    from test_finetune_resume import _kill_after, _same_training

    from bertkit.cli import main
    from bertkit.train import checkpoint as C

    killed = tmp_path / "killed"
    _kill_after(_cli(rt_small, tiny_teacher, killed, "--keep-checkpoints"), 12, "killed")
    assert [s for s, _ in C.list_checkpoints(killed)] == [8, 9, 12]  # --keep-last 3
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (killed / "summary.json").exists()
    with caplog.at_level(logging.INFO, logger="bertkit.distill"):
        assert main(["distill", "--resume", str(killed), "--threads", "1", "--no-progress"]) == 0
    assert "at step 12 (epoch 2, batch 3 of it)" in caplog.text
    straight = _task_outcome(task_straight)
    assert [m["step"] for m in straight["metrics"]] == [9, 18]
    assert all(m["train_soft_loss"] > 0 for m in straight["metrics"])
    assert _task_outcome(killed) == straight
    _same_training(task_straight, killed)


def test_task_distill_sigterm_checkpoints_then_resumed_equals_straight(
        rt_small, tiny_teacher: Path, task_straight: Path, tmp_path: Path) -> None:
    """SIGTERM after step 3 (no --save-every checkpoint there): the run saves checkpoint-3 and
    exits 128 + 15; resumed, it ends as the straight run."""
    import signal
    import subprocess
    import sys
    import textwrap

    from test_finetune_resume import _TERM_AFTER_STEP, _same_training

    from bertkit.cli import main
    from bertkit.train import checkpoint as C

    stopped = tmp_path / "stopped"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_TERM_AFTER_STEP.format(step=3)),
                           *_cli(rt_small, tiny_teacher, stopped, "--keep-checkpoints")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert [s for s, _ in C.list_checkpoints(stopped)] == [3]
    assert main(["distill", "--resume", str(stopped), "--threads", "1", "--no-progress"]) == 0
    assert _task_outcome(stopped) == _task_outcome(task_straight)
    _same_training(task_straight, stopped)


def test_task_distill_seeds_resume_skips_finished_seeds(rt_small, tiny_teacher: Path,
                                                        tmp_path: Path) -> None:
    """--seeds 1 2, one epoch: killed after seed 2's checkpoint at step 4, --resume auto keeps
    seed 1 as it was and continues seed 2; each seed equals the straight run's, and finished
    seeds keep no checkpoints."""
    from test_finetune_resume import _kill_after

    from bertkit.cli import main
    from bertkit.train import checkpoint as C

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    extra = ("--epochs", "1", "--seeds", "1", "2")
    assert main([*_cli(rt_small, tiny_teacher, straight), *extra]) == 0
    _kill_after([*_cli(rt_small, tiny_teacher, killed), *extra], 4, "seed-2")
    seed1 = (killed / "seed-1" / "summary.json").read_bytes()
    assert main([*_cli(rt_small, tiny_teacher, killed), *extra, "--resume", "auto"]) == 0
    assert (killed / "seed-1" / "summary.json").read_bytes() == seed1  # not run again
    for seed in ("seed-1", "seed-2"):
        assert not C.list_checkpoints(killed / seed)
        assert _task_outcome(straight / seed) == _task_outcome(killed / seed)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (straight, killed))
    assert a["student_dev_accuracy"] == b["student_dev_accuracy"]


def test_task_distill_resume_without_checkpoint_is_refused(task_straight: Path, tmp_path: Path,
                                                           capsys) -> None:
    """A task run stopped before its first checkpoint (args.json alone): --resume RUN is
    refused (naming the run), nothing is written."""
    from bertkit.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "args.json").write_bytes((task_straight / "args.json").read_bytes())
    assert main(["distill", "--resume", str(run), "--threads", "1"]) == 2
    assert f"--resume {run}: no checkpoint in {run} to resume from" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["args.json"]


def test_alpha_hard_1_skips_the_teachers_training_logits(rt_small, tiny_teacher: Path,
                                                         tmp_path: Path, predict_calls,
                                                         monkeypatch) -> None:
    """--alpha-hard 1 without --unlabelled: no teacher pass over the training set (only dev,
    for the summary), and the student is bit for bit the one trained with the teacher's
    training logits computed (their weight is 0)."""
    from bertkit.distill import task as T

    def teacher_calls() -> list[tuple[str, int]]:
        return [(name, n) for name, n, layers in predict_calls if layers == 2]  # the teacher

    kw = dict(unlabelled=None, alpha_hard=1.0, epochs=1, student_layers="0", lr=2e-3,
              max_seq_length=48)
    assert G.run_distill(_args(rt_small, tiny_teacher, tmp_path / "skip", **kw)) == 0
    assert teacher_calls() == [("dev", 48)]
    predict_calls.clear()
    monkeypatch.setattr(T, "_needs_soft_targets", lambda args, labels: True)
    assert G.run_distill(_args(rt_small, tiny_teacher, tmp_path / "full", **kw)) == 0
    assert ("train", 96) in teacher_calls()
    skip, full = _task_outcome(tmp_path / "skip"), _task_outcome(tmp_path / "full")
    assert "train_soft_loss" not in skip["metrics"][0] and "train_soft_loss" in full["metrics"][0]
    for m in full["metrics"]:
        m.pop("train_soft_loss")
    for e in full["results"]["epochs"]:
        e.pop("train_soft_loss")
    assert skip == full
