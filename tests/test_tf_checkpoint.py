"""The pure-Python TensorFlow checkpoint reader, against checkpoints TensorFlow itself wrote.

The fixtures in ``tests/fixtures/tf/`` were written by ``tests/tools/make_tf_fixtures.py`` with
``tf.compat.v1.train.Saver``; each ``expected.safetensors`` is what ``tf.train.load_checkpoint``
read back. No TensorFlow is needed here. Damaged and unusual tables are made with a tiny table
writer below.
"""

from __future__ import annotations

import ast
import doctest
import re
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from bertkit import artifacts
from bertkit.convert import tf_checkpoint
from bertkit.convert.hf import CheckpointError
from bertkit.convert.tf_checkpoint import (
    TFCheckpoint,
    TFCheckpointError,
    _read_table,
    _update_py,
    crc32c,
    find_checkpoint,
    mask_crc,
    unmask_crc,
)
from bertkit.errors import BertkitError

FIXTURES = Path(__file__).parent / "fixtures" / "tf"
VARIANTS = ["pretraining", "two_shards", "fp16", "classifier", "squad"]
PREFIX = "bert_model.ckpt"
MAGIC = 0xDB4775248B80FB57


def expected(variant: str) -> tuple[dict[str, torch.Tensor], set[str]]:
    """TensorFlow's values for ``variant`` and the names stored as float32 for bfloat16."""
    with safe_open(str(FIXTURES / variant / "expected.safetensors"), "pt") as f:
        meta = f.metadata() or {}
        values = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    return values, set(filter(None, meta.get("bf16_as_float32", "").split(",")))


def copy_variant(variant: str, tmp_path: Path) -> Path:
    target = tmp_path / variant
    shutil.copytree(FIXTURES / variant, target)
    return target


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8)


# ----------------------------------------------------------------------------- crc32c

def test_crc32c_known_values() -> None:
    # RFC 3720 (iSCSI) B.4 test vectors, and the common check value.
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert unmask_crc(mask_crc(0xE3069283)) == 0xE3069283


