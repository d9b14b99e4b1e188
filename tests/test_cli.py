"""The bertkit command line: help, tokenize, embed, and errors that name what is wrong."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bertkit.cli import COMMANDS, main


def _run(argv, stdin: str, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "bertkit.cli", "--help"], capture_output=True,
                          text=True, check=True)
    for name in COMMANDS:
        assert name.split(" ")[0] in proc.stdout
    for name in COMMANDS:
        sub = subprocess.run([sys.executable, "-m", "bertkit.cli", *name.split(" "), "--help"],
                             capture_output=True, text=True)
        assert sub.returncode == 0 and "usage: bertkit" in sub.stdout, name


@pytest.mark.real
def test_tokenize_tokens_and_ids(uncased_vocab, monkeypatch, capsys):
    code, out, _ = _run(["tokenize", "--vocab", str(uncased_vocab)],
                        "Hello, World!\nunaffable naïve café\n", monkeypatch, capsys)
    assert code == 0
    assert out.splitlines() == ["hello , world !", "una ##ffa ##ble naive cafe"]
    code, out, _ = _run(["tokenize", "--vocab", str(uncased_vocab), "--ids", "--special"],
                        "hello world\n", monkeypatch, capsys)
    assert out.split() == ["101", "7592", "2088", "102"]


@pytest.mark.real
def test_embed_json_lines_and_npy(minilm_dir, tmp_path, monkeypatch, capsys):
    text = "A cat sits on the mat.\nStocks fell sharply.\n"
    code, out, _ = _run(["embed", "--model", str(minilm_dir), "--normalize"], text,
                        monkeypatch, capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in rows] == [0, 1]
    assert len(rows[0]["embedding"]) == 384
    assert abs(np.linalg.norm(rows[0]["embedding"]) - 1) < 1e-5
    npy = tmp_path / "e.npy"
    code, _, _ = _run(["embed", "--model", str(minilm_dir), "--normalize", "--output", str(npy)],
                      text, monkeypatch, capsys)
    arr = np.load(npy)
    assert code == 0 and arr.shape == (2, 384)
    np.testing.assert_allclose(arr[1], rows[1]["embedding"], atol=1e-6)


def test_errors_name_the_problem(tmp_path, monkeypatch, capsys):
    code, _, err = _run(["embed", "--model", str(tmp_path / "missing")], "x\n", monkeypatch, capsys)
    assert code == 2 and "missing" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(["tokenize", "--vocab", str(tmp_path / "vocab.txt")], "x\n", monkeypatch,
                        capsys)
    assert code == 2 and "vocab.txt" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["embed"])  # --model is required
    assert "--model" in capsys.readouterr().err


@pytest.mark.real
def test_quickstart_runs_end_to_end(minilm_dir, tmp_path):
    from bertkit.quickstart import QuickstartArgs, run_quickstart

    out = io.StringIO()
    args = QuickstartArgs(work_dir=tmp_path, addresses=3, pretrain_steps=4, threads=2,
                          finetune_examples=96, finetune_epochs=1, finetune_dev=64)
    assert run_quickstart(args, out=out) == 0
    text = out.getvalue()
    assert "96 training / 64 dev snippets" in text and "Rotten Tomatoes dev accuracy" in text
    assert text.count("%)  ") == 3  # the fine-tuned model's label for each new sentence
    assert "22.7 M parameters" in text and "paraphrase: yes" in text
    # continued pre-training of the real BERT-Tiny MLM: accuracy before and after, the baseline
    m = re.search(r"held-out masked-LM accuracy (\d+\.\d)% -> (\d+\.\d)% after 4 steps of "
                  r"continued pre-training \(unigram baseline (\d+\.\d)%\)", text)
    assert m, text
    assert all(0 <= float(x) <= 100 for x in m.groups())
    assert text.count("   before: ") == 4 and text.count("   after: ") == 4
    # the exported model is a Hugging Face directory that transformers loads completely
    transformers = pytest.importorskip("transformers")
    _, info = transformers.BertForPreTraining.from_pretrained(tmp_path / "pretrained-hf",
                                                              output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_underscore_flags_parse_but_stay_out_of_help():
    import argparse

    from bertkit.cliargs import add_dataclass_args, dataclass_from_namespace
    from bertkit.finetune.run import FinetuneArgs

    parser = argparse.ArgumentParser(prog="bertkit finetune")
    add_dataclass_args(parser, FinetuneArgs)
    common = ["--task", "qa", "--model", "m", "--train", "t", "--dev", "d", "--out", "o"]
    google = dataclass_from_namespace(FinetuneArgs, parser.parse_args(
        [*common, "--max_seq_length", "256", "--decay_after_warmup", "--skip_bad_rows"]), parser)
    dashed = dataclass_from_namespace(FinetuneArgs, parser.parse_args(
        [*common, "--max-seq-length", "256", "--decay-after-warmup", "--skip-bad-rows"]), parser)
    assert google == dashed and google.max_seq_length == 256 and google.skip_bad_rows
    assert google.decay_after_warmup
    text = parser.format_help()
    assert "--max-seq-length" in text and "--no-skip-bad-rows" in text
    assert "--max_seq_length" not in text and "_after_warmup" not in text


def test_every_bertkit_error_has_one_base() -> None:
    """Every exception class bertkit defines derives from BertkitError (private helpers aside),
    so the CLI's one handler covers them all."""
    import importlib
    import inspect
    import pkgutil

    import bertkit
    from bertkit.errors import BertkitError

    found = []
    for info in pkgutil.walk_packages(bertkit.__path__, "bertkit."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) \
                    and obj.__module__ == module.__name__ and not name.startswith("_"):
                found.append(obj)
                assert issubclass(obj, BertkitError), f"{module.__name__}.{name}"
    assert len(found) >= 9  # ArtifactError, ConfigError, DataError, ShardError, ...


