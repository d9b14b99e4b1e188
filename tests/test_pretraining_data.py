"""Pre-training data: Google's semantics measured on real SOTU text, the shard format, bad input.

Statistics use a 5.5 MB SOTU subset with Google's defaults and dupe_factor 2 (about 21,000
instances, 2.9 M tokens); tolerances are the acceptance ones: 80/10/10 +-1.5 points, random next
50% +-2 points, short target 10% +-2 points (measured over 233 documents x 10 copies).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from realdata import fetch_or_skip

from bertkit.cliargs import add_dataclass_args, dataclass_from_namespace
from bertkit.data import masking as M
from bertkit.data import pretraining as P
from bertkit.data.corpora import head_documents
from bertkit.data.shards import PretrainingDataset, ShardError, inspect_data

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def sotu() -> Path:
    from bertkit.data.corpora import fetch_corpus

    return fetch_or_skip(fetch_corpus, "sotu")


def _make(tmp: Path, inputs: list[Path], vocab: Path, workers: int = 2, errors: str = "strict",
          **kw) -> dict:
    settings = P.InstanceSettings(**{"dupe_factor": 2, **kw})
    return P.create_pretraining_data([str(p) for p in inputs], vocab, tmp, settings,
                                     workers=workers, errors=errors, progress=False)


def _rows(d: Path) -> np.ndarray:
    index = json.loads((d / "index.json").read_text())
    return np.concatenate([np.load(d / s["file"]) for s in index["shards"]])


@pytest.fixture(scope="module")
def text5(sotu: Path, tmp_path_factory) -> Path:
    return head_documents(sotu, 5_500_000, tmp_path_factory.mktemp("txt") / "sotu5.txt")


@pytest.fixture(scope="module")
def text1(sotu: Path, tmp_path_factory) -> Path:
    return head_documents(sotu, 1_000_000, tmp_path_factory.mktemp("txt") / "sotu1.txt")


@pytest.fixture(scope="module")
def static_dir(text5: Path, uncased_vocab: Path, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("static")
    _make(d, [text5], uncased_vocab)
    return d


@pytest.fixture(scope="module")
def dynamic_dir(text5: Path, uncased_vocab: Path, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dynamic")
    _make(d, [text5], uncased_vocab, masking="dynamic")
    return d


# ----------------------------------------------------------------------------- semantics


def test_masked_count_is_googles_rule_and_specials_never_masked(static_dir: Path) -> None:
    r = _rows(static_dir)
    assert len(r) > 15_000
    L = r["input_ids"].shape[1]
    length = r["length"].astype(np.int64)
    k = M.num_to_predict(length, 0.15, 20)
    assert np.array_equal(r["num_masked"], k), "without WWM the count is exactly the rule"
    pos = r["masked_lm_positions"].astype(np.int64)
    real = np.arange(20)[None, :] < r["num_masked"][:, None]
    a_len = r["a_length"].astype(np.int64)
    specials = (pos == 0) | (pos == a_len[:, None] - 1) | (pos == length[:, None] - 1)
    assert not (specials & real).any(), "[CLS]/[SEP] masked"
    assert (pos < length[:, None])[real].all(), "padding masked"
    assert (length <= L).all() and (r["input_ids"][:, 0] == 101).all()
    rows = np.arange(len(r))
    assert (r["input_ids"][rows, a_len - 1] == 102).all()
    assert (r["input_ids"][rows, length - 1] == 102).all()
    assert (r["input_ids"][np.arange(L)[None, :] >= length[:, None]] == 0).all()


def test_80_10_10(static_dir: Path) -> None:
    r = _rows(static_dir)
    real = np.arange(20)[None, :] < r["num_masked"][:, None]
    shown = np.take_along_axis(r["input_ids"], r["masked_lm_positions"].astype(np.int64), 1)[real]
    label = r["masked_lm_ids"][real]
    mask_frac = (shown == 103).mean()
    keep_frac = ((shown == label) & (shown != 103)).mean()
    rand_frac = 1 - mask_frac - keep_frac
    print(f"80/10/10 measured: {mask_frac:.4f} / {keep_frac:.4f} / {rand_frac:.4f}")
    assert abs(mask_frac - 0.8) < 0.015 and abs(keep_frac - 0.1) < 0.015
    assert abs(rand_frac - 0.1) < 0.015


def test_random_next_half_of_multi_sentence_chunks(static_dir: Path) -> None:
    c = json.loads((static_dir / "index.json").read_text())["counts"]
    multi = c["chunks"] - c["single_sentence_chunks"]
    frac = c["random_next_multi"] / multi
    print(f"random next among {multi} multi-sentence chunks: {frac:.4f}")
    assert abs(frac - 0.5) < 0.02
    assert int(_rows(static_dir)["next_sentence_label"].sum()) == c["random_next"]


def test_short_target_in_a_tenth_of_documents(sotu: Path, uncased_vocab: Path) -> None:
    # Google draws the target length once per document and copy; 233 docs x 10 copies
    settings = P.InstanceSettings()
    enc = P.WordPieceEncoder(uncased_vocab)
    block = next(P._iter_blocks([sotu], P.InstanceSettings(pool_mb=100), "strict"))
    tb = P._tokenize_block(block, enc, settings)
    stats = P._Stats()
    for dupe in range(10):
        rng = P._task_seed(settings, 0, 0, dupe)[0]  # the generator a real task would use
        P._pair_spans(tb, 0, len(tb.doc_off) - 1, rng, settings, stats)
    frac = stats.short_target_documents / stats.document_copies
    print(f"short target in {frac:.4f} of {stats.document_copies} documents")
    assert abs(frac - 0.1) < 0.02


def test_labels_are_the_original_ids(static_dir: Path, dynamic_dir: Path) -> None:
    s, d = _rows(static_dir), _rows(dynamic_dir)  # same seed: same rows, unmasked in `d`
    assert np.array_equal(s["length"], d["length"]) and np.array_equal(s["a_length"],
                                                                        d["a_length"])
    pos = s["masked_lm_positions"].astype(np.int64)
    real = np.arange(20)[None, :] < s["num_masked"][:, None]
    orig = np.take_along_axis(d["input_ids"], pos, 1)
    assert np.array_equal(orig[real], s["masked_lm_ids"][real])
    other = np.ones(s["input_ids"].shape, dtype=bool)
    np.put_along_axis(other, pos, ~real, axis=1)
    assert np.array_equal(s["input_ids"][other], d["input_ids"][other])


def test_dynamic_masking_at_load_time(dynamic_dir: Path) -> None:
    ds = PretrainingDataset(dynamic_dir, seed=3)
    b = ds.batch(list(range(256)))
    k = M.num_to_predict(b["input_mask"].sum(1).numpy(), 0.15, 20)
    assert np.array_equal(b["masked_lm_weights"].sum(1).numpy(), k)
    again = ds.batch(list(range(100, 110)))  # a row's mask does not depend on its batch
    assert all(np.array_equal(again[key].numpy(), b[key][100:110].numpy()) for key in b)
    ds.set_epoch(1)
    assert not np.array_equal(ds.batch(list(range(256)))["input_ids"].numpy(),
                              b["input_ids"].numpy())


def test_whole_word_masking_masks_every_piece(text1: Path, uncased_vocab: Path,
                                              tmp_path: Path) -> None:
    _make(tmp_path / "s", [text1], uncased_vocab, dupe_factor=1, do_whole_word_mask=True)
    _make(tmp_path / "d", [text1], uncased_vocab, dupe_factor=1, do_whole_word_mask=True,
          masking="dynamic")
    s, d = _rows(tmp_path / "s"), _rows(tmp_path / "d")
    tokens = (tmp_path / "s" / "vocab.txt").read_text().splitlines()
    orig = d["input_ids"].astype(np.int64)
    cont = M.continuation_table(tokens, lambda t: not t.startswith("##"))[orig]
    length = d["length"].astype(np.int64)
    gids = M.group_ids(M.candidate_mask(orig, length, 101, 102), cont)
    masked = np.zeros(orig.shape, dtype=bool)
    pos = s["masked_lm_positions"].astype(np.int64)
    real = np.arange(20)[None, :] < s["num_masked"][:, None]
    np.put_along_axis(masked, np.where(real, pos, 0), real, axis=1)
    masked[:, 0] = False
    n_multi = 0
    for i in range(len(s)):
        g = set(gids[i][masked[i]].tolist())
        in_groups = np.isin(gids[i], list(g))
        assert np.array_equal(in_groups, masked[i]), "a word was masked only in part"
        n_multi += int(cont[i][masked[i]].any())
    assert (s["num_masked"] <= M.num_to_predict(length, 0.15, 20)).all()
    assert n_multi > 100  # multi-piece words do get masked


def test_same_seed_same_bytes_for_1_or_2_workers(text1: Path, uncased_vocab: Path,
                                                 tmp_path: Path) -> None:
    _make(tmp_path / "w1", [text1], uncased_vocab, workers=1, part_mb=0.3)
    _make(tmp_path / "w2", [text1], uncased_vocab, workers=2, part_mb=0.3)
    files = sorted(p.name for p in (tmp_path / "w1").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "w2").iterdir()) and len(files) > 6
    for f in files:
        assert (tmp_path / "w1" / f).read_bytes() == (tmp_path / "w2" / f).read_bytes(), f


def test_dupe_copies_get_different_masks(static_dir: Path) -> None:
    def masks(dupe: int) -> dict[bytes, bytes]:
        r = np.load(static_dir / f"shard-00000-000-{dupe:03d}.npy")
        out = {}
        for row in r:
            orig = row["input_ids"].copy()
            n = int(row["num_masked"])
            orig[row["masked_lm_positions"][:n]] = row["masked_lm_ids"][:n]
            out[orig.tobytes()] = row["masked_lm_positions"][:n].tobytes()
        return out

    m0, m1 = masks(0), masks(1)
    common = set(m0) & set(m1)
    assert len(common) > 20  # the same sequence in both copies (e.g. whole short documents)...
    same = sum(m0[k] == m1[k] for k in common)
    assert same / len(common) < 0.2  # ...with other masked positions


# ----------------------------------------------------------------------------- format, reader


def test_dataset_features_ranks_and_checks(static_dir: Path, uncased_vocab: Path,
                                           tmp_path: Path) -> None:
    ds = PretrainingDataset(static_dir, vocab_file=uncased_vocab)
    item = ds[0]
    assert set(item) == {"input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                         "masked_lm_ids", "masked_lm_weights", "next_sentence_labels"}
    assert item["input_ids"].shape == (128,) and item["masked_lm_ids"].shape == (20,)
    n = int(item["input_mask"].sum())
    assert item["segment_ids"][:n].tolist() == sorted(item["segment_ids"][:n].tolist())
    parts = [PretrainingDataset(static_dir, rank=r, world_size=3, verify=False) for r in range(3)]
    seen = [set(p._rows.tolist()) for p in parts]
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and len(parts[0]) == len(parts[2])
    assert sum(map(len, seen)) >= ds.total_rows - 2
    again = PretrainingDataset(static_dir, verify=False)
    assert np.array_equal(again._rows, ds._rows)
    again.set_epoch(1)
    assert not np.array_equal(again._rows, ds._rows)
    other_vocab = tmp_path / "vocab.txt"
    other_vocab.write_text(uncased_vocab.read_text() + "extra\n")
    with pytest.raises(ShardError, match="does not match the vocabulary"):
        PretrainingDataset(static_dir, vocab_file=other_vocab)
    report = inspect_data(static_dir, 2)
    assert "[MASK](" in report and "instances=" in report


def test_damaged_shard_is_reported(text1: Path, uncased_vocab: Path, tmp_path: Path) -> None:
    _make(tmp_path, [text1], uncased_vocab, dupe_factor=1)
    shard = next(tmp_path.glob("shard-*.npy"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="damaged"):
        PretrainingDataset(tmp_path)


def test_resume_after_interruption(text1: Path, uncased_vocab: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _make(tmp_path / "ref", [text1], uncased_vocab, workers=1, part_mb=0.3)
    real_make_rows, calls = P.make_rows, []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_make_rows(*a, **k)

    monkeypatch.setattr(P, "make_rows", failing)
    with pytest.raises(KeyboardInterrupt):
        _make(tmp_path / "run", [text1], uncased_vocab, workers=1, part_mb=0.3)
    assert len(list((tmp_path / "run").glob("shard-*.npy"))) == 2
    assert not list((tmp_path / "run").glob(".*.tmp"))
    monkeypatch.setattr(P, "make_rows", real_make_rows)
    calls.clear()
    _make(tmp_path / "run", [text1], uncased_vocab, workers=1, part_mb=0.3)
    for f in (tmp_path / "ref").iterdir():
        assert f.read_bytes() == (tmp_path / "run" / f.name).read_bytes(), f.name
    with pytest.raises(ValueError, match="other inputs or settings"):
        _make(tmp_path / "run", [text1], uncased_vocab, workers=1, part_mb=0.3, random_seed=1)


def test_objectives_sop_and_none(text1: Path, uncased_vocab: Path, tmp_path: Path) -> None:
    _make(tmp_path / "sop", [text1], uncased_vocab, dupe_factor=1, objective="sop")
    c = json.loads((tmp_path / "sop" / "index.json").read_text())["counts"]
    assert abs(c["random_next_multi"] / (c["chunks"] - c["single_sentence_chunks"]) - 0.5) < 0.03
    _make(tmp_path / "none", [text1], uncased_vocab, dupe_factor=1, objective="none")
    r = _rows(tmp_path / "none")
    assert (r["a_length"] == r["length"]).all() and (r["next_sentence_label"] == 0).all()
    assert r["length"].mean() > 90 and (r["length"] <= 128).all()  # packed with whole sentences
    ds = PretrainingDataset(tmp_path / "none")
    item = ds[0]
    assert "next_sentence_labels" not in item and int(item["segment_ids"].sum()) == 0


# ----------------------------------------------------------------------------- input, tokenizer


def test_fast_tokenization_equals_whole_line_tokenization(text1: Path,
                                                          uncased_vocab: Path) -> None:
    enc = P.WordPieceEncoder(uncased_vocab)
    lines = [ln for ln in text1.read_text().splitlines() if ln.strip()][:3000]
    lines += ["Tabs\tand  spaces", "ctrl\x0bchar\x1cjoined", "[SEP] [CLS] x", "Café naïve ÉCOLE",
              "中文字符 mixed", "a\u2028b", "don't stop-gap", "x" * 150 + " y",
              "nbsp\u00a0here em\u2014dash \u2019quoted\u2019", "zero\u200bwidth", "a \u0301b",
              "\x85next line", "form\x0cfeed", "\ufeffbom"]
    ids, lens, _ = enc.encode(lines)
    ref = enc.encode_reference(lines)
    assert lens.tolist() == [len(r) for r in ref]
    assert ids.tolist() == [i for r in ref for i in r]


def test_bad_input(tmp_path: Path, uncased_vocab: Path) -> None:
    with pytest.raises(P.InputError, match="no such file"):
        _make(tmp_path / "o1", [tmp_path / "missing.txt"], uncased_vocab)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(P.InputError, match="no text"):
        _make(tmp_path / "o2", [empty], uncased_vocab)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Good line one.\nStill good.\n\nBad \xff\xfe byte here.\n")
    with pytest.raises(P.InputError, match=r"bad.txt:4: not valid UTF-8"):
        _make(tmp_path / "o3", [bad], uncased_vocab)
    idx = _make(tmp_path / "o4", [bad, empty], uncased_vocab, errors="replace", workers=1)
    assert idx["counts"]["documents"] == 2
    one = tmp_path / "one.txt"  # a single document of a single sentence: B comes from itself
    one.write_text("Only one sentence here.\n")
    idx = _make(tmp_path / "o5", [one], uncased_vocab, workers=1)
    assert idx["counts"]["instances"] == 2
    (tmp_path / "o6").mkdir()
    (tmp_path / "o6" / "other.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        _make(tmp_path / "o6", [one], uncased_vocab)
    with pytest.raises(ShardError, match="not found"):
        PretrainingDataset(tmp_path / "o6")


def test_unguarded_script_gets_an_error_not_a_hang(text1: Path, uncased_vocab: Path,
                                                   tmp_path: Path) -> None:
    """A script that calls create_pretraining_data with workers but no ``__main__`` guard: its
    spawned worker dies re-importing it. That used to hang the parent for ever (writing the
    pickled encoder into the dead child's pipe); now it ends with an error saying what to do."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from bertkit.data.pretraining import InstanceSettings, create_pretraining_data\n"
        f"create_pretraining_data([{str(text1)!r}], {str(uncased_vocab)!r}, "
        f"{str(tmp_path / 'out')!r}, InstanceSettings(dupe_factor=1), workers=2, "
        "progress=False)\n", encoding="utf-8")
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("create_pretraining_data hung after its worker died")
    assert proc.returncode != 0
    assert 'if __name__ == "__main__":' in proc.stderr and "workers=1" in proc.stderr