@pytest.mark.parametrize("n", [16383, 16384, 16387, 100_003, 3_000_001])
def test_crc32c_vectorised_equals_bytewise(n: int) -> None:
    data = torch.randint(0, 256, (n,), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    raw = data.numpy().tobytes()
    assert crc32c(data.numpy()) == _update_py(0xFFFFFFFF, raw) ^ 0xFFFFFFFF
    assert crc32c(raw[n // 3:], crc32c(raw[: n // 3])) == crc32c(raw)


def test_doctests() -> None:
    assert doctest.testmod(tf_checkpoint).failed == 0


# ----------------------------------------------------------------------------- against TF

@pytest.mark.parametrize("variant", VARIANTS)
def test_reads_what_tensorflow_reads(variant: str) -> None:
    want, bf16 = expected(variant)
    with TFCheckpoint(find_checkpoint(FIXTURES / variant)) as ckpt:
        assert ckpt.prefix == FIXTURES / variant / PREFIX
        assert ckpt.names() == sorted(want)
        assert len(ckpt) == len(want) and all(name in ckpt for name in want)
        assert "" not in ckpt and "nope" not in ckpt
        for name, value in want.items():
            got = ckpt.read(name)
            assert got.device.type == "cpu" and got.is_contiguous()
            assert ckpt.shape(name) == tuple(got.shape) == tuple(value.shape), name
            assert ckpt.dtype(name) == got.dtype
            assert ckpt.nbytes(name) == got.numel() * got.element_size()
            if name in bf16:
                assert got.dtype == torch.bfloat16 and torch.equal(got.float(), value), name
            else:
                assert got.dtype == value.dtype and torch.equal(bits(got), bits(value)), name


def test_all_dtypes_covered() -> None:
    seen = set()
    for variant in VARIANTS:
        with TFCheckpoint(FIXTURES / variant / PREFIX) as ckpt:
            seen |= {ckpt.dtype(n) for n in ckpt.names()}
    assert {torch.float32, torch.float16, torch.bfloat16, torch.int32, torch.int64} <= seen


def test_variant_contents() -> None:
    with TFCheckpoint(FIXTURES / "pretraining") as ckpt:  # a directory is accepted too
        names = set(ckpt.names())
        weights = {n for n in names if not n.endswith(("/adam_m", "/adam_v")) and n != "global_step"}
        slotted = {w for w in weights if w.startswith(("bert/embeddings/", "bert/encoder/layer_0/"))}
        assert len(slotted) == 21
        assert {f"{w}/adam_{s}" for w in slotted for s in "mv"} | weights | {"global_step"} == names
        assert ckpt.shape("bert/encoder/layer_1/intermediate/dense/kernel") == (16, 32)
        assert ckpt.shape("cls/seq_relationship/output_weights") == (2, 16)
        assert ckpt.read("global_step").item() == 123456 and ckpt.shape("global_step") == ()
    with TFCheckpoint(FIXTURES / "two_shards" / f"{PREFIX}.index") as ckpt:  # so is the .index
        assert ckpt.num_shards == 2
        assert {ckpt._entry(n).shard_id for n in ckpt.names()} == {0, 1}
    with TFCheckpoint(FIXTURES / "classifier" / PREFIX) as ckpt:
        assert ckpt.shape("output_weights") == (3, 16) and ckpt.shape("output_bias") == (3,)
        assert not any(n.startswith("cls/") for n in ckpt.names())
    with TFCheckpoint(FIXTURES / "squad" / PREFIX) as ckpt:
        assert ckpt.shape("cls/squad/output_weights") == (2, 16)


def test_read_returns_fresh_memory() -> None:
    with TFCheckpoint(FIXTURES / "pretraining" / PREFIX) as ckpt:
        name = "bert/pooler/dense/bias"
        first = ckpt.read(name)
        first.zero_()
        assert not torch.equal(ckpt.read(name), first)
        first.resize_(1000)  # owns a resizable storage of its own
        ckpt.close()
        assert torch.equal(ckpt.read(name), expected("pretraining")[0][name])  # reopens


def test_read_touches_only_the_tensors_bytes(tmp_path: Path) -> None:
    """Zero every byte of the shard before the tensor and cut the file after it: it still reads."""
    d = copy_variant("pretraining", tmp_path)
    name = "bert/encoder/layer_0/attention/self/key/kernel"
    want, _ = expected("pretraining")
    with TFCheckpoint(d / PREFIX) as ckpt:
        entry = ckpt._entry(name)
        shard = ckpt.shard_path(entry.shard_id)
        later = [n for n in ckpt.names() if ckpt._entry(n).offset > entry.offset]
        earlier = [n for n in ckpt.names() if 0 < ckpt.nbytes(n) and ckpt._entry(n).offset
                   < entry.offset]
    data = shard.read_bytes()
    shard.write_bytes(bytes(entry.offset) + data[entry.offset:entry.offset + entry.size])
    with TFCheckpoint(d / PREFIX) as ckpt:
        assert torch.equal(ckpt.read(name), want[name])
        with pytest.raises(TFCheckpointError, match="truncated"):
            ckpt.read(later[0])
        with pytest.raises(TFCheckpointError, match="crc32c"):
            ckpt.read(earlier[0])


# ----------------------------------------------------------------------------- find_checkpoint

def _clone(src: Path, dst_dir: Path, stem: str) -> None:
    for p in src.parent.glob(src.name + ".*"):
        shutil.copyfile(p, dst_dir / (stem + p.name[len(src.name):]))


def test_find_checkpoint(tmp_path: Path) -> None:
    assert find_checkpoint(FIXTURES / "two_shards") == FIXTURES / "two_shards" / PREFIX
    one = tmp_path / "one"
    one.mkdir()
    _clone(FIXTURES / "squad" / PREFIX, one, "model.ckpt-7")
    assert find_checkpoint(one) == one / "model.ckpt-7"  # no state file: the single index
    _clone(FIXTURES / "classifier" / PREFIX, one, "model.ckpt-9")
    with pytest.raises(TFCheckpointError, match=r"several checkpoints.*model\.ckpt-7\.index.*"
                                                r"model\.ckpt-9\.index.*pass one") as e:
        find_checkpoint(one)
    assert str(one) in str(e.value)
    (one / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-7"\n'
                                    'all_model_checkpoint_paths: "model.ckpt-9"\n')
    assert find_checkpoint(one) == one / "model.ckpt-7"
    # An absolute path from the machine that wrote it: the same name here is taken.
    (one / "checkpoint").write_text('model_checkpoint_path: "/gone/run/model.ckpt-9"\n')
    assert find_checkpoint(one) == one / "model.ckpt-9"
    with TFCheckpoint(find_checkpoint(one)) as ckpt:
        assert "output_weights" in ckpt
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "checkpoint").write_text('model_checkpoint_path: "bert_model.ckpt"\n')
    with pytest.raises(TFCheckpointError, match=re.escape(f"{empty}: no TensorFlow checkpoint")):
        find_checkpoint(empty)
    with pytest.raises(TFCheckpointError, match="no such directory"):
        find_checkpoint(tmp_path / "absent")


# ----------------------------------------------------------------------------- a table writer

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value % (1 << 64))


def block(entries: list[tuple[bytes, bytes]], restart_every: int) -> bytes:
    """A table block: prefix-compressed entries, restart points, their count."""
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        last = key
    restarts = restarts or [0]
    return bytes(out) + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I",
                                                                                    len(restarts))


