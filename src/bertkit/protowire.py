"""A small reader of the protobuf wire format (no ``protobuf`` dependency).

Enough to decode the few messages bertkit reads: TensorFlow's tensor-bundle entries and
SentencePiece's model file. ``fields`` yields each (field number, wire type, value) of a message;
the caller knows its schema.

    >>> list(fields(bytes([0x08, 0x96, 0x01, 0x12, 0x02, 0x68, 0x69])))
    [(1, 0, 150), (2, 2, b'hi')]
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from bertkit.errors import BertkitError

__all__ = ["WireError", "fields", "float32", "ints", "scalar", "signed64", "varint"]


class WireError(BertkitError, ValueError):
    """Malformed protobuf (or table) bytes; callers turn it into an error naming the file."""


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field number, wire type, value)`` of a serialized message; bytes for type 2."""
    pos = 0
    while pos < len(buf):
        tag, pos = varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise WireError("truncated 64-bit field")
            value = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 2:
            length, pos = varint(buf, pos)
            if pos + length > len(buf):
                raise WireError("truncated length-delimited field")
            value = bytes(buf[pos:pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise WireError("truncated 32-bit field")
            value = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire} (field {field})")
        if field == 0:
            raise WireError("field number 0")
        yield field, wire, value


def ints(wire: int, value: int | bytes) -> list[int]:
    """A repeated integer field's values, packed (type 2) or not (type 0)."""
    if wire == 0:
        return [int(value)]  # type: ignore[arg-type]
    if wire != 2 or not isinstance(value, bytes):
        raise WireError(f"wire type {wire} for an integer field")
    out, pos = [], 0
    while pos < len(value):
        v, pos = varint(value, pos)
        out.append(v)
    return out


def scalar(wire: int, value: int | bytes, want: int) -> int:
    if wire != want or isinstance(value, bytes):
        raise WireError(f"wire type {wire}, expected {want}")
    return value


def float32(wire: int, value: int | bytes) -> float:
    """A ``float`` field (wire type 5) as a Python float."""
    return struct.unpack("<f", scalar(wire, value, 5).to_bytes(4, "little"))[0]
