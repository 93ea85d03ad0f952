"""One way to replace a file atomically and durably: write a private temp file, fsync it, rename, fsync the folder.

Readers see the old file or the new one, never half of either, and after the call returns the new one survives a
power loss: ``os.replace`` alone is atomic but not durable (the data may still sit in the page cache, and the
rename itself lives in the folder's entry until the folder is synced). Temp names are unique per process and
call (pid + random), so two writers never rename each other's half-written file into place, and a failed write
removes its temp file. Files are created private (0600 by default, see :mod:`outpost.home`).

    >>> atomic_write_text(home / "hubs" / "hq.json", json.dumps(config))
    >>> with atomic_file(blobs / "sha256-….gguf") as fh:        # streamed writes
    ...     fh.write(block)

Files that another library writes (usearch's index, an assembler's GGUF, a download) are finished the same way
with :func:`commit_file`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from outpost.home import PRIVATE_FILE_MODE

__all__ = ["atomic_file", "atomic_write_bytes", "atomic_write_text", "commit_file", "fsync_dir", "temp_path"]


def fsync_dir(folder: Path) -> None:
    """Make the entries of ``folder`` (a rename into it, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(final: Path, suffix: str = ".tmp") -> Path:
    """A temp name beside ``final``, hidden and unique to this process and call."""
    return final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def commit_file(tmp: Path, final: Path, mode: int | None = PRIVATE_FILE_MODE) -> Path:
    """Move a fully written ``tmp`` onto ``final``: chmod (unless ``mode`` is None), fsync, rename, fsync folder."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


@contextmanager
def atomic_file(final: Path, mode: int = PRIVATE_FILE_MODE) -> Iterator[IO[bytes]]:
    """Write ``final`` through a private temp file that replaces it only if the block completes."""
    tmp = temp_path(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)  # only there if the write or the rename failed


def atomic_write_bytes(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> Path:
    """Replace ``path`` with ``data`` atomically and durably (a private file by default)."""
    with atomic_file(path, mode) as fh:
        fh.write(data)
    return path


def atomic_write_text(path: Path, text: str, mode: int = PRIVATE_FILE_MODE, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically and durably (a private file by default)."""
    return atomic_write_bytes(path, text.encode(encoding), mode)
