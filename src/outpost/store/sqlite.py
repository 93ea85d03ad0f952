"""One collection's store: SQLite (WAL) for documents, chunks, vectors and FTS5; a derived ANN file.

Every change goes through :meth:`Store.apply` with a :class:`Changeset`: one ``BEGIN IMMEDIATE``
transaction that checks the base version, writes, and bumps the version. Readers see the old
version or the new one, never a mix: a read that spans several statements (a snapshot, the vector
cache) runs inside :meth:`Store.reading`, one read transaction, and what it caches is keyed by the
``(version, generation)`` it read in that same transaction (:meth:`Store.state`). The schema opens
through numbered migrations.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from outpost.db import migrate, open_db
from outpost.errors import ModelMismatchError, StorageError, VersionConflictError
from outpost.faults import fault
from outpost.home import ensure_private_dir
from outpost.names import check_name, safe_join
from outpost.records import Adapter, Changeset, Chunk, CollectionInfo, DocumentRecord, EmbeddingIdentity
from outpost.store import toplists
from outpost.store.ann import AnnIndex, top_k_cosine, unit_rows
from outpost.store.bm25 import bm25_top_k
from outpost.store.fts import fts_query, query_terms
from outpost.store.lock import write_lock

if TYPE_CHECKING:
    from usearch.index import Index

__all__ = ["STORE_FILE", "Store", "check_collection_name", "fts_query", "pack_text", "unpack_text"]

_BUSY_TIMEOUT_MS = 30_000  # open_db's default wait for a lock (timeout = 30 s)
# Reads through a memory map of the file (SQLite caps it at its compile-time limit, 2 GiB by default): FTS5's
# bm25() looks each scored row's length up in a B-tree (chunks_fts_docsize), and through SQLite's default 2 MB page
# cache those lookups were a system call per page — a rare word's rows, scattered over a 1M-chunk collection,
# cost 3–6 µs each to score, about half that mapped (docs/benchmarks.md, "P5: top lists"). Writes are unchanged.
_MMAP_BYTES = 1 << 31
STORE_FILE = "store.sqlite"  # <collections>/<name>/store.sqlite is a collection (store/collections.py)

log = logging.getLogger(__name__)


# What a reader's caches are keyed by: (version, generation), read in one transaction with the rows they hold.
# The generation is a random token each apply writes with its version, so even a collection deleted and
# re-created up to the same version number never matches a cache filled from the old one.
StateKey = tuple[int, str]


# zlib level 1, not the default 6: packing is on a snapshot apply's path (100k chunks: ~3-5 CPU-s at level 6, on cores
# the ANN build keeps busy), and level 1 costs ~20% less (21 vs 26 µs per ~700-byte text) for texts ~2% larger (ratio
# 0.552 vs 0.539 synthetic, 0.540 vs 0.529 NFCorpus). Level 9 packs no smaller, ~1.5x slower. Values packed at any
# level read the same (``unpack_text``). docs/benchmarks.md, "P4 after migration 5".
_PACK_LEVEL = 1


def pack_text(text: str) -> str | bytes:
    """A chunk's text as the store keeps it (migration 5): zlib-compressed UTF-8 (a BLOB) where that is shorter,
    else the text itself (TEXT).

    Why: chunk text was the largest part of a store (NFCorpus: 5.7 of 16 MB; ~600-byte abstracts compress by
    ~40%). Why the choice per value, and by type: zlib adds 6 bytes of header and checksum and a deflate block
    header, so a short text (a heading-sized chunk, a table cell) would grow; kept as TEXT it costs nothing. SQLite
    keeps each value's storage class, so TEXT vs BLOB *is* the marker: no byte spent on it, and a plain value needs
    no work to read. zlib's own format (not raw deflate) for its Adler-32: a damaged value fails to read instead of
    reading as other text.
    """
    raw = text.encode("utf-8")
    packed = zlib.compress(raw, _PACK_LEVEL)
    return packed if len(packed) < len(raw) else text


def unpack_text(value: str | bytes | None) -> str | None:
    """The text :func:`pack_text` stored.

    Reads of chunk text call it in Python on the fetched row (``_chunk_from_row``, ``_forget_in_fts``), never
    inside a statement: a Python function that SQLite calls holds the connection's mutex while it waits for the GIL,
    and another thread of the same connection may hold the GIL while it waits for that mutex (a bind or a column
    read does not release the GIL): 4 request threads of one store froze the whole process that way. The SQL
    function ``text_unpack`` (registered on every store connection) is there for the view ``chunks_text``, whose
    text FTS5 reads only when it rebuilds its index.
    """
    if isinstance(value, bytes):
        return zlib.decompress(value).decode("utf-8")
    return value


def _pack_sql(value: str | bytes | None) -> str | bytes | None:
    """``text_pack`` in SQL (migration 5 packs the rows it copies): only text is packed; anything else as it is."""
    return pack_text(value) if isinstance(value, str) else value


# Registered on the store's connection before its migrations run (Store.__init__, the one place a store is opened):
# its schema cannot be read without them. Plain ``sqlite3`` sessions lack them: there, read chunk counts, ids and
# vectors, not text (a query of ``chunks_text`` says "no such function: text_unpack").
SQL_FUNCTIONS = {"text_unpack": unpack_text, "text_pack": _pack_sql}

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE documents (
        key TEXT PRIMARY KEY, sha256 TEXT NOT NULL, title TEXT NOT NULL, kind TEXT NOT NULL,
        size INTEGER NOT NULL, chunk_count INTEGER NOT NULL
    );
    CREATE TABLE chunks (
        rowid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        doc_key TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        page INTEGER,
        heading TEXT NOT NULL DEFAULT '',
        text TEXT NOT NULL,
        token_count INTEGER NOT NULL DEFAULT 0,
        vector BLOB NOT NULL,
        scale REAL NOT NULL
    );
    CREATE INDEX chunks_doc ON chunks (doc_key, ordinal);
    CREATE VIRTUAL TABLE chunks_fts USING fts5 (
        heading, text, content='chunks', content_rowid='rowid', tokenize='porter unicode61'
    );
    CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts (rowid, heading, text) VALUES (new.rowid, new.heading, new.text);
    END;
    CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts (chunks_fts, rowid, heading, text)
        VALUES ('delete', old.rowid, old.heading, old.text);
    END;
    INSERT INTO meta VALUES ('version', '0');
    """,
    # 2: the query adapter shipped with the collection (one row, replaced by each new adapter)
    """
    CREATE TABLE adapter (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, dim INTEGER NOT NULL,
                          matrix BLOB NOT NULL);
    """,
    # 3: FTS5 rows are written by Store.apply in bulk (one INSERT … SELECT per apply, 'delete-all' for a snapshot),
    # not by per-row triggers: half the CPU of a 100k-chunk snapshot (benchmarks/scale.py apply, docs/scale.md)
    """
    DROP TRIGGER IF EXISTS chunks_ai;
    DROP TRIGGER IF EXISTS chunks_ad;
    """,
    # 4: a chunk's heading is stored once per document: NULL means "its document's title" (NFCorpus: the title
    # repeated on every chunk was 0.9 MB of a 19 MB store). FTS5 reads headings through the view chunks_text, so its
    # index, tokens and BM25 scores are what they were. The id's uniqueness is a named index. (docs/benchmarks.md)
    """
    CREATE TABLE chunks_v4 (
        rowid INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        doc_key TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        page INTEGER,
        heading TEXT,
        text TEXT NOT NULL,
        token_count INTEGER NOT NULL DEFAULT 0,
        vector BLOB NOT NULL,
        scale REAL NOT NULL
    );
    INSERT INTO chunks_v4 (rowid, id, doc_key, ordinal, page, heading, text, token_count, vector, scale)
        SELECT c.rowid, c.id, c.doc_key, c.ordinal, c.page, CASE WHEN c.heading = d.title THEN NULL ELSE c.heading END,
               c.text, c.token_count, c.vector, c.scale
        FROM chunks c LEFT JOIN documents d ON d.key = c.doc_key ORDER BY c.rowid;
    DROP TABLE chunks_fts;
    DROP TABLE chunks;
    ALTER TABLE chunks_v4 RENAME TO chunks;
    CREATE UNIQUE INDEX chunks_id ON chunks (id);
    CREATE INDEX chunks_doc ON chunks (doc_key, ordinal);
    CREATE VIEW chunks_text AS
        SELECT c.rowid AS rowid, c.id AS id, coalesce(c.heading, d.title, '') AS heading, c.text AS text
        FROM chunks c LEFT JOIN documents d ON d.key = c.doc_key;
    CREATE VIRTUAL TABLE chunks_fts USING fts5 (
        heading, text, content='chunks_text', content_rowid='rowid', tokenize='porter unicode61'
    );
    INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild');
    """,
    # 5: chunk text compressed where that makes it shorter (pack_text: NFCorpus 5.7 → ~3.3 MB). The column is renamed
    # packed_text, so a plain-SQL read of ``text`` fails loudly instead of returning bytes; readers unpack it
    # (text_unpack() in chunks_text, unpack_text() on fetched rows). FTS5 keeps its index: chunks_text yields the same
    # text as before, so the tokens and BM25 scores are unchanged, and a delete feeds FTS5 the unpacked text it
    # indexed. Rowids (the ANN keys) are kept; the table is copied rather than updated in place, so its pages come out
    # full.
    """
    DROP VIEW chunks_text;
    CREATE TABLE chunks_v5 (
        rowid INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        doc_key TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        page INTEGER,
        heading TEXT,
        packed_text BLOB NOT NULL,
        token_count INTEGER NOT NULL DEFAULT 0,
        vector BLOB NOT NULL,
        scale REAL NOT NULL
    );
    INSERT INTO chunks_v5 (rowid, id, doc_key, ordinal, page, heading, packed_text, token_count, vector, scale)
        SELECT rowid, id, doc_key, ordinal, page, heading, text_pack(text), token_count, vector, scale
        FROM chunks ORDER BY rowid;
    DROP TABLE chunks;
    ALTER TABLE chunks_v5 RENAME TO chunks;
    CREATE UNIQUE INDEX chunks_id ON chunks (id);
    CREATE INDEX chunks_doc ON chunks (doc_key, ordinal);
    CREATE VIEW chunks_text AS
        SELECT c.rowid AS rowid, c.id AS id, coalesce(c.heading, d.title, '') AS heading,
               text_unpack(c.packed_text) AS text
        FROM chunks c LEFT JOIN documents d ON d.key = c.doc_key;
    """,
    # 6: each common word's best rows under BM25 (store/toplists.py), derived from FTS5 after an apply; a one-word
    # query on a large collection reads its list instead of scoring every row holding the word (issue 12, P5)
    """
    CREATE TABLE toplists (
        term TEXT PRIMARY KEY, rowids BLOB NOT NULL, tfs BLOB NOT NULL, lengths BLOB NOT NULL, floor REAL NOT NULL
    );
    CREATE TABLE toplists_gone (rowid INTEGER PRIMARY KEY);
    """,
]

