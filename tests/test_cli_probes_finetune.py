"""Bad input to ``bertkit finetune`` and ``bertkit predict``, as a new user would give it.

Each row of :data:`PROBES` is a command line (paths from the ``ws`` workspace, with a setup step
where the probe needs one): it must exit 2 with one error line naming the file, line, flag or
field at fault, no traceback, and leave nothing half-written (no ``best/``, no ``results.json``,
no output file; an earlier run untouched). A tiny random BERT on MiniLM's vocabulary keeps the
runs that do train to seconds.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bertkit.cli import main


@dataclass
class Workspace:
    root: Path
    paths: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]


def _save_with_vocab(model: torch.nn.Module, target: Path, vocab_from: Path) -> Path:
    model.save_pretrained(target)  # type: ignore[attr-defined]
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(vocab_from / name, target / name)
    return target


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ws(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Tiny models (base, fine-tuned classifier and QA, one with NaN weights) and input files."""
    from bertkit.config import BertConfig
    from bertkit.models import heads
    from bertkit.models.bert import BertModel

    root = tmp_path_factory.mktemp("probes")
    p: dict[str, Path] = {}
    torch.manual_seed(0)

    def config(**labels) -> BertConfig:
        cfg = BertConfig.from_preset("tiny", vocab_size=30522)  # MiniLM's vocab.txt
        cfg.extra.update(labels)
        return cfg

    p["base"] = _save_with_vocab(BertModel(config()), root / "base", minilm_dir)
    p["cls"] = _save_with_vocab(
        heads.BertForSequenceClassification(config(**heads.label_entries(["neg", "pos"]))),
        root / "cls", minilm_dir)
    p["qa"] = _save_with_vocab(heads.BertForQuestionAnswering(config()), root / "qa", minilm_dir)
    nan = heads.BertForSequenceClassification(config(**heads.label_entries(["neg", "pos"])))
    with torch.no_grad():
        nan.classifier.weight.fill_(float("nan"))  # what a diverged run used to export
    p["nan"] = _save_with_vocab(nan, root / "nan", minilm_dir)
    pre = root / "pretrain-run"  # a pre-training run: checkpoints, no config.json
    (pre / "checkpoint-6").mkdir(parents=True)
    (pre / "args.json").write_text("{}")
    shutil.copyfile(minilm_dir / "vocab.txt", pre / "vocab.txt")
    p["pretrain_run"] = pre

    good = ["a great film", "loved every minute", "wonderful acting", "a joy to watch"]
    bad = ["an awful film", "hated every minute", "boring acting", "a chore to sit through"]
    rows = [{"text": t, "label": "pos"} for t in good] + [{"text": t, "label": "neg"} for t in bad]
    p["train"] = _jsonl(root / "train.jsonl", rows * 4)
    p["dev"] = _jsonl(root / "dev.jsonl", rows)
    p["one_label"] = _jsonl(root / "one-label.jsonl", [{**r, "label": "pos"} for r in rows])
    p["all_o"] = root / "all-o.txt"
    p["all_o"].write_text("Paris\tO\nrocks\tO\n\nhi\tO\n", encoding="utf-8")
    p["squad"] = root / "squad.json"
    p["squad"].write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{
        "context": "Marie Curie won the prize.", "qas": [{
            "id": "q1", "question": "Who won?", "answers": [{"text": "Marie Curie",
                                                             "answer_start": 0}]}]}]}]}))
    latin = "café".encode("latin-1")  # é is 0xe9: not UTF-8
    for name, data in {
        "latin.csv": b"text,label\nfine,pos\n" + latin + b" ok,neg\n",
        "latin.tsv": b"text\tlabel\nfine\tpos\n" + latin + b"\tneg\n",
        "latin.jsonl": b'{"text": "fine", "label": "pos"}\n{"text": "' + latin + b'", "label": "neg"}\n',
        "latin-sst.tsv": b"sentence\tlabel\nfine\t1\n" + latin + b"\t0\n",
        "latin.conll": b"Paris\tB-loc\n" + latin + b"\tO\n",
        "latin.json": b'{"data": [\n{"title": "' + latin + b'", "paragraphs": []}]}',
        "latin-swag.csv": b"sent1,sent2,ending0,ending1,label\nfine,x,a,b,0\n" + latin
                          + b",x,a,b,1\n",
        "binary.jsonl": bytes(range(128, 256)) * 4,
        "latin-predict.txt": b"fine\n" + latin + b"\n",
    }.items():
        p[name] = root / name
        p[name].write_bytes(data)
    p["latin.csv.gz"] = root / "latin.csv.gz"
    p["latin.csv.gz"].write_bytes(gzip.compress(p["latin.csv"].read_bytes()))
    p["empty.txt"] = root / "empty.txt"
    p["empty.txt"].write_text("")
    p["a_dir"] = root / "a-dir.tsv"
    p["a_dir"].mkdir()
    p["two.txt"] = root / "two.txt"
    p["two.txt"].write_text("good\nbad\n")
    p["big.txt"] = root / "big.txt"
    p["big.txt"].write_text("word " * 250_001 + "\n")  # 1,250,005 characters on one line
    return Workspace(root, p)


