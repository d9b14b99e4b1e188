"""Bad input to the data and pre-training commands, probed as a new user would.

Each row of a table is one probe: a command line (and its setup) that must end with exit status
2, ONE line on stderr naming the file or flag, no traceback, and no partial output left behind.
Then: what a probe must leave (nothing after an empty input, a lock against a second run, file
modes of the umask, a full disk while checkpointing), and signals to create-pretraining-data's
workers.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from realdata import fetch_or_skip

from bertkit.cli import main

LATIN1 = b"Caf\xe9 au lait\n\nna\xefve\n"
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01"
CPD = ["--max-seq-length", "32", "--max-predictions-per-seq", "5", "--dupe-factor", "1",
       "--workers", "1"]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class Work:
    """A scratch folder of bad and good inputs (see the ``work`` fixture)."""

    root: Path
    corpus: Path
    vocab: Path
    data: Path
    run: Path
    model: Path
    names: dict[str, Path] = field(default_factory=dict)

    def __getattr__(self, name: str) -> str:  # w.afile -> str(root / "afile")
        return str(self.root / name.replace("_", "."))


@pytest.fixture(scope="module")
def trained(tiny_data, pretrain_args, tmp_path_factory) -> dict[str, Path]:
    """A finished 4-step BERT-Tiny run (checkpoints at 2 and 4) and its export."""
    from bertkit.train import pretrain as P

    root = tmp_path_factory.mktemp("trained")
    args = pretrain_args(root / "run", max_steps=4, save_every=2)
    assert P.run_pretrain(args) == 0
    assert P.run_export(P.ExportArgs(checkpoint=args.out, out=str(root / "model"))) == 0
    return {"run": root / "run", "model": root / "model"}


@pytest.fixture
def work(tmp_path: Path, tiny_data, trained) -> Work:
    """Bad inputs beside good ones: ``afile`` (a file), ``adir`` (an empty folder), ``latin.txt``
    (Latin-1 text), ``binary.bin``, ``empty.txt``, ``corpus.txt`` (real text), ``vocab.txt``,
    ``data`` (real shards), ``run`` (a finished run, copied), ``model`` (its export, copied)."""
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "latin.txt").write_bytes(LATIN1)
    (tmp_path / "binary.bin").write_bytes(BINARY)
    (tmp_path / "empty.txt").write_bytes(b"")
    shutil.copyfile(tiny_data["root"] / "train.txt", tmp_path / "corpus.txt")
    shutil.copyfile(tiny_data["vocab"], tmp_path / "vocab.txt")
    shutil.copytree(tiny_data["train"], tmp_path / "data")
    shutil.copytree(trained["run"], tmp_path / "run")
    shutil.copytree(trained["model"], tmp_path / "model")
    return Work(tmp_path, tmp_path / "corpus.txt", tmp_path / "vocab.txt", tmp_path / "data",
                tmp_path / "run", tmp_path / "model")


def _cli(argv: list[str], stdin: bytes | None, monkeypatch, capsys, caplog) -> tuple[int, list]:
    """Run ``bertkit ARGV`` in-process: (exit status, non-empty stderr lines + error logs)."""
    if stdin is not None:  # a real stdin: bytes under a UTF-8 text layer, as Python sets it up
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8",
                                                           errors="surrogateescape"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse usage errors
            code = e.code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    lines += [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return code, lines


def _leftovers(root: Path) -> list[str]:
    """Temp files and locks anywhere under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith(".tmp") or p.name == ".lock")


def _probe(row: tuple, work: Work, monkeypatch, capsys, caplog) -> None:
    """Run one table row: ``(setup(work) -> argv, stdin, names on the error line, paths that
    must not exist afterwards, whether the row needs a non-root user)``."""
    make, stdin, names, absent, needs_non_root = row
    if needs_non_root and AS_ROOT:
        _owner_permissions(monkeypatch)
    argv = make(work)
    code, lines = _cli(argv, stdin, monkeypatch, capsys, caplog)
    assert code == 2, (argv, lines)
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "Errno" not in lines[0], lines[0]
    for name in names:
        assert name.format(root=work.root) in lines[0], (name, lines[0])
    for path in absent:
        assert not (work.root / path).exists(), path
    assert _leftovers(work.root) == []


