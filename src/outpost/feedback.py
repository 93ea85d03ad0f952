"""The outgoing feedback queue: votes on answers and on their sources, kept until a hub takes them.

Each answer Outpost gives is recorded with an id, its collection, the query vector (raw, before
any adapter) and the chunk ids that were shown; a vote fills in helpful / not helpful for the answer
and per source. Votes wait in ``$OUTPOST_HOME/feedback.sqlite`` (survives restarts) until ``outpost
sync`` uploads them; the hub keys them by id, so a retried upload never counts twice. The query
text leaves the machine only if ``share_query_text`` is on.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from outpost.db import open_db
from outpost.errors import ConfigError, NotFoundError
from outpost.home import ensure_private_dir

__all__ = ["FeedbackItem", "FeedbackQueue"]

# Numbered migrations (outpost.db). The first creates the table only if missing: queues from before
# migrations (user_version 0) already have it.
MIGRATIONS: list[str] = [
    """
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    collection TEXT NOT NULL,
    query TEXT NOT NULL,
    query_vector BLOB NOT NULL,
    shown TEXT NOT NULL,              -- JSON list of chunk ids, in the order numbered [1], [2], ...
    answer_vote INTEGER,              -- 1 helpful, 0 not helpful, NULL no vote
    source_votes TEXT NOT NULL DEFAULT '{}',  -- JSON {chunk id: 1 | 0}
    voted_at TEXT,
    uploaded_at TEXT
);
""",
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class FeedbackItem:
    id: str
    created_at: str
    collection: str
    query: str
    query_vector: np.ndarray
    shown: list[str]
    answer_vote: int | None
    source_votes: dict[str, int]
    voted_at: str | None
    uploaded_at: str | None

    def payload(self, share_text: bool) -> dict[str, Any]:
        """What the hub receives: vectors and ids, the text only when the user allows it."""
        return {
            "id": self.id,
            "query_vector": self.query_vector.astype(np.float32).tolist(),
            "query": self.query if share_text else None,
            "shown": self.shown,
            "answer_vote": self.answer_vote,
            "source_votes": self.source_votes,
        }


class FeedbackQueue:
    def __init__(self, home: Path) -> None:
        ensure_private_dir(home)
        self.db = open_db(home / "feedback.sqlite", MIGRATIONS, synchronous="FULL")  # a vote is the user's word

    def close(self) -> None:
        self.db.close()

    def record(self, collection: str, query: str, query_vector: np.ndarray, shown: list[str]) -> str:
        """Remember an answer that was shown, so it can be voted on later; returns its id."""
        item_id = uuid.uuid4().hex
        self.db.execute(
            "INSERT INTO feedback (id, created_at, collection, query, query_vector, shown) VALUES (?, ?, ?, ?, ?, ?)",
            (item_id, _now(), collection, query, np.asarray(query_vector, np.float32).tobytes(), json.dumps(shown)),
        )
        return item_id

    def vote(self, item_id: str, helpful: bool | None = None, sources: dict[int, bool] | None = None) -> FeedbackItem:
        """Vote on an answer (``helpful``) and/or on its sources by number ([1] is 1)."""
        item = self.get(item_id)
        votes = dict(item.source_votes)
        for number, good in (sources or {}).items():
            if not 1 <= number <= len(item.shown):
                raise ConfigError(f"Answer {item_id} showed {len(item.shown)} sources; there is no [{number}]")
            votes[item.shown[number - 1]] = int(good)
        answer = item.answer_vote if helpful is None else int(helpful)
        self.db.execute(
            "UPDATE feedback SET answer_vote = ?, source_votes = ?, voted_at = ?, uploaded_at = NULL WHERE id = ?",
            (answer, json.dumps(votes), _now(), item.id),
        )
        return self.get(item.id)

    def get(self, item_id: str) -> FeedbackItem:
        rows = self.db.execute("SELECT * FROM feedback WHERE id LIKE ?", (item_id + "%",)).fetchall()
        if len(rows) != 1:
            raise NotFoundError(f"No single answer with id {item_id!r}: see `outpost feedback --all`")
        return _item(rows[0])

    def pending(self, collection: str | None = None) -> list[FeedbackItem]:
        """Voted items not yet uploaded (oldest first)."""
        sql = "SELECT * FROM feedback WHERE voted_at IS NOT NULL AND uploaded_at IS NULL"
        args: tuple[str, ...] = ()
        if collection:
            sql, args = sql + " AND collection = ?", (collection,)
        return [_item(r) for r in self.db.execute(sql + " ORDER BY created_at", args)]

    def all(self) -> list[FeedbackItem]:
        return [_item(r) for r in self.db.execute("SELECT * FROM feedback ORDER BY created_at")]

    def mark_uploaded(self, ids: list[str]) -> None:
        self.db.executemany("UPDATE feedback SET uploaded_at = ? WHERE id = ?", [(_now(), i) for i in ids])


def _item(row: sqlite3.Row) -> FeedbackItem:
    return FeedbackItem(
        id=row["id"],
        created_at=row["created_at"],
        collection=row["collection"],
        query=row["query"],
        query_vector=np.frombuffer(row["query_vector"], dtype=np.float32),
        shown=json.loads(row["shown"]),
        answer_vote=row["answer_vote"],
        source_votes=json.loads(row["source_votes"]),
        voted_at=row["voted_at"],
        uploaded_at=row["uploaded_at"],
    )