@pytest.fixture(scope="module")
def finished_run(ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished finetune run with test predictions (read-only for the probes: copy it)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main([*_ft(ws), "--out", str(run), "--test", str(ws["dev"])]) == 0
    assert {"best", "results.json", "test_results.tsv"} <= {p.name for p in run.iterdir()}
    return run


def _ft(ws: Workspace, task: str = "classification", train: str = "train", dev: str = "dev"
        ) -> list[str]:
    """A quick finetune command line without --out: the tiny base, 1 epoch of batch 8."""
    return ["finetune", "--task", task, "--model", str(ws["base"]), "--train", str(ws[train]),
            "--dev", str(ws[dev]), "--epochs", "1", "--batch-size", "8", "--lr", "1e-3",
            "--threads", "1", "--no-progress"]


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- setups
# Each prepares what the probe finds before it runs (given the workspace, --out and the
# finished run) and returns a check of what is left afterwards.

Check = Callable[[], None]


def _fresh(out: Path) -> Check:
    def check() -> None:  # nothing was written: no output file, no model or results in RUN
        assert not (out / "best").exists() and not (out / "results.json").exists()
        assert out.suffix != ".jsonl" or not out.exists()
        assert not list(out.parent.glob(f".{out.name}*"))
    return check


def _holds_finished_run(out: Path, run: Path) -> Check:
    shutil.copytree(run, out)
    before = _snapshot(out)
    return lambda: _unchanged(out, before)


def _unchanged(out: Path, before: dict[str, bytes]) -> None:
    assert _snapshot(out) == before


def _unrelated(out: Path) -> Check:
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    return lambda: _unchanged(out, {"notes.txt": b"mine"})


def _is_file(out: Path) -> Check:
    out.write_text("a file")
    return lambda: _unchanged(out.parent, {out.name: b"a file"})


SETUPS: dict[str, Callable[..., Check]] = {
    "fresh": lambda out, run: _fresh(out), "finished": _holds_finished_run,
    "unrelated": lambda out, run: _unrelated(out), "file": lambda out, run: _is_file(out)}


@dataclass
class Probe:
    id: str
    argv: Callable[[Workspace, Path], list[str]]  # (workspace, --out/--output) -> argv
    names: tuple[str, ...]  # what the one error line must hold ({ws:key} = that file's path)
    setup: str = "fresh"


def _ft_out(*extra: str, task: str = "classification", train: str = "train", dev: str = "dev"
            ) -> Callable[[Workspace, Path], list[str]]:
    return lambda ws, out: [*_ft(ws, task, train, dev), "--out", str(out), *extra]


def _predict(model: str, *extra: str, input: str | None = "two.txt"
             ) -> Callable[[Workspace, Path], list[str]]:
    def argv(ws: Workspace, out: Path) -> list[str]:
        model_dir = str(ws[model]) if model in ws.paths else model
        given = ["--input", str(ws[input]) if input in ws.paths else input] if input else []
        return ["predict", "--model", model_dir, *given, "--output", str(out), *extra]
    return argv


PROBES = [
    # 1. a diverging run exports nothing (it used to export best/ and predict NaN from it)
    Probe("lr-diverges", _ft_out("--lr", "1e6"),
          ("{out}", "training diverged", "NaN or inf", "--lr")),
    Probe("lr-diverges-within-epoch", _ft_out("--lr", "1e6", "--batch-size", "1"),
          ("{out}: training diverged", "non-finite loss", "no model was exported")),
    Probe("lr-nan", _ft_out("--lr", "nan"), ("--lr must be a finite number",)),
    Probe("epochs-nan", _ft_out("--epochs", "nan"), ("--epochs must be a finite number",)),
    Probe("seed-negative", _ft_out("--seed", "-1"), ("--seed must be at least 0",)),
    Probe("seeds-negative", _ft_out("--seeds", "1,-2"), ("--seeds must be at least 0",)),
    Probe("predict-nan-model", _predict("nan"), ("{ws:two.txt}:1", "NaN or inf", "{ws:nan}")),
    # 2. --out holding a finished run, something else, or being a file
    Probe("out-finished-run", _ft_out(), ("--out {out}", "earlier finetune run", "--overwrite"),
          "finished"),
    Probe("out-unrelated", _ft_out(), ("--out {out}", "not empty", "notes.txt"), "unrelated"),
    Probe("out-unrelated-overwrite", _ft_out("--overwrite"),
          ("--out {out}", "holds no finetune run"), "unrelated"),
    Probe("out-is-file", _ft_out(), ("--out {out}", "is a file"), "file"),
    # 3. one class only
    Probe("one-label", _ft_out(train="one_label"),
          ("{ws:one_label}: every example has label 'pos'", "at least two labels")),
    Probe("ner-all-o", _ft_out(task="ner", train="all_o", dev="all_o"),
          ("{ws:all_o}: every token is tagged 'O'",)),
    # 4. QA windows that would not overlap
    Probe("doc-stride-wide", _ft_out("--doc-stride", "400", task="qa", train="squad",
                                     dev="squad"),
          ("--doc-stride 400", "--max-seq-length 384", "--max-query-length 64", "317 tokens")),
    Probe("doc-stride-short-seq", _ft_out("--max-seq-length", "128", task="qa", train="squad",
                                          dev="squad"),
          ("--doc-stride 128", "--max-seq-length 128", "61 tokens")),
    # 6. a huge line to predict
    Probe("predict-huge-line", _predict("cls", input="big.txt"),
          ("{ws:big.txt}:1", "1,250,005 characters", "--max-input-chars 1,000,000")),
    # 7. not UTF-8, every format
    *(Probe(f"not-utf8-{key}", _ft_out(task=task, train=key), (f"{{ws:{key}}}:{line}: not valid "
                                                                "UTF-8", "save the file as UTF-8"))
      for key, task, line in [("latin.csv", "classification", 3), ("latin.tsv", "classification", 3),
                              ("latin.jsonl", "classification", 2),
                              ("latin.csv.gz", "classification", 3),
                              ("latin-sst.tsv", "glue:sst-2", 3), ("latin.conll", "ner", 2),
                              ("latin.json", "qa", 2), ("latin-swag.csv", "multiple-choice", 3)]),
    Probe("not-utf8-dev", _ft_out(dev="latin.jsonl"), ("{ws:latin.jsonl}:2: not valid UTF-8",)),
    Probe("binary-train", _ft_out(train="binary.jsonl"),
          ("{ws:binary.jsonl}:1: not valid UTF-8 (invalid start byte at byte 0",)),
    Probe("predict-not-utf8", _predict("cls", input="latin-predict.txt"),
          ("{ws:latin-predict.txt}:2: not valid UTF-8",)),
    # 8. formats and task names in the command line's terms
    Probe("train-no-format", _ft_out(train="empty.txt"),
          ("{ws:empty.txt}", "*.csv, *.tsv or *.jsonl", "rename it")),
    Probe("glue-unknown", _ft_out(task="glue:foo"), ("glue:foo", "glue:sst-2", "glue:mnli")),
    # 9. paths
    Probe("train-is-dir", _ft_out(train="a_dir"), ("{ws:a_dir}: --train is a directory",)),
    Probe("dev-is-dir", _ft_out(dev="a_dir"), ("{ws:a_dir}: --dev is a directory",)),
    Probe("test-missing", _ft_out("--test", "no-such.jsonl"), ("no-such.jsonl: --test not found",)),
    Probe("model-missing", lambda ws, out: [*_ft(ws), "--model", str(ws.root / "nope"),
                                            "--out", str(out)],
          ("--model {ws_root}/nope", "no such directory")),
    Probe("model-pretraining-run", lambda ws, out: [*_ft(ws), "--model", str(ws["pretrain_run"]),
                                                    "--out", str(out)],
          ("--model {ws:pretrain_run}", "pre-training run", "bertkit export")),
    Probe("predict-input-dir", _predict("cls", input="a_dir"),
          ("{ws:a_dir}: --input is a directory",)),
    Probe("predict-input-missing", _predict("cls", input="no-such.txt"),
          ("no-such.txt: --input not found",)),
    Probe("predict-model-missing", _predict("no-such-model"),
          ("--model no-such-model", "no such directory")),
    Probe("predict-pretraining-run", _predict("pretrain_run"),
          ("--model {ws:pretrain_run}", "pre-training run", "bertkit export")),
    Probe("predict-base-model", _predict("base"),
          ("--model {ws:base}", "not a fine-tuned model", "['BertModel']")),
    Probe("predict-output-dir", lambda ws, out: _predict("cls")(ws, ws["a_dir"]),
          ("{ws:a_dir}", "is a directory")),
]


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.id)
def test_probe(probe: Probe, ws: Workspace, finished_run: Path, tmp_path: Path,
               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / ("out.jsonl" if probe.argv(ws, tmp_path / "x")[0] == "predict" else "run")
    check = SETUPS[probe.setup](out, finished_run)
    argv = probe.argv(ws, out)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # a flag out of bounds: argparse's usage error
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"bertkit {argv[0]}")]
    assert len(errors) == 1 and ": error: " in errors[0], err
    for name in probe.names:
        want = name.replace("{out}", str(out)).replace("{ws_root}", str(ws.root))
        for key, path in ws.paths.items():
            want = want.replace(f"{{ws:{key}}}", str(path))
        assert want in errors[0], (want, errors[0])
    check()


