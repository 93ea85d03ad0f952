"""The hub's metadata — tokens, scopes, versions, feedback, adapters — on SQLite or PostgreSQL, one schema.

Every query the hub runs on its metadata is here, in SQLAlchemy Core, so one code path serves both engines:

- **SQLite** (the embedded default): ``hub.sqlite`` in the hub home, private (0600), WAL, ``synchronous=FULL``
  (a lost commit could hand out a published version number twice). Writes open with ``BEGIN IMMEDIATE`` and wait
  up to ``BUSY_TIMEOUT`` for each other; reads open a deferred transaction, which in WAL mode never waits for a
  writer, so a long write cannot make a request's token check fail. Connections are pooled (a token check costs
  less than opening one; ``benchmarks/hub_metadata.py``); opening a home ``fresh`` (``hub init``) drops the
  old pool, so a re-created home is never written through a connection to a deleted file.
- **PostgreSQL** when ``OUTPOST_HUB_DB=postgresql://…`` (``pip install 'outpost[postgres]'``, driver psycopg 3):
  several ``outpost hub serve`` processes, on one machine or many, share it and one pack folder, so a token made
  on one works on every other. Reads run at ``REPEATABLE READ`` (one consistent view, like SQLite's).

**Schema and migrations.** ``metadata`` below is the one definition of the tables. A new database (either engine)
is created from it and stamped at ``SCHEMA_VERSION``. An older one (or a ``hub.sqlite`` from before numbered
migrations: tables at version 0) is brought forward by the numbered
``MIGRATIONS`` past its version (SQLite: ``PRAGMA user_version``, as before; PostgreSQL: the one-row table
``outpost_schema``), all in one transaction that first takes the database's write lock (SQLite ``BEGIN
IMMEDIATE``, PostgreSQL an advisory lock) and reads the version again, so two processes starting at once
migrate once. Migrations 1 and 2 are the SQL ``hub.sqlite`` went through before PostgreSQL was supported (so
only SQLite files can be older than 2); a later change is one more entry in ``MIGRATIONS``, written in
SQLAlchemy Core so it serves both engines, together with the same change to ``metadata``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from outpost.db import open_db
from outpost.errors import ConfigError, StorageError

__all__ = ["SCHEMA_VERSION", "FeedbackItem", "HubMetadata", "TokenRecord", "metadata", "open_metadata"]

BUSY_TIMEOUT = 30.0  # seconds a SQLite writer waits for another writer's (short) transaction
_MIGRATION_LOCK = 0x6F75_7470  # PostgreSQL advisory lock key held while migrating ("outp")

metadata = sa.MetaData()

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("hash", sa.Text, nullable=False, unique=True),
    sa.Column("admin", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("revoked_at", sa.Text),
)
scopes = sa.Table(
    "scopes",
    metadata,
    sa.Column("token_id", sa.Integer, sa.ForeignKey("tokens.id"), primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("right", sa.Text, primary_key=True),
    sa.CheckConstraint(sa.column("kind").in_(["collection", "model"]), name="scopes_kind"),
    sa.CheckConstraint(sa.column("right").in_(["read", "write", "feedback"]), name="scopes_right"),
)
versions = sa.Table(
    "versions",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("published_at", sa.Text, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("collection", sa.Text, nullable=False),
    sa.Column("token_id", sa.Integer),
    sa.Column("received_at", sa.Text, nullable=False),
    sa.Column("query", sa.Text),
    sa.Column("query_vector", sa.LargeBinary, nullable=False),
    sa.Column("shown", sa.Text, nullable=False),
    sa.Column("answer_vote", sa.Integer),
    sa.Column("source_votes", sa.Text, nullable=False),
    sa.Column("trained_in", sa.Integer),
    sa.Index("feedback_by_collection", "collection", "token_id"),
)
adapters = sa.Table(
    "adapters",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("matrix", sa.LargeBinary, nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("published_in", sa.Integer),
)
schema_table = sa.Table("outpost_schema", sa.MetaData(), sa.Column("version", sa.Integer, nullable=False))

_LEGACY_V1 = """
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, admin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (datetime('now')), revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS scopes (
    token_id INTEGER NOT NULL REFERENCES tokens(id),
    kind TEXT NOT NULL CHECK (kind IN ('collection', 'model')),
    name TEXT NOT NULL,
    right TEXT NOT NULL CHECK (right IN ('read', 'write')),
    PRIMARY KEY (token_id, kind, name, right)
);
CREATE TABLE IF NOT EXISTS versions (
    collection TEXT NOT NULL, version INTEGER NOT NULL, published_at TEXT NOT NULL DEFAULT (datetime('now')),
    chunks INTEGER NOT NULL, PRIMARY KEY (collection, version)
);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY, collection TEXT NOT NULL, token_id INTEGER,
    received_at TEXT NOT NULL DEFAULT (datetime('now')), query TEXT, query_vector BLOB NOT NULL, shown TEXT NOT NULL,
    answer_vote INTEGER, source_votes TEXT NOT NULL, trained_in INTEGER
);
CREATE TABLE IF NOT EXISTS adapters (
    collection TEXT NOT NULL, version INTEGER NOT NULL, matrix BLOB NOT NULL, dim INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (datetime('now')), metrics TEXT NOT NULL, published_in INTEGER,
    PRIMARY KEY (collection, version)
);
"""
# v2: a token may upload feedback only with its own ``feedback`` right; SQLite cannot alter a CHECK constraint,
# so the scopes table is rebuilt.
_LEGACY_V2 = """
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


