"""The error type of the fine-tuning readers and the "skip bad rows" bookkeeping they share."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bertkit.errors import BertkitError

__all__ = ["DataError", "BadRows"]


class DataError(BertkitError, ValueError):
    """A malformed input row; the message names the file and the 1-based line (or the record id).

    >>> str(DataError("train.tsv", 7, "expected 4 columns, got 3"))
    'train.tsv:7: expected 4 columns, got 3'
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str) -> None:
        self.path, self.line, self.reason = str(path), line, message
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


class BadRows:
    """Raise on the first bad row, or (``skip=True``) count them and log once when done.

    >>> bad = BadRows("x.tsv", skip=True)
    >>> bad.report(3, "empty text"); bad.count
    1
    """

    def __init__(self, path: str | os.PathLike[str], *, skip: bool,
                 logger: logging.Logger | None = None) -> None:
        self.path, self.skip, self.count = Path(path), skip, 0
        self.first: DataError | None = None
        self._logger = logger or logging.getLogger(__name__)

    def report(self, line: int | None, message: str) -> None:
        """Record a bad row: raise :class:`DataError` unless skipping."""
        err = DataError(self.path, line, message)
        if not self.skip:
            raise err
        self.count += 1
        if self.first is None:
            self.first = err

    def done(self, kept: int) -> None:
        """Log one warning with the number of skipped rows and the first reason."""
        if self.count:
            self._logger.warning("%s: skipped %d bad rows (kept %d); first: %s", self.path,
                                 self.count, kept, self.first)
