"""Readers for sentence and sentence-pair tasks: every GLUE task's TSV layout, and generic tables.

GLUE files are read as Google's ``run_classifier.py`` reads them: tab-separated, ``QUOTE_NONE`` (a
quote is an ordinary character, one physical line is one row), a header line except in CoLA's
train/dev files. Layouts (0-based columns; "test" files have no label):

- CoLA: ``source, label, _, sentence`` (no header); text 3, label 1. Test: ``index, sentence``.
- SST-2: ``sentence, label``. Test: ``index, sentence``.
- MRPC: ``Quality, #1 ID, #2 ID, #1 String, #2 String``; texts 3/4, label 0. Test: ``index``
  instead of ``Quality``.
- STS-B: 10 columns, texts 7/8, score (float in [0, 5]) last. Test: 9 columns.
- QQP: ``id, qid1, qid2, question1, question2, is_duplicate``. Test: ``id, question1, question2``.
- MNLI: 12 (train) or 16 (dev) columns, texts 8/9, label last; dev_matched and dev_mismatched.
  Test: 10 columns.
- QNLI, RTE, WNLI: ``index, sentence1, sentence2, label``. Test: ``index, sentence1, sentence2``.

A malformed row (wrong column count, label not in the task's list, empty text) raises
:class:`~bertkit.data.errors.DataError` naming the file and 1-based line; with
``skip_bad_rows=True`` it is skipped and counted, and one warning is logged per file.

>>> task = glue_task("sst-2"); task.labels
('0', '1')
>>> examples = read_glue("sst-2", "SST-2/dev.tsv")            # doctest: +SKIP
>>> examples[0]                                                # doctest: +SKIP
Example(text_a="it 's a charming ... journey . ", text_b=None, label='1', guid='dev-2')
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from bertkit.data.errors import BadRows, DataError
from bertkit.errors import BertkitError
from bertkit.fileio import NotUTF8Error, decode_line

logger = logging.getLogger(__name__)

__all__ = ["Example", "GlueTask", "GLUE_TASKS", "glue_task", "glue_split_path", "read_glue",
           "read_table", "label_list", "not_utf8", "utf8_errors", "DataError"]

Label = str | float | None


@dataclass(frozen=True)
class Example:
    """One classification/regression example: a text or text pair with its label.

    ``label`` is a string for classification, a float for regression, ``None`` when unlabelled.
    """

    text_a: str
    text_b: str | None
    label: Label
    guid: str


@dataclass(frozen=True)
class _Layout:
    n_columns: tuple[int, ...]  # allowed column counts
    text_a: int
    text_b: int | None
    label: int | None  # None: no label in this file
    guid: int | None  # column used as the example id (else "<file stem>-<line>")


@dataclass(frozen=True)
class GlueTask:
    """Name, label list (``None`` for regression), metrics and file layouts of a GLUE task."""

    name: str
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    header: bool  # labelled files start with a header line
    labelled: _Layout
    test: _Layout
    dev_splits: tuple[str, ...] = ("dev",)

    @property
    def is_regression(self) -> bool:
        return self.labels is None


_BIN = ("0", "1")
_ENT = ("entailment", "not_entailment")
_PAIR4 = _Layout((4,), 1, 2, 3, 0)
_PAIR3 = _Layout((3,), 1, 2, None, 0)

GLUE_TASKS: dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("cola", _BIN, ("matthews_corr",), False, _Layout((4,), 3, None, 1, None),
             _Layout((2,), 1, None, None, 0)),
    GlueTask("sst-2", _BIN, ("accuracy",), True, _Layout((2,), 0, None, 1, None),
             _Layout((2,), 1, None, None, 0)),
    GlueTask("mrpc", _BIN, ("accuracy", "f1"), True, _Layout((5,), 3, 4, 0, None),
             _Layout((5,), 3, 4, None, 0)),
    GlueTask("sts-b", None, ("pearson", "spearman"), True, _Layout((10,), 7, 8, -1, 0),
             _Layout((9,), 7, 8, None, 0)),
    GlueTask("qqp", _BIN, ("accuracy", "f1"), True, _Layout((6,), 3, 4, 5, 0),
             _Layout((3,), 1, 2, None, 0)),
    GlueTask("mnli", ("contradiction", "entailment", "neutral"), ("accuracy",), True,
             _Layout((12, 16), 8, 9, -1, 0), _Layout((10,), 8, 9, None, 0),
             ("dev_matched", "dev_mismatched")),
    GlueTask("qnli", _ENT, ("accuracy",), True, _PAIR4, _PAIR3),
    GlueTask("rte", _ENT, ("accuracy",), True, _PAIR4, _PAIR3),
    GlueTask("wnli", _BIN, ("accuracy",), True, _PAIR4, _PAIR3),
]}


def glue_task(name: str) -> GlueTask:
    """Look up a GLUE task by name, ignoring case and ``-``/``_`` (``"SST2"``, ``"sts_b"``).

    >>> glue_task("MNLI").dev_splits
    ('dev_matched', 'dev_mismatched')
    """
    def key(s: str) -> str:
        return s.lower().replace("-", "").replace("_", "")

    for task in GLUE_TASKS.values():
        if key(task.name) == key(name):
            return task
    raise KeyError(f"unknown GLUE task {name!r}; known: {', '.join(GLUE_TASKS)}")


def glue_split_path(task: str, data_dir: str | os.PathLike[str], split: str) -> Path:
    """The file of ``split`` in a GLUE task directory: ``train``, ``dev``, ``test`` and for MNLI
    ``dev_matched``/``dev_mismatched``/``test_matched``/``test_mismatched`` (``dev`` = matched).

    >>> glue_split_path("mnli", "MNLI", "dev").as_posix()
    'MNLI/dev_matched.tsv'
    """
    t = glue_task(task)
    if t.name == "mnli" and split in ("dev", "test"):
        split = f"{split}_matched"
    allowed = ("train", "test", *t.dev_splits) + (
        ("test_matched", "test_mismatched") if t.name == "mnli" else ())
    if split not in allowed:
        raise ValueError(f"{t.name} has no split {split!r}; choose from {', '.join(allowed)}")
    return Path(data_dir) / f"{split}.tsv"


UTF8_HINT = "; save the file as UTF-8"


def not_utf8(path: str | os.PathLike[str], error: UnicodeDecodeError) -> BertkitError:
    """:class:`~bertkit.fileio.NotUTF8Error` naming the first line of ``path`` that is not UTF-8.

    Python's own message (``'utf-8' codec can't decode byte 0xe9 in position 14``) counts bytes
    of an internal buffer; this reads the file again as bytes (``.gz``/``.bz2`` decompressed) to
    name the line. UTF-8 never uses the byte of ``\\n`` inside a character, so decoding line by
    line finds the same error.
    """
    path = Path(path)
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as f:  # type: ignore[operator]
            for n, raw in enumerate(f, 1):
                decode_line(raw, str(path), n, UTF8_HINT)
    except NotUTF8Error as e:
        return e
    except OSError:
        pass
    return DataError(path, None, f"not valid UTF-8 ({error.reason}){UTF8_HINT}")


@contextlib.contextmanager
def utf8_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a ``UnicodeDecodeError`` raised while reading ``path`` into :func:`not_utf8`'s error.

    Every reader of the fine-tuning formats (tables, GLUE, CoNLL, SQuAD, SWAG) reads inside one.
    """
    try:
        yield
    except UnicodeDecodeError as e:
        raise not_utf8(path, e) from e


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(1-based line, fields) of a TSV read with QUOTE_NONE; blank lines are skipped."""
    with utf8_errors(path), open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            if row and any(row):
                yield reader.line_num, row


def read_glue(task: str, path: str | os.PathLike[str], *, labelled: bool | None = None,
              skip_bad_rows: bool = False) -> list[Example]:
    """Read one GLUE TSV file of ``task`` (any spelling :func:`glue_task` accepts).

    ``labelled=None`` infers it from the file name: a name starting with ``test`` has no labels.
    The guid is the file's id column where the layout has one, else ``<stem>-<line>``.
    """
    t = glue_task(task)
    path = Path(path)
    if labelled is None:
        labelled = not path.name.startswith("test")
    layout = t.labelled if labelled else t.test
    header = t.header or not labelled  # every test file, CoLA's included, has a header
    bad = BadRows(path, skip=skip_bad_rows, logger=logger)
    out: list[Example] = []
    rows = _tsv_rows(path)
    if header and next(rows, None) is None:
        raise DataError(path, 1, "empty file: expected a header line")
    for line, row in rows:
        if len(row) not in layout.n_columns:
            want = " or ".join(map(str, layout.n_columns))
            bad.report(line, f"{t.name}: expected {want} tab-separated columns, got {len(row)}")
            continue
        text_a = row[layout.text_a]
        text_b = None if layout.text_b is None else row[layout.text_b]
        if not text_a.strip() or (text_b is not None and not text_b.strip()):
            bad.report(line, "empty text")
            continue
        label: Label = None
        if layout.label is not None:
            raw = row[layout.label].strip()
            if t.labels is None:
                try:
                    label = float(raw)
                except ValueError:
                    label = math.nan
                if not 0.0 <= label <= 5.0:  # nan fails too
                    bad.report(line, f"{t.name}: score {raw!r} is not a number in [0, 5]")
                    continue
            elif raw in t.labels:
                label = raw
            else:
                bad.report(line, f"{t.name}: label {raw!r} not in {list(t.labels)}")
                continue
        guid = row[layout.guid] if layout.guid is not None else f"{path.stem}-{line}"
        out.append(Example(text_a, text_b, label, guid))
    bad.done(len(out))
    return out


TableFormat = Literal["csv", "tsv", "jsonl"]


def _infer_format(path: Path) -> TableFormat:
    suffixes = [s.lower() for s in path.suffixes]
    for fmt, exts in (("jsonl", (".jsonl", ".ndjson", ".json")), ("tsv", (".tsv", ".tab")),
                      ("csv", (".csv",))):
        if any(s in exts for s in suffixes):
            return fmt  # type: ignore[return-value]
    raise DataError(path, None, "cannot tell the format from the file name: tables are read "
                                "from *.csv, *.tsv or *.jsonl files (also *.csv.gz, *.jsonl.bz2, "
                                "...); rename it")


def _open_text(path: Path) -> IO[str]:
    """Open UTF-8 text, decompressing ``.gz``/``.bz2`` on the fly."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    if suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _table_records(path: Path, fmt: TableFormat,
                   columns: Sequence[str]) -> Iterator[tuple[int, dict[str, object] | str]]:
    """(line, record) pairs; a string record is the reason the row is malformed."""
    with utf8_errors(path), _open_text(path) as f:
        if fmt == "jsonl":
            for line, text in enumerate(f, 1):
                if not text.strip():
                    continue
                try:
                    rec = json.loads(text)
                except json.JSONDecodeError as e:
                    yield line, f"invalid JSON: {e.msg}"
                    continue
                if not isinstance(rec, dict):
                    yield line, "a JSON line must be an object"
                    continue
                missing = [c for c in columns if c not in rec]
                yield line, (f"missing keys {missing}" if missing else rec)
            return
        if fmt == "tsv":
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(path, 1, "empty file: expected a header line")
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(path, 1, f"no column(s) {missing} in header {header}")
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1  # a quoted CSV field may span lines
            if not row or not any(row):
                continue
            if len(row) != len(header):
                yield line, f"expected {len(header)} columns, got {len(row)}"
                continue
            yield line, dict(zip(header, row, strict=True))