def write_table(path: Path, entries: dict[bytes, bytes], per_block: int = 3,
                restart_every: int = 2, kind: int = 0) -> None:
    """A sorted string table in LevelDB's format, ``per_block`` entries per data block."""
    data, index = bytearray(), []

    def put(contents: bytes) -> bytes:
        handle = varint(len(data)) + varint(len(contents))
        tail = bytes([kind])
        data.extend(contents + tail + struct.pack("<I", mask_crc(crc32c(contents + tail))))
        return handle

    items = sorted(entries.items())
    for i in range(0, len(items), per_block):
        chunk = items[i:i + per_block]
        index.append((chunk[-1][0], put(block(chunk, restart_every))))
    meta = put(block([], 1))
    idx = put(block(index, 1))
    path.write_bytes(bytes(data) + (meta + idx).ljust(40, b"\0") + struct.pack("<Q", MAGIC))


def header(endianness: int = 0, num_shards: int = 1) -> bytes:
    version = field(1, 1)
    return field(1, num_shards) + (field(2, endianness) if endianness else b"") + field(3, version)


def entry(dtype: int, shape: list[int], size: int, extra: bytes = b"") -> bytes:
    dims = b"".join(field(2, field(1, d)) for d in shape)
    return field(1, dtype) + field(2, dims) + field(5, size) + extra


def test_multi_block_table_with_restarts(tmp_path: Path) -> None:
    d = copy_variant("pretraining", tmp_path)
    index = d / f"{PREFIX}.index"
    table = _read_table(index)
    write_table(index, table, per_block=3, restart_every=2)
    assert index.stat().st_size != (FIXTURES / "pretraining" / f"{PREFIX}.index").stat().st_size
    want, _ = expected("pretraining")
    with TFCheckpoint(d / PREFIX) as ckpt:
        assert ckpt.names() == sorted(want)
        for name in ckpt.names():
            assert torch.equal(bits(ckpt.read(name)), bits(want[name]))


# ----------------------------------------------------------------------------- damage

def test_missing_index(tmp_path: Path) -> None:
    with pytest.raises(TFCheckpointError, match=re.escape(f"{tmp_path / 'x.ckpt'}.index")):
        TFCheckpoint(tmp_path / "x.ckpt")


def test_bad_footer_and_short_index(tmp_path: Path) -> None:
    d = copy_variant("squad", tmp_path)
    index = d / f"{PREFIX}.index"
    data = bytearray(index.read_bytes())
    data[-1] ^= 0xFF
    index.write_bytes(bytes(data))
    with pytest.raises(TFCheckpointError, match=re.escape(str(index)) + ".*footer magic"):
        TFCheckpoint(d / PREFIX)
    index.write_bytes(b"\0" * 20)
    with pytest.raises(TFCheckpointError, match=re.escape(str(index)) + ".*too short"):
        TFCheckpoint(d / PREFIX)


