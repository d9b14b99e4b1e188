"""Task distillation on real data, end to end: teacher, distilled student, labels-alone student.

Issue 21's acceptance experiments (``--data rt``: Rotten Tomatoes, ``--data wnut16``: WNUT-16 NER):

1. teacher: all-MiniLM-L6-v2 fine-tuned by ``bertkit finetune`` on the training split (seeded
   sample of ``--train-limit`` examples; 0 = all), its dev metric recorded;
2. the dev metric of the untrained 3-layer students ``0,2,4`` and ``1,3,5`` copied from the teacher
   (the reason for ``--student-layers``);
3. distilled: ``bertkit distill --task`` from the teacher into ``--student-layers`` on the
   training split plus, for Rotten Tomatoes, the corpus's unlabelled ``plot`` synopses (all 1,083),
   ``--seeds``;
4. labels alone: the same student, same code, ``--alpha-hard 1`` (cross-entropy on the labels
   only) on the training split alone, for the same number of optimizer steps (its ``--epochs``
   scaled so), the same seeds.

Prints one JSON object (and writes it to ``--json``): teacher metric, mean +- std of both arms,
their difference, the share of the teacher's metric the distilled student keeps, and student and
teacher inference tokens/s on the dev set measured in the same run (timing on a loaded machine
is not representative; the accuracies are). Every stage writes into ``--work`` and is reused
when its summary is already there, so an interrupted run continues and the two arms can run in
two processes (``--arms distilled`` and ``--arms labels``), then one more call (``--arms none``)
prints the report.

Usage:
    python benchmarks/bench_distill_task.py --data rt --work /tmp/distill-rt \\
        --json benchmarks/results/2026-12-07-cpu-distill-rt.json
"""

from __future__ import annotations

import argparse
import bz2
import csv
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from bertkit.artifacts import fetch_file, minilm_dir
from bertkit.data.labelled import ROTTEN_TOMATOES_FILE, fetch_labelled, sample_split
from bertkit.distill.general import DistillArgs, run_distill
from bertkit.fileio import atomic_write_text
from bertkit.finetune.run import FinetuneArgs, run_finetune

DATA = {"rt": {"dataset": "rotten-tomatoes", "task": "classification", "metric": "accuracy",
               "suffix": ".jsonl"},
        "wnut16": {"dataset": "wnut16", "task": "ner", "metric": "f1", "suffix": ".txt"}}


