"""Request bodies checked by hand, so that every 4xx names the field or the limit it broke.

:class:`RequestError` carries the HTTP status: 422 for a malformed body (not UTF-8, not JSON, a
wrong type, an empty input, an unknown field), 413 for a body or a batch over a limit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bertkit.errors import BertkitError

__all__ = ["RequestError", "check_fields", "get_bool", "get_int", "get_str", "get_texts",
           "parse_json"]


class RequestError(BertkitError):
    """A request the server refuses: ``status`` (4xx), a message naming the field or limit."""

    def __init__(self, status: int, message: str, kind: str = "Validation") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; 422 naming ``body`` when it is not UTF-8 JSON of an object."""
    if not body.strip():
        raise RequestError(422, "body: empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(422, f"body: not UTF-8 (byte {e.start})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise RequestError(422, f"body: malformed JSON at line {e.lineno} column {e.colno}: "
                                f"{e.msg}") from None
    except RecursionError:
        raise RequestError(422, "body: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise RequestError(422, f"body: expected a JSON object, got {_kind(obj)}")
    return obj


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_fields(obj: Mapping[str, Any], allowed: tuple[str, ...],
                 required: tuple[str, ...]) -> None:
    """422 naming the first unknown or missing field."""
    for name in obj:
        if name not in allowed:
            raise RequestError(422, f"{name}: unknown field; this endpoint takes "
                                    f"{', '.join(allowed)}")
    for name in required:
        if name not in obj:
            raise RequestError(422, f"{name}: missing (required)")


def _check_text(text: str, field: str) -> str:
    if not text.strip():
        raise RequestError(422, f"{field}: empty string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(422, f"{field}: not valid Unicode (a lone surrogate)") from None
    return text


def get_str(obj: Mapping[str, Any], field: str, default: str | None = None) -> str:
    """A non-empty string field."""
    value = obj.get(field, default)
    if not isinstance(value, str):
        raise RequestError(422, f"{field}: expected a string, got {_kind(value)}")
    return _check_text(value, field)


def get_bool(obj: Mapping[str, Any], field: str, default: bool) -> bool:
    value = obj.get(field, default)
    if not isinstance(value, bool):
        raise RequestError(422, f"{field}: expected true or false, got {_kind(value)}")
    return value


def get_int(obj: Mapping[str, Any], field: str, default: int, lo: int, hi: int) -> int:
    value = obj.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RequestError(422, f"{field}: expected an integer in {lo}..{hi}, got "
                                f"{json.dumps(value)[:40]}")
    return value


def get_texts(obj: Mapping[str, Any], field: str, max_inputs: int,
              pairs: bool = False, single: bool = True) -> tuple[list[Any], bool]:
    """``field`` as a list of texts (or ``[text, pair]`` lists with ``pairs``) and whether it
    was one string (refused unless ``single``). 413 naming ``--max-client-batch-size`` for too many inputs."""
    value = obj.get(field)
    if isinstance(value, str) and single:
        return [_check_text(value, field)], True
    if not isinstance(value, list):
        what = ("a string or " if single else "") + "an array of strings" + (" or [text, pair] arrays" if pairs else "")
        raise RequestError(422, f"{field}: expected {what}, got {_kind(value)}")
    if not value:
        raise RequestError(422, f"{field}: empty array; send at least one input")
    if len(value) > max_inputs:
        raise RequestError(413, f"{field}: {len(value)} inputs, more than the server's "
                                f"--max-client-batch-size {max_inputs}", "Overloaded")
    out: list[Any] = []
    for i, x in enumerate(value):
        if isinstance(x, str):
            out.append(_check_text(x, f"{field}[{i}]"))
        elif pairs and isinstance(x, list) and len(x) == 2 and all(isinstance(t, str) for t in x):
            out.append((_check_text(x[0], f"{field}[{i}][0]"),
                        _check_text(x[1], f"{field}[{i}][1]")))
        else:
            want = "a string or a [text, pair] array" if pairs else "a string"
            raise RequestError(422, f"{field}[{i}]: expected {want}, got {_kind(x)}")
    return out, False
