"""Read Google's TensorFlow checkpoints (tensor bundles) without TensorFlow.

A checkpoint ``PREFIX`` is ``PREFIX.index``, a sorted string table in LevelDB's table format whose
empty key holds a ``BundleHeaderProto`` and whose other keys are variable names mapping to
``BundleEntryProto``\\ s, plus data shards ``PREFIX.data-NNNNN-of-MMMMM`` holding each tensor's raw
little-endian bytes at ``[offset, offset + size)``. Everything here is written from the format's
public description: a small protobuf wire-format decoder, the table's block parser and crc32c
(Castagnoli), vectorised with numpy for large tensors.

The index is read whole at open (it is small); tensors are read one at a time, on demand, each
with a seek and one read into a fresh tensor, and checked against its crc32c.

Example::

    >>> with TFCheckpoint(find_checkpoint("uncased_L-12_H-768_A-12")) as ckpt:  # doctest: +SKIP
    ...     ckpt.shape("bert/embeddings/word_embeddings")
    (30522, 768)
"""

from __future__ import annotations

import codecs
import ctypes
import functools
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from bertkit.convert.hf import CheckpointError
from bertkit.protowire import WireError as _WireError
from bertkit.protowire import fields as _fields
from bertkit.protowire import ints as _ints
from bertkit.protowire import scalar as _scalar
from bertkit.protowire import signed64 as _signed64
from bertkit.protowire import varint as _varint

logger = logging.getLogger(__name__)

__all__ = ["TFCheckpointError", "TFCheckpoint", "find_checkpoint", "crc32c", "mask_crc",
           "unmask_crc"]


class TFCheckpointError(CheckpointError):
    """A TensorFlow checkpoint is missing, damaged or unsupported; the message names the file."""


# ----------------------------------------------------------------------------- crc32c

_POLY = 0x82F63B78  # Castagnoli, reflected
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def _byte_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _byte_table()
_NP_TABLE = np.array(_TABLE, dtype=np.uint32)


def _slice_tables() -> tuple[np.ndarray, np.ndarray]:
    """Two 65,536-entry tables advancing the register over 4 bytes (low half, high half)."""
    t0 = _NP_TABLE
    t1 = (t0 >> 8) ^ t0[t0 & 0xFF]
    t2 = (t1 >> 8) ^ t0[t1 & 0xFF]
    t3 = (t2 >> 8) ^ t0[t2 & 0xFF]
    idx = np.arange(1 << 16, dtype=np.uint32)
    lo = t3[idx & 0xFF] ^ t2[idx >> 8]  # the word's bytes 0 and 1 (3 and 2 bytes still to go)
    hi = t1[idx & 0xFF] ^ t0[idx >> 8]  # its bytes 2 and 3
    return lo, hi


_VECTOR_MIN = 1 << 14  # below this many bytes, a byte-at-a-time loop is quicker
_LANES = 8192  # aim for about this many lanes (numpy array length) in the vectorised crc