def _filled(value: object) -> bool:
    """Whether a table cell holds something (a JSON ``0`` or ``false`` does; ``""`` does not)."""
    return value is not None and str(value).strip() != ""


def read_table(path: str | os.PathLike[str], text_column: str,
               text_pair_column: str | None = None, label_column: str | None = "label", *,
               id_column: str | None = None, format: TableFormat | None = None,
               labels: Sequence[str] | None = None, regression: bool = False,
               skip_bad_rows: bool = False, label_optional: bool = False) -> list[Example]:
    """Read a CSV (with quoting), TSV (``QUOTE_NONE``) or JSON-lines file with named columns.

    The format comes from the name (``.csv``, ``.tsv``, ``.jsonl``; ``.gz``/``.bz2`` are
    decompressed on the fly) unless ``format`` is given.

    CSV/TSV files need a header line. ``label_column=None`` reads unlabelled data, and
    ``label_optional=True`` (a test file) reads a file or record without the label column, or
    with an empty one, as unlabelled (``label=None``) while still checking the labels that are
    there. Labels are kept as strings (JSON numbers/booleans via ``str``), or floats with
    ``regression=True``; when ``labels`` is given, any other label is a bad row. The guid is
    ``id_column``'s value or ``<stem>-<line>``.

    >>> read_table("reviews.csv", "text", label_column="sentiment")      # doctest: +SKIP
    """
    path = Path(path)
    fmt = format or _infer_format(path)
    required = (text_column, text_pair_column, None if label_optional else label_column, id_column)
    columns = [c for c in required if c]
    allowed = None if labels is None else {str(x) for x in labels}
    bad = BadRows(path, skip=skip_bad_rows, logger=logger)
    out: list[Example] = []
    for line, rec in _table_records(path, fmt, columns):
        if isinstance(rec, str):
            bad.report(line, rec)
            continue
        text_a = rec[text_column]
        text_b = None if text_pair_column is None else rec[text_pair_column]
        if not isinstance(text_a, str) or (text_b is not None and not isinstance(text_b, str)):
            bad.report(line, "text must be a string")
            continue
        if not text_a.strip() or (text_b is not None and not text_b.strip()):
            bad.report(line, "empty text")
            continue
        label: Label = None
        if label_column is not None and (not label_optional or _filled(rec.get(label_column))):
            raw = rec[label_column]
            if regression:
                try:
                    label = float(raw)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    label = math.nan
                if not math.isfinite(label):
                    bad.report(line, f"label {raw!r} is not a finite number")
                    continue
            else:
                label = str(raw).strip() if raw is not None else ""
                if not label or (allowed is not None and label not in allowed):
                    bad.report(line, f"bad label {raw!r}"
                               + ("" if allowed is None else f" (allowed: {sorted(allowed)})"))
                    continue
        guid = str(rec[id_column]) if id_column else f"{path.stem}-{line}"
        out.append(Example(text_a, text_b, label, guid))
    bad.done(len(out))
    return out


def label_list(examples: Sequence[Example]) -> list[str]:
    """Sorted distinct string labels of ``examples`` (unlabelled and float labels ignored).

    >>> label_list([Example("a", None, "pos", "1"), Example("b", None, "neg", "2")])
    ['neg', 'pos']
    """
    return sorted({e.label for e in examples if isinstance(e.label, str)})
