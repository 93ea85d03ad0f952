"""File loaders: bytes of one file → ``Document`` (title + ordered ``Block``s).

One module per format; each exposes ``extract(data: bytes, name: str) -> tuple[str, list[Block]]``
(title, blocks) and raises ``LoadError`` (via ``fail``) on content it cannot read. This module
picks the loader by suffix, hashes the bytes and builds the ``Document``; loaders stay pure
functions of the bytes, so they can run anywhere (a Ray worker included).

Which loader reads which suffix is the ``outpost.loaders`` entry-point group (``outpost.plugins``): the
built-in formats register there through :func:`register_builtins`, exactly as a plugin adds a format::

    def register_loaders(register):
        register("toy", [".toy"], extract)
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from outpost.errors import LoadError, UnsupportedFileError
from outpost.names import check_name, is_valid_name, shown
from outpost.plugins import Group
from outpost.records import Block, Document

__all__ = ["LOADERS", "Loader", "load_bytes", "load_file", "loaders", "preload", "register_builtins", "supported"]

Extractor = Callable[[bytes, str], tuple[str, list[Block]]]


@dataclass(frozen=True)
class Loader:
    """What reads one suffix: the document ``kind`` it yields and its ``extract`` function."""

    kind: str
    extract: Extractor


class _Builtin:
    """A built-in format's ``extract``, imported on first use: a user ingesting Markdown never pays for pypdf."""

    def __init__(self, module: str) -> None:
        self.module = module

    def load(self) -> Extractor:
        mod = importlib.import_module(f"{__name__}.{self.module}")
        return mod.extract  # type: ignore[no-any-return]

    def __call__(self, data: bytes, name: str) -> tuple[str, list[Block]]:
        return self.load()(data, name)


# kind, module inside this package, suffixes
_BUILTINS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("pdf", "pdf", (".pdf",)),
    ("docx", "docx", (".docx",)),
    ("html", "html", (".html", ".htm")),
    ("markdown", "markdown", (".md", ".markdown")),
    ("text", "text", (".txt", ".text", ".rst")),
    ("csv", "csv", (".csv", ".tsv")),
    ("json", "json", (".json", ".jsonl")),
)


def register_builtins(register: Callable[..., None]) -> None:
    """The built-in formats, registered like any plugin's (``outpost.loaders`` entry point ``builtin``)."""
    for kind, module, suffixes in _BUILTINS:
        register(kind, suffixes, _Builtin(module))


def _entries(kind: str, suffixes: Iterable[str], extract: Extractor) -> list[tuple[str, Loader]]:
    """A plugin's ``register(kind, suffixes, extract)``, checked: one table entry per suffix (lower case)."""
    check_name(kind, "loader kind")
    if not callable(extract):
        raise TypeError(f"loader {kind!r}: extract must be a function (data: bytes, name: str) -> (title, blocks)")
    if isinstance(suffixes, str):
        raise TypeError(f"loader {kind!r}: suffixes must be a list such as ['.{kind}'], not one string")
    loader = Loader(kind, extract)
    found = []
    for suffix in suffixes:
        ok = isinstance(suffix, str) and suffix.startswith(".") and "." not in suffix[1:] and is_valid_name(suffix[1:])
        if not ok:  # what Path.suffix can return: one dot, then a name
            raise ValueError(f"loader {kind!r}: suffix {shown(suffix)} must look like '.{kind}'")
        found.append((suffix.lower(), loader))
    return found


LOADERS: Group[Loader] = Group("outpost.loaders", "loader for suffix", _entries, register_builtins)


def loaders() -> dict[str, Loader]:
    """Suffix (``.pdf``) → loader, built-ins and plugins alike."""
    return LOADERS.table()


def supported(path: Path) -> bool:
    return LOADERS.get(path.suffix.lower()) is not None


def preload(key: str) -> None:
    """Import the loader for ``key``'s suffix now (the parse worker does it before its clock starts)."""
    loader = LOADERS.get(Path(key).suffix.lower())
    if loader is not None and isinstance(loader.extract, _Builtin):
        loader.extract.load()


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
    loader = LOADERS.get(suffix)
    if loader is None:
        raise UnsupportedFileError(key, f"unsupported file type {suffix or '(no suffix)'!r}")
    kind = loader.kind
    try:
        title, blocks = loader.extract(data, key)
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
