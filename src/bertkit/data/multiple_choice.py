"""SWAG-style multiple-choice CSV: a context, the start of the next sentence, four endings.

Columns are found by header name (``video-id, fold-ind, startphrase, sent1, sent2, gold-source,
ending0, ending1, ending2, ending3, label``; SWAG's own files add an unnamed index column first,
which is ignored). The context is ``sent1``; each choice is ``sent2 + " " + ending_i`` (as
Hugging Face's SWAG example builds it). The guid is ``<file stem>-<fold-ind>`` (or the line
when there is no ``fold-ind``). Test files have no ``label`` column. A malformed row
raises :class:`~bertkit.data.errors.DataError` with file and line (``skip_bad_rows`` skips it).

>>> ex = MultipleChoiceExample("g", "He sat.", "He then", ("ate", "ran", "slept", "sang"), 0)
>>> ex.choices[0]
'He then ate'
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bertkit.data.errors import BadRows, DataError

logger = logging.getLogger(__name__)

__all__ = ["MultipleChoiceExample", "read_swag", "SWAG_COLUMNS"]

SWAG_COLUMNS = ("video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source",
                "ending0", "ending1", "ending2", "ending3", "label")
_N_ENDINGS = 4


@dataclass(frozen=True)
class MultipleChoiceExample:
    """A context, a shared start of the answer, the endings and the index of the right one."""

    guid: str
    context: str
    start_ending: str
    endings: tuple[str, ...]
    label: int | None

    @property
    def choices(self) -> list[str]:
        """The full second segment of each choice: ``start_ending + " " + ending``."""
        return [f"{self.start_ending} {e}".strip() for e in self.endings]


def read_swag(path: str | os.PathLike[str], *, skip_bad_rows: bool = False
              ) -> list[MultipleChoiceExample]:
    """Read a SWAG-layout CSV (with a header line) into examples."""
    path = Path(path)
    bad = BadRows(path, skip=skip_bad_rows, logger=logger)
    out: list[MultipleChoiceExample] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(path, 1, "empty file: expected a header line")
        col = {name: i for i, name in enumerate(header)}
        required = ("sent1", "sent2", *(f"ending{i}" for i in range(_N_ENDINGS)))
        missing = [c for c in required if c not in col]
        if missing:
            raise DataError(path, 1, f"no column(s) {missing} in header {header}")
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
            endings = tuple(row[col[f"ending{i}"]] for i in range(_N_ENDINGS))
            if not context.strip() or not all(e.strip() for e in endings):
                bad.report(line, "empty context or ending")
                continue
            label: int | None = None
            if has_label:
                raw = row[col["label"]].strip()
                if raw not in {str(i) for i in range(_N_ENDINGS)}:
                    bad.report(line, f"label {raw!r} is not 0-{_N_ENDINGS - 1}")
                    continue
                label = int(raw)
            guid = f"{path.stem}-{row[col['fold-ind']] if 'fold-ind' in col else line}"
            out.append(MultipleChoiceExample(guid, context, start_ending, endings, label))
    bad.done(len(out))
    return out
