"""Data parallel on CPU (gloo, 2 processes under torchrun) equals one process with the same global
batch: DDP, and FSDP2 (``--fsdp``), whose checkpoints are full state dicts that resume anywhere.

Tolerances: the ranks sum gradients in another order than one process does, so fp32 results agree
to rounding (1e-5 relative on losses and gradient norms), not bitwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bertkit.train import checkpoint as C
from bertkit.train import pretrain as P

STEPS = 20
HALF = STEPS // 2


def _train_records(run: str | Path) -> list[dict]:
    return [r for r in P.read_metrics(run) if r["split"] == "train"]


def _assert_same_curve(got_run: str | Path, want: list[dict], keys=("loss", "grad_norm")) -> None:
    got = _train_records(got_run)
    assert [r["step"] for r in got] == [r["step"] for r in want], got_run
    for a, b in zip(got, want, strict=True):
        for k in keys:
            assert a[k] == pytest.approx(b[k], rel=1e-5), (got_run, a["step"], k)


def _torchrun(args: P.PretrainArgs, flags, *extra: str) -> None:
    """``torchrun --standalone --nproc-per-node 2 -m bertkit.train.pretrain`` with ``args``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "bertkit.train.pretrain",
                           *flags(args), *extra], capture_output=True, text=True, timeout=240,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def single(pretrain_args, tmp_path_factory: pytest.TempPathFactory) -> P.PretrainArgs:
    """One process, batch 8, dropout off, STEPS steps, checkpoints at HALF and STEPS."""
    args = pretrain_args(tmp_path_factory.mktemp("single") / "run", max_steps=STEPS, dropout=0.0,
                         warmup_steps=5, save_every=HALF)
    assert P.run_pretrain(args) == 0
    assert len(_train_records(args.out)) == STEPS
    return args


def test_ddp_two_processes_equal_one(single, pretrain_flags, tmp_path: Path) -> None:
    want = _train_records(single.out)
    accum = replace(single, out=str(tmp_path / "accum"), grad_accum=2)
    assert P.run_pretrain(accum) == 0
    ddp = replace(single, out=str(tmp_path / "ddp"))
    _torchrun(ddp, pretrain_flags)
    for other in (accum.out, ddp.out):
        _assert_same_curve(other, want, keys=("loss",))


@pytest.fixture(scope="module")
def fsdp(single, pretrain_flags, tmp_path_factory: pytest.TempPathFactory) -> P.PretrainArgs:
    """The single run under ``--fsdp`` in 2 processes with 2 micro-batches each."""
    args = replace(single, out=str(tmp_path_factory.mktemp("fsdp") / "run"), grad_accum=2,
                   fsdp=True)
    _torchrun(args, pretrain_flags)
    return args


def test_fsdp_two_processes_equal_one_and_save_full_checkpoints(single, fsdp,
                                                                 tmp_path: Path) -> None:
    """Accumulation (no sync on the first micro-step) and clipping (norms above 1) on."""
    want = _train_records(single.out)
    assert max(r["grad_norm"] for r in want) > single.max_grad_norm  # clipping did act
    _assert_same_curve(fsdp.out, want)
    # the checkpoint holds full tensors under a single process's names and optimizer ids
    a = C.load_checkpoint(C.checkpoint_dir(single.out, STEPS))
    b = C.load_checkpoint(C.checkpoint_dir(fsdp.out, STEPS))
    assert b["model"].keys() == a["model"].keys()
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-5, atol=1e-5, msg=k)
    assert b["optimizer"]["param_groups"] == a["optimizer"]["param_groups"]
    assert b["optimizer"]["state"].keys() == a["optimizer"]["state"].keys()
    for i, st in a["optimizer"]["state"].items():
        assert b["optimizer"]["state"][i]["step"] == st["step"]
        for k in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(b["optimizer"]["state"][i][k], st[k], rtol=1e-4,
                                       atol=1e-7)
    # ... so one process resumes it and continues the single run's curve
    resumed = replace(single, out=str(tmp_path / "resumed"),
                      resume=str(C.checkpoint_dir(fsdp.out, HALF)))
    assert P.run_pretrain(resumed) == 0
    _assert_same_curve(resumed.out, want[HALF:])


def test_fsdp_resumes_an_fsdp_checkpoint(single, fsdp, pretrain_flags, tmp_path: Path) -> None:
    """Saved under FSDP, loaded and re-sharded under FSDP: it continues the single run's curve."""
    again = replace(fsdp, out=str(tmp_path / "again"), grad_accum=1,
                    resume=str(C.checkpoint_dir(fsdp.out, HALF)))
    _torchrun(again, pretrain_flags)
    _assert_same_curve(again.out, _train_records(single.out)[HALF:])


def test_fsdp_in_one_process_trains_unsharded(pretrain_args, tmp_path: Path, caplog) -> None:
    args = pretrain_args(tmp_path / "run", max_steps=1, save_every=1, fsdp=True)
    with caplog.at_level("WARNING", logger="bertkit.train.pretrain"):
        assert P.run_pretrain(args) == 0
    assert "--fsdp with a single process" in caplog.text
    assert [s for s, _ in C.list_checkpoints(args.out)] == [1]


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_exit_worker_keeps_the_exit_code_and_flushes_output(world_size: str) -> None:
    """A torchrun worker leaves with os._exit: its exit code, buffered stdout and log lines stay."""
    code = ("import logging, sys\n"
            "from bertkit.cliargs import exit_worker\n"
            "logging.basicConfig(stream=sys.stderr)\n"
            "logging.getLogger('bertkit').warning('last words')\n"
            "print('buffered', end='')\n"
            "exit_worker(3)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "WORLD_SIZE": world_size}, timeout=60)
    assert proc.returncode == 3
    assert proc.stdout == "buffered"
    assert "last words" in proc.stderr