def _sqlite_only(script: str) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        if conn.dialect.name != "sqlite":  # PostgreSQL databases start at SCHEMA_VERSION (module docstring)
            raise StorageError(f"A {conn.dialect.name} hub database older than version 2 cannot exist")
        for statement in filter(str.strip, script.split(";")):
            conn.exec_driver_sql(statement)

    return run


MIGRATIONS: list[Callable[[Connection], None]] = [_sqlite_only(_LEGACY_V1), _sqlite_only(_LEGACY_V2)]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    admin: bool
    created_at: str
    revoked_at: str | None
    scopes: list[tuple[str, str, str]]  # (kind, name, right)


@dataclass(frozen=True)
class FeedbackItem:
    """One stored vote, as training and fine-tuning read it."""

    id: str
    token_id: int | None
    query: str | None
    query_vector: bytes
    shown: list[str]
    answer_vote: int | None
    source_votes: dict[str, int]


def _now() -> str:
    """UTC, in the format SQLite's ``datetime('now')`` wrote before (rows of both eras sort together)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def timestamp() -> str:
    """Now, as every row here records time: for a time stamped elsewhere first (a publish, into its store)."""
    return _now()


def _insert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which knows ``ON CONFLICT`` (SQLite and PostgreSQL spell it the same way)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite_dialect.insert)(table)


_COUNTS = sa.or_(  # feedback that still counts: the operator's own (no token) and that of tokens not revoked
    feedback.c.token_id.is_(None),
    feedback.c.token_id.in_(sa.select(tokens.c.id).where(tokens.c.revoked_at.is_(None))),
)


class HubMetadata:
    """Transactions and queries on the hub's metadata database (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (SQLite: ``BEGIN IMMEDIATE``)."""
        connect = self.engine.connect
        with _failures(self.engine), connect().execution_options(outpost_write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read transaction: a consistent view that never waits for a SQLite writer."""
        options: dict[str, Any] = {"isolation_level": "REPEATABLE READ"} if self.dialect == "postgresql" else {}
        with _failures(self.engine), self.engine.connect().execution_options(**options) as conn, conn.begin():
            yield conn

    # -- tokens ------------------------------------------------------------------------------

    def create_token(
        self, name: str, token_hash: str, admin: bool, token_scopes: Sequence[tuple[str, str, str]]
    ) -> int:
        with self.write() as conn:
            row = conn.execute(
                tokens.insert().values(name=name, hash=token_hash, admin=int(admin), created_at=_now())
            ).inserted_primary_key
            token_id = int(row[0]) if row else 0
            for kind, scope_name, right in dict.fromkeys(token_scopes):
                conn.execute(
                    _insert(conn, scopes)
                    .values(token_id=token_id, kind=kind, name=scope_name, right=right)
                    .on_conflict_do_nothing()
                )
        return token_id

    def token(self, token_id: int) -> TokenRecord | None:
        with self.read() as conn:
            return _token(conn, token_id)

    def tokens(self) -> list[TokenRecord]:
        with self.read() as conn:
            ids = conn.execute(sa.select(tokens.c.id).order_by(tokens.c.id)).scalars().all()
            return [t for t in (_token(conn, i) for i in ids) if t is not None]

    def live_token(self, token_hash: str) -> TokenRecord | None:
        """The unrevoked token with this hash (``None``: unknown or revoked)."""
        with self.read() as conn:
            query = sa.select(tokens.c.id).where(tokens.c.hash == token_hash, tokens.c.revoked_at.is_(None))
            token_id = conn.execute(query).scalar()
            return None if token_id is None else _token(conn, int(token_id))

    def revoke(self, name_or_id: str) -> list[int]:
        """Revoke every live token named or numbered ``name_or_id``; returns their ids (empty: none)."""
        with self.write() as conn:
            match = sa.or_(tokens.c.name == name_or_id, sa.cast(tokens.c.id, sa.Text) == name_or_id)
            ids = [
                int(i)
                for i in conn.execute(sa.select(tokens.c.id).where(tokens.c.revoked_at.is_(None), match)).scalars()
            ]
            if ids:
                conn.execute(tokens.update().where(tokens.c.id.in_(ids)).values(revoked_at=_now()))
        return ids

    # -- versions ----------------------------------------------------------------------------

    def record_version(self, collection: str, version: int, chunks: int, published_at: str | None = None) -> None:
        """The row of a published version (again: the same values, from the store, leave it as it was)."""
        with self.write() as conn:
            published_at = published_at or _now()
            values = {"collection": collection, "version": version, "chunks": chunks, "published_at": published_at}
            conn.execute(
                _insert(conn, versions)
                .values(**values)
                .on_conflict_do_update(
                    index_elements=[versions.c.collection, versions.c.version],
                    set_={"chunks": chunks, "published_at": values["published_at"]},
                )
            )

    # -- feedback ----------------------------------------------------------------------------

    def add_feedback(self, collection: str, token_id: int | None, items: Sequence[FeedbackItem]) -> int:
        """Store votes keyed by their id; returns how many were new (a retried upload adds none)."""
        accepted = 0
        with self.write() as conn:
            for item in items:
                row = {
                    "id": item.id,
                    "collection": collection,
                    "token_id": token_id,
                    "received_at": _now(),
                    "query": item.query,
                    "query_vector": item.query_vector,
                    "shown": json.dumps(item.shown),
                    "answer_vote": item.answer_vote,
                    "source_votes": json.dumps(item.source_votes),
                }
                # RETURNING says whether the row went in (rowcount is not reliable across drivers here)
                insert = _insert(conn, feedback).values(**row).on_conflict_do_nothing().returning(feedback.c.id)
                accepted += len(conn.execute(insert).all())
        return accepted

    def untrained_count(self, collection: str) -> int:
        query = sa.select(sa.func.count()).where(
            feedback.c.collection == collection, feedback.c.trained_in.is_(None), _COUNTS
        )
        with self.read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def feedback(self, collection: str, counting_only: bool = True, with_query: bool = False) -> list[FeedbackItem]:
        """The collection's votes by id; ``counting_only`` drops revoked tokens', ``with_query`` those without text."""
        query = sa.select(feedback).where(feedback.c.collection == collection).order_by(feedback.c.id)
        if counting_only:
            query = query.where(_COUNTS)
        if with_query:
            query = query.where(feedback.c.query.is_not(None), sa.func.trim(feedback.c.query) != "")
        with self.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            FeedbackItem(
                r["id"],
                r["token_id"],
                r["query"],
                bytes(r["query_vector"]),
                json.loads(r["shown"]),
                r["answer_vote"],
                json.loads(r["source_votes"]),
            )
            for r in rows
        ]

    def mark_trained(self, collection: str, adapter_version: int) -> None:
        with self.write() as conn:
            conn.execute(
                feedback.update()
                .where(feedback.c.collection == collection, feedback.c.trained_in.is_(None))
                .values(trained_in=adapter_version)
            )

    # -- adapters ----------------------------------------------------------------------------

    def next_adapter_version(self, collection: str, at_least: int) -> int:
        """``at_least``, or one past the newest adapter ever stored for the collection (rolled back ones too)."""
        with self.read() as conn:
            newest = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(adapters.c.version), 0)).where(
                    adapters.c.collection == collection
                )
            ).scalar()
        return max(at_least, int(newest or 0) + 1)

    def save_adapter(
        self, collection: str, version: int, matrix: bytes, dim: int, metrics: dict[str, Any], published_in: int
    ) -> None:
        """Record an adapter as published in ``published_in``; a re-published one keeps its original metrics."""
        with self.write() as conn:
            conn.execute(
                _insert(conn, adapters)
                .values(
                    collection=collection,
                    version=version,
                    matrix=matrix,
                    dim=dim,
                    created_at=_now(),
                    metrics=json.dumps(metrics),
                )
                .on_conflict_do_nothing()
            )
            conn.execute(
                adapters.update()
                .where(adapters.c.collection == collection, adapters.c.version == version)
                .values(published_in=published_in)
            )

    def previous_adapter(self, collection: str, before: int) -> tuple[int, bytes, int] | None:
        """(version, matrix bytes, dim) of the newest adapter older than ``before``."""
        query = (
            sa.select(adapters.c.version, adapters.c.matrix, adapters.c.dim)
            .where(adapters.c.collection == collection, adapters.c.version < before)
            .order_by(adapters.c.version.desc())
            .limit(1)
        )
        with self.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else (int(row[0]), bytes(row[1]), int(row[2]))


@contextmanager
def _failures(engine: Engine) -> Iterator[None]:
    """The database failing (unreachable, disk full, locked past the timeout) is one ``StorageError`` that says
    which database, never a driver's traceback; constraint violations stay what they are (the caller's bug)."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        url = engine.url.set(drivername=engine.dialect.name)  # as the user wrote it: postgresql://, not +psycopg
        where = url.render_as_string(hide_password=True) if engine.dialect.name != "sqlite" else None
        if where is None:
            raise StorageError.during(f"The hub's metadata database {engine.url.database}", exc.orig or exc) from exc
        reason = " ".join(str(exc.orig).split())  # one line: drivers' messages span several
        raise StorageError(
            f"The hub's metadata database {where} failed: {reason} (check that it is running and reachable, "
            "or unset OUTPOST_HUB_DB); nothing was changed"
        ) from exc


