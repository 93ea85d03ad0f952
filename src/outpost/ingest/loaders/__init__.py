"""File loaders: bytes of one file → ``Document`` (title + ordered ``Block``s).

One module per format; each exposes ``extract(data: bytes, name: str) -> tuple[str, list[Block]]``
(title, blocks) and raises ``LoadError`` (via ``fail``) on content it cannot read. This module
picks the loader by suffix, hashes the bytes and builds the ``Document``; loaders stay pure
functions of the bytes, so they can run anywhere (a Ray worker included).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from outpost.errors import LoadError, UnsupportedFileError
from outpost.records import Block, Document

__all__ = ["SUFFIXES", "load_bytes", "load_file", "supported"]

Extractor = Callable[[bytes, str], tuple[str, list[Block]]]

# suffix → (kind, module name inside this package)
SUFFIXES: dict[str, tuple[str, str]] = {
    ".pdf": ("pdf", "pdf"),
    ".docx": ("docx", "docx"),
    ".html": ("html", "html"),
    ".htm": ("html", "html"),
    ".md": ("markdown", "markdown"),
    ".markdown": ("markdown", "markdown"),
    ".txt": ("text", "text"),
    ".text": ("text", "text"),
    ".rst": ("text", "text"),
    ".csv": ("csv", "csv"),
    ".tsv": ("csv", "csv"),
    ".json": ("json", "json"),
    ".jsonl": ("json", "json"),
}


def supported(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def _extractor(module: str) -> Extractor:
    """Import a loader module lazily: a user ingesting Markdown never pays for the PDF parser."""
    import importlib

    mod = importlib.import_module(f"{__name__}.{module}")
    return mod.extract  # type: ignore[no-any-return]


def load_bytes(data: bytes, key: str) -> Document:
    """Load a file's bytes; ``key`` (its relative POSIX path) picks the format by suffix."""
    suffix = Path(key).suffix.lower()
    if suffix not in SUFFIXES:
        raise UnsupportedFileError(key, f"unsupported file type {suffix or '(no suffix)'!r}")
    kind, module = SUFFIXES[suffix]
    try:
        title, blocks = _extractor(module)(data, key)
    except LoadError:
        raise
    except Exception as exc:  # a parser's own exception on malformed input
        raise LoadError(key, f"cannot read {kind}: {type(exc).__name__}: {exc}") from exc
    blocks = [b for b in blocks if b.text.strip()]
    if not blocks:
        raise LoadError(key, f"no text found in {kind} file")
    return Document(
        key=key,
        sha256=hashlib.sha256(data).hexdigest(),
        title=title or Path(key).stem,
        kind=kind,
        blocks=tuple(blocks),
        size=len(data),
    )


def load_file(path: Path, key: str) -> Document:
    """Read and load one file; an OS error becomes a ``LoadError`` naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(key, f"cannot read file: {exc.strerror or exc}") from exc
    return load_bytes(data, key)


def fail(name: str, reason: str) -> LoadError:
    """Helper for loaders: ``raise fail(name, "...")``."""
    return LoadError(name, reason)
