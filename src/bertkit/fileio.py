"""Crash-safe file writing: every output goes to a temp file in the same folder, then a rename.

A crash or interruption therefore leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from bertkit.errors import BertkitError

# errors of writing a file that Python reports without its name
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it onto ``path``, else delete it.

    >>> with atomic_path("/tmp/bertkit-doctest.txt") as tmp:   # doctest: +SKIP
    ...     tmp.write_text("hello")
    """
    path = Path(path)
    check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 (and some writers, e.g. safetensors, recreate the file so): the
        # result gets the mode of any new file, 0644 under the usual umask 022
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and (
                (isinstance(e.filename, str | os.PathLike) and os.fspath(e.filename) == tmp)
                or (e.filename is None and e.errno in _WRITE_ERRNOS)):
            # e.g. a full disk: name the file being written, not our temp file (or no file)
            raise type(e)(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
        raise


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_output_dir(path: str | os.PathLike[str]) -> None:
    """Raise an OSError naming ``path`` when it cannot be an output directory: it (or a parent)
    is a file, or the nearest existing folder is not writable. Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(path))
    base = _nearest_existing(path)
    if not base.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a directory", str(base))
    if not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "directory is not writable", str(base))


def check_output_file(path: str | os.PathLike[str]) -> None:
    """Raise an OSError naming ``path`` when it cannot be written as a file: it is a directory,
    or its folder cannot be made or written. Nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, expected a file path", str(path))
    check_output_dir(path.parent)


def check_input_file(path: str | os.PathLike[str], what: str = "input") -> Path:
    """``path`` when it is a readable file; else an OSError naming it (missing, a directory)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{what} is a directory, expected a file",
                                str(path))
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"{what} not found", str(path))
    return path


class NotUTF8Error(BertkitError, ValueError):
    """Bytes that are not UTF-8; the message names the file (or ``<stdin>``) and line."""

    def __init__(self, name: str, lineno: int, reason: str, start: int, hint: str = "") -> None:
        super().__init__(f"{name}:{lineno}: not valid UTF-8 ({reason} at byte {start} of the "
                         f"line){hint}")
        self.name, self.lineno = name, lineno


def decode_line(raw: bytes, name: str, lineno: int, hint: str = "") -> str:
    """``raw`` decoded as strict UTF-8, or :class:`NotUTF8Error` naming ``name:lineno``."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotUTF8Error(name, lineno, e.reason, e.start, hint) from None


def utf8_lines(stream: IO[bytes] | IO[str] | Iterable[str], name: str = "<stdin>",
               hint: str = "") -> Iterator[str]:
    """The lines of a binary stream decoded as strict UTF-8 (a text stream's lines are checked
    for undecodable bytes, which Python keeps as lone surrogates); errors name ``name:line``."""
    binary = getattr(stream, "buffer", None)
    if binary is not None:
        stream = binary
    for lineno, line in enumerate(stream, 1):
        if isinstance(line, bytes):
            yield decode_line(line, name, lineno, hint)
            continue
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as e:
            bad = line[e.start:e.end].encode("utf-8", "surrogateescape")
            raise NotUTF8Error(name, lineno, f"invalid byte 0x{bad[:1].hex()}",
                               len(line[:e.start].encode("utf-8", "surrogateescape")),
                               hint) from None
        yield line


def check_utf8_file(path: str | os.PathLike[str], hint: str = "", chunk: int = 1 << 24) -> None:
    """Raise :class:`NotUTF8Error` (file and line) unless the whole file is UTF-8; fast on
    large files (chunks cut at line ends, decoded at once; only a failing chunk is searched)."""
    line0 = 0
    with open(path, "rb") as f:
        while data := f.read(chunk):
            if not data.endswith(b"\n"):
                data += f.readline()
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as e:
                start = data.rfind(b"\n", 0, e.start) + 1
                raise NotUTF8Error(str(path), line0 + data.count(b"\n", 0, e.start) + 1,
                                   e.reason, e.start - start, hint) from None
            line0 += data.count(b"\n")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
