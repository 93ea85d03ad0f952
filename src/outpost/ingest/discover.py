"""Find the files an ingest covers and give each its document key.

The key is the path relative to the ingest root, POSIX style: a directory argument is its own
root; a file argument's root is its parent. Hidden files and folders (``.git``, ``.DS_Store``) are
skipped silently; unsupported files are returned too, so the caller can report each one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from outpost.errors import ConfigError

__all__ = ["SourceFile", "discover"]


@dataclass(frozen=True)
class SourceFile:
    path: Path
    key: str


def _walk(root: Path) -> list[Path]:
    files: list[Path] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(folder) / n for n in sorted(names) if not n.startswith(".")]
    return files


def discover(paths: list[Path]) -> list[SourceFile]:
    """All files under ``paths`` with their keys; a missing path or a key collision is an error."""
    found: dict[str, SourceFile] = {}
    for raw in paths:
        path = raw.expanduser()
        if path.is_dir():
            items = [SourceFile(p, p.relative_to(path).as_posix()) for p in _walk(path)]
        elif path.is_file():
            items = [SourceFile(path, path.name)]
        else:
            raise ConfigError(f"No such file or directory: {raw}")
        for item in items:
            other = found.get(item.key)
            if other is not None and other.path.resolve() != item.path.resolve():
                raise ConfigError(
                    f"Two files map to the same document key {item.key!r}: {other.path} and {item.path}. "
                    "Ingest them into separate collections or separate calls."
                )
            found[item.key] = item
    return list(found.values())
