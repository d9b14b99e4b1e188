"""SWAG-style multiple-choice CSV: a context, the start of the next sentence, N endings.

Columns are found by header name (``video-id, fold-ind, startphrase, sent1, sent2, gold-source,
ending0, ending1, ending2, ending3, label``; SWAG's own files add an unnamed index column first,
which is ignored). The number of choices is the number of ``ending<i>`` columns in the header:
they must be ``ending0 .. ending<N-1>`` with N >= 2 (SWAG has 4, Social IQa 3), and every row of
a file has the same N. The context is ``sent1``; each choice is ``sent2 + " " + ending_i`` (as
Hugging Face's SWAG example builds it; an empty ``sent2`` gives the ending alone). The guid is
``<file stem>-<fold-ind>`` (or the line when there is no ``fold-ind``). Test files have no
``label`` column. A malformed row raises :class:`~bertkit.data.errors.DataError` with file and
line (``skip_bad_rows`` skips it).

>>> ex = MultipleChoiceExample("g", "He sat.", "He then", ("ate", "ran", "slept", "sang"), 0)
>>> ex.choices[0]
'He then ate'
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from bertkit.data.errors import BadRows, DataError
from bertkit.data.glue import utf8_errors

logger = logging.getLogger(__name__)

__all__ = ["MultipleChoiceExample", "read_swag", "SWAG_COLUMNS"]

SWAG_COLUMNS = ("video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source",
                "ending0", "ending1", "ending2", "ending3", "label")
_ENDING = re.compile(r"ending(\d+)")


@dataclass(frozen=True)
class MultipleChoiceExample:
    """A context, a shared start of the answer, the endings (2 or more) and the index of the
    right one (``None`` when unlabelled)."""

    guid: str
    context: str
    start_ending: str
    endings: tuple[str, ...]
    label: int | None

    @property
    def choices(self) -> list[str]:
        """The full second segment of each choice: ``start_ending + " " + ending``."""
        return [f"{self.start_ending} {e}".strip() for e in self.endings]

    @property
    def num_choices(self) -> int:
        """How many endings there are."""
        return len(self.endings)


def _ending_columns(path: Path, header: list[str]) -> list[str]:
    """``ending0 .. ending<N-1>`` from the header (N >= 2), or a DataError naming what is wrong."""
    found = sorted((int(m.group(1)), name) for name in header
                   if (m := _ENDING.fullmatch(name)) is not None)
    names = [name for _, name in found]
    missing = [c for c in ("sent1", "sent2") if c not in header]
    missing += [f"ending{i}" for i in range(2) if f"ending{i}" not in names]
    if missing:
        raise DataError(path, 1, f"no column(s) {missing} in header {header}")
    expected = [f"ending{i}" for i in range(len(names))]
    if names != expected:
        raise DataError(path, 1, f"ending columns must be {expected[0]}..{expected[-1]} with no "
                                 f"gap or repeat, found {names}")
    return names


def read_swag(path: str | os.PathLike[str], *, skip_bad_rows: bool = False
              ) -> list[MultipleChoiceExample]:
    """Read a SWAG-layout CSV (with a header line) into examples with N endings each.

    N is the number of ``ending<i>`` columns in the header (see the module docstring); a label
    must be an integer in ``0..N-1``.
    """
    path = Path(path)
    bad = BadRows(path, skip=skip_bad_rows, logger=logger)
    out: list[MultipleChoiceExample] = []
    with utf8_errors(path), open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(path, 1, "empty file: expected a header line")
        col = {name: i for i, name in enumerate(header)}
        ending_cols = [col[name] for name in _ending_columns(path, header)]
        n_endings = len(ending_cols)
        has_label = "label" in col
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1  # quoted fields may span lines
            if not row or not any(row):
                continue
            if len(row) != len(header):
                bad.report(line, f"expected {len(header)} columns, got {len(row)}")
                continue
            context, start_ending = row[col["sent1"]], row[col["sent2"]]
            endings = tuple(row[i] for i in ending_cols)
            if not context.strip() or not all(e.strip() for e in endings):
                bad.report(line, "empty context or ending")
                continue
            label: int | None = None
            if has_label:
                raw = row[col["label"]].strip()
                if raw not in {str(i) for i in range(n_endings)}:
                    bad.report(line, f"label {raw!r} is not 0-{n_endings - 1}")
                    continue
                label = int(raw)
            guid = f"{path.stem}-{row[col['fold-ind']] if 'fold-ind' in col else line}"
            out.append(MultipleChoiceExample(guid, context, start_ending, endings, label))
    bad.done(len(out))
    return out