def _lane_length(n: int) -> int:
    """Bytes per lane for ``n`` bytes: a power of two from 256 (few operators to cache)."""
    return max(256, 1 << max(0, (n // _LANES).bit_length() - 1))


def _update_py(crc: int, data: bytes | memoryview | np.ndarray) -> int:
    """Advance the raw (unconditioned) register ``crc`` over ``data``, a byte at a time."""
    t = _TABLE
    for b in bytes(data):
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _compose(a: list[int], b: list[int]) -> list[int]:
    """The linear map ``a ∘ b`` on 32-bit registers, each map given by its 32 column images."""
    return [_apply(a, col) for col in b]


def _apply(op: list[int], x: int) -> int:
    """The linear map ``op`` (its 32 column images) applied to the register ``x``."""
    out = 0
    j = 0
    while x:
        if x & 1:
            out ^= op[j]
        x >>= 1
        j += 1
    return out


@functools.lru_cache(maxsize=32)
def _zeros_operator(n: int) -> tuple[list[int], ...]:
    """Byte tables of the map ``register -> register after n zero bytes``."""
    one = [_update_py(1 << j, b"\0") for j in range(32)]
    result = [1 << j for j in range(32)]  # identity
    power = one
    while n:
        if n & 1:
            result = _compose(power, result)
        power = _compose(power, power)
        n >>= 1
    tables = []
    for byte in range(4):
        cols = result[8 * byte: 8 * byte + 8]
        t = [0]
        for col in cols:
            t = t + [v ^ col for v in t]
        tables.append(t)
    return tuple(tables)


@functools.lru_cache(maxsize=1)
def _tables16() -> tuple[np.ndarray, np.ndarray]:
    return _slice_tables()


def _lane_registers(words: np.ndarray) -> list[int]:
    """Raw crc registers (from 0) of each row of ``words`` (rows of little-endian uint32s)."""
    lo_t, hi_t = _tables16()
    lanes = words.shape[0]
    reg = np.zeros(lanes, dtype=np.uint32)
    lo = np.empty(lanes, dtype=np.intp)
    hi = np.empty(lanes, dtype=np.intp)
    part = np.empty(lanes, dtype=np.uint32)
    for i in range(words.shape[1]):
        np.bitwise_xor(reg, words[:, i], out=reg)
        np.bitwise_and(reg, 0xFFFF, out=lo, casting="unsafe")
        np.right_shift(reg, 16, out=hi, casting="unsafe")
        lo_t.take(lo, out=part)
        hi_t.take(hi, out=reg)
        np.bitwise_xor(reg, part, out=reg)
    return reg.tolist()


def _update(crc: int, data: np.ndarray) -> int:
    """Advance the raw register ``crc`` over the uint8 array ``data``."""
    n = data.size
    if n < _VECTOR_MIN:
        return _update_py(crc, data.tobytes())
    length = _lane_length(n)
    lanes = n // length
    head = n - lanes * length
    crc = _update_py(crc, data[:head].tobytes())
    words = data[head:].view("<u4").reshape(lanes, length // 4)
    t0, t1, t2, t3 = _zeros_operator(length)
    # The register is linear: after the lanes, it is crc shifted past them XOR each lane's own
    # register shifted past the lanes after it (Horner's rule over the lanes).
    for lane in _lane_registers(words):
        crc = (t0[crc & 0xFF] ^ t1[(crc >> 8) & 0xFF] ^ t2[(crc >> 16) & 0xFF]
               ^ t3[crc >> 24] ^ lane)
    return crc


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from a previous ``crc`` value.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    arr = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    arr = arr.reshape(-1).view(np.uint8)
    return _update(crc ^ _U32, arr) ^ _U32


def mask_crc(crc: int) -> int:
    """LevelDB's masked form of a crc, as stored in tables and bundle entries."""
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def unmask_crc(masked: int) -> int:
    """Inverse of :func:`mask_crc`."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


# ----------------------------------------------------------------------------- bundle protos

# TensorFlow DataType enum -> torch dtype (the ones a checkpoint of weights may hold).
_DTYPES: dict[int, torch.dtype] = {
    1: torch.float32, 2: torch.float64, 3: torch.int32, 4: torch.uint8, 5: torch.int16,
    6: torch.int8, 8: torch.complex64, 9: torch.int64, 10: torch.bool, 14: torch.bfloat16,
    18: torch.complex128, 19: torch.float16,
}
_DTYPE_NAMES = {
    0: "DT_INVALID", 1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16",
    6: "DT_INT8", 7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64", 10: "DT_BOOL", 11: "DT_QINT8",
    12: "DT_QUINT8", 13: "DT_QINT32", 14: "DT_BFLOAT16", 15: "DT_QINT16", 16: "DT_QUINT16",
    17: "DT_UINT16", 18: "DT_COMPLEX128", 19: "DT_HALF", 20: "DT_RESOURCE", 21: "DT_VARIANT",
    22: "DT_UINT32", 23: "DT_UINT64",
}


def _dtype_name(code: int) -> str:
    return _DTYPE_NAMES.get(code, f"DataType {code}")


@dataclass(frozen=True)
class _Header:
    num_shards: int
    endianness: int
    producer: int
    min_consumer: int


@dataclass(frozen=True)
class _Entry:
    dtype: int
    shape: tuple[int, ...] | None  # None: unknown rank
    shard_id: int
    offset: int
    size: int
    crc32c: int  # masked, as stored
    sliced: bool


def _parse_version(buf: bytes) -> tuple[int, int]:
    producer = min_consumer = 0
    for field, wire, value in _fields(buf):
        if field == 1:
            producer = _signed64(_scalar(wire, value, 0))
        elif field == 2:
            min_consumer = _signed64(_scalar(wire, value, 0))
        elif field == 3:
            _ints(wire, value)  # bad_consumers: validated, unused
    return producer, min_consumer


def _parse_header(buf: bytes) -> _Header:
    num_shards = endianness = producer = min_consumer = 0
    for field, wire, value in _fields(buf):
        if field == 1:
            num_shards = _signed64(_scalar(wire, value, 0))
        elif field == 2:
            endianness = _scalar(wire, value, 0)
        elif field == 3:
            if not isinstance(value, bytes):
                raise _WireError("version is not a message")
            producer, min_consumer = _parse_version(value)
    return _Header(num_shards, endianness, producer, min_consumer)


def _parse_shape(buf: bytes) -> tuple[int, ...] | None:
    dims: list[int] = []
    unknown_rank = False
    for field, wire, value in _fields(buf):
        if field == 2:
            if not isinstance(value, bytes):
                raise _WireError("dim is not a message")
            size = 0
            for f, w, v in _fields(value):
                if f == 1:
                    size = _signed64(_scalar(w, v, 0))
            dims.append(size)
        elif field == 3:
            unknown_rank = bool(_scalar(wire, value, 0))
    return None if unknown_rank else tuple(dims)


def _parse_entry(buf: bytes) -> _Entry:
    dtype = shard_id = offset = size = crc = 0
    shape: tuple[int, ...] | None = ()
    sliced = False
    for field, wire, value in _fields(buf):
        if field == 1:
            dtype = _scalar(wire, value, 0)
        elif field == 2:
            if not isinstance(value, bytes):
                raise _WireError("shape is not a message")
            shape = _parse_shape(value)
        elif field == 3:
            shard_id = _signed64(_scalar(wire, value, 0))
        elif field == 4:
            offset = _signed64(_scalar(wire, value, 0))
        elif field == 5:
            size = _signed64(_scalar(wire, value, 0))
        elif field == 6:
            crc = _scalar(wire, value, 5)
        elif field == 7:
            sliced = True
    return _Entry(dtype, shape, shard_id, offset, size, crc, sliced)


# ----------------------------------------------------------------------------- table format

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    """A BlockHandle (offset, size) at ``pos``; returns (offset, size, next position)."""
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    """The verified contents of the block at ``offset`` (without its 5-byte trailer)."""
    end = offset + size
    if end + _TRAILER > len(data) - _FOOTER:
        raise TFCheckpointError(f"{path}: index is damaged (block at offset {offset} of size "
                                f"{size} runs past the end of the table)")
    contents = data[offset:end]
    kind = data[end]
    stored = int.from_bytes(data[end + 1:end + _TRAILER], "little")
    if unmask_crc(stored) != crc32c(data[offset:end + 1]):
        raise TFCheckpointError(f"{path}: index is damaged (checksum mismatch in block at "
                                f"offset {offset})")
    if kind != 0:
        raise TFCheckpointError(f"{path}: block at offset {offset} is compressed (type {kind}); "
                                f"tensor bundles are written uncompressed")
    return contents


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) pairs of one block: prefix-compressed entries, then restart points."""
    if len(block) < 4:
        raise _WireError("block shorter than its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise _WireError(f"{num_restarts} restart points do not fit in a {len(block)}-byte block")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise _WireError(f"entry at byte {pos} overruns its block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + value_len]
        pos += value_len


def _read_table(path: Path) -> dict[bytes, bytes]:
    """All key/value pairs of the sorted string table at ``path``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TFCheckpointError(f"{path}: no such checkpoint index") from None
    except OSError as e:
        raise TFCheckpointError(f"{path}: cannot read the checkpoint index: {e}") from e
    if len(data) < _FOOTER:
        raise TFCheckpointError(f"{path}: too short for a checkpoint index ({len(data)} bytes; "
                                f"the footer alone is {_FOOTER})")
    footer = data[-_FOOTER:]
    magic = int.from_bytes(footer[-8:], "little")
    if magic != _MAGIC:
        raise TFCheckpointError(f"{path}: not a checkpoint index (footer magic {magic:#018x}, "
                                f"expected {_MAGIC:#018x})")
    try:
        _, _, pos = _handle(footer)
        index_offset, index_size, _ = _handle(footer, pos)
        table: dict[bytes, bytes] = {}
        for _, handle in _block_entries(_block(data, index_offset, index_size, path)):
            offset, size, _ = _handle(handle)
            for key, value in _block_entries(_block(data, offset, size, path)):
                table[key] = value
    except _WireError as e:
        raise TFCheckpointError(f"{path}: index is damaged ({e})") from e
    return table


# ----------------------------------------------------------------------------- the reader

def _shard_path(prefix: Path, shard: int, num_shards: int) -> Path:
    return Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")


def _normalise_prefix(prefix: str | Path) -> Path:
    """Accept a prefix, the ``.index`` file itself, or a directory holding one checkpoint."""
    p = Path(prefix)
    if p.is_dir():
        return find_checkpoint(p)
    if p.name.endswith(".index") and p.is_file():
        return p.with_name(p.name[: -len(".index")])
    return p


def _bytes_of(t: torch.Tensor) -> ctypes.Array:
    """A writable buffer over a contiguous CPU tensor's bytes.

    ``Tensor.numpy()`` would mark the storage as not resizable; the caller keeps ``t`` alive.
    """
    return (ctypes.c_char * (t.numel() * t.element_size())).from_address(t.data_ptr())


class TFCheckpoint:
    """A TensorFlow checkpoint (tensor bundle), read lazily one tensor at a time.

    ``prefix`` is the path without ``.index`` (``dir/bert_model.ckpt``); the ``.index`` file
    itself or a directory holding one checkpoint are accepted too.
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = _normalise_prefix(prefix)
        self.index_path = Path(f"{self.prefix}.index")
        table = _read_table(self.index_path)
        if b"" not in table:
            raise TFCheckpointError(f"{self.index_path}: no bundle header (the empty key)")
        try:
            self._header = _parse_header(table.pop(b""))
            self._entries = {k.decode("utf-8"): v for k, v in table.items()}
        except (_WireError, UnicodeDecodeError) as e:
            raise TFCheckpointError(f"{self.index_path}: damaged bundle header or name: {e}") from e
        self._check_header()
        self._parsed: dict[str, _Entry] = {}
        self._files: dict[int, BinaryIO] = {}
        self._check_shards()

    # -- structure

    def _check_header(self) -> None:
        h = self._header
        if h.endianness == 1:
            raise TFCheckpointError(f"{self.index_path}: written big-endian; bertkit reads "
                                    f"little-endian checkpoints")
        if h.endianness != 0:
            raise TFCheckpointError(f"{self.index_path}: unknown endianness {h.endianness}")
        if h.num_shards < 1:
            raise TFCheckpointError(f"{self.index_path}: header says {h.num_shards} data shards")
        if h.min_consumer > 1:
            logger.warning("%s: bundle format needs a reader of version %d (producer %d); "
                           "reading it anyway", self.index_path, h.min_consumer, h.producer)

    def _check_shards(self) -> None:
        """Each data shard a tensor lives in must exist (the error names one of its tensors)."""
        first: dict[int, str] = {}
        for name in sorted(self._entries):
            entry = self._entry(name)
            if not 0 <= entry.shard_id < self._header.num_shards:
                raise TFCheckpointError(f"{self.index_path}: tensor {name!r} is in shard "
                                        f"{entry.shard_id}, but the header says "
                                        f"{self._header.num_shards} shards")
            if entry.size:
                first.setdefault(entry.shard_id, name)
        for shard, name in sorted(first.items()):
            path = self.shard_path(shard)
            if not path.is_file():
                raise TFCheckpointError(f"{path}: data shard is missing (it holds tensor "
                                        f"{name!r} of checkpoint {self.prefix})")

    def shard_path(self, shard: int) -> Path:
        """The path of data shard ``shard``."""
        return _shard_path(self.prefix, shard, self._header.num_shards)

    @property
    def num_shards(self) -> int:
        return self._header.num_shards

    def _entry(self, name: str) -> _Entry:
        entry = self._parsed.get(name)
        if entry is None:
            if name not in self._entries:
                raise KeyError(f"{self.index_path}: no tensor {name!r}")
            try:
                entry = _parse_entry(self._entries[name])
            except _WireError as e:
                raise TFCheckpointError(f"{self.index_path}: damaged entry of tensor {name!r}: "
                                        f"{e}") from e
            self._parsed[name] = entry
        return entry

    # -- metadata

    def names(self) -> list[str]:
        """Variable names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def shape(self, name: str) -> tuple[int, ...]:
        """The tensor's shape."""
        shape = self._entry(name).shape
        if shape is None or any(d < 0 for d in shape):
            raise TFCheckpointError(f"{self.index_path}: tensor {name!r} has an unknown shape")
        return shape

    def dtype(self, name: str) -> torch.dtype:
        """The tensor's torch dtype (TFCheckpointError naming TF's type if there is none)."""
        code = self._entry(name).dtype
        if code not in _DTYPES:
            raise TFCheckpointError(f"{self.index_path}: tensor {name!r} has dtype "
                                    f"{_dtype_name(code)}, which bertkit does not read")
        return _DTYPES[code]

    def nbytes(self, name: str) -> int:
        """The tensor's size in bytes in its shard."""
        return self._entry(name).size

    # -- data

    def _file(self, shard: int) -> BinaryIO:
        f = self._files.get(shard)
        if f is None:
            path = self.shard_path(shard)
            try:
                f = open(path, "rb")  # noqa: SIM115 - kept open until close()
            except FileNotFoundError:
                raise TFCheckpointError(f"{path}: data shard is missing") from None
            self._files[shard] = f
        return f

    def _check_entry(self, name: str, entry: _Entry, numel: int, itemsize: int) -> None:
        if entry.sliced:
            raise TFCheckpointError(f"{self.index_path}: tensor {name!r} is a partitioned "
                                    f"variable (saved in slices), which bertkit does not support")
        if entry.size != numel * itemsize:
            raise TFCheckpointError(f"{self.index_path}: tensor {name!r} has {entry.size} bytes, "
                                    f"but shape {list(self.shape(name))} of "
                                    f"{_dtype_name(entry.dtype)} needs {numel * itemsize}")

    def read(self, name: str) -> torch.Tensor:
        """The tensor ``name`` as a CPU tensor owning its memory, checked against its crc32c."""
        entry = self._entry(name)
        dtype, shape = self.dtype(name), self.shape(name)
        out = torch.empty(shape, dtype=dtype)
        self._check_entry(name, entry, out.numel(), out.element_size())
        if entry.size == 0:
            return out
        path = self.shard_path(entry.shard_id)
        f = self._file(entry.shard_id)
        file_size = os.fstat(f.fileno()).st_size
        if entry.offset < 0 or entry.offset + entry.size > file_size:
            raise TFCheckpointError(f"{path}: data shard is truncated: tensor {name!r} needs "
                                    f"bytes [{entry.offset}, {entry.offset + entry.size}) but "
                                    f"the file has {file_size}")
        buf = _bytes_of(out)
        f.seek(entry.offset)
        view = memoryview(buf).cast("B")
        got = 0
        while got < entry.size:
            n = f.readinto(view[got:])
            if not n:
                raise TFCheckpointError(f"{path}: short read of tensor {name!r} ({got} of "
                                        f"{entry.size} bytes)")
            got += n
        actual = crc32c(np.frombuffer(buf, dtype=np.uint8))
        if actual != unmask_crc(entry.crc32c):
            raise TFCheckpointError(f"{path}: tensor {name!r} is damaged (crc32c {actual:#010x}, "
                                    f"the index {self.index_path.name} says "
                                    f"{unmask_crc(entry.crc32c):#010x})")
        return out

    def close(self) -> None:
        """Close the data shard files (reading again reopens them)."""
        files, self._files = self._files, {}
        for f in files.values():
            f.close()

    def __enter__(self) -> TFCheckpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TFCheckpoint({str(self.prefix)!r}, {len(self)} tensors, {self.num_shards} shards)"


# ----------------------------------------------------------------------------- finding one

_STATE_LINE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"\s*$', re.M)


def _unescape(text: str) -> str:
    """Undo text-proto string escapes (``\\"``, ``\\\\``, octal bytes)."""
    raw = codecs.escape_decode(text.encode("utf-8"))[0]
    return raw.decode("utf-8")  # type: ignore[union-attr]


def _from_state_file(directory: Path) -> Path | None:
    """The prefix the ``checkpoint`` state file names, if its ``.index`` exists."""
    state = directory / "checkpoint"
    if not state.is_file():
        return None
    try:
        m = _STATE_LINE.search(state.read_text(encoding="utf-8"))
        named = Path(_unescape(m.group(1))) if m else None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        logger.warning("%s: unreadable checkpoint state file (%s); looking for *.index", state, e)
        return None
    if named is None:
        return None
    for candidate in (named if named.is_absolute() else directory / named,
                      directory / named.name):  # an absolute path in a moved directory
        if Path(f"{candidate}.index").is_file():
            return candidate
    logger.warning("%s names %s, which has no .index here; looking for *.index", state, named)
    return None


def find_checkpoint(directory: str | Path) -> Path:
    """The checkpoint prefix in ``directory``.

    The ``checkpoint`` state file's ``model_checkpoint_path`` when its ``.index`` exists, else
    the one ``*.index`` file. Raises TFCheckpointError when there is none, or several.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TFCheckpointError(f"{directory}: no such directory")
    named = _from_state_file(directory)
    if named is not None:
        return named
    indexes = sorted(directory.glob("*.index"))
    if not indexes:
        raise TFCheckpointError(f"{directory}: no TensorFlow checkpoint (no *.index file)")
    if len(indexes) > 1:
        listed = ", ".join(p.name for p in indexes)
        raise TFCheckpointError(f"{directory}: several checkpoints ({listed}); pass one prefix, "
                                f"e.g. {indexes[-1].with_suffix('')}")
    return indexes[0].with_suffix("")
