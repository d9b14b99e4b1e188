"""Command-line flags generated from typed args dataclasses.

Each subcommand declares a dataclass; every field becomes a flag spelled with dashes (Google's
underscore spelling is accepted too, though ``--help`` shows only the dashes), its
``metadata["help"]`` becomes the ``--help`` text, and the type decides the parsing::

    @dataclass
    class EmbedArgs:
        model: str = field(metadata={"help": "model directory (HF layout)"})
        pooling: Literal["mean", "cls"] = field(default="mean", metadata={"help": "..."})

gives ``--model DIR --pooling {mean,cls}``. A field without a default is a required flag; ``bool``
fields get ``--flag/--no-flag``; ``list[str]`` fields take one or more values; ``Literal`` fields
become choices. A field with ``metadata={"positional": True}`` is positional. Values may also come
from a JSON or TOML file (``--args-file``): flags given on the command line override it, and the
file's values are checked against the field types.

Bounds live beside the help: ``metadata={"min": 1}`` (also ``"max"``, and ``"above"``/``"below"``
for strict bounds; ``"unique": True`` for a list without repeats); every float must be finite. :func:`check_values` raises :class:`ArgsError`
naming the flag, which the parser reports as a one-line usage error (exit status 2)::

    batch_size: int = field(default=32, metadata={"help": "examples per update", "min": 1})
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import operator
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, get_args, get_origin

from bertkit.errors import BertkitError

T = TypeVar("T")


class ArgsError(BertkitError, ValueError):
    """A flag's value is out of range or of the wrong type; the message names the flag."""


_BOUNDS = {"min": (operator.ge, "at least"), "max": (operator.le, "at most"),
           "above": (operator.gt, "greater than"), "below": (operator.lt, "less than")}


def flag_name(f: dataclasses.Field) -> str:
    """The flag a field is given with: ``--batch-size`` (or its ``metadata["flag"]``)."""
    return f.metadata.get("flag") or f"--{f.name.replace('_', '-')}"


def check_values(args: Any) -> None:
    """Check every numeric field of the args dataclass ``args`` against its bounds.

    >>> @dataclasses.dataclass
    ... class A:
    ...     n: int = dataclasses.field(default=1, metadata={"min": 1})
    >>> check_values(A(0))
    Traceback (most recent call last):
    ...
    bertkit.cliargs.ArgsError: --n must be at least 1, got 0
    """
    for f in dataclasses.fields(args):
        values = getattr(args, f.name)
        if f.metadata.get("unique") and isinstance(values, list) \
                and len(set(values)) != len(values):
            raise ArgsError(f"{flag_name(f)} repeats a value: {values}")
        for v in values if isinstance(values, list) else [values]:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise ArgsError(f"{flag_name(f)} must be a finite number, got {v}")
            for key, (ok, words) in _BOUNDS.items():
                if key in f.metadata and not ok(v, f.metadata[key]):
                    raise ArgsError(f"{flag_name(f)} must be {words} {f.metadata[key]}, got {v}")


def _is_union(tp: Any) -> bool:
    """``X | Y`` or ``Optional[X]``."""
    return get_origin(tp) in (typing.Union, types.UnionType)


def _unwrap_optional(tp: Any) -> Any:
    if _is_union(tp):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _flag_kwargs(f: dataclasses.Field, tp: Any) -> dict[str, Any]:
    tp = _unwrap_optional(tp)
    kw: dict[str, Any] = {"help": f.metadata.get("help", "")}
    bounds = [f"{words} {f.metadata[k]}" for k, (_, words) in _BOUNDS.items() if k in f.metadata]
    if bounds:
        kw["help"] += f" ({', '.join(bounds)})"
    if "metavar" in f.metadata:
        kw["metavar"] = f.metadata["metavar"]
    if tp is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif get_origin(tp) is Literal:
        kw["choices"] = list(get_args(tp))
        kw["type"] = type(get_args(tp)[0])
    elif get_origin(tp) in (list, tuple):
        (inner, *_) = get_args(tp) or (str,)
        kw["nargs"] = "+"
        kw["action"] = _list_action(inner)
    elif tp in (int, float, str):
        kw["type"] = tp
    elif tp is Path:
        kw["type"] = Path
    return kw