_FT = ["finetune", "--task", "classification", "--model", "m", "--train", "t", "--dev", "d",
       "--out", "o"]
_CPD = ["create-pretraining-data", "--input", "i", "--vocab", "v", "--out", "o"]
BAD_FLAGS = [  # (argv, what the one-line error must name): issue 18's probes and their kin
    (["pretrain", "--data", "d", "--batch-size", "-8"], "--batch-size must be at least 1"),
    (["pretrain", "--data", "d", "--grad-accum", "0"], "--grad-accum"),
    (["pretrain", "--data", "d", "--save-every", "0"], "--save-every"),
    (["pretrain", "--data", "d", "--log-every", "0"], "--log-every"),
    (["pretrain", "--data", "d", "--max-steps", "0"], "--max-steps"),
    (["pretrain", "--data", "d", "--max-steps", "-5"], "--max-steps"),
    (["pretrain", "--data", "d", "--warmup-steps", "-1"], "--warmup-steps"),
    (["pretrain", "--data", "d", "--lr", "nan"], "--lr must be a finite number"),
    (["pretrain", "--data", "d", "--dropout", "1.5"], "--dropout must be less than 1"),
    ([*_FT, "--batch-size", "0"], "--batch-size"),
    ([*_FT, "--grad-accum", "0"], "--grad-accum"),
    ([*_FT, "--epochs", "0"], "--epochs must be greater than 0"),
    ([*_FT, "--epochs", "-1"], "--epochs"),
    ([*_FT, "--epochs", "nan"], "--epochs must be a finite number"),
    ([*_FT, "--lr", "nan"], "--lr must be a finite number"),
    ([*_FT, "--warmup", "2"], "--warmup must be less than 1"),
    ([*_FT, "--warmup", "-0.1"], "--warmup"),
    ([*_FT, "--max-seq-length", "0"], "--max-seq-length must be at least 8"),
    ([*_FT, "--n-best-size", "0"], "--n-best-size"),
    ([*_FT, "--max-answer-length", "0"], "--max-answer-length"),
    ([*_FT, "--doc-stride", "0"], "--doc-stride"),
    ([*_FT, "--seeds", "1,-2"], "--seeds"),
    ([*_FT, "--seeds", "1,1"], "--seeds repeats a value: [1, 1]"),
    ([*_CPD, "--workers", "-1"], "--workers must be at least 1"),
    ([*_CPD, "--workers", "0"], "--workers"),
    ([*_CPD, "--masked-lm-prob", "1.5"], "--masked-lm-prob"),
    ([*_CPD, "--dupe-factor", "0"], "--dupe-factor"),
    (["train-vocab", "--input", "i", "--vocab-size", "100", "--out", "o", "--min-frequency",
      "-1"], "--min-frequency"),
    (["predict", "--model", "m", "--max-seq-length", "0"], "--max-seq-length"),
    (["predict", "--model", "m", "--batch-size", "0"], "--batch-size"),
    (["embed", "--model", "m", "--batch-size", "0"], "--batch-size"),
    (["inspect-data", "d", "--num-examples", "-1"], "--num-examples"),
    (["dataset", "fetch", "mmlu", "--seed", "-1"], "--seed"),
    (["quickstart", "--pretrain-steps", "0"], "--pretrain-steps"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS, ids=lambda x: " ".join(x)
                         if isinstance(x, list) else None)
def test_bad_flag_values_are_usage_errors(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Out-of-range or non-finite values stop at parsing: exit 2, the error line names the flag."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bertkit ") and ": error: " in err[-1] and message in err[-1]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("content, message", [
    ('{"batch_size": 8,', "args.json:1: invalid JSON"),
    ('{"batch_size": "eight"}', "batch_size: expected <class 'int'>, got 'eight'"),
    ('{"batch_size": true}', "batch_size: expected"),
    ('{"batch_size": 0}', "--batch-size must be at least 1"),
    ('[1, 2]', "expected an object of flag names"),
    ('{"no_such_flag": 1}', "unknown keys ['no_such_flag']"),
])
def test_bad_args_files_are_usage_errors(content: str, message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "args.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as stop:
        main(["embed", "--model", "m", "--args-file", str(path)])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_args_file_values_are_typed(tmp_path: Path) -> None:
    """An args file's int given for a float flag, and a path string, arrive typed."""
    import argparse

    from bertkit.cliargs import add_dataclass_args, dataclass_from_namespace
    from bertkit.finetune.run import FinetuneArgs

    path = tmp_path / "args.json"
    path.write_text('{"task": "classification", "model": "m", "train": "t", "dev": "d", '
                    '"out": "o", "epochs": 2, "seeds": [1, 2]}')
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, FinetuneArgs)
    args = dataclass_from_namespace(FinetuneArgs, parser.parse_args(["--args-file", str(path)]),
                                    parser)
    assert args.epochs == 2.0 and isinstance(args.epochs, float) and args.seeds == [1, 2]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_default_is_within_its_own_bounds(command):
    """A flag left out must never be refused: create-pretraining-data's default --workers 0
    once failed its own "at least 1" bound, so the command failed unless --workers was given."""
    import dataclasses
    import importlib

    from bertkit.cliargs import check_values

    module, cls_name, _, _ = COMMANDS[command]
    cls = getattr(importlib.import_module(module), cls_name)
    fields = dataclasses.fields(cls)
    values = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
              for f in fields if f.default is not dataclasses.MISSING
              or f.default_factory is not dataclasses.MISSING}
    required = {f.name for f in fields} - set(values)
    args = cls.__new__(cls)  # required fields (paths) have no bounds: leave them unset
    for name, value in values.items():
        object.__setattr__(args, name, value)
    for name in required:
        object.__setattr__(args, name, None)
    check_values(args)
