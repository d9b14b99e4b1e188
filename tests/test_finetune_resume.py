"""``bertkit finetune`` checkpoints and ``--resume``: a run killed with SIGKILL right after a
checkpoint (or stopped by SIGTERM, which checkpoints first) and then continued ends as the
uninterrupted run, bit for bit (best weights, dev
predictions, results and metrics less their timings); continuing with flags that fix the model,
task or data order other than the run's, or from a run without a checkpoint, is refused.

A tiny random BERT on part of MiniLM's vocabulary (dropout on, so the RNG must be restored too) and 40
real Rotten Tomatoes snippets keep each run to seconds.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bertkit.cli import main
from bertkit.train import checkpoint as C

_KILL_AFTER_SAVE = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from bertkit.train import checkpoint as C
from bertkit.cli import main
orig = C.save_checkpoint
def save_then_die(run, step, *a, **k):
    path = orig(run, step, *a, **k)
    if step == {step} and os.path.basename(run) == {name!r}:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
C.save_checkpoint = save_then_die
sys.exit(main(sys.argv[1:]))
"""

_TERM_AFTER_STEP = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from bertkit.train import loop as L
from bertkit.cli import main
orig = L.train_step
def step_then_term(*a, **k):
    res = orig(*a, **k)
    if res.step == {step}:
        os.kill(os.getpid(), signal.SIGTERM)
    return res
L.train_step = step_then_term
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def ws(minilm_dir: Path, rt: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
       ) -> dict[str, Path]:
    """A tiny random BERT on MiniLM's first 5,000 vocabulary entries (its special tokens,
    characters and commonest words: small checkpoints); 40 training snippets, and 16 of them as
    dev, so that the dev score moves within 3 epochs (the best epoch is not simply the first)."""
    from bertkit.config import BertConfig
    from bertkit.models.bert import BertModel

    root = tmp_path_factory.mktemp("ft-resume")
    torch.manual_seed(0)
    base = root / "base"
    BertModel(BertConfig.from_preset("tiny", vocab_size=5000)).save_pretrained(base)
    vocab = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines(True)[:5000]
    (base / "vocab.txt").write_text("".join(vocab), encoding="utf-8")
    shutil.copyfile(minilm_dir / "tokenizer_config.json", base / "tokenizer_config.json")
    train, dev = root / "train.jsonl", root / "dev.jsonl"
    train.write_text("".join(rt["train"].read_text(encoding="utf-8").splitlines(True)[:40]))
    dev.write_text("".join(train.read_text(encoding="utf-8").splitlines(True)[:16]))
    return {"base": base, "train": train, "dev": dev}


