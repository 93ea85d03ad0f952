"""The hub's home: signing key, metadata database, collections (stores) and packs.

::

    $OUTPOST_HOME/hub/
      signing-key.pem          Ed25519 private key (0600); its public half is what clients pin
      hub.sqlite               tokens, their scopes, published versions, feedback, adapters
      collections/<name>/      one Store per collection (the current version)
      packs/<name>/            delta-<v-1>-<v> per published version, snapshots and squashed deltas on demand

``hub.sqlite`` opens through numbered migrations (``PRAGMA user_version``). Requests only read it
(token lookups run in a read transaction, which in WAL mode never waits for a writer), so a long
write elsewhere cannot make an authenticated request fail; writes are short and wait up to
``BUSY_TIMEOUT`` seconds for each other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from outpost.db import open_db
from outpost.errors import ConfigError
from outpost.home import ensure_private_dir
from outpost.packs.signing import generate_key, load_private_key, public_key_text

__all__ = ["HubHome"]

_V1 = """
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (datetime('now')),
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS scopes (
    token_id INTEGER NOT NULL REFERENCES tokens(id),
    kind TEXT NOT NULL CHECK (kind IN ('collection', 'model')),
    name TEXT NOT NULL,
    right TEXT NOT NULL CHECK (right IN ('read', 'write')),
    PRIMARY KEY (token_id, kind, name, right)
);
CREATE TABLE IF NOT EXISTS versions (
    collection TEXT NOT NULL,
    version INTEGER NOT NULL,
    published_at TEXT NOT NULL DEFAULT (datetime('now')),
    chunks INTEGER NOT NULL,
    PRIMARY KEY (collection, version)
);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    token_id INTEGER,
    received_at TEXT NOT NULL DEFAULT (datetime('now')),
    query TEXT,
    query_vector BLOB NOT NULL,
    shown TEXT NOT NULL,
    answer_vote INTEGER,
    source_votes TEXT NOT NULL,
    trained_in INTEGER
);
CREATE TABLE IF NOT EXISTS adapters (
    collection TEXT NOT NULL,
    version INTEGER NOT NULL,
    matrix BLOB NOT NULL,
    dim INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (datetime('now')),
    metrics TEXT NOT NULL,
    published_in INTEGER,
    PRIMARY KEY (collection, version)
);
"""

# v2: a token may upload feedback only with its own ``feedback`` right (DESIGN §8 had read/write only);
# SQLite cannot alter a CHECK constraint, so the scopes table is rebuilt.
_V2 = """
CREATE TABLE scopes_v2 (
    token_id INTEGER NOT NULL REFERENCES tokens(id),
    kind TEXT NOT NULL CHECK (kind IN ('collection', 'model')),
    name TEXT NOT NULL,
    right TEXT NOT NULL CHECK (right IN ('read', 'write', 'feedback')),
    PRIMARY KEY (token_id, kind, name, right)
);
INSERT INTO scopes_v2 SELECT token_id, kind, name, right FROM scopes;
DROP TABLE scopes;
ALTER TABLE scopes_v2 RENAME TO scopes;
CREATE INDEX IF NOT EXISTS feedback_by_collection ON feedback (collection, token_id);
"""

MIGRATIONS = [_V1, _V2]
BUSY_TIMEOUT = 30.0  # seconds a writer waits for another writer's (short) transaction


_SCHEMA_READY: set[Path] = set()


@dataclass(frozen=True)
class HubHome:
    root: Path

    @classmethod
    def at(cls, home: Path) -> HubHome:
        return cls(home / "hub")

    @property
    def key_path(self) -> Path:
        return self.root / "signing-key.pem"

    @property
    def collections_dir(self) -> Path:
        return self.root / "collections"

    @property
    def packs_dir(self) -> Path:
        return self.root / "packs"

    def exists(self) -> bool:
        return self.key_path.is_file()

    def init(self) -> str:
        """Create the hub home and its signing key (once); returns the public key text."""
        if not self.exists():
            ensure_private_dir(self.root)
            generate_key(self.key_path)
        _SCHEMA_READY.discard(self.root)  # a new (or re-created) home always gets its tables
        self.db().close()
        return self.public_key

    def require(self) -> HubHome:
        if not self.exists():
            raise ConfigError(f"No hub at {self.root}: run `outpost hub init` first")
        return self

    @cached_property
    def signing_key(self) -> Ed25519PrivateKey:
        return load_private_key(self.require().key_path)

    @property
    def public_key(self) -> str:
        return public_key_text(self.signing_key)

    def db(self) -> sqlite3.Connection:
        """A new connection (one per thread): WAL, foreign keys, schema migrated once per process."""
        first = self.root not in _SCHEMA_READY  # WAL (kept in the file) and migrations once per process
        # synchronous is per connection, not stored in the file: a version row committed here must survive a
        # power loss, or a version number could be handed out twice (WAL + NORMAL may drop the last commits)
        conn = open_db(
            self.root / "hub.sqlite", MIGRATIONS if first else (), synchronous="FULL", timeout=BUSY_TIMEOUT, wal=first
        )
        _SCHEMA_READY.add(self.root)
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on hub.sqlite (``BEGIN IMMEDIATE``), closed afterwards."""
        with self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent view that never takes, nor waits for, the write lock."""
        with self._transaction("BEGIN DEFERRED") as conn:
            yield conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        conn = self.db()
        try:
            conn.execute(begin)
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
