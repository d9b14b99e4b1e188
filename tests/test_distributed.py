"""DDP on CPU (gloo, 2 processes under torchrun) equals one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from test_train import _args, _flags, _losses, tiny_data  # noqa: F401 - tiny_data is a fixture

from bertkit.train import pretrain as P


def test_ddp_two_processes_equal_one(tiny_data, tmp_path: Path) -> None:  # noqa: F811
    steps = 20
    single = _args(tiny_data, tmp_path / "single", max_steps=steps, dropout=0.0, save_every=100,
                   warmup_steps=5)
    assert P.run_pretrain(single) == 0
    accum = replace(single, out=str(tmp_path / "accum"), grad_accum=2)
    assert P.run_pretrain(accum) == 0
    ddp = replace(single, out=str(tmp_path / "ddp"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "bertkit.train.pretrain",
                           *_flags(ddp)], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = _losses(Path(single.out))
    assert len(want) == steps
    for other in (accum.out, ddp.out):
        got = _losses(Path(other))
        assert [s for s, _ in got] == [s for s, _ in want]
        for (s, a), (_, b) in zip(got, want, strict=True):
            assert a == pytest.approx(b, rel=1e-5), (other, s)
