"""The one SQLite helper: private files, WAL, numbered migrations run once each, all or nothing."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest

from outpost.db import open_db
from outpost.feedback import MIGRATIONS as FEEDBACK_MIGRATIONS
from outpost.feedback import FeedbackQueue

V1 = "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
V2 = "ALTER TABLE notes ADD COLUMN author TEXT; INSERT INTO notes (text, author) VALUES ('added by v2', 'me');"


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_migrations_run_in_order_once_each(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    conn = open_db(path, [V1])
    assert _version(conn) == 1 and conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn.execute("INSERT INTO notes (text) VALUES ('kept')")
    conn.close()
    for _ in range(2):  # the second open finds version 2 and runs nothing: v2's row is there once
        conn = open_db(path, [V1, V2])
        rows = conn.execute("SELECT text, author FROM notes ORDER BY id").fetchall()
        assert _version(conn) == 2 and [tuple(r) for r in rows] == [("kept", None), ("added by v2", "me")]
        conn.close()


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    open_db(path, [V1]).close()
    broken = "ALTER TABLE notes ADD COLUMN author TEXT; INSERT INTO no_such_table VALUES (1);"
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        open_db(path, [V1, broken])
    conn = open_db(path, [V1])
    columns = [r["name"] for r in conn.execute("PRAGMA table_info(notes)")]
    assert _version(conn) == 1 and columns == ["id", "text"]  # the half that ran was rolled back
    conn.close()


def test_a_feedback_queue_from_before_migrations_keeps_its_votes(tmp_path: Path) -> None:
    # feedback.sqlite had no schema version: the table exists and user_version is 0
    old = sqlite3.connect(tmp_path / "feedback.sqlite")
    old.executescript(FEEDBACK_MIGRATIONS[0])
    old.execute(
        "INSERT INTO feedback (id, created_at, collection, query, query_vector, shown) VALUES (?, ?, ?, ?, ?, ?)",
        ("a1", "2026-01-01T00:00:00+00:00", "docs", "q?", np.zeros(4, np.float32).tobytes(), '["c1"]'),
    )
    old.commit()
    old.close()
    queue = FeedbackQueue(tmp_path)
    assert _version(queue.db) == len(FEEDBACK_MIGRATIONS) and [i.id for i in queue.pending("docs")] == []
    assert queue.get("a1").shown == ["c1"]
    queue.close()
