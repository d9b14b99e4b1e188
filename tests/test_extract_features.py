"""bertkit extract-features against transformers' BertModel (real MiniLM, real text).

The expected tokens, pair splitting, truncation and layer mapping are written here independently
of bertkit, after Google's extract_features.py.
"""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bertkit.cli import main

transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

pytestmark = pytest.mark.real

LAYERS = [-1, -2, 0, -6]  # last, second last, first and (again) first encoder layer of 6
MAX_SEQ = 64


def _google_truncate(a: list[str], b: list[str] | None, max_seq: int) -> tuple[list, list | None]:
    """Google's rule: a pair pops the last token of the longer side (B on ties) until it fits."""
    a = list(a)
    if b is None:
        return a[:max_seq - 2], None
    b = list(b)
    while len(a) + len(b) > max_seq - 3:
        (a if len(a) > len(b) else b).pop()
    return a, b


@pytest.fixture(scope="module")
def lines(real_sentences) -> list[str]:
    s = real_sentences
    long = max(s, key=len)
    out = [
        s[0],
        f"  {s[3]} ||| {s[7]}  ",        # a pair, with whitespace Google strips
        long,                            # a single text over MAX_SEQ tokens
        f"{long} ||| {s[10]}",           # a long A with a short B
        f"{s[2]} ||| {long}",            # a short A with a long B
        f"{long} ||| {long}",            # both long: a tie, B loses first
        "",                              # an empty line: [CLS] [SEP]
        f"{s[5]} ||| {s[6]} ||| {s[8]}",  # greedy: A = 's5 ||| s6'
        *s[11:17],
    ]
    return out


@pytest.fixture(scope="module")
def expected(lines, minilm_dir) -> list[dict]:
    """Per line: tokens, token types and the chosen layers' states from transformers."""
    tok = transformers.BertTokenizer.from_pretrained(minilm_dir)
    model = transformers.BertModel.from_pretrained(minilm_dir).eval()
    out = []
    for line in lines:
        m = re.fullmatch(r"(.*) \|\|\| (.*)", line.strip())
        a_text, b_text = (m.group(1), m.group(2)) if m else (line.strip(), None)
        b_toks = tok.tokenize(b_text) if b_text else None
        a, b = _google_truncate(tok.tokenize(a_text), b_toks or None, MAX_SEQ)
        tokens = ["[CLS]", *a, "[SEP]"] + ([*b, "[SEP]"] if b else [])
        types = [0] * (len(a) + 2) + ([1] * (len(b) + 1) if b else [])
        with torch.inference_mode():
            res = model(torch.tensor([tok.convert_tokens_to_ids(tokens)]),
                        token_type_ids=torch.tensor([types]), output_hidden_states=True)
        encoder_layers = res.hidden_states[1:]   # Google's all_encoder_layers
        values = torch.stack([encoder_layers[i][0] for i in LAYERS], 1).numpy()  # (T, n, H)
        out.append({"tokens": tokens, "types": types, "values": values})
    return out