def plot_snippets(out: Path) -> Path:
    """The Rotten Tomatoes corpus's ``plot`` rows (synopses, no label) as JSONL ``{"text"}``."""
    rows = []
    with bz2.open(fetch_file(ROTTEN_TOMATOES_FILE), "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] == "plot" and row["text"].strip():
                rows.append(json.dumps({"text": row["text"]}))
    atomic_write_text(out, "\n".join(rows) + "\n")
    return out


def teacher(a: argparse.Namespace, spec: dict[str, Any], train: Path, dev: Path) -> Path:
    """Fine-tune (or reuse) the teacher in WORK/teacher; returns its model directory."""
    run = a.work / "teacher"
    if not (run / "results.json").is_file():
        run_finetune(FinetuneArgs(
            task=spec["task"], model=str(minilm_dir()), train=str(train), dev=str(dev),
            out=str(run), epochs=a.teacher_epochs, lr=a.teacher_lr, batch_size=32,
            max_seq_length=a.max_seq_length, seed=1, threads=a.threads, decay_after_warmup=True,
            bias_correction=True, progress=False))
    return run / "best"


def init_metrics(a: argparse.Namespace, spec: dict[str, Any], teacher_dir: Path, dev: Path
                 ) -> dict[str, float]:
    """Dev metric of the untrained students copied from teacher layers 0,2,4 and 1,3,5."""
    from bertkit.config import AutoConfig
    from bertkit.distill.student import build_student
    from bertkit.finetune.run import predict_split, settings_from
    from bertkit.finetune.tasks import make_task
    from bertkit.models.heads import label_names
    from bertkit.tokenization import AutoTokenizer

    labels = label_names(AutoConfig.from_json_file(teacher_dir / "config.json"))
    fa = FinetuneArgs(task=spec["task"], model=str(teacher_dir), train=str(dev), dev=str(dev),
                      out="-", labels=labels, max_seq_length=a.max_seq_length, progress=False)
    task = make_task(spec["task"], settings_from(fa), AutoTokenizer.from_pretrained(teacher_dir))
    split = task.load_all({"dev": dev})["dev"]
    model = task.model_class(teacher_dir).from_pretrained(teacher_dir).eval()
    out = {}
    for layers in ((0, 2, 4), (1, 3, 5)):
        student = build_student(model, layers)
        outputs = predict_split(task, student, split, 64, torch.device("cpu"))
        out[",".join(map(str, layers))] = task.evaluate(split, outputs)[spec["metric"]]
    return out


def arm(a: argparse.Namespace, spec: dict[str, Any], name: str, teacher_dir: Path, train: Path,
        dev: Path, unlabelled: Path | None, epochs: float, alpha_hard: float
        ) -> dict[str, Any] | None:
    """One arm over ``--seeds`` in WORK/<name> (reused when its summary.json is there)."""
    run = a.work / name
    if not (run / "summary.json").is_file():
        t0 = time.perf_counter()
        run_distill(DistillArgs(
            task=spec["task"], teacher=str(teacher_dir), train=str(train), dev=str(dev),
            unlabelled=str(unlabelled) if unlabelled else None, out=str(run),
            student_layers=a.student_layers, epochs=epochs, batch_size=32, lr=a.lr,
            temperature=a.temperature, alpha_hard=alpha_hard, max_seq_length=a.max_seq_length,
            eval_batch_size=64, decay_after_warmup=True, threads=a.threads, progress=False,
            device="cpu", seeds=a.seeds))
        logging.info("%s: %.0f s", name, time.perf_counter() - t0)
    return load_arm(run)


def load_arm(run: Path) -> dict[str, Any] | None:
    """An arm's summary; of the seeds finished so far (``partial``) when it was stopped early."""
    from bertkit.distill.task import seeds_summary

    if (run / "summary.json").is_file():
        return json.loads((run / "summary.json").read_text(encoding="utf-8"))
    done = sorted(run.glob("seed-*/summary.json"), key=lambda p: int(p.parent.name[5:]))
    if not done:
        return None
    out = seeds_summary([json.loads(p.read_text(encoding="utf-8")) for p in done])
    out["partial"] = True
    return out


def inference_speed(a: argparse.Namespace, spec: dict[str, Any], teacher_dir: Path, dev: Path,
                    students: list[Path]) -> dict[str, Any]:
    """Teacher and distilled students' inference tokens/s on dev, in one process: ``rounds``
    rounds, each timing the teacher and every student once in alternating order; medians."""
    import statistics

    from bertkit.config import AutoConfig
    from bertkit.finetune.run import FinetuneArgs, predict_split, settings_from
    from bertkit.finetune.tasks import make_task
    from bertkit.models.heads import label_names
    from bertkit.tokenization import AutoTokenizer

    labels = label_names(AutoConfig.from_json_file(teacher_dir / "config.json"))
    fa = FinetuneArgs(task=spec["task"], model=str(teacher_dir), train=str(dev), dev=str(dev),
                      out="-", labels=labels, max_seq_length=a.max_seq_length, progress=False)
    task = make_task(spec["task"], settings_from(fa), AutoTokenizer.from_pretrained(teacher_dir))
    split = task.load_all({"dev": dev})["dev"]
    tokens = sum(split.lengths())
    models = {"teacher": task.model_class(teacher_dir).from_pretrained(teacher_dir).eval()}
    for path in students:
        models[path.parent.name] = task.model_class(path).from_pretrained(path).eval()
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(a.speed_rounds):
        order = list(models.items())
        if r % 2:
            order.reverse()
        for name, model in order:
            t0 = time.perf_counter()
            predict_split(task, model, split, 64, torch.device("cpu"))
            times[name].append(time.perf_counter() - t0)
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    return {"rounds": a.speed_rounds, "threads": a.threads, "dev_tokens": tokens,
            "tokens_per_s": {k: round(v, 1) for k, v in tps.items()},
            "student_over_teacher": {k: round(v / tps["teacher"], 3)
                                     for k, v in tps.items() if k != "teacher"}}


def count_lines(path: Path, spec: dict[str, Any]) -> int:
    """Training examples in ``path`` (JSONL rows, or CoNLL sentences)."""
    text = path.read_text(encoding="utf-8")
    if spec["suffix"] == ".jsonl":
        return sum(1 for line in text.splitlines() if line.strip())
    return sum(1 for block in text.split("\n\n") if block.strip())


def report(spec: dict[str, Any], teacher_res: dict[str, Any], distilled: dict[str, Any],
           labels: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON report of the arms' summaries."""
    m = spec["metric"]
    d = distilled[f"student_dev_{m}"]
    t = distilled[f"teacher_dev_{m}"]
    out: dict[str, Any] = {
        "task": spec["task"], "dataset": spec["dataset"], "metric": m, **extra,
        "teacher": {f"dev_{m}": t, "finetune_dev": teacher_res["dev"],
                    "params": distilled["teacher_params"], "layers": distilled["teacher_layers"]},
        "student": {"params": distilled["student_params"],
                    "layers": distilled["student_layers"]},
        "seeds": distilled["seeds"], "partial": bool(distilled.get("partial")
                                                     or (labels or {}).get("partial")),
        "distilled": {k: d[k] for k in ("mean", "std", "min", "max", "n")},
        "distilled_per_seed": [r[f"student_dev_{m}"] for r in distilled["per_seed"]],
        "share_of_teacher_kept": d["mean"] / t if t else None,
        "teacher_tokens_per_s": distilled["teacher_tokens_per_s"]["mean"],
        "student_tokens_per_s": distilled["student_tokens_per_s"]["mean"],
        "speedup": distilled["speedup"]["mean"],
    }
    if labels is not None:
        b = labels[f"student_dev_{m}"]
        out["labels_alone"] = {k: b[k] for k in ("mean", "std", "min", "max", "n")}
        out["labels_alone_per_seed"] = [r[f"student_dev_{m}"] for r in labels["per_seed"]]
        out["distilled_minus_labels_alone"] = d["mean"] - b["mean"]
        out["labels_alone_share_of_teacher"] = b["mean"] / t if t else None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=sorted(DATA), default="rt")
    p.add_argument("--work", type=Path, required=True, help="stage directory (reused)")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--train-limit", type=int, default=3000, help="training examples (0 = all)")
    p.add_argument("--teacher-epochs", type=float, default=2.0)
    p.add_argument("--teacher-lr", type=float, default=5e-5)
    p.add_argument("--student-layers", default="1,3,5")
    p.add_argument("--epochs", type=float, default=2.0, help="distilled arm's passes")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha-hard", type=float, default=0.5)
    p.add_argument("--dev-limit", type=int, default=0, help="dev examples (0 = all; smoke runs)")
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
    p.add_argument("--arms", default="distilled,labels",
                   help="arms to run (or reuse): distilled, labels, none (report only)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--speed-rounds", type=int, default=0,
                   help="also time the teacher and each seed's best student on dev in one "
                        "process, alternating, this many rounds (medians): run it alone on a "
                        "quiet machine, as the distillation runs' own timing is one pass each")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(a.threads)
    spec = DATA[a.data]
    a.work.mkdir(parents=True, exist_ok=True)
    src = fetch_labelled(spec["dataset"])
    train = a.work / f"train{spec['suffix']}"
    if not train.is_file():
        if a.train_limit:
            sample_split(src["train"], train, a.train_limit, seed=0)
        else:
            train.write_bytes(Path(src["train"]).read_bytes())
    unlabelled = None
    if a.data == "rt":
        unlabelled = a.work / "plot.jsonl"
        if not unlabelled.is_file():
            plot_snippets(unlabelled)
    dev = Path(src["dev"])
    if a.dev_limit:
        dev = sample_split(dev, a.work / f"dev{spec['suffix']}", a.dev_limit, seed=0)
    t0 = time.perf_counter()
    teacher_dir = teacher(a, spec, train, dev)
    n_train = count_lines(train, spec)
    n_unl = count_lines(unlabelled, spec) if unlabelled else 0
    # the same optimizer steps for both arms: labels-alone passes over the smaller set more often
    steps = max(1, round(math.ceil((n_train + n_unl) / 32) * a.epochs))
    label_epochs = steps / math.ceil(n_train / 32)
    arms = [x for x in a.arms.split(",") if x and x != "none"]
    summaries: dict[str, dict[str, Any]] = {}
    for name in ("distilled", "labels"):
        if name in arms:
            got = (arm(a, spec, name, teacher_dir, train, dev, unlabelled, a.epochs, a.alpha_hard)
                   if name == "distilled" else
                   arm(a, spec, name, teacher_dir, train, dev, None, label_epochs, 1.0))
        else:
            got = load_arm(a.work / name)
        if got is not None:
            summaries[name] = got
    if "distilled" not in summaries:
        logging.info("no distilled summary in %s yet: nothing to report", a.work)
        return
    init_file = a.work / "init_metrics.json"
    if not init_file.is_file():
        atomic_write_text(init_file, json.dumps(init_metrics(a, spec, teacher_dir, dev)) + "\n")
    extra = {"n_train": n_train, "n_unlabelled": n_unl, "n_dev": count_lines(dev, spec),
             "steps_per_arm": steps, "distilled_epochs": a.epochs,
             "labels_alone_epochs": round(label_epochs, 4), "student_layers": a.student_layers,
             "untrained_student_dev": json.loads(init_file.read_text(encoding="utf-8")),
             "lr": a.lr, "temperature": a.temperature, "alpha_hard": a.alpha_hard,
             "teacher_epochs": a.teacher_epochs, "teacher_lr": a.teacher_lr,
             "max_seq_length": a.max_seq_length, "batch_size": 32, "threads": a.threads,
             "torch": torch.__version__, "device": "cpu",
             "seconds_this_call": round(time.perf_counter() - t0, 1)}
    teacher_res = json.loads((a.work / "teacher" / "results.json").read_text(encoding="utf-8"))
    out = report(spec, teacher_res, summaries["distilled"], summaries.get("labels"), extra)
    if a.speed_rounds:
        bests = sorted((a.work / "distilled").glob("seed-*/best"))
        out["inference_speed_same_process"] = inference_speed(a, spec, teacher_dir, dev, bests)
    text = json.dumps(out, indent=1)
    print(text)
    if a.json:
        atomic_write_text(a.json, text + "\n")


if __name__ == "__main__":
    main()