def test_a_10_mb_line(tmp_path: Path, uncased_vocab: Path) -> None:
    words = "the union is strong and the people are free".split()
    rng = random.Random(0)
    line = " ".join(rng.choice(words) for _ in range(1_100_000))[:10_000_000]
    f = tmp_path / "long.txt"
    f.write_text("A short first sentence.\n" + line + "\nA last one.\n\nAnother document.\n")
    idx = _make(tmp_path / "o", [f], uncased_vocab, dupe_factor=1, workers=1)
    r = _rows(tmp_path / "o")
    assert idx["counts"]["instances"] == len(r) >= 2 and (r["length"] <= 128).all()


def test_cli_flags_and_run(text1: Path, uncased_vocab: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, P.CreatePretrainingDataArgs)
    ns = parser.parse_args(["--input_file", str(text1), "--vocab", str(uncased_vocab), "--out",
                            str(tmp_path / "o"), "--max_seq_length", "64", "--dupe-factor",
                            "1", "--cased", "--workers", "1"])
    args = dataclass_from_namespace(P.CreatePretrainingDataArgs, ns, parser)
    assert (args.max_predictions_per_seq, args.masked_lm_prob, args.random_seed) == (20, 0.15,
                                                                                    12345)
    assert P.run_create_pretraining_data(args) == 0
    assert "instances" in capsys.readouterr().out
    idx = json.loads((tmp_path / "o" / "index.json").read_text())
    assert idx["settings"]["do_lower_case"] is False and idx["settings"]["max_seq_length"] == 64
    args.input = [str(tmp_path / "nope.txt")]
    args.out = str(tmp_path / "o2")
    assert P.run_create_pretraining_data(args) == 2
    assert "no such file" in capsys.readouterr().err
