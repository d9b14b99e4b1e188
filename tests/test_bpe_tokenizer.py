"""RoBERTa's byte-level BPE on the REAL GPT-2 files, against transformers and GPT-2's algorithm.

The vocabulary is GPT-2's ``encoder.json`` with RoBERTa's five specials appended (RoBERTa's own
vocab.json gives the same tokens other ids; the merges are the same). Two oracles on the 20,000
lines of the tokenizer parity corpus (real text in 39 scripts plus adversarial text):

- ``transformers.RobertaTokenizerFast`` built from the same files. In transformers 5 the "slow"
  ``RobertaTokenizer`` is the same class (``TokenizersBackend``): there is no separate slow
  implementation left to disagree with.
- GPT-2's algorithm written out here in plain Python (the pre-tokenizing regex, bytes mapped to
  printable characters, merges applied by rank), which shares no code with ``tokenizers``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest
from realdata import fetch_or_skip
from tokenizer_corpus import adversarial_lines, pairs_in_chunks, real_lines

from bertkit import artifacts
from bertkit.tokenization.bpe import BPEFileError, ByteLevelBPETokenizer

transformers = pytest.importorskip("transformers")
regex = pytest.importorskip("regex")

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    encoder, merges = fetch_or_skip(artifacts.gpt2_bpe_files)
    d = tmp_path_factory.mktemp("roberta-bpe")
    vocab = json.loads(encoder.read_text(encoding="utf-8"))
    assert len(vocab) == 50257
    for token in SPECIALS:
        vocab[token] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (d / "merges.txt").write_bytes(merges.read_bytes())
    return d / "vocab.json", d / "merges.txt"


@pytest.fixture(scope="module")
def lines() -> list[str]:
    out = fetch_or_skip(real_lines) + adversarial_lines()
    assert len(out) == 20_000
    return out


class ReferenceBPE:
    """GPT-2's byte-level BPE, written from its description (the oracle)."""

    PATTERN = regex.compile(
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def __init__(self, vocab: Path, merges: Path) -> None:
        self.vocab = json.loads(vocab.read_text(encoding="utf-8"))
        pairs = merges.read_text(encoding="utf-8").split("\n")[1:]
        self.rank = {tuple(p.split(" ")): i for i, p in enumerate(pairs) if p}
        printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                     *range(ord("®"), ord("ÿ") + 1)]
        extra = iter(range(256, 512))
        self.byte_char = {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)}
        self.merge = lru_cache(maxsize=None)(self._merge)

    def _merge(self, word: str) -> tuple[str, ...]:
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.rank.get((a, b), 1 << 30), i)
                      for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False))]
            best, _ = min(ranked)
            if best == 1 << 30:
                break
            a, b = next((parts[i], parts[i + 1]) for r, i in ranked if r == best)
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def encode(self, text: str, add_prefix_space: bool = False) -> list[int]:
        if add_prefix_space and not text.startswith(" "):
            text = " " + text
        ids = []
        for piece in self.PATTERN.findall(text):
            word = "".join(self.byte_char[b] for b in piece.encode("utf-8"))
            ids += [self.vocab[t] for t in self.merge(word)]
        return ids


@pytest.mark.real
@pytest.mark.parametrize("add_prefix_space", [False, True])
def test_single_texts_equal_transformers_and_gpt2s_algorithm(files, lines, add_prefix_space):
    ours = ByteLevelBPETokenizer(*files, add_prefix_space=add_prefix_space)
    fast = transformers.RobertaTokenizerFast(*map(str, files), add_prefix_space=add_prefix_space)
    got = ours(lines, max_length=None, truncation=False, padding=False, return_tensors=None,
               return_offsets=True)
    want = fast(lines, return_offsets_mapping=True)
    reference = ReferenceBPE(*files)
    bad_fast = [i for i in range(len(lines)) if got["input_ids"][i] != want["input_ids"][i]]
    assert not bad_fast, (len(bad_fast), lines[bad_fast[0]][:80])
    bad_offsets = [i for i in range(len(lines))
                   if got["offsets"][i] != [tuple(o) for o in want["offset_mapping"][i]]]
    assert not bad_offsets, (len(bad_offsets), lines[bad_offsets[0]][:80])
    bad_ref = [i for i, text in enumerate(lines)
               if got["input_ids"][i][1:-1] != reference.encode(text, add_prefix_space)]
    assert not bad_ref, (len(bad_ref), lines[bad_ref[0]][:80])
    assert all(i[0] == ours.cls_token_id and i[-1] == ours.sep_token_id for i in got["input_ids"])


