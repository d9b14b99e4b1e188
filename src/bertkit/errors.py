"""The one base class of every error bertkit raises on purpose.

Each subclass keeps the builtin base it always had (``ValueError`` for bad input, ``RuntimeError``
for a failed operation), so ``except ValueError`` in user code still works; ``except
BertkitError`` catches them all. The message names the file (and the line, key or field), and the
command line prints it as one line with exit status 2 (:func:`bertkit.cli.main`).

>>> from bertkit.config import ConfigError
>>> issubclass(ConfigError, BertkitError) and issubclass(ConfigError, ValueError)
True
"""

from __future__ import annotations

__all__ = ["BertkitError"]


class BertkitError(Exception):
    """An error bertkit raised on purpose; its message names what is wrong and where."""