@pytest.fixture(scope="module")
def input_file(lines, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ef") / "input.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(input_file: Path, minilm_dir: Path, out: Path | str, *flags: str) -> int:
    return main(["extract-features", "--input-file", str(input_file), "--model", str(minilm_dir),
                 "--out", str(out), "--layers=" + ",".join(map(str, LAYERS)),
                 "--max-seq-length", str(MAX_SEQ), *flags])


@pytest.fixture(scope="module")
def outputs(input_file, minilm_dir, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("out")
    paths = {"jsonl": d / "f.jsonl", "npy": d / "f.npy", "safetensors": d / "f.safetensors"}
    for fmt, path in paths.items():
        assert _run(input_file, minilm_dir, path, "--format", fmt, "--batch-size", "4") == 0
    return paths


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_matches_transformers_in_googles_layout(outputs, expected, lines):
    records = _read_jsonl(outputs["jsonl"])
    assert len(records) == len(lines)
    for i, (rec, exp) in enumerate(zip(records, expected, strict=True)):
        assert list(rec) == ["linex_index", "features"] and rec["linex_index"] == i
        assert [f["token"] for f in rec["features"]] == exp["tokens"]
        for t, feat in enumerate(rec["features"]):
            assert list(feat) == ["token", "layers"]
            assert [list(layer) for layer in feat["layers"]] == [["index", "values"]] * len(LAYERS)
            assert [layer["index"] for layer in feat["layers"]] == LAYERS
            got = np.array([layer["values"] for layer in feat["layers"]])   # (n, H)
            np.testing.assert_allclose(got, exp["values"][t], rtol=0, atol=1e-5)
            # Google's rounding: round(float(x), 6), so at most 6 decimals in every value
            assert all(v == round(v, 6) for layer in feat["layers"] for v in layer["values"])


def test_truncation_and_pairs_follow_google(expected, lines):
    lengths = [len(e["tokens"]) for e in expected]
    assert max(lengths) == MAX_SEQ and lengths[6] == 2           # truncated lines; empty line
    assert expected[1]["types"][-1] == 1 and expected[2]["types"] == [0] * MAX_SEQ
    assert sum(expected[5]["types"]) == (MAX_SEQ - 3) // 2 + 1    # tie: B drops first


def test_binary_formats_equal_jsonl(outputs, expected, lines):
    records = _read_jsonl(outputs["jsonl"])
    values = np.load(outputs["npy"])
    offsets = np.load(outputs["npy"].with_suffix(".offsets.npy"))
    st = safetensors_numpy.load_file(outputs["safetensors"])
    n_tokens = sum(len(e["tokens"]) for e in expected)
    assert values.dtype == np.float32 and values.shape == (n_tokens, len(LAYERS), 384)
    assert offsets.dtype == np.int64 and offsets.shape == (len(lines) + 1,)
    np.testing.assert_array_equal(st["features"], values)
    np.testing.assert_array_equal(st["offsets"], offsets)
    for path in (outputs["npy"], outputs["safetensors"]):
        side = _read_jsonl(path.with_suffix(".tokens.jsonl"))
        assert side == [{"linex_index": i, "tokens": e["tokens"]} for i, e in enumerate(expected)]
    types = np.concatenate([e["types"] for e in expected])
    np.testing.assert_array_equal(st["token_type_ids"], types)
    for i, rec in enumerate(records):
        rows = values[offsets[i]:offsets[i + 1]]
        as_json = np.array([[layer["values"] for layer in f["layers"]] for f in rec["features"]])
        # same batches, same values: the JSON holds exactly Google's round(float(x), 6)
        assert as_json.ravel().tolist() == [round(float(x), 6) for x in rows.ravel()]
        np.testing.assert_allclose(rows, expected[i]["values"], rtol=0, atol=1e-5)


def test_safetensors_ids_and_metadata(outputs, expected, minilm_dir):
    from safetensors import safe_open

    with safe_open(str(outputs["safetensors"]), "np") as f:
        assert f.metadata()["layers"] == ",".join(map(str, LAYERS))
    ids = safetensors_numpy.load_file(outputs["safetensors"])["token_ids"]
    tok = transformers.BertTokenizer.from_pretrained(minilm_dir)
    expect = [i for e in expected for i in tok.convert_tokens_to_ids(e["tokens"])]
    assert ids.tolist() == expect


def test_small_chunks_and_stdin_keep_input_order(input_file, minilm_dir, outputs, tmp_path,
                                                 monkeypatch, capsys):
    out = tmp_path / "small.npy"
    assert _run(input_file, minilm_dir, out, "--format", "npy", "--chunk-lines", "3",
                "--batch-size", "2") == 0
    np.testing.assert_allclose(np.load(out), np.load(outputs["npy"]), rtol=0, atol=1e-5)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(input_file.read_bytes())))
    capsys.readouterr()
    assert _run(Path("-"), minilm_dir, "-", "--chunk-lines", "5") == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    want = _read_jsonl(outputs["jsonl"])
    assert [r["linex_index"] for r in got] == list(range(len(want)))
    assert [[f["token"] for f in r["features"]] for r in got] == \
        [[f["token"] for f in r["features"]] for r in want]


def test_encode_layers_equals_cli(outputs, lines, minilm_dir):
    from bertkit import encode
    from bertkit.models.bert import BertModel
    from bertkit.tokenization import BertTokenizer

    model = BertModel.from_pretrained(minilm_dir).eval()
    tok = BertTokenizer.from_pretrained(minilm_dir)
    singles = [i for i, line in enumerate(lines) if "|||" not in line]
    texts = [lines[i] for i in singles]
    states = encode(model, tok, texts, batch_size=3, max_length=MAX_SEQ, pooling=None,
                    layers=LAYERS)
    values = np.load(outputs["npy"])
    offsets = np.load(outputs["npy"].with_suffix(".offsets.npy"))
    for i, s in zip(singles, states, strict=True):
        assert s.shape == (offsets[i + 1] - offsets[i], len(LAYERS), 384)
        np.testing.assert_allclose(s.numpy(), values[offsets[i]:offsets[i + 1]], atol=1e-5)
    pooled = encode(model, tok, texts, max_length=MAX_SEQ, pooling="mean", layers=LAYERS)
    assert pooled.shape == (len(texts), len(LAYERS), 384)
    means = torch.stack([s.mean(0) for s in states])
    assert (pooled - means).abs().max().item() <= 1e-5
    last = encode(model, tok, texts, max_length=MAX_SEQ, pooling="cls")
    assert (encode(model, tok, texts, max_length=MAX_SEQ, pooling="cls", layers=[-1])[:, 0]
            - last).abs().max().item() <= 1e-6
    with pytest.raises(ValueError, match="pooler"):
        encode(model, tok, texts, pooling="pooler", layers=[-1])
    with pytest.raises(ValueError, match="6 encoder layers"):
        encode(model, tok, texts, pooling=None, layers=[6])
    assert encode(model, tok, [], pooling="mean", layers=[-1, -2]).shape == (0, 2, 384)