def _owner_permissions(monkeypatch) -> None:
    """As root, chmod does not stop writes and ``os.access`` says yes to everything: make
    ``os.access`` answer by the owner's mode bits instead, as it does for a non-root owner, so
    a read-only row still runs the command's own writability check (a command that skipped the
    check would write the output and the row would fail)."""
    real = os.access

    def access(path, mode, *args, **kwargs) -> bool:
        bits = {os.R_OK: stat.S_IRUSR, os.W_OK: stat.S_IWUSR, os.X_OK: stat.S_IXUSR}
        try:
            st_mode = os.stat(path).st_mode
        except OSError:
            return real(path, mode, *args, **kwargs)
        if any(mode & flag and not st_mode & bit for flag, bit in bits.items()):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def _read_only(work: Work, name: str = "ro") -> str:
    """A folder the user cannot write (chmod 0o555)."""
    ro = work.root / name
    ro.mkdir()
    ro.chmod(0o555)
    return str(ro)


def _row(make: Callable[[Work], list[str]], names: list[str], stdin: bytes | None = None,
         absent: tuple[str, ...] = (), non_root: bool = False, id: str = ""):
    return pytest.param((make, stdin, names, absent, non_root), id=id)


# ----------------------------------------------------------------------------- create-pretraining-data


def _cpd(inp: str, vocab: str, out: str) -> list[str]:
    return ["create-pretraining-data", "--input", inp, "--vocab", vocab, "--out", out, *CPD]


CPD_PROBES = [
    _row(lambda w: _cpd(str(w.corpus), str(w.vocab), w.afile), ["afile", "not a directory"],
         id="out-is-a-file"),
    _row(lambda w: _cpd(str(w.corpus), str(w.vocab), w.afile + "/sub"), ["afile"],
         id="out-under-a-file"),
    _row(lambda w: _cpd(str(w.corpus), str(w.vocab), _read_only(w) + "/out"), ["ro", "writable"],
         non_root=True, id="out-read-only"),
    _row(lambda w: _cpd(str(w.corpus), w.adir, w.o), ["adir", "directory"], absent=("o",),
         id="vocab-is-a-directory"),
    _row(lambda w: _cpd(str(w.corpus), w.missing_txt, w.o), ["missing.txt"], absent=("o",),
         id="vocab-missing"),
    _row(lambda w: _cpd(str(w.corpus), w.latin_txt, w.o), ["latin.txt:1", "UTF-8"],
         absent=("o",), id="vocab-latin-1"),
    _row(lambda w: _cpd(str(w.corpus), w.binary_bin, w.o), ["binary.bin:1", "UTF-8"],
         absent=("o",), id="vocab-binary"),
    _row(lambda w: _cpd(w.adir, str(w.vocab), w.o), ["adir", "is a directory"], absent=("o",),
         id="input-is-a-directory"),
    _row(lambda w: _cpd(w.missing_txt, str(w.vocab), w.o), ["missing.txt"], absent=("o",),
         id="input-missing"),
    _row(lambda w: _cpd(w.latin_txt, str(w.vocab), w.o), ["latin.txt:1", "UTF-8"],
         absent=("o",), id="input-latin-1"),
    _row(lambda w: _cpd(w.binary_bin, str(w.vocab), w.o), ["binary.bin:1", "UTF-8"],
         absent=("o",), id="input-binary"),
    _row(lambda w: _cpd(w.empty_txt, str(w.vocab), w.o), ["empty.txt", "no text"],
         absent=("o",), id="input-empty"),
]


@pytest.mark.parametrize("row", CPD_PROBES)
def test_create_pretraining_data_probes(row, work, monkeypatch, capsys, caplog) -> None:
    _probe(row, work, monkeypatch, capsys, caplog)


