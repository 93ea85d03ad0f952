"""One way to open an Outpost SQLite file: private, WAL, and brought up to date by numbered migrations.

Every database (a collection's ``store.sqlite``, ``feedback.sqlite``, the hub's ``hub.sqlite``) keeps its schema
version in ``PRAGMA user_version`` and lists its migrations in order: migration ``n`` (1-based) takes the file
from version ``n - 1`` to ``n``. The pending ones run with their version bumps in one write transaction, so a
crash mid-migration leaves the old schema and the next open runs them again, and two processes opening a new
file at once migrate it once. A file already at the newest version is only read (``user_version``), never locked.

    >>> conn = open_db(home / "feedback.sqlite", MIGRATIONS)
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from outpost.home import private_file

__all__ = ["migrate", "open_db"]


def _statements(script: str) -> Iterator[str]:
    """The statements of ``script`` one by one (a trigger's ``BEGIN … END`` stays whole)."""
    statement = ""
    for char in script:
        statement += char
        if char == ";" and sqlite3.complete_statement(statement):
            yield statement
            statement = ""
    if statement.strip():
        yield statement


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Run the migrations past the file's ``user_version`` in one write transaction; returns the version.

    The version is read again once the write lock is held: two processes opening a new file at once both see
    version 0, and the second must find the first one's work done rather than run it again. The statements go
    through ``execute`` one by one, because ``executescript`` would first commit the transaction holding the lock.
    """
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) >= len(migrations):
        return len(migrations)  # up to date: no lock taken
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for number, script in enumerate(migrations[current:], start=current + 1):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a statement failed: undo every part that ran
            conn.execute("ROLLBACK")
        raise
    return max(current, len(migrations))


def _set_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch a file to WAL, waiting for other openers: the switch needs an exclusive lock, and SQLite may answer
    "database is locked" at once instead of waiting (two processes creating one collection at the same time)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def open_db(
    path: Path,
    migrations: Sequence[str] = (),
    *,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    timeout: float = 30.0,
    wal: bool = True,
    new_file_pragmas: Sequence[str] = (),
    functions: Mapping[str, Callable[[Any], Any]] | None = None,
) -> sqlite3.Connection:
    """A connection to ``path`` (created 0600 first, so its ``-wal`` and ``-shm`` are private too), migrated.

    Autocommit mode (``isolation_level=None``: callers say ``BEGIN`` themselves), rows as ``sqlite3.Row``, usable
    from any thread (callers that share it hold their own lock). ``wal`` sets WAL mode, which the file keeps: a
    process that opens many connections needs it only on the first. ``synchronous`` is per connection: FULL where
    losing the last commit on power loss is not acceptable (the hub's version numbers). ``new_file_pragmas`` (page
    size, auto-vacuum) run first, and only on a new (empty) file: they shape it only while it has no page yet (switching
    to WAL writes the first one). ``functions`` (name → one-argument, deterministic Python function) are registered
    before anything else runs, migrations included: a schema whose views call them is unreadable without them.
    """
    file = private_file(path)
    empty = file.stat().st_size == 0
    conn = sqlite3.connect(file, isolation_level=None, check_same_thread=False, timeout=timeout)
    conn.row_factory = sqlite3.Row
    for name, function in (functions or {}).items():
        conn.create_function(name, 1, function, deterministic=True)
    for pragma in new_file_pragmas if empty else ():  # on a file in use, setting auto_vacuum rewrites its header
        conn.execute(pragma)
    if wal:
        _set_wal(conn, timeout)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    migrate(conn, migrations)
    return conn