# How a new store file is laid out (only possible before its first table): 16 KiB pages leave ~3% of a page unused
# where 4 KiB pages left ~15% (chunk rows of ~1 KB), and incremental auto-vacuum lets checkpoint() hand the pages a
# snapshot or a migration freed back to the file system. Measured on NFCorpus: docs/benchmarks.md.
NEW_FILE_PRAGMAS = ("PRAGMA page_size = 16384", "PRAGMA auto_vacuum = INCREMENTAL")

# The chunks table's indexes (migration 4), dropped while a snapshot's rows go in and created again after them.
_CHUNK_INDEXES = {
    "chunks_id": "CREATE UNIQUE INDEX chunks_id ON chunks (id)",
    "chunks_doc": "CREATE INDEX chunks_doc ON chunks (doc_key, ordinal)",
}

# A chunk as the application sees it: the heading NULL in the row is its document's title (migration 4); its text
# comes packed and ``_chunk_from_row`` unpacks it (migration 5; why not in SQL: ``unpack_text``).
_CHUNK_SELECT = (
    "SELECT c.rowid AS rowid, c.id AS id, c.doc_key AS doc_key, c.ordinal AS ordinal, c.page AS page, "
    "coalesce(c.heading, d.title, '') AS heading, c.packed_text AS packed_text, "
    "c.token_count AS token_count{extra} "
    "FROM chunks c LEFT JOIN documents d ON d.key = c.doc_key"
)


