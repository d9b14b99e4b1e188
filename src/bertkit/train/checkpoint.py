"""Training checkpoints: atomic, verified, the last K kept, loaded with ``weights_only=True``.

A checkpoint is a directory ``RUN/checkpoint-STEP`` (STEP zero-padded to 8 digits) holding

* ``state.pt``: ``{"model", "optimizer", "scheduler", "scaler", "step", "rng", "cursor",
  "counters"}``, only tensors and plain Python values, so ``torch.load(weights_only=True)`` reads it;
* ``config.json``: the model's BertConfig (HF keys);
* ``meta.json``: step, size and sha256 of ``state.pt``, written last.

It is written into a hidden temp directory beside it and renamed into place, so a crash or a full
disk leaves the previous checkpoints as they were and never a half-written one under the final name.
Loading checks the size and sha256 first: a truncated or damaged file is reported by name, with the
previous good checkpoint to resume from instead.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertkit.errors import BertkitError
from bertkit.fileio import current_umask, sha256_file

logger = logging.getLogger(__name__)

__all__ = ["CheckpointError", "TRAINING_ONLY_PREFIX", "capture_rng", "checkpoint_dir",
           "list_checkpoints", "load_checkpoint", "model_weights", "restore_rng",
           "save_checkpoint", "verify_checkpoint"]

_NAME = re.compile(r"^checkpoint-(\d+)$")

TRAINING_ONLY_PREFIX = "train_aux."
"""Weights a run trains and checkpoints but never exports (e.g. distillation's hidden-state
projection): the trained model's ``train_aux`` submodule."""


def model_weights(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``model`` state dict without its training-only (``train_aux.``) weights:
    the model that ``bertkit export`` writes."""
    return {k: v for k, v in state["model"].items() if not k.startswith(TRAINING_ONLY_PREFIX)}


class CheckpointError(BertkitError, RuntimeError):
    """A training checkpoint cannot be written or read; the message names the path."""


def checkpoint_dir(run: str | os.PathLike[str], step: int) -> Path:
    return Path(run) / f"checkpoint-{step:08d}"


def list_checkpoints(run: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Finished checkpoints of ``run`` (those with ``meta.json``), oldest first."""
    run = Path(run)
    if not run.is_dir():
        return []
    found = []
    for p in run.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir() and (p / "meta.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU, CUDA) RNG states as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
                  int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_plain(x: Any) -> Any:
    return [_to_plain(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(_to_tuple(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run: str | os.PathLike[str], step: int, state: dict[str, Any],
                    config: Any = None, keep_last: int = 3,
                    architectures: list[str] | None = None) -> Path:
    """Write ``state`` as ``RUN/checkpoint-STEP`` atomically; then keep only the last ``keep_last``.

    ``config`` (a family's config) is written as ``config.json`` with ``architectures`` (default
    ``["BertForPreTraining"]``). Raises CheckpointError (e.g. disk
    full) after removing the partial temp directory; earlier checkpoints are untouched.
    """
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(run, step)
    tmp = Path(tempfile.mkdtemp(dir=run, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; a checkpoint is 0755
        torch.save(state, tmp / "state.pt")
        if config is not None:
            config.to_json_file(tmp / "config.json",
                                architectures=architectures or ["BertForPreTraining"])
        meta = {"step": step, "state_bytes": (tmp / "state.pt").stat().st_size,
                "state_sha256": sha256_file(tmp / "state.pt")}
        (tmp / "meta.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():  # the same step saved again (e.g. a signal right after a save)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(e):
            raise CheckpointError(f"disk full (No space left on device) writing {final}/state.pt;"
                                  " the previous checkpoints are unchanged: free space and "
                                  "resume") from e
        if isinstance(e, OSError):
            what = f"{e.strerror} ({e.filename})" if e.strerror else str(e)
            raise CheckpointError(f"could not write checkpoint {final}: {what}; the previous "
                                  "checkpoints are unchanged") from e
        raise
    logger.info("saved %s", final)
    if keep_last > 0:
        for _, old in list_checkpoints(run)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    for stale in run.glob(".checkpoint-*.tmp"):  # left by a killed process
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _disk_full(e: BaseException) -> bool:
    """ENOSPC, or torch's zip writer failing as it does on a full disk ("[enforce fail at
    inline_container.cc] unexpected pos", "PytorchStreamWriter failed writing file")."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(e)
    return isinstance(e, RuntimeError) and (
        ("inline_container" in text and "unexpected pos" in text)
        or "PytorchStreamWriter failed writing" in text or "No space left on device" in text)


def verify_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's ``meta.json`` after checking ``state.pt``'s size and sha256."""
    path = Path(path)
    meta_path, state_path = path / "meta.json", path / "state.pt"
    if not meta_path.is_file() or not state_path.is_file():
        raise CheckpointError(f"{path} is not a finished checkpoint (no meta.json or state.pt)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path} is damaged ({e})") from e
    size = state_path.stat().st_size
    if size != meta.get("state_bytes"):
        raise CheckpointError(f"{state_path} is truncated or damaged: {size} bytes, "
                              f"expected {meta.get('state_bytes')}")
    if sha256_file(state_path) != meta.get("state_sha256"):
        raise CheckpointError(f"{state_path} is damaged: sha256 differs from meta.json")
    return meta


def resolve_resume(path: str | os.PathLike[str]) -> Path:
    """The checkpoint to resume from: ``path`` itself, or the newest one of the run ``path``.

    A damaged newest checkpoint raises CheckpointError naming it and the previous good one.
    """
    path = Path(path)
    if _NAME.match(path.name):
        verify_checkpoint(path)
        return path
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(f"no checkpoint in {path} to resume from")
    newest = found[-1][1]
    try:
        verify_checkpoint(newest)
    except CheckpointError as e:
        good = None
        for _, p in reversed(found[:-1]):
            try:
                verify_checkpoint(p)
                good = p
                break
            except CheckpointError:
                continue
        hint = (f"; the previous good checkpoint is {good}: resume from it with --resume {good}"
                if good else "; no earlier good checkpoint exists")
        raise CheckpointError(f"{e}{hint}") from e
    return newest


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Verify and load ``state.pt`` of checkpoint directory ``path`` (``weights_only=True``)."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        return torch.load(path / "state.pt", map_location=map_location, weights_only=True)
    except Exception as e:  # an unpickling error despite a matching hash: a foreign file
        raise CheckpointError(f"{path / 'state.pt'} cannot be loaded ({e})") from e
