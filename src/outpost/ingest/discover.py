"""Find the files an ingest covers and give each its document key.

The key is the path relative to the ingest root, POSIX style: a directory argument is its own
root; a file argument's root is its parent. Hidden files and folders (``.git``, ``.DS_Store``) are
skipped silently; unsupported files are returned too, so the caller can report each one.

The folder may be hostile (a shared drive, a hub's docs folder that many people write to), so
discovery only *classifies*; nothing here opens a file (``fileread.read_regular_file`` does, and
re-checks everything, because a file can be swapped between walk and open):

- **Symbolic links are never followed**, to files or to folders. One that leads outside the root
  (``docs/key.pem -> ~/.local/share/outpost/hub/signing-key.pem``), a broken one and a loop are
  reported against their own key. One that stays inside the root is skipped quietly: its target
  is ingested under its own path anyway, and following it would only index the same text twice
  under two keys. Never following also means a folder loop (``sub/up -> ..``) cannot make the
  walk run forever.
- FIFOs, sockets and devices are reported ("a FIFO (named pipe), not a regular file"): reading a
  FIFO blocks forever and ``/dev/zero`` never ends.
- A folder that cannot be listed is reported, not silently dropped.

A symlink named on the command line is not followed either (``outpost hub ingest docs/*``
expands whatever an attacker planted in ``docs/``); the root folder itself may be a link, since
the user chose it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from outpost.errors import ConfigError

__all__ = ["NAMED_LINK", "SourceFile", "discover", "file_kind"]

log = logging.getLogger(__name__)

NAMED_LINK = "symbolic link; links are not followed (name the file it points to instead)"


@dataclass(frozen=True)
class SourceFile:
    """One entry to ingest: ``path`` is ``root / key``; ``problem`` says why it will not be read.

    ``root`` defaults to the file's own folder (a file named on its own).
    """

    path: Path
    key: str
    root: Path | None = None
    problem: str | None = None

    @property
    def base(self) -> Path:
        """The folder the file must stay inside: reads are resolved from here, never above it."""
        return self.root if self.root is not None else self.path.parent


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a folder"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, for error messages ("a FIFO (named pipe)")."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _symlink_problem(link: Path, root_real: Path) -> str | None:
    """Why a symbolic link is reported, or ``None`` for a link that stays inside the root.

    ``realpath`` (non-strict) resolves loops without raising; the target is only stat'ed, never
    opened, so a link to a FIFO or ``/dev/zero`` cannot block here.
    """
    target = Path(os.path.realpath(link))
    try:
        target_is_dir = target.is_dir()
        exists = target_is_dir or target.exists()
    except OSError:
        exists, target_is_dir = False, False
    if not exists:
        return "broken symbolic link or link loop; not followed"
    if not target.is_relative_to(root_real):
        what = "folder" if target_is_dir else "file"
        return f"symbolic link to a {what} outside the ingest root; links are not followed"
    return None


def _special_problem(entry: os.DirEntry[str]) -> str | None:
    """A FIFO, socket or device found while walking; ``None`` for a regular file."""
    if entry.is_file(follow_symlinks=False):
        return None
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError as exc:
        return f"cannot stat file: {exc.strerror or exc}"
    return _mode_problem(mode)


def _mode_problem(mode: int) -> str | None:
    """Why an entry of this mode is not read (``None``: a regular file, read it)."""
    if stat.S_ISREG(mode):
        return None
    return NAMED_LINK if stat.S_ISLNK(mode) else f"{file_kind(mode)}, not a regular file"


def _list(folder: str) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _walk(root: Path) -> Iterator[tuple[Path, str | None]]:
    """(path, problem) for every non-hidden, non-folder entry under ``root``, depth first, sorted.

    Iterative (no recursion limit on deep trees) and never descends through a link.
    """
    root_real = Path(os.path.realpath(root))
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = _list(folder)
        except OSError as exc:
            if folder == str(root):
                raise ConfigError(f"Cannot list {root}: {exc.strerror or exc}") from exc
            yield Path(folder), f"cannot list folder: {exc.strerror or exc}"
            continue
        subfolders: list[str] = []
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                problem = _symlink_problem(path, root_real)
                if problem is None:
                    log.info("skipping %s: a symbolic link inside the ingest root (its target is ingested)", path)
                    continue
                yield path, problem
            elif entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.path)
            else:
                yield path, _special_problem(entry)
        stack.extend(reversed(subfolders))


def _items(path: Path) -> list[SourceFile]:
    """The entries one command-line argument stands for."""
    if path.is_dir():
        return [SourceFile(p, p.relative_to(path).as_posix(), path, problem) for p, problem in _walk(path)]
    try:
        mode = path.lstat().st_mode
    except OSError:
        raise ConfigError(f"No such file or directory: {path}") from None
    return [SourceFile(path, path.name, path.parent, _mode_problem(mode))]


def _same_file(a: Path, b: Path) -> bool:
    """Whether two found paths are one file (``realpath``: ``Path.resolve`` raises on a link loop)."""
    return os.path.realpath(a) == os.path.realpath(b)


def discover(paths: list[Path]) -> list[SourceFile]:
    """All files under ``paths`` with their keys; a missing path or a key collision is an error."""
    found: dict[str, SourceFile] = {}
    for raw in paths:
        for item in _items(raw.expanduser()):
            other = found.get(item.key)
            if other is not None and not _same_file(other.path, item.path):
                raise ConfigError(
                    f"Two files map to the same document key {item.key!r}: {other.path} and {item.path}. "
                    "Ingest them into separate collections or separate calls."
                )
            found[item.key] = item
    return list(found.values())