def check_collection_name(name: object) -> str:
    """Collection names become folder names: the one name grammar of ``outpost.names`` (DESIGN §11)."""
    return check_name(name, "collection name")


def _chunk_from_row(row: sqlite3.Row) -> Chunk:
    return Chunk(
        id=row["id"],
        doc_key=row["doc_key"],
        ordinal=row["ordinal"],
        text=unpack_text(row["packed_text"]) or "",
        page=row["page"],
        heading=row["heading"],
        token_count=row["token_count"],
    )


class Store:
    """A collection on disk: ``<folder>/store.sqlite`` plus ``index-<version>.usearch``."""

    def __init__(self, folder: Path, name: str, exact_below: int = 5000, durable: bool = False) -> None:
        self.folder = folder
        self.name = name
        self.exact_below = exact_below
        self.path = folder / STORE_FILE
        # NORMAL in WAL may lose the last commits on power loss (never corrupts): a laptop re-syncs them. A hub
        # (``durable``) must not: a lost commit would let it publish the same version number twice, with other rows.
        self.db = open_db(
            self.path,
            synchronous="FULL" if durable else "NORMAL",
            new_file_pragmas=NEW_FILE_PRAGMAS,
            functions=SQL_FUNCTIONS,  # chunk text is read through them (migration 5)
        )
        self.db.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
        upgrading = 0 < int(self.db.execute("PRAGMA user_version").fetchone()[0]) < len(MIGRATIONS)
        migrate(self.db, MIGRATIONS)
        self._lock = threading.RLock()  # one transaction at a time on the shared connection
        if upgrading:  # only then: opening a collection must not rewrite its file (a refused sync changes no byte)
            self._reclaim_free_pages()
        self._vectors: tuple[StateKey, np.ndarray, np.ndarray] | None = None  # (state, keys, int8 rows)
        self._ann: tuple[StateKey, Index] | None = None  # (state, usearch index)
        self._unit: tuple[StateKey, np.ndarray, np.ndarray] | None = None  # (state, keys, unit float32 rows)
        self._count: tuple[StateKey, int] | None = None  # (state, chunks)
        self._adapter: tuple[StateKey, Adapter | None] | None = None  # (state, adapter)
        self._term_rows: tuple[StateKey, dict[str, int]] | None = None  # (state, FTS5 stem → rows holding it)

    @classmethod
    def open(
        cls, collections_dir: Path, name: str, create: bool = False, exact_below: int = 5000, durable: bool = False
    ) -> Store:
        """Open a collection; ``create`` makes its folder. Missing and not ``create`` → FileNotFoundError.

        The primitive under ``store.collections.Collections``, which the application uses (it lists and deletes
        too, and says a missing collection in words).
        """
        folder = safe_join(collections_dir, check_collection_name(name), what="collection name")
        if not (folder / STORE_FILE).is_file():
            if not create:
                raise FileNotFoundError(folder)
            ensure_private_dir(folder)
        return cls(folder, name, exact_below, durable)

    def close(self) -> None:
        self.db.close()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file and truncate it (after an ingest: issue 12).

        SQLite only checkpoints on its own once the log reaches 1,000 pages and never shrinks it, so right after
        ingesting NFCorpus the collection was 39 MB on disk (the store plus a WAL as large again) until closed.
        A reader in the middle of a transaction makes this a partial checkpoint, never an error.
        Free pages (rows a snapshot or a delete replaced) go back to the file system first, where the file allows it
        (``auto_vacuum = INCREMENTAL``: every store made since migration 4).
        """
        with self._lock:
            try:
                self._incremental_vacuum()
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.OperationalError as exc:  # only space on disk is at stake: the data is committed
                log.debug("checkpoint of %s skipped: %s", self.name, exc)

    def _incremental_vacuum(self) -> None:
        """Hand every free page back (a no-op unless the file has ``auto_vacuum = INCREMENTAL``).

        Through ``executescript``: the pragma frees one page per step and returns no columns, so ``execute`` would
        stop after the first page. Never inside a transaction (``executescript`` would commit it).
        """
        if not self.db.in_transaction:
            self.db.executescript("PRAGMA incremental_vacuum;")

    def _reclaim_free_pages(self) -> None:
        """Compact a file just upgraded, if it is mostly free pages: a store migrated in place (migration 4 copies the
        chunks table) otherwise keeps its old size for ever, as files made before auto-vacuum never shrink.

        Best effort, and never a wait: another process reading or writing makes VACUUM busy, and the next open
        tries again. VACUUM also turns incremental auto-vacuum on for the file (the page size stays: WAL keeps it).
        """
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        if free == 0 or free * 4 < int(self.db.execute("PRAGMA page_count").fetchone()[0]):
            return
        with self._lock:
            self.db.execute("PRAGMA busy_timeout = 0")
            try:
                if int(self.db.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:  # INCREMENTAL
                    self._incremental_vacuum()
                else:
                    self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                    self.db.execute("VACUUM")
            except sqlite3.OperationalError as exc:
                log.debug("compacting %s postponed: %s", self.name, exc)
            finally:
                self.db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")

    def writing(self, wait_s: float | None = None) -> AbstractContextManager[None]:
        """The collection's cross-process write lock (``store/lock.py``): hold it from planning to apply.

        A writer that reads the version it plans on inside this block and applies before leaving it can never
        meet another writer's changes halfway; readers never take it.
        """
        return write_lock(self.folder, self.name, wait_s)

    # -- schema -------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:  # the connection is shared by threads (API server): one transaction at a time
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.db.in_transaction:  # SQLite itself may have rolled back already (a full disk mid-statement)
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction: every statement inside sees the same committed version (a WAL snapshot).

        Without it each statement is its own transaction, so a publish landing between two of them (another
        process, or another thread's connection) would pair one version's number with the next one's rows.
        Re-entrant: inside a transaction already (a write, or an outer read) it adds nothing.
        """
        with self._lock:
            if self.db.in_transaction:
                yield
                return
            self.db.execute("BEGIN")
            try:
                yield
            finally:
                self.db.execute("COMMIT")  # nothing was written: ending the read releases its snapshot

    def state(self) -> StateKey:
        """(version, generation) in one statement: the key for anything cached from this store's rows."""
        rows = dict(self.db.execute("SELECT key, value FROM meta WHERE key IN ('version', 'generation')").fetchall())
        return int(rows.get("version") or 0), rows.get("generation") or ""

    # -- metadata -----------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def version(self) -> int:
        return int(self._meta("version") or 0)

    @property
    def embedding(self) -> EmbeddingIdentity | None:
        raw = self._meta("embedding")
        return EmbeddingIdentity.from_json(raw) if raw else None

    @property
    def chunker_id(self) -> str:
        return self._meta("chunker_id") or ""

    def check_embedding(self, identity: EmbeddingIdentity) -> None:
        """Refuse vectors from another model: they would be silently incomparable."""
        mine = self.embedding
        if mine is not None and mine != identity:
            raise ModelMismatchError(
                f"Collection {self.name!r} was embedded with {mine.short()}, not {identity.short()}. "
                f"Use --embed-model {mine.name!r}, or ingest into a new collection."
            )

    # -- reads --------------------------------------------------------------------------------

    def document_hashes(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, sha256 FROM documents").fetchall())

    def chunk_ids(self, doc_keys: Iterable[str]) -> list[str]:
        keys = list(doc_keys)
        return [
            row[0]
            for batch in _batches(keys)
            for row in self.db.execute(f"SELECT id FROM chunks WHERE doc_key IN ({_marks(batch)})", batch)
        ]

    def chunk_positions(self, doc_keys: Iterable[str]) -> dict[str, tuple[int, int | None]]:
        """Chunk id → (ordinal, page) for these documents: what a re-ingest compares against."""
        keys = list(doc_keys)
        return {
            row[0]: (row[1], row[2])
            for batch in _batches(keys)
            for row in self.db.execute(
                f"SELECT id, ordinal, page FROM chunks WHERE doc_key IN ({_marks(batch)})", batch
            )
        }

    def stored_vectors(self, ids: Sequence[str]) -> dict[str, tuple[np.ndarray, float]]:
        """Vectors already stored for these chunk ids (so unchanged text is never re-embedded)."""
        found: dict[str, tuple[np.ndarray, float]] = {}
        for batch in _batches(list(ids)):
            for row in self.db.execute(f"SELECT id, vector, scale FROM chunks WHERE id IN ({_marks(batch)})", batch):
                found[row[0]] = (np.frombuffer(row[1], dtype=np.int8), row[2])
        return found

    def all_chunks(self) -> list[Chunk]:
        """Every chunk in store (rowid) order, as one version (what fine-tuning reads)."""
        with self.reading():
            rows = self.db.execute(_CHUNK_SELECT.format(extra="") + " ORDER BY c.rowid").fetchall()
        return [_chunk_from_row(r) for r in rows]

    def chunks_by_rowid(self, rowids: Sequence[int]) -> dict[int, Chunk]:
        out: dict[int, Chunk] = {}
        with self.reading():  # several batches, one version; and one thread at a time on the shared connection
            for batch in _batches(list(rowids)):
                sql = _CHUNK_SELECT.format(extra="") + f" WHERE c.rowid IN ({_marks(batch)})"
                for row in self.db.execute(sql, batch):
                    out[row["rowid"]] = _chunk_from_row(row)
        return out

    def known_chunk_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are chunks of this collection (feedback is checked against it before it is kept)."""
        wanted = sorted(set(ids))
        return {
            row[0]
            for batch in _batches(wanted)
            for row in self.db.execute(f"SELECT id FROM chunks WHERE id IN ({_marks(batch)})", batch)
        }

    def vectors(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Every chunk's id, int8 vector ``(n, dim)`` and scale ``(n,)``, in store order, read in one transaction.

        The shipped bytes, not floats: adapter training and evaluation dequantise them (``embed.quantize``).
        """
        with self.reading():
            rows = self.db.execute("SELECT id, vector, scale FROM chunks ORDER BY rowid").fetchall()
            dim = self.embedding.dimension if self.embedding else 0
        q = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.int8).reshape(len(rows), dim)
        return [r[0] for r in rows], q, np.array([r[2] for r in rows], dtype=np.float32)

    def chunks_by_document(self) -> dict[str, list[str]]:
        """Document key → its chunk ids, in store order (what document-level judgements are mapped through)."""
        out: dict[str, list[str]] = {}
        for cid, key in self.db.execute("SELECT id, doc_key FROM chunks ORDER BY rowid"):
            out.setdefault(key, []).append(cid)
        return out

    def documents(self) -> list[DocumentRecord]:
        rows = self.db.execute("SELECT * FROM documents ORDER BY key").fetchall()
        return [DocumentRecord(**dict(row)) for row in rows]

    def counts(self) -> tuple[int, int]:
        docs = self.db.execute("SELECT count(*) FROM documents").fetchone()[0]
        chunks = self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return docs, chunks

    def info(self) -> CollectionInfo:
        with self.reading():
            docs, chunks = self.counts()
            version, embedding, chunker_id = self.version, self.embedding, self.chunker_id
        size = sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file())
        return CollectionInfo(self.name, version, docs, chunks, size, embedding, chunker_id)

    def snapshot(self) -> Changeset:
        """The whole collection as a changeset from version 0 (what a snapshot pack carries).

        Read in one transaction, so the version it carries is the version of its rows even while another
        process publishes.
        """
        with self.reading():
            version = self.version
            sql = _CHUNK_SELECT.format(extra=", c.vector AS vector, c.scale AS scale")
            rows = self.db.execute(sql + " ORDER BY c.doc_key, c.ordinal").fetchall()
            embedding = self.embedding
            dim = embedding.dimension if embedding else 0
            vectors = np.frombuffer(b"".join(r["vector"] for r in rows), dtype=np.int8).reshape(len(rows), dim)
            return Changeset(
                collection=self.name,
                base_version=0,
                version=version,
                snapshot=True,
                upserts=[_chunk_from_row(r) for r in rows],
                vectors=vectors,
                scales=np.array([r["scale"] for r in rows], dtype=np.float32),
                documents=self.documents(),
                embedding=embedding,
                chunker_id=self.chunker_id,
                adapter=self.adapter,
            )

    @property
    def adapter(self) -> Adapter | None:
        """The collection's query adapter, if the hub has shipped one (read once per version: every dense
        query asks for it, and the matrix is ~0.6 MB)."""
        with self.reading():
            key = self.state()
            if self._adapter is None or self._adapter[0] != key:
                row = self.db.execute("SELECT version, dim, matrix FROM adapter WHERE id = 1").fetchone()
                adapter = None
                if row is not None:
                    matrix = np.frombuffer(row["matrix"], dtype=np.float32).reshape(row["dim"], row["dim"])
                    adapter = Adapter(row["version"], matrix)
                self._adapter = (key, adapter)
            return self._adapter[1]

    def _write_adapter(self, adapter: Adapter) -> None:
        matrix = np.ascontiguousarray(adapter.matrix, dtype=np.float32)
        self.db.execute(
            "INSERT OR REPLACE INTO adapter (id, version, dim, matrix) VALUES (1, ?, ?, ?)",
            (adapter.version, matrix.shape[0], matrix.tobytes()),
        )

    def get_meta(self, key: str) -> str | None:
        """Free-form collection metadata (e.g. the hub a synced collection came from)."""
        return self._meta(f"x:{key}")

    def set_meta(self, **values: str) -> None:
        with self._transaction():
            for key, value in values.items():
                self._set_meta(f"x:{key}", value)

    # -- search -------------------------------------------------------------------------------

    def bm25(self, text: str, k: int) -> list[tuple[int, float]]:
        """FTS5 BM25 top-k as (rowid, score), higher is better: only rare words' rows scored (``store/bm25.py``)."""
        words = query_terms(text)
        if not words:
            return []
        with self.reading():  # the row count, the index and the remembered term counts belong to one state
            key = self.state()
            if self._term_rows is None or self._term_rows[0] != key:
                self._term_rows = (key, {})
            return bm25_top_k(self.db, words, k, self._chunk_count(key), self._term_rows[1])

    def dense(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Cosine top-k over int8 vectors as (rowid, similarity): exact when small, ANN above."""
        return self.dense_searcher()(query, k)

    def dense_searcher(self) -> Callable[[np.ndarray, int], list[tuple[int, float]]]:
        """The dense search of the current state, resolved now: a call that needs neither SQLite nor the lock.

        Why: ``Retriever`` runs it in a thread while BM25 holds the store's lock on the main one (issue 12, P5);
        usearch and numpy release the GIL, so on two cores the two retrievers overlap.
        """
        with self.reading():  # the count, the cached rows and the index all belong to one state
            key = self.state()
            exact = self._chunk_count(key) < self.exact_below
            if exact and (self._unit is None or self._unit[0] != key):
                _, keys, vectors = self._all_vectors()
                self._unit = (key, keys, unit_rows(vectors))
            if not exact:
                index = self._ann_index()
            unit = self._unit
        if exact and unit is not None:
            return lambda query, k: top_k_cosine(query, unit[2], unit[1], k)
        return lambda query, k: AnnIndex.search(index, query, k)

    def _chunk_count(self, key: StateKey) -> int:
        """Chunks at state ``key``, counted once per version (a count(*) per query costs more than the search).

        Call inside :meth:`reading`, with ``key`` read in the same transaction.
        """
        if self._count is None or self._count[0] != key:
            self._count = (key, self.counts()[1])
        return self._count[1]

    def _all_vectors(self) -> tuple[StateKey, np.ndarray, np.ndarray]:
        """(state, rowids, int8 rows) of the whole collection, cached per state; read in one transaction."""
        with self.reading():
            key = self.state()
            if self._vectors is None or self._vectors[0] != key:
                rows = self.db.execute("SELECT rowid, vector FROM chunks ORDER BY rowid").fetchall()
                dim = self.embedding.dimension if self.embedding else 0
                keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                vectors = (
                    np.frombuffer(b"".join(r[1] for r in rows), dtype=np.int8).reshape(len(rows), dim)
                    if rows
                    else np.zeros((0, dim), dtype=np.int8)
                )
                self._vectors = (key, keys, vectors)
            return self._vectors

    def _ann_files(self) -> AnnIndex:
        dim = self.embedding.dimension if self.embedding else 0
        return AnnIndex(self.folder, dim)

    def _ann_index(self) -> Index:
        """The ANN index for the current version: cached, loaded from disk, or rebuilt from the store."""
        with self.reading():
            key = self.state()
            if self._ann is not None and self._ann[0] == key:
                return self._ann[1]
            files = self._ann_files()
            index = files.load(key[0])
            if index is None or len(index) != self._chunk_count(key):
                log.info("building ANN index for %s at version %d", self.name, key[0])
                _, keys, vectors = self._all_vectors()
                index = files.build(key[0], keys, vectors)
            self._ann = (key, index)
            return index

    # -- writes -------------------------------------------------------------------------------

    def apply(
        self, changeset: Changeset, parts: Iterable[Changeset] | None = None, meta: dict[str, str] | None = None
    ) -> int:
        """Apply one changeset atomically; returns the new version.

        ``parts`` carry more upserts (chunks, vectors, documents) of the same version, read lazily: a snapshot of
        any size, read from its pack batch by batch, applies in the same one transaction with memory bounded by a
        part (the ANN index, built after the commit, is the one structure as large as the collection).
        A full disk or a failing one is a ``StorageError`` (the transaction rolled back: nothing changed).
        ``meta`` (free-form, as :meth:`set_meta`) commits with the rows: what a hub's publish must never record
        apart from its version (its publish time, docs/reliability.md fix 14).
        """
        try:
            return self._apply(changeset, parts, meta or {})
        except sqlite3.OperationalError as exc:
            if _storage_failure(exc):
                raise StorageError.during(f"Writing version {changeset.version} of {self.name!r}", exc) from exc
            raise

    def _apply(self, changeset: Changeset, parts: Iterable[Changeset] | None, meta: dict[str, str]) -> int:
        fault("apply:start")
        job: Future[Any] | None = None
        try:
            with self._transaction():
                before = self.state()
                self._check_versions(changeset)
                if changeset.embedding is not None:
                    if not (changeset.snapshot or changeset.revectors is not None):  # those replace every vector
                        self.check_embedding(changeset.embedding)
                    self._set_meta("embedding", changeset.embedding.to_json())
                if changeset.chunker_id:
                    self._set_meta("chunker_id", changeset.chunker_id)
                first = self._next_rowid()
                removed = self._delete(changeset)
                toplists.forget(self.db, removed, everything=changeset.snapshot)
                fault("apply:after-delete")
                added = np.arange(first, first + len(changeset.upserts), dtype=np.int64)
                revectored = self._revector(changeset)  # every vector changes: the index is rebuilt after commit
                if parts is None and changeset.revectors is None:  # built while SQLite writes the rows
                    job = self._start_ann(before, changeset, removed, added)
                self._insert(changeset, first)
                for part in parts or ():
                    self._insert(part, first + len(added))
                    added = np.arange(first, first + len(added) + len(part.upserts), dtype=np.int64)
                if changeset.snapshot:
                    self._bulk_mode(False)
                if changeset.revectors is not None:
                    self._check_revectored(changeset, revectored + len(added))
                if changeset.adapter is not None:
                    self._write_adapter(changeset.adapter)
                self._set_meta("next_rowid", str(first + len(added)))
                for key, value in meta.items():
                    self._set_meta(f"x:{key}", value)
                self._set_meta("version", str(changeset.version))
                after = (changeset.version, secrets.token_hex(8))
                self._set_meta("generation", after[1])
                fault("apply:before-commit")
        except BaseException:
            _discard(job)
            if job is not None:
                self._ann = None  # the job may have changed the cached index of the old version in place
            raise
        fault("apply:after-commit")
        self._refresh_toplists(after)
        try:
            self._after_apply(after, job)
        except (OSError, RuntimeError) as exc:  # usearch raises RuntimeError; the version is committed all the same
            log.warning(
                "version %d of %s is applied; its ANN index is rebuilt on next use (%s)", after[0], self.name, exc
            )
            self._ann = None
        return changeset.version

    def _check_versions(self, changeset: Changeset) -> None:
        """A delta applies on exactly its base; nothing may move a collection backwards (replay)."""
        current = self.version
        if changeset.version <= current:
            raise VersionConflictError(
                f"Refusing version {changeset.version} of {self.name!r}: it already is at version {current}"
            )
        if not changeset.snapshot and current != changeset.base_version:
            raise VersionConflictError(
                f"Collection {self.name!r} is at version {current}, "
                f"but the change was built on version {changeset.base_version}"
            )

    def _next_rowid(self) -> int:
        """The first rowid for this apply's rows: above every rowid the collection ever used.

        Rowids are the ANN keys. Choosing them before the insert lets the index be built while SQLite writes
        (``_start_ann``), and never reusing one means an index key never names two chunks across versions.
        """
        used = self.db.execute("SELECT max(rowid) FROM chunks").fetchone()[0] or 0
        return max(int(self._meta("next_rowid") or 0), int(used) + 1)

    def _revector(self, changeset: Changeset) -> int:
        """Replace the vectors of chunks the collection holds (a new embedder); returns how many rows changed."""
        rv = changeset.revectors
        if rv is None:
            return 0
        vectors = np.ascontiguousarray(rv.vectors, dtype=np.int8)
        scales = np.asarray(rv.scales, dtype=np.float64).tolist()
        before = self.db.total_changes
        self.db.executemany(
            "UPDATE chunks SET vector = ?, scale = ? WHERE id = ?",
            ((v.tobytes(), s, i) for i, v, s in zip(rv.ids, vectors, scales)),
        )
        return int(self.db.total_changes - before)

    def _check_revectored(self, changeset: Changeset, covered: int) -> None:
        """A switch of embedder must leave no vector of the old one: every chunk re-vectored or upserted now."""
        total = int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])
        if covered != total:
            raise ModelMismatchError(
                f"Version {changeset.version} of {self.name!r} switches the embedder but gives new vectors for "
                f"{covered} of its {total} chunks: refused, nothing changed"
            )

    def _delete(self, changeset: Changeset) -> np.ndarray:
        """Delete the changeset's chunks (all of them for a snapshot) and their FTS5 rows; returns their rowids."""
        if changeset.snapshot:  # a snapshot replaces everything, inside the same transaction
            removed = [r[0] for r in self.db.execute("SELECT rowid FROM chunks")]
            self.db.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('delete-all')")
            self._bulk_mode(True)
            self.db.execute("DELETE FROM chunks")
            self.db.execute("DELETE FROM documents")
            return np.asarray(removed, dtype=np.int64)
        ids = list(changeset.delete_chunks)
        removed = []
        for batch in _batches(ids):
            marks = _marks(batch)
            removed += self._forget_in_fts(batch)
            self.db.execute(f"DELETE FROM chunks WHERE id IN ({marks})", batch)
        gone = list(changeset.delete_documents)
        self._pin_titles(gone)
        for batch in _batches(gone):
            self.db.execute(f"DELETE FROM documents WHERE key IN ({_marks(batch)})", batch)
        return np.asarray(removed, dtype=np.int64)

    def _forget_in_fts(self, ids: list[str]) -> list[int]:
        """Remove these chunks from FTS5, which forgets an external-content row only when given the text it indexed
        again; that text is unpacked here, not by ``text_unpack`` inside the statement (see :func:`unpack_text`).
        Returns their rowids (the ANN keys to remove)."""
        rows = self.db.execute(_CHUNK_SELECT.format(extra="") + f" WHERE c.id IN ({_marks(ids)})", ids).fetchall()
        self.db.executemany(
            "INSERT INTO chunks_fts (chunks_fts, rowid, heading, text) VALUES ('delete', ?, ?, ?)",
            [(r["rowid"], r["heading"], unpack_text(r["packed_text"])) for r in rows],
        )
        return [r["rowid"] for r in rows]

    def _bulk_mode(self, on: bool) -> None:
        """A snapshot's rows go in without the chunk indexes, which are built once at the end, inside the same
        transaction (a failure rolls the drop back with the rest).

        Why: every row of a snapshot would otherwise insert a random 32-hex id into a B-tree; one sort-based
        ``CREATE INDEX`` costs less (100k chunks: rows 1.0 → 0.5 CPU-s, + 0.16 for the builds; docs/benchmarks.md).
        A repeated id then fails ``CREATE UNIQUE INDEX`` instead of its row: the same IntegrityError, the same
        rollback. FTS5's merging stays on: turned off for the bulk insert, it only moved the merge work (and 0.5
        CPU-s) into the next delta and left the file 25% larger.
        """
        if on:
            for name in _CHUNK_INDEXES:
                self.db.execute(f"DROP INDEX IF EXISTS {name}")
        else:
            for statement in _CHUNK_INDEXES.values():
                self.db.execute(statement)

    def _pin_titles(self, doc_keys: list[str]) -> None:
        """Chunks that read their heading from their document's title (NULL) get it written out before that document
        row goes or takes another title: they keep the heading they were indexed and embedded with."""
        for batch in _batches(doc_keys):
            self.db.execute(
                "UPDATE chunks SET heading = (SELECT d.title FROM documents d WHERE d.key = chunks.doc_key) "
                f"WHERE heading IS NULL AND doc_key IN ({_marks(batch)})",
                batch,
            )

    def _retitled(self, documents: Sequence[DocumentRecord]) -> list[str]:
        """The keys of ``documents`` the store holds under another title."""
        titles = {d.key: d.title for d in documents}
        return [
            key
            for batch in _batches(list(titles))
            for key, title in self.db.execute(f"SELECT key, title FROM documents WHERE key IN ({_marks(batch)})", batch)
            if titles[key] != title
        ]

    def _insert(self, changeset: Changeset, first: int) -> None:
        """Rows with rowids ``first, first + 1, …`` in one ``executemany``, then their FTS5 rows in one statement.

        Indexing the new rows in one statement after they are written costs half the CPU of a per-row trigger
        (measured at 100k chunks: docs/scale.md). A heading equal to its document's title is stored as NULL
        (migration 4): documents go in first, so the comparison sees this changeset's titles. Text is packed
        (migration 5). FTS5 is given the plain text the changeset holds, not ``INSERT … SELECT`` from ``chunks_text``:
        that view unpacks every row it yields (a Python call and a zlib decompress per row, 1-2 CPU-s of a 100k
        snapshot), only to get back the text in hand. The values are those the view yields for these rows, as
        external-content FTS5 needs (a later delete feeds it the view's values): the text, and the heading as
        ``coalesce(heading, title, '')``.
        """
        self._pin_titles(self._retitled(changeset.documents))
        self.db.executemany(
            "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?)",
            [(d.key, d.sha256, d.title, d.kind, d.size, d.chunk_count) for d in changeset.documents],
        )
        vectors = np.ascontiguousarray(changeset.vectors, dtype=np.int8)
        scales = np.asarray(changeset.scales, dtype=np.float64).tolist()
        self.db.executemany(
            "INSERT INTO chunks (rowid, id, doc_key, ordinal, page, heading, packed_text, token_count, vector, scale) "
            "VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?6 = (SELECT title FROM documents WHERE key = ?3) THEN NULL "
            "ELSE ?6 END, ?7, ?8, ?9, ?10)",
            (
                (
                    first + i,
                    c.id,
                    c.doc_key,
                    c.ordinal,
                    c.page,
                    c.heading,
                    pack_text(c.text),
                    c.token_count,
                    v.tobytes(),
                    s,
                )
                for i, (c, v, s) in enumerate(zip(changeset.upserts, vectors, scales))
            ),
        )
        self.db.executemany(
            "INSERT INTO chunks_fts (rowid, heading, text) "
            "VALUES (?1, coalesce(?2, (SELECT title FROM documents WHERE key = ?3), ''), ?4)",
            ((first + i, c.heading, c.doc_key, c.text) for i, c in enumerate(changeset.upserts)),
        )

    def _start_ann(
        self, before: StateKey, changeset: Changeset, removed: np.ndarray, added: np.ndarray
    ) -> Future[Any] | None:
        """Start the new version's ANN index in a thread (usearch releases the GIL), or None when none is needed.

        A snapshot builds from its own vectors; a delta changes the previous version's index (cached, or loaded
        from its file). Nothing is saved here: the file for the new version is written only after the commit.
        """
        remaining = self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        if remaining + len(added) < self.exact_below:
            return None
        files = self._ann_files()
        vectors = np.ascontiguousarray(changeset.vectors, dtype=np.int8)
        if changeset.snapshot:
            return _in_thread(files.build_index, added, vectors)
        cached = self._ann[1] if self._ann is not None and self._ann[0] == before else None

        def update() -> Any:
            previous = cached if cached is not None else files.load(before[0])
            return None if previous is None else files.change(previous, removed, added, vectors)

        return _in_thread(update)

    def refresh_toplists(self) -> None:
        """Rebuild the words' top lists now if the collection needs them (what an apply does after its commit):
        for a store last written by an Outpost whose lists differ, without waiting for the next apply."""
        with self.reading():
            now = self.state()
        self._refresh_toplists(now)

    def _refresh_toplists(self, after: StateKey) -> None:
        """Rebuild the words' top lists (``store/toplists.py``) when this apply made them worth it, in a transaction of
        their own after the commit (FTS5's statistics are final only then). Skipped if another writer moved on; a
        failure leaves old lists, which stay exact (only slower), and the version committed all the same.
        """
        try:
            with self.reading():  # most applies need nothing: decided without taking the write lock
                if self.state() != after or not toplists.worth_rebuilding(self.db, self._chunk_count(after)):
                    return
            with self._transaction():
                if self.state() != after or not toplists.worth_rebuilding(self.db, self._chunk_count(after)):
                    return
                if self._chunk_count(after) < toplists.BUILD_FROM:
                    toplists.drop(self.db)
                    return
                start = time.perf_counter()
                words = toplists.build(self.db, self._next_rowid())
                log.info("top lists of %s: %d words in %.1f s", self.name, words, time.perf_counter() - start)
        except sqlite3.OperationalError as exc:
            log.warning("version %d of %s is applied; its top lists were not rebuilt (%s)", after[0], self.name, exc)

    def _after_apply(self, after: StateKey, job: Future[Any] | None) -> None:
        """File the ANN index of the committed version (the job's, or rebuilt from the rows).

        The state is read again with the rows: if another writer moved on meanwhile, or the job had no previous
        index to change, the index is rebuilt from what is there now, so an index is never filed under a version
        whose rows it does not hold.
        """
        self._vectors = None
        with self.reading():
            key = self.state()
            files = self._ann_files()
            if self._chunk_count(key) < self.exact_below:
                _discard(job)
                files.drop()
                self._ann = None
                return
            index = job.result() if job is not None else None
            if index is None or key != after:
                _, keys, all_vectors = self._all_vectors()
                index = files.build_index(keys, all_vectors)
            files.save(index, key[0])
            self._ann = (key, index)


def _in_thread(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run ``fn`` in a thread of its own (one per apply: a pool shared across ``fork`` could hang the child)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outpost-ann")
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its job


def _discard(job: Future[Any] | None) -> None:
    """Wait for a job whose result is not wanted: it must not go on changing an index nobody will file."""
    if job is not None:
        try:
            job.result()
        except Exception:  # its failure changes nothing: the index is rebuilt on next use
            log.debug("discarded ANN job failed", exc_info=True)


# SQLite's primary result codes (sqlite3 names them only from Python 3.11; we support 3.10)
_SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 13, 14


def _storage_failure(exc: sqlite3.OperationalError) -> bool:
    """A disk that is full or failing (SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN), not a bug in a statement."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (_SQLITE_FULL, _SQLITE_IOERR, _SQLITE_CANTOPEN)


def _marks(items: Sequence[object]) -> str:
    return ",".join("?" * len(items))


def _batches(items: list, size: int = 500) -> Iterator[list]:  # type: ignore[type-arg]
    for start in range(0, len(items), size):
        yield items[start : start + size]
