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

__all__ = ["SUFFIXES", "load_bytes", "load_file", "preload", "supported"]

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


def preload(key: str) -> None:
    """Import the loader for ``key``'s suffix now (the parse worker does it before its clock starts)."""
    entry = SUFFIXES.get(Path(key).suffix.lower())
    if entry is not None:
        _extractor(entry[1])


def _parser_failure(key: str, kind: str, exc: Exception) -> LoadError:
    """A parser's own exception on malformed input, said in words where the type alone is cryptic."""
    if isinstance(exc, RecursionError):
        return LoadError(key, f"cannot read {kind}: nested too deeply")
    if isinstance(exc, MemoryError):
        return LoadError(key, f"cannot read {kind}: ran out of memory while parsing")
    return LoadError(key, f"cannot read {kind}: {type(exc).__name__}: {exc}")


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
    except Exception as exc:
        raise _parser_failure(key, kind, exc) from exc
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


def load_file(path: Path, key: str, max_bytes: int | None = None) -> Document:
    """Read one file the way ingest does (a regular file only, no link followed, at most
    ``max_bytes``: default the configured cap) and load it; failures name ``key``."""
    from outpost.ingest.discover import SourceFile
    from outpost.ingest.fileread import read_regular_file
    from outpost.ingest.limits import ReadLimits

    cap = max_bytes if max_bytes is not None else ReadLimits.default().max_bytes
    try:
        data = read_regular_file(SourceFile(path, path.name), cap)
    except LoadError as exc:
        raise LoadError(key, exc.reason) from exc
    return load_bytes(data, key)


def fail(name: str, reason: str) -> LoadError:
    """Helper for loaders: ``raise fail(name, "...")``."""
    return LoadError(name, reason)