def test_empty_input_leaves_nothing_so_the_fixed_input_runs(work, monkeypatch, capsys,
                                                            caplog) -> None:
    """An empty input used to leave run.json, and the fixed input was then refused ("holds an
    unfinished run with other inputs"). Also into an --out that exists already: it stays empty."""
    (work.root / "o").mkdir()
    code, lines = _cli(_cpd(work.empty_txt, str(work.vocab), work.o), None, monkeypatch, capsys,
                       caplog)
    assert code == 2 and "empty.txt" in lines[0]
    assert list((work.root / "o").iterdir()) == []
    code, lines = _cli(_cpd(str(work.corpus), str(work.vocab), work.o), None, monkeypatch,
                       capsys, caplog)
    assert code == 0, lines
    assert (work.root / "o" / "index.json").is_file() and _leftovers(work.root) == []


@pytest.mark.parametrize("files", [{"notes.txt": "mine\n"}, {"run.json": "{not json\n",
                                                            "vocab.txt": "[PAD]\n"}],
                         ids=["unrelated", "foreign-run-json"])
def test_a_refused_out_keeps_its_files(files, work, monkeypatch, capsys, caplog) -> None:
    """An --out that is not ours is refused and left exactly as it was."""
    out = work.root / "o"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    code, lines = _cli(_cpd(str(work.corpus), str(work.vocab), str(out)), None, monkeypatch,
                       capsys, caplog)
    assert code == 2 and len(lines) == 1 and str(out) in lines[0], lines
    assert {p.name: p.read_text() for p in out.iterdir()} == files


def test_disk_full_while_writing_a_shard(work, monkeypatch, capsys, caplog) -> None:
    """A full disk names the shard being written (not a temp file); a run that wrote no shard
    leaves nothing behind."""
    from bertkit.data import shards
    from bertkit.fileio import atomic_path

    real = shards.atomic_write_bytes

    def full(path, data):
        if not Path(path).name.startswith("shard-"):
            return real(path, data)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as f.write() raises it

    monkeypatch.setattr(shards, "atomic_write_bytes", full)
    code, lines = _cli(_cpd(str(work.corpus), str(work.vocab), work.o), None, monkeypatch,
                       capsys, caplog)
    assert code == 2 and len(lines) == 1, lines
    assert "o/shard-00000-000-000.npy: No space left on device" in lines[0], lines[0]
    assert not (work.root / "o").exists() and _leftovers(work.root) == []


def test_a_second_run_into_the_same_out_is_refused(work, monkeypatch, capsys, caplog) -> None:
    """Two runs into one --out at once would race: the one that finds OUT/.lock held stops."""
    import fcntl

    out = work.root / "o"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # as a running create-pretraining-data holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, lines = _cli(_cpd(str(work.corpus), str(work.vocab), str(out)), None, monkeypatch,
                           capsys, caplog)
    assert code == 2 and len(lines) == 1, lines
    assert f"another create-pretraining-data run is writing into {out}" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the holder's: nothing else
    (out / ".lock").unlink()
    code, _ = _cli(_cpd(str(work.corpus), str(work.vocab), str(out)), None, monkeypatch, capsys,
                   caplog)
    assert code == 0 and not (out / ".lock").exists()


# ----------------------------------------------------------------------------- train-vocab


def _tv(inp: str, out: str) -> list[str]:
    return ["train-vocab", "--input", inp, "--vocab-size", "300", "--out", out]


