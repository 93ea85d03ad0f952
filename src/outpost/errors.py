"""One exception tree for Outpost; the edges (CLI, HTTP) convert it, the core only raises it.

::

    OutpostError                   anything Outpost raises on purpose; message says how to fix it
    ├── ConfigError                bad settings, home, name or plugin (the user can fix it by changing input)
    ├── NotFoundError              a named thing does not exist (or is not visible to this token)
    │   ├── CollectionNotFoundError  no collection by that name
    │   └── ModelNotFoundError       no embedding or chat model by that name or path (local or on a hub)
    ├── IntegrityError             bytes do not match what was signed or announced (hash, size, signature)
    │   └── PackError              a pack is malformed, tampered with, or signed by another key
    ├── LoadError                  one file could not be read (ingest skips it and goes on)
    │   └── UnsupportedFileError   no loader for this kind of file
    ├── ModelMismatchError         a collection was embedded with another model
    ├── VersionConflictError       a changeset's base is not the store's current version
    ├── CollectionBusyError        another process held the collection's write lock for too long
    ├── StorageError               the local disk or database failed (disk full, I/O error)
    ├── ContextOverflowError       a prompt cannot fit the model's context window
    ├── HubError                   the hub is unreachable or answered with an error
    ├── AuthError                  a missing, unknown or revoked token
    ├── RemoteError                a remote model was unreachable, too slow or failed (answers fall back)
    └── ReadOnlyError              a synced collection was asked to change locally

Pick the class by the failure's *kind*, not by the module raising it: a model missing on a hub is a
``ModelNotFoundError`` (not a missing collection, not a ``HubError``); a downloaded model whose sha256 differs
from its signed manifest is an ``IntegrityError``; a value the user typed or configured is a ``ConfigError``.
Catch a kind with its base (``except NotFoundError``). Plain ``ValueError``/``KeyError``/``RuntimeError`` never
reach a user: the code that can tell what went wrong converts them here.

Each class carries ``exit_code`` (CLI) and ``http_status`` (servers) so the edges stay thin.
"""

from __future__ import annotations

import errno

__all__ = [
    "CollectionNotFoundError",
    "ConfigError",
    "ContextOverflowError",
    "LoadError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "AuthError",
    "CollectionBusyError",
    "HubError",
    "IntegrityError",
    "NotFoundError",
    "OutpostError",
    "PackError",
    "ReadOnlyError",
    "RemoteError",
    "StorageError",
    "UnsupportedFileError",
    "VersionConflictError",
]


class OutpostError(Exception):
    """Base of every deliberate Outpost error."""

    exit_code = 1
    http_status = 500


class ConfigError(OutpostError):
    exit_code = 2
    http_status = 400


class LoadError(OutpostError):
    """A file could not be loaded; ``path`` says which."""

    http_status = 422

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnsupportedFileError(LoadError):
    pass


class NotFoundError(OutpostError):
    """A named thing (collection, model, remote, token, vote) does not exist, or this caller may not see it."""

    exit_code = 3
    http_status = 404


class CollectionNotFoundError(NotFoundError):
    exit_code = 3
    http_status = 404

    def __init__(self, name: str) -> None:
        super().__init__(
            f"No collection named {name!r}: run `outpost collections` to list them, "
            f"or `outpost ingest PATH --collection {name}` to create it"
        )
        self.name = name


class ModelMismatchError(OutpostError):
    exit_code = 4
    http_status = 409


class VersionConflictError(OutpostError):
    exit_code = 5
    http_status = 409


class ModelNotFoundError(NotFoundError):
    exit_code = 6
    http_status = 404


class ContextOverflowError(OutpostError):
    exit_code = 7
    http_status = 400


class IntegrityError(OutpostError):
    """Bytes that do not match what was signed or announced: a hash, a size, a signature. Never retried blindly."""

    exit_code = 8
    http_status = 422


class PackError(IntegrityError):
    exit_code = 8
    http_status = 422


class HubError(OutpostError):
    exit_code = 9
    http_status = 503


class AuthError(OutpostError):
    exit_code = 10
    http_status = 401


class ReadOnlyError(OutpostError):
    exit_code = 11
    http_status = 409


class CollectionBusyError(OutpostError):
    exit_code = 12
    http_status = 409


class StorageError(OutpostError):
    """The disk or a database file failed under Outpost (no space, an I/O error): not the data's fault."""

    exit_code = 13
    http_status = 507

    @classmethod
    def during(cls, doing: str, exc: BaseException) -> StorageError:
        """``exc`` (an OSError or sqlite3.Error) while ``doing`` something, said with what to do about it."""
        text = str(exc) or type(exc).__name__
        full = getattr(exc, "errno", None) == errno.ENOSPC or "full" in text.lower()  # ENOSPC; SQLITE_FULL
        hint = "free some disk space and try again" if full else "check the disk and try again"
        return cls(f"{doing} failed: {text} ({hint}); nothing was changed")


class RemoteError(OutpostError):
    """A remote model (``outpost remote``) was unreachable, too slow, or answered with an error."""

    exit_code = 14
    http_status = 502