def _no_outputs(directory: Path) -> bool:
    return [p.name for p in directory.iterdir()] == ["input.txt"]


def test_bad_utf8_line_names_file_and_line_and_leaves_no_output(lines, minilm_dir, tmp_path,
                                                                capsys):
    path = tmp_path / "input.txt"
    good = "\n".join([lines[0]] * 300).encode()   # chunks of 64 lines are written first
    path.write_bytes(good + b"\nfine\ncaf\xe9 au lait\nlater\n")
    assert _run(path, minilm_dir, tmp_path / "f.jsonl", "--chunk-lines", "64") == 2
    assert f"error: {path}:302: not valid UTF-8" in capsys.readouterr().err
    assert _no_outputs(tmp_path), sorted(p.name for p in tmp_path.iterdir())
    path.write_bytes(b"fine\n\xff\n")
    for fmt in ("npy", "safetensors"):
        assert _run(path, minilm_dir, tmp_path / f"f.{fmt}", "--format", fmt) == 2
        assert f"error: {path}:2: not valid UTF-8" in capsys.readouterr().err
        assert _no_outputs(tmp_path), sorted(p.name for p in tmp_path.iterdir())


def test_interrupt_mid_run_leaves_no_output(input_file, minilm_dir, tmp_path, monkeypatch):
    import bertkit.extract_features as ef

    real, calls = ef.layer_values, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(ef, "layer_values", flaky)
    (tmp_path / "input.txt").write_bytes(input_file.read_bytes())
    for fmt in ("npy", "safetensors"):   # jsonl: see the bad UTF-8 test
        calls.clear()
        assert _run(tmp_path / "input.txt", minilm_dir, tmp_path / "f.out", "--format", fmt,
                    "--chunk-lines", "2") == 130
        assert _no_outputs(tmp_path)


def test_flag_and_file_errors(input_file, minilm_dir, tmp_path, capsys):
    assert main(["extract-features", "--input-file", str(tmp_path / "nope.txt"), "--model",
                 str(minilm_dir), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "nope.txt: No such file" in capsys.readouterr().err
    assert main(["extract-features", "--input-file", str(input_file), "--model", str(minilm_dir),
                 "--out", str(tmp_path / "o.jsonl"), "--layers", "-1,-7"]) == 2  # as Google wrote
    err = capsys.readouterr().err
    assert "--layers" in err and "-7" in err and "6 encoder layers" in err
    assert main(["extract-features", "--input-file", str(input_file), "--model", str(minilm_dir),
                 "--out", str(tmp_path / "o.jsonl"), "--max-seq-length", "513"]) == 2
    assert "max_position_embeddings 512" in capsys.readouterr().err
    assert main(["extract-features", "--input-file", str(input_file), "--model", str(minilm_dir),
                 "--out", "-", "--format", "npy"]) == 2
    assert "stdout takes only --format jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["extract-features", "--input-file", str(input_file), "--model", str(minilm_dir),
              "--out", str(tmp_path / "o.jsonl"), "--layers=last"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["extract-features", "--input-file", str(input_file), "--model", str(minilm_dir),
              "--out", str(tmp_path / "o.jsonl"), "--max-seq-length", "2"])
    assert e.value.code == 2
    assert not list(tmp_path.iterdir())


def test_empty_input_gives_empty_valid_outputs(minilm_dir, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    for fmt in ("jsonl", "npy", "safetensors"):
        assert _run(path, minilm_dir, tmp_path / f"f.{fmt}", "--format", fmt) == 0
    assert (tmp_path / "f.jsonl").read_bytes() == b""
    assert np.load(tmp_path / "f.npy").shape == (0, len(LAYERS), 384)
    assert np.load(tmp_path / "f.offsets.npy").tolist() == [0]
    st = safetensors_numpy.load_file(tmp_path / "f.safetensors")
    assert st["features"].shape == (0, len(LAYERS), 384) and st["offsets"].tolist() == [0]
    assert (tmp_path / "f.tokens.jsonl").read_bytes() == b""