TRAIN_VOCAB_PROBES = [
    _row(lambda w: _tv(str(w.corpus), w.adir), ["adir", "is a directory"], id="out-is-a-directory"),
    _row(lambda w: _tv(str(w.corpus), w.afile + "/v.txt"), ["afile"], id="out-under-a-file"),
    _row(lambda w: _tv(str(w.corpus), _read_only(w) + "/v.txt"), ["ro", "writable"],
         non_root=True, id="out-read-only"),
    _row(lambda w: _tv(w.adir, w.v_txt), ["adir", "is a directory"], absent=("v.txt",),
         id="input-is-a-directory"),
    _row(lambda w: _tv(w.missing_txt, w.v_txt), ["missing.txt"], absent=("v.txt",),
         id="input-missing"),
    _row(lambda w: _tv(w.latin_txt, w.v_txt), ["latin.txt:1", "UTF-8"], absent=("v.txt",),
         id="input-latin-1"),
    _row(lambda w: _tv(w.binary_bin, w.v_txt), ["binary.bin:1", "UTF-8"], absent=("v.txt",),
         id="input-binary"),
    _row(lambda w: _tv(w.empty_txt, w.v_txt), ["empty.txt"], absent=("v.txt",),
         id="input-empty"),
]


@pytest.mark.parametrize("row", TRAIN_VOCAB_PROBES)
def test_train_vocab_probes(row, work, monkeypatch, capsys, caplog) -> None:
    _probe(row, work, monkeypatch, capsys, caplog)


# ----------------------------------------------------------------------------- inspect-data


def _bad_index(w: Work, text: str) -> list[str]:
    (w.data / "index.json").write_text(text)
    return ["inspect-data", str(w.data)]


INSPECT_PROBES = [
    _row(lambda w: ["inspect-data", w.missing], ["missing"], id="missing"),
    _row(lambda w: ["inspect-data", w.afile], ["afile", "is a file"], id="a-file"),
    _row(lambda w: ["inspect-data", w.adir], ["adir/index.json"], id="no-index"),
    _row(lambda w: _bad_index(w, '{"format": "bertkit-pretraining-shards-v1",\n "shards": ['),
         ["data/index.json:2", "invalid JSON"], id="index-truncated"),
    _row(lambda w: _bad_index(w, "[1, 2]"), ["data/index.json", "JSON object"],
         id="index-not-an-object"),
    _row(lambda w: _bad_index(w, '{"format": "bertkit-pretraining-shards-v1"}'),
         ["data/index.json", "damaged"], id="index-without-fields"),
    _row(lambda w: (w.data / "index.json").write_bytes(b"{\xff}") and ["inspect-data",
                                                                        str(w.data)],
         ["data/index.json", "UTF-8"], id="index-binary"),
]


@pytest.mark.parametrize("row", INSPECT_PROBES)
def test_inspect_data_probes(row, work, monkeypatch, capsys, caplog) -> None:
    _probe(row, work, monkeypatch, capsys, caplog)


# ----------------------------------------------------------------------------- pretrain, export, plot

TINY = ["--config", "tiny", "--batch-size", "8", "--max-steps", "2", "--save-every", "2",
        "--threads", "1", "--device", "cpu", "--no-progress"]


def _pt(w: Work, *extra: str, data: str | None = None) -> list[str]:
    return ["pretrain", "--data", data or str(w.data), *TINY, *extra]


def _unrelated(w: Work) -> str:
    d = w.root / "notes"
    d.mkdir()
    (d / "notes.txt").write_text("my notes\n")
    (d / "metrics.jsonl").write_text('{"x": 1}\n')
    return str(d)