def test_flipped_byte_in_index_block(tmp_path: Path) -> None:
    d = copy_variant("pretraining", tmp_path)
    index = d / f"{PREFIX}.index"
    data = bytearray(index.read_bytes())
    data[40] ^= 0x01  # inside the first data block (it starts at offset 0)
    index.write_bytes(bytes(data))
    with pytest.raises(TFCheckpointError) as e:
        TFCheckpoint(d / PREFIX)
    assert str(e.value) == (f"{index}: index is damaged (checksum mismatch in block at offset 0)")
    assert isinstance(e.value, CheckpointError) and isinstance(e.value, BertkitError)
    assert isinstance(e.value, RuntimeError)


def test_flipped_byte_in_shard(tmp_path: Path) -> None:
    d = copy_variant("two_shards", tmp_path)
    name = "bert/encoder/layer_1/output/dense/kernel"
    with TFCheckpoint(d / PREFIX) as ckpt:
        e = ckpt._entry(name)
        shard = ckpt.shard_path(e.shard_id)
    data = bytearray(shard.read_bytes())
    data[e.offset + e.size // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    with TFCheckpoint(d / PREFIX) as ckpt:
        ckpt.read("bert/pooler/dense/kernel")
        with pytest.raises(TFCheckpointError, match=re.escape(str(shard)) + ".*" + re.escape(
                repr(name)) + ".*damaged.*crc32c"):
            ckpt.read(name)


def test_truncated_shard(tmp_path: Path) -> None:
    d = copy_variant("pretraining", tmp_path)
    shard = d / f"{PREFIX}.data-00000-of-00001"
    with TFCheckpoint(d / PREFIX) as ckpt:
        last = max(ckpt.names(), key=lambda n: ckpt._entry(n).offset)
        e = ckpt._entry(last)
    full = shard.stat().st_size
    with open(shard, "r+b") as f:
        f.truncate(full - 100)
    with TFCheckpoint(d / PREFIX) as ckpt:
        ckpt.read("bert/embeddings/word_embeddings")
        with pytest.raises(TFCheckpointError) as err:
            ckpt.read(last)
    msg = str(err.value)
    assert str(shard) in msg and repr(last) in msg and "truncated" in msg
    assert f"[{e.offset}, {e.offset + e.size})" in msg and str(full - 100) in msg


def test_missing_shard(tmp_path: Path) -> None:
    d = copy_variant("two_shards", tmp_path)
    shard = d / f"{PREFIX}.data-00001-of-00002"
    shard.unlink()
    with pytest.raises(TFCheckpointError, match=re.escape(str(shard)) + r".*missing.*tensor "
                                                r"'bert/embeddings/LayerNorm/gamma'"):
        TFCheckpoint(d / PREFIX)


def test_big_endian_header(tmp_path: Path) -> None:
    d = copy_variant("fp16", tmp_path)
    index = d / f"{PREFIX}.index"
    table = _read_table(index)
    table[b""] = header(endianness=1)
    write_table(index, table)
    with pytest.raises(TFCheckpointError, match=re.escape(str(index)) + ": written big-endian; "
                                                "bertkit reads little-endian checkpoints"):
        TFCheckpoint(d / PREFIX)


def test_compressed_block(tmp_path: Path) -> None:
    d = copy_variant("fp16", tmp_path)
    index = d / f"{PREFIX}.index"
    write_table(index, _read_table(index), kind=1)
    with pytest.raises(TFCheckpointError, match=re.escape(str(index)) + ".*compressed"):
        TFCheckpoint(d / PREFIX)


def test_bad_entries(tmp_path: Path) -> None:
    d = copy_variant("fp16", tmp_path)
    index = d / f"{PREFIX}.index"
    table = _read_table(index)
    table[b"bad/size"] = entry(1, [2, 3], 20)
    table[b"bad/string"] = entry(7, [2], 8)
    table[b"bad/sliced"] = entry(1, [4], 16, extra=field(7, field(1, b"")))
    table[b"bad/rank"] = field(1, 1) + field(2, field(3, 1))
    write_table(index, table)
    with TFCheckpoint(d / PREFIX) as ckpt:
        assert "bad/size" in ckpt and len(ckpt) == len(table) - 1
        with pytest.raises(TFCheckpointError, match=r"'bad/size' has 20 bytes, but shape \[2, "
                                                    r"3\] of DT_FLOAT needs 24"):
            ckpt.read("bad/size")
        with pytest.raises(TFCheckpointError, match=r"'bad/string' has dtype DT_STRING"):
            ckpt.dtype("bad/string")
        with pytest.raises(TFCheckpointError, match=r"'bad/sliced' is a partitioned variable"):
            ckpt.read("bad/sliced")
        with pytest.raises(TFCheckpointError, match=r"'bad/rank' has an unknown shape"):
            ckpt.shape("bad/rank")
        with pytest.raises(KeyError, match="absent"):
            ckpt.read("absent")
        assert ckpt.read("extra/int32_probe").tolist() == [-7, 0, 41, 2**31 - 1]


def test_no_header(tmp_path: Path) -> None:
    d = copy_variant("fp16", tmp_path)
    index = d / f"{PREFIX}.index"
    table = _read_table(index)
    del table[b""]
    write_table(index, table)
    with pytest.raises(TFCheckpointError, match=re.escape(str(index)) + ".*no bundle header"):
        TFCheckpoint(d / PREFIX)


# ----------------------------------------------------------------------------- no TensorFlow

def test_src_never_imports_tensorflow() -> None:
    src = Path(__file__).resolve().parents[1] / "src"
    offenders = []
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path}: {n}" for n in names if n.split(".")[0] == "tensorflow"]
        if re.search(r"import_module\(\s*['\"]tensorflow", path.read_text(encoding="utf-8")):
            offenders.append(str(path))
    assert not offenders


