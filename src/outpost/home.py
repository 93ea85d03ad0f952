"""Everything under ``OUTPOST_HOME`` is private to its user: folders 0700, files 0600.

The home holds document text (collections), every question asked (``feedback.sqlite``), hub tokens and
signing keys; on a shared machine none of it may be readable by other accounts. Two layers make it so:

- The folders and files Outpost creates itself go through ``ensure_private_dir``, ``private_file`` and
  ``open_private``, so the Python API is private whatever the caller's umask. ``private_file`` runs before
  SQLite opens a database, because SQLite gives the ``-wal`` and ``-shm`` files the database's own mode.
- The CLI (and so ``outpost serve`` and ``outpost hub serve``) calls ``restrict_umask`` first, so whatever a
  library writes for us (pyarrow's Parquet, usearch's index, Hugging Face's cache) is private as well.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import IO, Any

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "ensure_private_dir",
    "open_private",
    "private_file",
    "restrict_umask",
]

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_GROUP_OTHER = 0o077


def restrict_umask() -> int:
    """Take group and other bits out of the process umask (keeping any it already had); returns the old one."""
    old = os.umask(_GROUP_OTHER)
    os.umask(old | _GROUP_OTHER)
    return old


def _tighten(fd_or_path: int | Path) -> None:
    """Remove group and other bits, if any (an older Outpost, or a caller's umask, may have left them)."""
    st = os.fstat(fd_or_path) if isinstance(fd_or_path, int) else fd_or_path.stat()
    if st.st_mode & _GROUP_OTHER:
        mode = stat.S_IMODE(st.st_mode) & ~_GROUP_OTHER
        if isinstance(fd_or_path, int):
            os.fchmod(fd_or_path, mode)
        else:
            os.chmod(fd_or_path, mode)


def ensure_private_dir(path: Path) -> Path:
    """``mkdir -p path`` where every folder it creates is 0700, and ``path`` itself is tightened if looser.

    Folders that already existed above ``path`` are left alone (the home's parent may be ``/tmp``).
    """
    missing: list[Path] = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process may make it first
            folder.mkdir(mode=PRIVATE_DIR_MODE)  # created private: no window where it is readable
    _tighten(path)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if missing (never truncating it), else tighten its mode.

    Call it before ``sqlite3.connect``: the database, then its ``-wal`` and ``-shm``, are private from birth.
    An existing file is tightened by path and never opened here: closing *any* descriptor of a SQLite file drops
    every POSIX lock this process holds on it (SQLite's documented caveat), so an open-and-close while another
    connection of this process was reading let a writer in another process take the file for its own and drop
    the WAL under that reader ("database disk image is malformed" on a hub serving 50 clients while publishing).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        _tighten(path)
        return path
    try:
        _tighten(fd)
    finally:
        os.close(fd)  # a file created just now: no connection holds a lock on it yet
    return path


def open_private(path: Path, mode: str = "wb", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing a new file (truncating), created 0600: temp files before a rename."""
    if not mode.startswith("w"):
        raise ValueError(f"open_private writes new files; mode {mode!r} is not a write mode")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    _tighten(fd)
    return os.fdopen(fd, mode, **kwargs)