@pytest.mark.real
@pytest.mark.parametrize("max_length", [16, 65, 301])  # even and odd budgets
def test_pairs_template_and_truncation_equal_transformers(files, lines, max_length):
    ours = ByteLevelBPETokenizer(*files)
    fast = transformers.RobertaTokenizerFast(*map(str, files))
    a, b = lines[:4000:2], lines[1:4000:2]
    got = ours(a, b, max_length=max_length, padding=False, return_tensors=None,
               return_offsets=True)
    want = pairs_in_chunks(fast, a, b, ("input_ids", "token_type_ids", "offset_mapping"),
                           max_length=max_length, truncation=True, return_offsets_mapping=True,
                           return_token_type_ids=True)
    assert got["input_ids"] == want["input_ids"]
    assert got["token_type_ids"] == want["token_type_ids"]
    assert got["offsets"] == [[tuple(o) for o in row] for row in want["offset_mapping"]]
    s, e = ours.cls_token_id, ours.sep_token_id
    assert ours.encode("a", "b") == [s, 64, e, e, 65, e]  # <s> a </s></s> b </s>


@pytest.mark.real
def test_offsets_map_back_and_decode_is_lossless(files, lines):
    ours = ByteLevelBPETokenizer(*files)
    real = lines[:3000]
    enc = ours.encode_batch_with_offsets(real)
    for text, (ids, spans) in zip(real, enc, strict=True):
        assert all(0 <= s <= e <= len(text) for s, e in spans)
        assert [s for s, _ in spans] == sorted(s for s, _ in spans)
        assert ours.decode(ids) == text
    tokens = ours.tokenize("Hello world, hello")
    assert tokens == ["Hello", "Ġworld", ",", "Ġhello"]
    assert [ours.is_word_start(t) for t in tokens] == [False, True, False, True]


def test_save_and_load_round_trip(files, tmp_path):
    ours = ByteLevelBPETokenizer(*files, add_prefix_space=True)
    ours.save_pretrained(tmp_path)
    again = ByteLevelBPETokenizer.from_pretrained(tmp_path)
    assert again.add_prefix_space and again.encode("Hello there") == ours.encode("Hello there")
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "RobertaTokenizer"
    assert transformers.AutoTokenizer.from_pretrained(tmp_path)("Hello there")["input_ids"] == \
        ours.encode("Hello there")


@pytest.mark.parametrize("vocab_text, merges_text, match", [
    ('{"a": 0, "b": 1, "ab": 2}', "a b\n", r"merges\.txt: line 1: expected the '#version"),
    ('{"a": 0, "b": 1, "ab": 2}', "#version: 0.2\na b\nab\n", r"merges\.txt: line 3: expected two"),
    ('{"a": 0, "b": 1}', "#version: 0.2\na b\n", r"merges\.txt: line 2: .* not in vocab\.json"),
    ('["a", "b"]', "#version: 0.2\n", r"vocab\.json: expected a JSON object"),
    ('{"a": "zero"}', "#version: 0.2\n", r"vocab\.json: the id of 'a' is not an integer"),
    ('{"a": 0, "b": 1, "ab": 2}', "#version: 0.2\na b\n", r"vocab\.json: lacks the special"),
])
def test_bad_files_are_named(tmp_path, vocab_text, merges_text, match):
    (tmp_path / "vocab.json").write_text(vocab_text, encoding="utf-8")
    (tmp_path / "merges.txt").write_text(merges_text, encoding="utf-8")
    with pytest.raises(BPEFileError, match=match):
        ByteLevelBPETokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")


def test_auto_tokenizer_picks_the_family(files, tmp_path):
    from bertkit import AutoTokenizer

    ByteLevelBPETokenizer(*files).save_pretrained(tmp_path)
    assert isinstance(AutoTokenizer.from_pretrained(tmp_path), ByteLevelBPETokenizer)


SPECIAL_TEXTS = ["Paris is the <mask> of France.", "a<mask>b", "x <s> y </s>", "<pad><unk>",
                 "two <mask> <mask> masks", "<mask>", " <mask>", "not special: <mask", "<MASK>"]


@pytest.mark.real
@pytest.mark.parametrize("mask_lstrip", [False, True])
def test_special_tokens_written_in_the_text_equal_transformers(files, mask_lstrip):
    ours = ByteLevelBPETokenizer(*files, mask_lstrip=mask_lstrip)
    mask = transformers.AddedToken("<mask>", lstrip=True) if mask_lstrip else "<mask>"
    fast = transformers.RobertaTokenizerFast(*map(str, files), mask_token=mask)
    got = ours(SPECIAL_TEXTS, max_length=None, truncation=False, padding=False,
               return_tensors=None, return_offsets=True)
    want = fast(SPECIAL_TEXTS, return_offsets_mapping=True)
    assert got["input_ids"] == want["input_ids"]
    assert got["offsets"] == [[tuple(o) for o in row] for row in want["offset_mapping"]]
    assert ours.mask_token_id in got["input_ids"][0]


@pytest.mark.real
def test_mask_lstrip_survives_save_and_load(files, tmp_path):
    ByteLevelBPETokenizer(*files, mask_lstrip=True).save_pretrained(tmp_path)
    assert ByteLevelBPETokenizer.from_pretrained(tmp_path).mask_lstrip
    fast = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert fast("the <mask>")["input_ids"] == ByteLevelBPETokenizer.from_pretrained(
        tmp_path).encode("the <mask>")