# ----------------------------------------------------------------------------- real weights

def _google_to_hf(name: str) -> tuple[str, bool]:
    """The normalised HF key (no ``bert.``, weight/bias) of a Google name; True: transposed."""
    if name == "cls/predictions/output_bias":
        return "cls.predictions.bias", False
    if name.startswith("cls/seq_relationship/"):
        return "cls.seq_relationship." + ("weight" if name.endswith("weights") else "bias"), False
    path = re.sub(r"layer_(\d+)", r"layer.\1", name.removeprefix("bert/")).replace("/", ".")
    stem, leaf = path.rsplit(".", 1)
    if leaf.endswith("_embeddings"):
        return path + ".weight", False
    leaf = {"kernel": "weight", "gamma": "weight", "beta": "bias"}.get(leaf, leaf)
    return f"{stem}.{leaf}", name.endswith("/kernel")


REAL_REASON = "run tests/tools/make_tf_fixtures.py --real with tensorflow-cpu to write it"


@pytest.mark.real
@pytest.mark.parametrize("which", ["minilm", "bert-tiny-mlm"])
def test_real_checkpoint_equals_hf_weights(which: str) -> None:
    from realdata import fetch_or_skip
    from safetensors.torch import load_file

    directory = artifacts.cache_dir() / "tf-fixtures" / which
    if not (directory / f"{PREFIX}.index").is_file():
        pytest.skip(f"{directory} is absent: {REAL_REASON}")
    hf_dir = fetch_or_skip(artifacts.minilm_dir if which == "minilm"
                           else artifacts.bert_tiny_mlm_dir)
    hf = {re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", k.removeprefix("bert."))): v
          for k, v in load_file(str(hf_dir / "model.safetensors")).items()}
    start = time.perf_counter()
    got = {}
    with TFCheckpoint(find_checkpoint(directory)) as ckpt:
        for name in ckpt.names():
            if not name.endswith(("/adam_m", "/adam_v")) and name != "global_step":
                got[name] = ckpt.read(name)
    seconds = time.perf_counter() - start
    nbytes = sum(t.numel() * t.element_size() for t in got.values())
    print(f"{which}: read {len(got)} tensors, {nbytes / 1e6:.1f} MB in {seconds:.2f} s")
    used = set()
    for name, value in got.items():
        key, transposed = _google_to_hf(name)
        used.add(key)
        assert torch.equal(value, hf[key].T if transposed else hf[key]), name
    skipped = {k for k in hf if k.endswith("position_ids") or k.startswith("cls.predictions.decoder")}
    assert used == set(hf) - skipped
    assert seconds < 60, f"reading took {seconds:.1f} s"
