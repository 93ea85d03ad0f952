"""Read one discovered file's bytes, refusing anything but a regular file inside its root.

Discovery classified the entry, but the folder can change between walk and open (an attacker
swaps a file for a FIFO or a symbolic link), so the open itself enforces the rules:

- every folder on the way down from the root is opened with ``O_NOFOLLOW | O_DIRECTORY``
  relative to its parent's descriptor, and the file with ``O_NOFOLLOW``: no component can be a
  symbolic link, so the file read is the one inside the root, whatever was swapped meanwhile;
- ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for a writer, and
  ``fstat`` on the open descriptor then refuses anything that is not a regular file (FIFO,
  socket, device, folder);
- at most ``max_bytes + 1`` bytes are read, so a file that grows past the cap after ``fstat``
  (or a device that never ends) cannot exhaust memory.
"""

from __future__ import annotations

import errno
import os
import stat

from outpost.errors import LoadError
from outpost.ingest.discover import NAMED_LINK, SourceFile, file_kind

__all__ = ["MB", "read_regular_file"]

MB = 1024 * 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
_MIN_READ = 64 * 1024


def _open_error(item: SourceFile, parent_fd: int, name: str, exc: OSError) -> LoadError:
    """A clear reason for a failed open: what the entry turned out to be, if not a plain error."""
    try:
        mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        return LoadError(item.key, NAMED_LINK)
    if mode and not stat.S_ISREG(mode):
        return LoadError(item.key, f"{file_kind(mode)}, not a regular file")
    return LoadError(item.key, f"cannot read file: {exc.strerror or exc}")


def _open_beneath(item: SourceFile) -> int:
    """A descriptor for ``item`` reached from its root without following any symbolic link."""
    *folders, name = item.key.split("/") if item.root is not None else [item.path.name]
    if any(part in ("", ".", "..") for part in (*folders, name)):
        raise LoadError(item.key, "not a plain relative path below the ingest root")
    fd = os.open(item.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for folder in folders:
            try:
                child = os.open(folder, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise LoadError(item.key, f"folder {folder!r} on its path is not a real folder (a link?)") from exc
                raise LoadError(item.key, f"cannot read file: {exc.strerror or exc}") from exc
            os.close(fd)
            fd = child
        try:
            return os.open(name, _FILE_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise _open_error(item, fd, name, exc) from exc
    finally:
        os.close(fd)


def _read_capped(fd: int, size_hint: int, max_bytes: int, key: str) -> bytes:
    """Up to ``max_bytes`` bytes; one read for a file whose size ``fstat`` told, more if it grew."""
    parts: list[bytes] = []
    total = 0
    while total <= max_bytes:
        want = min(max(size_hint + 1 - total, _MIN_READ), max_bytes + 1 - total)
        chunk = os.read(fd, want)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    if total > max_bytes:
        raise _too_large(key, max_bytes)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_large(key: str, max_bytes: int) -> LoadError:
    return LoadError(key, f"larger than the {max_bytes / MB:g} MB limit (setting max_file_mb); skipped")


def read_regular_file(item: SourceFile, max_bytes: int) -> bytes:
    """The bytes of ``item``, or a ``LoadError`` that names the file and the reason.

    Example::

        data = read_regular_file(SourceFile(root / "a.md", "a.md", root), 200 * MB)
    """
    if item.problem:
        raise LoadError(item.key, item.problem)
    try:
        fd = _open_beneath(item)
    except OSError as exc:  # the root itself vanished or cannot be opened
        raise LoadError(item.key, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LoadError(item.key, f"{file_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise _too_large(item.key, max_bytes)
        return _read_capped(fd, info.st_size, max_bytes, item.key)
    except OSError as exc:
        raise LoadError(item.key, f"cannot read file: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