def _token(conn: Connection, token_id: int) -> TokenRecord | None:
    row = conn.execute(sa.select(tokens).where(tokens.c.id == token_id)).mappings().first()
    if row is None:
        return None
    query = (
        sa.select(scopes.c.kind, scopes.c.name, scopes.c.right)
        .where(scopes.c.token_id == token_id)
        .order_by(scopes.c.kind, scopes.c.name, scopes.c.right)
    )
    found = [(str(k), str(n), str(r)) for k, n, r in conn.execute(query)]
    return TokenRecord(row["id"], row["name"], bool(row["admin"]), row["created_at"], row["revoked_at"], found)


# -- engines and migrations ----------------------------------------------------------------------

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def open_metadata(url: str | None, sqlite_path: Path, fresh: bool = False) -> HubMetadata:
    """The metadata database at ``url`` (``postgresql://…``), else SQLite at ``sqlite_path``; migrated once per
    process (``fresh``: check again, for a hub home that was just created)."""
    key = url or str(sqlite_path)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is not None and fresh:
            engine.dispose()
            engine = None
        if engine is None:
            engine = _postgres_engine(url) if url else _sqlite_engine(sqlite_path)
            _upgrade(engine)
            _ENGINES[key] = engine
    return HubMetadata(engine)


def _postgres_engine(url: str) -> Engine:
    if not url.startswith(("postgresql://", "postgresql+psycopg://")):
        raise ConfigError("OUTPOST_HUB_DB must be a postgresql:// URL (or unset: hub.sqlite in the hub home)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ConfigError("A PostgreSQL hub database needs its driver: pip install 'outpost[postgres]'") from None
    url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return sa.create_engine(url, pool_pre_ping=True)


def _sqlite_engine(path: Path) -> Engine:
    # open_db creates the file private (0600) and switches it to WAL (the file keeps WAL, and the switch needs
    # the retry open_db has); every connection after that only sets its own pragmas.
    open_db(path, (), synchronous="FULL", timeout=BUSY_TIMEOUT).close()
    engine = sa.create_engine(
        f"sqlite:///{path}",
        poolclass=QueuePool,
        pool_size=2,  # idle connections kept (more open under load, then close): tests open many homes per process
        connect_args={"timeout": BUSY_TIMEOUT, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # BEGIN is ours (below): pysqlite's own would defer the write lock
        for pragma in ("synchronous=FULL", "foreign_keys=ON"):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("outpost_write") else "BEGIN")

    return engine


def _version(conn: Connection) -> int:
    if conn.dialect.name == "sqlite":
        return int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
    schema_table.create(conn, checkfirst=True)
    return int(conn.execute(sa.select(sa.func.max(schema_table.c.version))).scalar() or 0)


def _set_version(conn: Connection, version: int) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA user_version = {int(version)}")
    else:
        conn.execute(schema_table.delete())
        conn.execute(schema_table.insert().values(version=version))


def _upgrade(engine: Engine) -> None:
    """Create or migrate the schema (module docstring); a database already current is only read."""
    with _failures(engine):
        _migrate(engine)


def _migrate(engine: Engine) -> None:
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite" and _version(conn) >= SCHEMA_VERSION:
            return
    with engine.connect().execution_options(outpost_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        current = _version(conn)  # again, under the lock: another process may have just done it
        if current == 0 and not sa.inspect(conn).has_table("tokens"):  # new (hub.sqlite once had tables at 0)
            metadata.create_all(conn)
        else:
            for step in MIGRATIONS[current:]:
                step(conn)
        if current < SCHEMA_VERSION:
            _set_version(conn, SCHEMA_VERSION)