def _flags(ws: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """3 epochs of 5 updates of batch 8; a checkpoint every 2 steps and at each epoch's end;
    on the CPU (bitwise equality: CUDA's backward of an embedding is not deterministic)."""
    return ["finetune", "--task", "classification", "--model", str(ws["base"]),
            "--train", str(ws["train"]), "--dev", str(ws["dev"]), "--out", str(out),
            "--epochs", "3", "--batch-size", "8", "--lr", "3e-3", "--save-every", "2",
            "--threads", "1", "--device", "cpu", "--no-progress", *extra]


def _kill_after(flags: list[str], step: int, name: str) -> None:
    """Run ``bertkit *flags`` in a subprocess that SIGKILLs itself right after writing
    ``name/checkpoint-step``."""
    script = textwrap.dedent(_KILL_AFTER_SAVE.format(step=step, name=name))
    proc = subprocess.run([sys.executable, "-c", script, *flags], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def straight(ws: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run of :func:`_flags`, its checkpoints kept (read-only)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert main(_flags(ws, run, "--keep-checkpoints")) == 0
    return run


def _results(run: Path) -> dict:
    """results.json less its timings, with paths relative to ``run``."""
    res = json.loads((run / "results.json").read_text())
    res.pop("train_seconds_per_epoch")
    for e in res["epochs"]:
        e.pop("train_seconds")
    res["files"] = [str(Path(f).relative_to(run)) for f in res["files"]]
    return res


def _metrics(run: Path) -> list[dict]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        r.pop("train_seconds")
    return recs


def _same_outcome(a: Path, b: Path) -> None:
    assert _results(a) == _results(b)
    assert _metrics(a) == _metrics(b)
    for f in ("best/model.safetensors", "best/config.json", "dev_results.tsv"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def _same_training(a: Path, b: Path) -> None:
    """The last checkpoints' weights and Adam moments are equal."""
    ca, cb = (C.load_checkpoint(C.list_checkpoints(d)[-1][1]) for d in (a, b))
    assert ca["loop"] == cb["loop"]
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k
    for k, v in ca["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], cb["optimizer"]["state"][k]["exp_avg_sq"]), k


def test_killed_mid_epoch_then_resumed_equals_straight(ws: dict[str, Path], straight: Path,
                                                       tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """SIGKILL right after the checkpoint at step 8 (epoch 2, batch 3 of 5), then ``--resume
    RUN`` alone: outputs, and the last checkpoint's weights and Adam moments, equal the
    straight run's."""
    killed = tmp_path / "killed"
    _kill_after(_flags(ws, killed, "--keep-checkpoints", "--resume", "auto"), 8, "killed")
    assert [s for s, _ in C.list_checkpoints(killed)] == [8]  # --keep-last 1
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (killed / "results.json").exists()
    with caplog.at_level(logging.INFO, logger="bertkit.finetune"):
        assert main(["finetune", "--resume", str(killed), "--threads", "1",
                     "--no-progress"]) == 0
    assert "at step 8 (epoch 2, batch 3 of it)" in caplog.text
    _same_outcome(straight, killed)
    assert len(_metrics(killed)) == 3
    _same_training(straight, killed)


def test_sigterm_checkpoints_then_resumed_equals_straight(ws: dict[str, Path], straight: Path,
                                                          tmp_path: Path) -> None:
    """SIGTERM after step 3 (no --save-every checkpoint there): the run saves checkpoint-3 and
    exits 128 + 15; resumed, it ends as the straight run."""
    stopped = tmp_path / "stopped"
    script = textwrap.dedent(_TERM_AFTER_STEP.format(step=3))
    proc = subprocess.run([sys.executable, "-c", script,
                           *_flags(ws, stopped, "--keep-checkpoints")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert "continue with --resume" in proc.stderr
    assert [s for s, _ in C.list_checkpoints(stopped)] == [3]
    assert main(["finetune", "--resume", str(stopped), "--threads", "1",
                 "--no-progress"]) == 0
    _same_outcome(straight, stopped)
    _same_training(straight, stopped)


def test_seeds_resume_skips_finished_seeds(ws: dict[str, Path], tmp_path: Path) -> None:
    """--seeds 1 2: killed after seed 2's first epoch, --resume auto keeps seed 1 as it was
    and continues seed 2 from its checkpoint; each seed and the summary equal the straight
    run's."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    extra = ("--epochs", "2", "--seeds", "1", "2")
    assert main([*_flags(ws, straight), *extra]) == 0
    _kill_after([*_flags(ws, killed), *extra], 5, "seed-2")  # seed 2's epoch 1 ends
    assert (killed / "args.json").is_file() and (killed / "seed-1" / "results.json").is_file()
    seed1 = (killed / "seed-1" / "results.json").read_bytes()
    assert main([*_flags(ws, killed), *extra, "--resume", "auto"]) == 0
    assert (killed / "seed-1" / "results.json").read_bytes() == seed1  # not run again
    # finished seeds hold no checkpoints (best/ and results.json are their outcome)
    assert not any(C.list_checkpoints(d / s) for d in (straight, killed)
                   for s in ("seed-1", "seed-2"))
    for seed in ("seed-1", "seed-2"):
        _same_outcome(straight / seed, killed / seed)
    a, b = (json.loads((d / "summary.json").read_text())["metrics"] for d in (straight, killed))
    a.pop("train_seconds_per_epoch"), b.pop("train_seconds_per_epoch")
    assert a == b


@pytest.fixture(scope="module")
def kept_run(ws: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch run with its checkpoint kept (read-only: copy it)."""
    run = tmp_path_factory.mktemp("kept") / "run"
    assert main([*_flags(ws, run), "--epochs", "1", "--keep-checkpoints"]) == 0
    assert [s for s, _ in C.list_checkpoints(run)] == [5]
    return run


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("extra, names", [
    (("--task", "regression"), ("--task regression conflicts with the run's --task "
                                "classification",)),
    (("--batch-size", "4"), ("--batch-size 4 conflicts with the run's --batch-size 8",)),
    (("--seed", "7"), ("--seed 7 conflicts with the run's --seed 42",)),
    (("--out", "elsewhere"), ("--out elsewhere differs from --resume",)),
])
def test_resume_refuses_flags_that_change_the_run(kept_run: Path, tmp_path: Path,
                                                  extra: tuple[str, ...], names: tuple[str, ...],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(kept_run, run)
    before = _snapshot(run)
    assert main(["finetune", "--resume", str(run), "--threads", "1", *extra]) == 2
    err = capsys.readouterr().err
    for name in names:
        assert name in err, err
    assert _snapshot(run) == before


def test_resume_without_checkpoint_is_refused(kept_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A run stopped before its first checkpoint (args.json alone) cannot be continued with
    --resume RUN; an empty directory is no run at all."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(kept_run / "args.json", run / "args.json")
    assert main(["finetune", "--resume", str(run)]) == 2
    assert f"--resume {run}: no checkpoint in {run} to resume from" in capsys.readouterr().err
    assert main(["finetune", "--resume", str(tmp_path)]) == 2
    assert "no finetune run there (no args.json)" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["args.json"]


def test_resume_refuses_changed_training_data(ws: dict[str, Path], kept_run: Path,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The checkpoint's cursor points into the training file it was saved with: another file
    content under the same name is refused (naming --train), not silently resumed."""
    run = tmp_path / "run"
    shutil.copytree(kept_run, run)
    (run / "results.json").unlink()  # as if it stopped after its checkpoint
    train = tmp_path / "train.jsonl"
    shutil.copyfile(ws["train"], train)  # the same content under another name: continues
    args = json.loads((run / "args.json").read_text())
    (run / "args.json").write_text(json.dumps({**args, "train": str(train)}))
    assert main(["finetune", "--resume", str(run), "--threads", "1"]) == 0  # same content: fine
    train.write_text("".join(ws["train"].read_text().splitlines(True)[:32]))
    (run / "results.json").unlink()
    assert main(["finetune", "--resume", str(run), "--threads", "1"]) == 2
    assert f"--train {train} is not the file" in capsys.readouterr().err