def _bad_metrics(w: Work) -> Path:
    with open(w.run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": \n')
    return w.run


def _nlines(path: Path) -> int:
    return len(path.read_text().splitlines())


PRETRAIN_PROBES = [
    _row(lambda w: _pt(w, "--out", w.afile), ["afile", "not a directory"], id="out-is-a-file"),
    _row(lambda w: _pt(w, "--out", w.afile + "/run"), ["afile"], id="out-under-a-file"),
    _row(lambda w: _pt(w, "--out", _read_only(w) + "/run"), ["ro", "writable"], non_root=True,
         id="out-read-only"),
    _row(lambda w: _pt(w, "--out", w.r, data=w.missing), ["missing/index.json"],
         absent=("r",), id="data-missing"),
    _row(lambda w: _pt(w, "--out", w.r, data=w.afile), ["afile", "is a file"], absent=("r",),
         id="data-is-a-file"),
    _row(lambda w: _pt(w, "--out", w.r, data=w.adir), ["adir/index.json"], absent=("r",),
         id="data-without-index"),
    _row(lambda w: (w.data / "index.json").write_text('{"format": ') and _pt(w, "--out", w.r),
         ["data/index.json:1", "invalid JSON"], absent=("r",), id="data-index-malformed"),
    _row(lambda w: ["pretrain", "--out", w.r, *TINY], ["--data"], absent=("r",),
         id="no-data-no-resume"),
    _row(lambda w: _pt(w, "--out", w.r, "--eval-data", w.adir), ["adir/index.json"],
         absent=("r",), id="eval-data-without-index"),
    _row(lambda w: _pt(w, "--out", w.r, "--init", str(w.corpus)), ["corpus.txt", "--init"],
         absent=("r",), id="init-is-a-text-file"),
    _row(lambda w: _pt(w, "--out", _unrelated(w)), ["notes", "not empty", "notes.txt"],
         absent=("notes/args.json", "notes/vocab.txt"), id="out-unrelated-non-empty"),
    _row(lambda w: ["pretrain", "--resume", str(w.run), "--config", "mini"],
         ["--config mini", "--config tiny", "args.json"], absent=("run/checkpoint-00000006",),
         id="resume-conflicting-config"),
    _row(lambda w: ["pretrain", "--resume", str(_bad_metrics(w)), "--max-steps", "6"],
         ["run/metrics.jsonl:", "invalid JSON"], absent=("run/checkpoint-00000006",),
         id="resume-malformed-metrics"),
    _row(lambda w: ["pretrain", "--resume", str(w.adir)], ["adir"], id="resume-not-a-run"),
]


@pytest.mark.parametrize("row", PRETRAIN_PROBES)
def test_pretrain_probes(row, work, monkeypatch, capsys, caplog) -> None:
    _probe(row, work, monkeypatch, capsys, caplog)


EXPORT_PROBES = [
    _row(lambda w: ["export", str(w.run), "--out", str(w.model)], ["model", "--overwrite"],
         id="out-exists"),
    _row(lambda w: ["export", str(w.run), "--out", w.afile], ["afile", "not a directory"],
         id="out-is-a-file"),
    _row(lambda w: ["export", str(w.run), "--out", _read_only(w) + "/m"], ["ro", "writable"],
         non_root=True, id="out-read-only"),
    _row(lambda w: ["export", w.adir, "--out", w.m], ["adir"], absent=("m",),
         id="checkpoint-not-a-run"),
    _row(lambda w: ["export", str(w.corpus), "--out", w.m], ["corpus.txt"], absent=("m",),
         id="checkpoint-is-a-text-file"),
    _row(lambda w: ["export", str(w.run / "checkpoint-00000009"), "--out", w.m],
         ["checkpoint-00000009"], absent=("m",), id="checkpoint-missing"),
]


@pytest.mark.parametrize("row", EXPORT_PROBES)
def test_export_probes(row, work, monkeypatch, capsys, caplog) -> None:
    _probe(row, work, monkeypatch, capsys, caplog)


def test_export_overwrite_replaces_the_model(work, monkeypatch, capsys, caplog) -> None:
    before = (work.model / "model.safetensors").stat().st_mtime_ns
    code, lines = _cli(["export", str(work.run), "--out", str(work.model), "--overwrite"], None,
                       monkeypatch, capsys, caplog)
    assert code == 0, lines
    assert (work.model / "model.safetensors").stat().st_mtime_ns != before
    assert _leftovers(work.root) == []


PLOT_PROBES = [
    _row(lambda w: ["plot", str(_bad_metrics(w))], ["run/metrics.jsonl:", "invalid JSON"],
         absent=("run/curves.png",), id="malformed-metrics"),
    _row(lambda w: ["plot", w.adir], ["adir/metrics.jsonl"], id="not-a-run"),
    _row(lambda w: ["plot", str(w.run), "--out", w.adir], ["adir", "is a directory"],
         id="out-is-a-directory"),
    _row(lambda w: ["plot", str(w.run), "--out", w.afile + "/c.png"], ["afile"],
         id="out-under-a-file"),
]


@pytest.mark.parametrize("row", PLOT_PROBES)
def test_plot_probes(row, work, monkeypatch, capsys, caplog) -> None:
    _probe(row, work, monkeypatch, capsys, caplog)


def test_resume_needs_only_the_run_dir(work, monkeypatch, capsys, caplog) -> None:
    """The README's ``bertkit pretrain --resume run/``: data and settings come from the run."""
    from bertkit.train import checkpoint as C

    code, lines = _cli(["pretrain", "--resume", str(work.run), "--max-steps", "6", "--threads",
                        "1", "--device", "cpu", "--no-progress"], None, monkeypatch, capsys,
                       caplog)
    assert code == 0, lines
    assert [s for s, _ in C.list_checkpoints(work.run)][-1] == 6
    saved = json.loads((work.run / "args.json").read_text())
    assert (saved["config"], saved["batch_size"], saved["max_steps"]) == ("tiny", 8, 6)
    assert Path(saved["data"]).name == "train"  # the run's own data, not a default
    steps = [json.loads(x)["step"] for x in (work.run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 6


def test_resume_keeps_a_given_flag_equal_to_its_default(work, monkeypatch, capsys,
                                                         caplog) -> None:
    """``--save-every 1000`` (the default) given on resume replaces the run's 2: a flag typed
    on the command line wins over the run's record even when it equals the default."""
    code, lines = _cli(["pretrain", "--resume", str(work.run), "--max-steps", "6",
                        "--save-every", "1000", "--threads", "1", "--device", "cpu",
                        "--no-progress"], None, monkeypatch, capsys, caplog)
    assert code == 0, lines
    saved = json.loads((work.run / "args.json").read_text())
    assert (saved["save_every"], saved["max_steps"], saved["batch_size"]) == (1000, 6, 8)


@pytest.mark.parametrize("resume", [[], ["--resume", "auto"]], ids=["again", "resume-auto"])
def test_pretrain_restarts_its_own_run_without_checkpoint(resume, work, monkeypatch, capsys,
                                                          caplog) -> None:
    """A bertkit run that stopped before its first checkpoint starts again in its directory
    (the same command, or --resume auto), its old metrics lines dropped, not appended to."""
    run = work.root / "r"
    run.mkdir()
    (run / "args.json").write_text("{}\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 9}\n')
    code, lines = _cli(_pt(work, "--out", str(run), *resume), None, monkeypatch, capsys, caplog)
    assert code == 0, lines
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] \
        == [2]


@pytest.mark.parametrize("failure", ["enospc", "torch-writer"])
def test_disk_full_while_checkpointing(failure, work, monkeypatch, capsys, caplog) -> None:
    """A full disk at the second checkpoint: "disk full" naming the file; the first survives."""
    import torch

    from bertkit.train import checkpoint as C

    real_save, calls = torch.save, []

    def save(obj, f, *a, **kw):
        calls.append(f)
        if len(calls) == 2:
            real_save(obj, f, *a, **kw)  # a partial file, as a full disk leaves
            if failure == "enospc":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
            raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos "
                               "1024 vs 967")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(C.torch, "save", save)
    run = work.root / "r"
    code, lines = _cli(_pt(work, "--out", str(run), "--max-steps", "4"), None, monkeypatch,
                       capsys, caplog)
    assert code == 2 and len(lines) == 1, lines
    assert "disk full" in lines[0] and "checkpoint-00000004/state.pt" in lines[0], lines[0]
    assert "inline_container" not in lines[0] and "Traceback" not in lines[0]
    assert [s for s, _ in C.list_checkpoints(run)] == [2]
    C.verify_checkpoint(C.checkpoint_dir(run, 2))
    assert not list(run.glob(".checkpoint-*"))


def test_outputs_get_the_umask_mode(work, monkeypatch, capsys, caplog) -> None:
    """Shards, index.json, model.safetensors and checkpoints: 0644/0755 under umask 022, as
    every other file (mkstemp and mkdtemp make 0600/0700)."""
    old = os.umask(0o022)
    try:
        code, _ = _cli(_cpd(str(work.corpus), str(work.vocab), work.o), None, monkeypatch,
                       capsys, caplog)
        assert code == 0
        code, _ = _cli(_pt(work, "--out", work.r), None, monkeypatch, capsys, caplog)
        assert code == 0
        code, _ = _cli(["export", work.r, "--out", work.m], None, monkeypatch, capsys, caplog)
        assert code == 0
    finally:
        os.umask(old)
    files = [*(work.root / "o").iterdir(), *(work.root / "m").iterdir(),
             *(work.root / "r").glob("*.json*"), *(work.root / "r").glob("checkpoint-*/*")]
    assert any(p.name == "model.safetensors" for p in files)
    assert any(p.name.startswith("shard-") for p in files)
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o644, p
    for d in [work.root / "m", *(work.root / "r").glob("checkpoint-*")]:
        assert d.stat().st_mode & 0o777 == 0o755, d


# ----------------------------------------------------------------------------- tokenize, embed


def _long_vocab(w: Work) -> str:
    with open(w.model / "vocab.txt", "a") as f:
        f.write("extra1\nextra2\n")
    return str(w.model)


TOKENIZE_PROBES = [
    _row(lambda w: ["tokenize", "--vocab", str(w.vocab)], ["<stdin>:1", "UTF-8"], stdin=LATIN1,
         id="stdin-latin-1"),
    _row(lambda w: ["tokenize", "--vocab", str(w.model)], ["<stdin>:1", "UTF-8"], stdin=BINARY,
         id="stdin-binary"),
    _row(lambda w: ["tokenize", "--vocab", w.adir], ["adir", "vocab.txt"], stdin=b"x\n",
         id="vocab-dir-without-vocab"),
    _row(lambda w: ["tokenize", "--vocab", w.missing], ["missing"], stdin=b"x\n",
         id="vocab-missing"),
    _row(lambda w: ["tokenize", "--vocab", str(w.corpus)], ["corpus.txt", "not a model directory"],
         stdin=b"x\n", id="vocab-is-a-corpus"),
    _row(lambda w: ["tokenize", "--vocab", w.latin_txt], ["latin.txt:1", "UTF-8"], stdin=b"x\n",
         id="vocab-latin-1"),
    _row(lambda w: ["tokenize", "--vocab", _long_vocab(w)],
         ["model/vocab.txt", "602", "model/config.json", "vocab_size 600"], stdin=b"x\n",
         id="vocab-longer-than-config"),
    _row(lambda w: ["tokenize", "--vocab", _long_vocab(w), "--cased"],
         ["model/vocab.txt", "602", "model/config.json", "vocab_size 600"], stdin=b"x\n",
         id="vocab-longer-than-config-cased"),
]


@pytest.mark.parametrize("row", TOKENIZE_PROBES)
def test_tokenize_probes(row, work, monkeypatch, capsys, caplog) -> None:
    _probe(row, work, monkeypatch, capsys, caplog)


EMBED_PROBES = [
    _row(lambda w: ["embed", "--model", str(w.model)], ["<stdin>:3", "UTF-8"],
         stdin=b"fine\nalso fine\nna\xefve\n", id="stdin-latin-1"),
    _row(lambda w: ["embed", "--model", str(w.corpus)], ["corpus.txt", "not a model directory"],
         stdin=b"x\n", id="model-is-a-corpus"),
    _row(lambda w: ["embed", "--model", w.missing], ["missing"], stdin=b"x\n",
         id="model-missing"),
    _row(lambda w: ["embed", "--model", w.adir], ["adir"], stdin=b"x\n", id="model-empty-dir"),
    _row(lambda w: ["embed", "--model", _long_vocab(w)],
         ["model/vocab.txt", "602", "model/config.json", "vocab_size 600"], stdin=b"x\n",
         id="vocab-longer-than-config"),
    _row(lambda w: ["embed", "--model", str(w.model), "--output", w.adir], ["adir", "directory"],
         stdin=b"x\n", id="output-is-a-directory"),
    _row(lambda w: ["embed", "--model", str(w.model), "--output", w.afile + "/e.npy"], ["afile"],
         stdin=b"x\n", id="output-under-a-file"),
    _row(lambda w: ["embed", "--model", str(w.model), "--output", _read_only(w) + "/e.npy"],
         ["ro", "writable"], stdin=b"x\n", non_root=True, id="output-read-only"),
]


@pytest.mark.parametrize("row", EMBED_PROBES)
def test_embed_probes(row, work, monkeypatch, capsys, caplog) -> None:
    _probe(row, work, monkeypatch, capsys, caplog)


def test_vocab_shorter_than_config_is_a_warning(work, monkeypatch, capsys, caplog) -> None:
    """Real checkpoints pad vocab_size (e.g. to a multiple of 8): a shorter vocab.txt loads."""
    config = json.loads((work.model / "config.json").read_text())
    config["vocab_size"] = 608
    (work.model / "config.json").write_text(json.dumps(config))
    code, lines = _cli(["tokenize", "--vocab", str(work.model), "--ids"], b"the\n", monkeypatch,
                       capsys, caplog)
    assert code == 0 and lines == []
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("600 entries" in m and "vocab_size 608" in m for m in warned), warned


# ----------------------------------------------------------------------------- corpus fetch


CORPUS_PROBES = [
    _row(lambda w: ["corpus", "fetch", "sotu", "--out", w.afile], ["afile", "not a directory"],
         id="out-is-a-file"),
    _row(lambda w: ["corpus", "fetch", "sotu", "--out", w.afile + "/c"], ["afile"],
         id="out-under-a-file"),
    _row(lambda w: ["corpus", "fetch", "sotu", "--out", _read_only(w) + "/c"], ["ro", "writable"],
         non_root=True, id="out-read-only"),
    _row(lambda w: ["corpus", "fetch", "sotu", "--out", w.c, "--from", w.adir], ["adir"],
         absent=("c",), id="from-a-directory"),
    _row(lambda w: ["corpus", "fetch", "sotu", "--out", w.c, "--from", w.missing], ["missing"],
         absent=("c",), id="from-missing"),
]


@pytest.mark.parametrize("row", CORPUS_PROBES)
def test_corpus_fetch_probes(row, work, monkeypatch, capsys, caplog) -> None:
    _probe(row, work, monkeypatch, capsys, caplog)


# ----------------------------------------------------------------------------- signals


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (psutil when installed, else /proc)."""
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        todo += kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="signals to a process tree: Linux")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_every_worker(signum, tiny_data, tmp_path: Path) -> None:
    """--workers 2 stopped by SIGTERM or Ctrl-C (SIGINT to the process group): exit 128 + N,
    one line on stderr, no worker traceback, every child (worker, resource tracker) gone within
    seconds; the rerun resumes and leaves no temp file."""
    from bertkit.data.corpora import fetch_corpus

    sotu = fetch_or_skip(fetch_corpus, "sotu")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bertkit.cli", "create-pretraining-data", "--input", str(sotu),
           "--vocab", str(tiny_data["vocab"]), "--out", str(out), "--workers", "2",
           "--dupe-factor", "3", "--part-mb", "1", "--pool-mb", "4", "--max-seq-length", "64",
           "--max-predictions-per-seq", "10"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("shard-*.npy")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        kids = _descendants(proc.pid)
        assert kids, "the worker should be running"
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)  # a terminal's Ctrl-C reaches the whole group
        else:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signum, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "stopped by signal" in lines[0] and "Traceback" not in err, err
    deadline = time.monotonic() + 5
    while any(_alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)], "children outlived the run"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr
    left = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert left == [] and not list(out.glob("*.tmp"))
