"""The routing audit: every answering decision, local or remote, on record in ``$OUTPOST_HOME/audit.sqlite``.

One row per answer, written when the route is decided (so a reply nobody read to the end is still on
record) and completed with token counts and cost when generation ends. The question is stored as its
sha256; its text only with ``routing.log_questions``. ``chunks_sent`` lists exactly the chunk ids that
went to a remote (empty for a local answer): the record an auditor checks against the labels.

    >>> log = AuditLog(home)
    >>> for row in log.entries(since="2026-12-01"): print(row.route, row.reason)
    >>> log.usage("2026-12")          # tokens local vs remote, cost, and what local answering saved
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from outpost.db import open_db
from outpost.home import ensure_private_dir

__all__ = ["AuditEntry", "AuditLog", "Usage", "question_hash"]

MIGRATIONS = [
    """
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,                    -- UTC, ISO 8601, seconds
        answer_id TEXT NOT NULL,             -- the feedback id of the answer
        question_sha256 TEXT NOT NULL,
        question TEXT,                       -- only with routing.log_questions
        mode TEXT NOT NULL,                  -- the policy's mode: local | auto | remote
        route TEXT NOT NULL,                 -- local | remote | fallback (local after the remote failed)
        remote TEXT,                         -- the remote chosen (or tried), if any
        model TEXT NOT NULL,                 -- what generated the answer
        reason TEXT NOT NULL,
        collections TEXT NOT NULL,           -- JSON {name: label} of the collections touched
        chunks_sent TEXT NOT NULL,           -- JSON list of chunk ids sent to the remote ([] if none)
        tokens_in INTEGER NOT NULL DEFAULT 0,
        tokens_out INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,    -- estimated at the remote's configured prices
        saved_usd REAL NOT NULL DEFAULT 0    -- local answers: what the configured remote would have charged
    );
    CREATE INDEX decisions_at ON decisions (at);
    """,
]


def question_hash(question: str) -> str:
    return hashlib.sha256(question.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class AuditEntry:
    answer_id: str
    question_sha256: str
    mode: str
    route: str
    model: str
    reason: str
    collections: dict[str, str]
    chunks_sent: list[str] = field(default_factory=list)
    remote: str | None = None
    question: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0
    at: str = field(default_factory=_now)
    id: int = 0


@dataclass
class Usage:
    """Totals over a period: what ``outpost usage`` prints."""

    period: str
    answers_local: int = 0
    answers_remote: int = 0
    fallbacks: int = 0
    tokens_local_in: int = 0
    tokens_local_out: int = 0
    tokens_remote_in: int = 0
    tokens_remote_out: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0


class AuditLog:
    """``audit.sqlite``, opened like every Outpost database (``outpost.db``); thread-safe behind one lock."""

    def __init__(self, home: Path) -> None:
        self.path = home / "audit.sqlite"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """The one connection (``outpost.db``: 0600, WAL, migrated), opened on first use, one caller at a time."""
        with self._lock:
            if self._conn is None:
                ensure_private_dir(self.path.parent)
                self._conn = open_db(self.path, MIGRATIONS, timeout=30)
            yield self._conn  # autocommit: each statement below is its own transaction

    def record(self, entry: AuditEntry) -> int:
        """Insert the decision; returns its row id (for :meth:`finish`)."""
        row = {k: v for k, v in entry.__dict__.items() if k != "id"}
        row["collections"] = json.dumps(entry.collections, sort_keys=True)
        row["chunks_sent"] = json.dumps(entry.chunks_sent)
        names, marks = ", ".join(row), ", ".join("?" * len(row))
        with self._db() as db:
            cur = db.execute(f"INSERT INTO decisions ({names}) VALUES ({marks})", list(row.values()))
            entry.id = int(cur.lastrowid or 0)
        return entry.id

    def finish(self, row_id: int, tokens_in: int, tokens_out: int, cost_usd: float, saved_usd: float) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE decisions SET tokens_in = ?, tokens_out = ?, cost_usd = ?, saved_usd = ? WHERE id = ?",
                (tokens_in, tokens_out, cost_usd, saved_usd, row_id),
            )

    def entries(self, since: str | None = None) -> list[AuditEntry]:
        """Decisions at or after ``since`` (an ISO date or time, UTC), oldest first."""
        if not self.path.is_file():
            return []
        with self._db() as db:
            rows = db.execute("SELECT * FROM decisions WHERE at >= ? ORDER BY id", (since or "",)).fetchall()
        return [_entry(row) for row in rows]

    def usage(self, month: str | None = None) -> Usage:
        """Totals for ``month`` (``YYYY-MM``; default: all time)."""
        total = Usage(month or "all time")
        for e in self.entries(month):
            if month and not e.at.startswith(month):
                continue
            remote = e.route == "remote"
            total.answers_remote += remote
            total.answers_local += not remote
            total.fallbacks += e.route == "fallback"
            if remote:
                total.tokens_remote_in += e.tokens_in
                total.tokens_remote_out += e.tokens_out
            else:
                total.tokens_local_in += e.tokens_in
                total.tokens_local_out += e.tokens_out
            total.cost_usd += e.cost_usd
            total.saved_usd += e.saved_usd
        return total


def _entry(row: sqlite3.Row) -> AuditEntry:
    values: dict[str, Any] = dict(row)
    values["collections"] = json.loads(values["collections"])
    values["chunks_sent"] = json.loads(values["chunks_sent"])
    return AuditEntry(**values)