def _list_action(inner: Any) -> type[argparse.Action]:
    """Values given with spaces or commas (``--seeds 1 2 3`` or ``--seeds 1,2,3``)."""

    class ListAction(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                     values: Any, option_string: str | None = None) -> None:
            items = [p for v in values for p in str(v).split(",") if p != ""]
            try:
                setattr(namespace, self.dest, [inner(p) for p in items])
            except ValueError as e:
                parser.error(f"{option_string}: {e}")

    return ListAction


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per field of ``cls`` to ``parser``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kw = _flag_kwargs(f, hints[f.name])
        has_default = (f.default is not dataclasses.MISSING
                       or f.default_factory is not dataclasses.MISSING)
        if f.metadata.get("positional"):
            if has_default:
                kw["nargs"] = "?"
            parser.add_argument(f.name, **kw)
            continue
        names = [flag_name(f), *f.metadata.get("aliases", [])]
        if not has_default:
            kw["help"] += " (required)"
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if default not in (None, "", []) and not isinstance(default, bool):
                shown = " ".join(map(str, default)) if isinstance(default, list) else default
                kw["help"] += f" (default: {shown})".replace("%", "%%")
        kw["default"] = argparse.SUPPRESS
        kw["dest"] = f.name
        parser.add_argument(*names, **kw)
        if "_" in f.name and f"--{f.name}" not in names:
            # Google's spelling parses to the same field but stays out of --help and usage.
            parser.add_argument(f"--{f.name}", **{**kw, "help": argparse.SUPPRESS})
    parser.add_argument("--args-file", type=Path, default=None, dest="_args_file", metavar="FILE",
                        help="JSON or TOML file of flag values; command-line flags override it")


def _read_args_file(path: Path) -> dict[str, Any]:
    """The flags of a JSON or TOML file; ArgsError names the file (and line) when unreadable."""
    if not path.is_file():
        raise ArgsError(f"--args-file {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except UnicodeDecodeError as e:
        raise ArgsError(f"{path}: not UTF-8 text (byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise ArgsError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
    except ValueError as e:  # tomllib.TOMLDecodeError
        raise ArgsError(f"{path}: invalid TOML: {e}") from e
    if not isinstance(data, dict):
        raise ArgsError(f"{path}: expected an object of flag names and values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _typed(value: Any, tp: Any) -> tuple[bool, Any]:
    """``(True, value as tp)`` when an args-file value fits the field type ``tp``."""
    if _is_union(tp):
        for arm in get_args(tp):
            ok, out = (value is None, None) if arm is type(None) else _typed(value, arm)
            if ok:
                return True, out
        return False, None
    if get_origin(tp) is Literal:
        return value in get_args(tp), value
    if get_origin(tp) in (list, tuple):
        (inner, *_) = get_args(tp) or (str,)
        items = [_typed(v, inner) for v in value] if isinstance(value, list) else [(False, 0)]
        return all(ok for ok, _ in items), [v for _, v in items]
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool), float(value) \
            if isinstance(value, int | float) else value
    if tp in (str, Path):
        return isinstance(value, str), tp(value) if isinstance(value, str) else value
    return True, value


_GIVEN = "_flags_given"


def given_flags(args: object) -> frozenset[str] | None:
    """The fields of ``args`` set on the command line or in ``--args-file`` (None: ``args``
    was not built by :func:`dataclass_from_namespace`, so it is not known)."""
    return getattr(args, "__dict__", {}).get(_GIVEN)


def dataclass_from_namespace(cls: type[T], ns: argparse.Namespace,
                             parser: argparse.ArgumentParser) -> T:
    """Build ``cls`` from parsed flags (plus the optional args file)."""
    given = {k: v for k, v in vars(ns).items() if not k.startswith("_")}
    file_path = getattr(ns, "_args_file", None)
    try:
        values = _read_args_file(file_path) if file_path else {}
    except ArgsError as e:
        parser.error(str(e))
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        parser.error(f"{file_path}: unknown keys {sorted(unknown)}")
    hints = typing.get_type_hints(cls)
    for key, raw in list(values.items()):
        ok, values[key] = _typed(raw, hints[key])
        if not ok:
            parser.error(f"{file_path}: {key}: expected {hints[key]}, got {raw!r}")
    values.update({k: v for k, v in given.items() if k in names})
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        parser.error("the following arguments are required: "
                     + ", ".join("--" + m.replace("_", "-") for m in missing))
    args = cls(**values)
    args.__dict__[_GIVEN] = frozenset(values)  # not a field: asdict and replace leave it out
    try:
        check_values(args)
    except ArgsError as e:
        parser.error(str(e))
    return args


def exit_worker(code: int) -> NoReturn:
    """End the process with ``code``; a torchrun worker (``WORLD_SIZE`` > 1) skips interpreter
    finalization.

    With gloo, a worker whose last checkpoint was written could still abort on its way out
    ("terminate called without an active exception": twice in 13 runs of the test suite, each
    with four 2-process jobs), turning a finished run into a failed one. Output is flushed
    first; ``os._exit`` skips only the interpreter's teardown.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