# ----------------------------------------------------------------------------- the fixes at work


def test_overwrite_replaces_a_run_and_keeps_nothing_stale(ws: Workspace, finished_run: Path,
                                                          tmp_path: Path) -> None:
    """--overwrite removes the old run's outputs first: without --test this time, no old
    test_results.tsv stays behind; a file of the user's stays."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "seed-3").mkdir()  # as an earlier --seeds run left it
    (out / "my-notes.txt").write_text("mine")
    assert main([*_ft(ws), "--out", str(out), "--overwrite"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"args.json", "metrics.jsonl", "best", "dev_results.tsv", "results.json",
                     "my-notes.txt"}
    assert not json.loads((out / "args.json").read_text())["test"]


def test_predict_empty_context_is_no_answer(ws: Workspace, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A context that holds no word piece (a zero-width space) has no answer span: predict says
    so, never answering Google's placeholder text "empty" with probability 1."""
    lines = [{"question": "Who?", "context": "\u200b"},
             {"question": "Who won?", "context": "Marie Curie won the prize."}]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps(x) + "\n" for x in lines)))
    assert main(["predict", "--model", str(ws["qa"])]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert got[0] == {"answer": "", "nbest": [], "no_span": True}
    assert got[1]["answer"] in lines[1]["context"] and "no_span" not in got[1]


def test_predict_names_the_line_of_stdin_that_is_not_utf8(ws: Workspace,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"fine\r\nalso fine\n" + "café".encode("latin-1")
                                        + b"\n"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["predict", "--model", str(ws["cls"])]) == 2
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 0  # the chunk failed before anything was written
    assert "<stdin>:3: not valid UTF-8 (invalid continuation byte at byte 3 of the line)" in out.err


def test_predict_logs_many_windows_and_shows_progress(ws: Workspace, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A long input is logged with its number of windows and a progress bar counts batches."""
    import logging

    import bertkit.finetune.predict as predict

    monkeypatch.setattr(predict, "_MANY_FEATURES", 8)
    inp = tmp_path / "long.txt"
    inp.write_text("word " * 2000 + "\nshort\n")
    with caplog.at_level(logging.INFO, logger="bertkit.finetune.predict"):
        assert main(["predict", "--model", str(ws["cls"]), "--input", str(inp), "--output",
                     str(tmp_path / "o.jsonl"), "--progress", "--batch-size", "4"]) == 0
    assert "lines 1-2: 2 inputs make 32 windows of up to 128 tokens" in caplog.text
    err = capsys.readouterr().err
    assert "predict: 100%" in err and "batch" in err
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 2


def test_postprocess_marks_no_span_and_keeps_google_text() -> None:
    """Post-processing keeps Google's "empty" placeholder (its files match Google's) and marks the
    question in ``no_span``; a real answer is not marked."""
    import numpy as np

    from bertkit.data.squad import make_example
    from bertkit.finetune.qa import postprocess

    ex = make_example("q", "Who?", "\u200b", [])
    preds = postprocess([ex], [], [], [], n_best_size=2)
    assert preds.predictions == {"q": "empty"} and preds.no_span == {"q"}
    assert np.isfinite(preds.nbest["q"][0]["probability"])
