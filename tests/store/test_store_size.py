"""The store's size (issue 12): a heading stored once per document (migration 4), new files with 16 KiB pages and
incremental auto-vacuum, old stores upgraded in place. Oracles: the rows and BM25 scores of the same store before
the upgrade, FTS5's own integrity check, the headings the chunks were written with, SQLite's page counts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from outpost.db import migrate
from outpost.embed.quantize import quantize
from outpost.records import Changeset, Chunk, DocumentRecord, EmbeddingIdentity
from outpost.store import Store
from outpost.store.sqlite import MIGRATIONS, fts_query

IDENTITY = EmbeddingIdentity("test-vectors", "0" * 64, 16, 256)
WORDS = ["statin", "breast", "cancer", "survival", "cohort", "fiber", "colon", "soy", "arsenic", "rice"]


def _doc(i: int, title: str | None = None) -> DocumentRecord:
    return DocumentRecord(
        f"doc{i}.md", f"{i:064x}", title if title is not None else f"Title {WORDS[i % 10]} {i}", "md", 100, 3
    )


def _chunks(doc: DocumentRecord, n: int = 3, tag: str = "", heading: str | None = None) -> list[Chunk]:
    return [
        Chunk(
            f"{doc.key}#{j}{tag}",
            doc.key,
            j,
            f"{WORDS[(j * 3) % 10]} body {tag}{j} of {doc.key}",
            None,
            doc.title if heading is None else heading,
            7,
        )
        for j in range(n)
    ]


def _changeset(
    store: Store,
    docs: list[DocumentRecord],
    chunks: list[Chunk],
    snapshot: bool = False,
    deletes: list[str] | None = None,
    delete_docs: list[str] | None = None,
) -> Changeset:
    q, s = quantize(np.random.default_rng(len(chunks)).normal(size=(len(chunks), 16)).astype(np.float32))
    cs = Changeset(
        store.name,
        0 if snapshot else store.version,
        chunks,
        q,
        s,
        docs,
        embedding=IDENTITY,
        delete_chunks=deletes or [],
        delete_documents=delete_docs or [],
    )
    cs.version, cs.snapshot = store.version + 1, snapshot
    return cs


def _bm25(db: sqlite3.Connection, queries: list[str]) -> list[list[tuple[int, float]]]:
    sql = "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY 2, 1 LIMIT 20"
    return [[tuple(row) for row in db.execute(sql, (fts_query(q),))] for q in queries]


def _fts_ok(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")


def _old_store(folder: Path, docs: int = 400) -> None:
    """A collection as the code before migration 4 wrote it: every chunk carries its heading, FTS5 over chunks."""
    folder.mkdir(parents=True)
    conn = sqlite3.connect(folder / "store.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn, MIGRATIONS[:3])
    rng = np.random.default_rng(1)
    rowid = 0
    for i in range(docs):
        doc = _doc(i)
        conn.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?)", (doc.key, doc.sha256, doc.title, "md", 1, 3))
        section = f"{doc.title} › Methods" if i % 4 == 0 else None  # some chunks under a section heading
        for c in _chunks(doc, heading=section):
            rowid += 1
            conn.execute(
                "INSERT INTO chunks (rowid, id, doc_key, ordinal, page, heading, text, token_count, vector, scale) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rowid * 2,
                    c.id,
                    c.doc_key,
                    c.ordinal,
                    None,
                    c.heading,
                    c.text,
                    7,
                    rng.integers(-127, 128, 16, dtype=np.int8).tobytes(),
                    0.01,
                ),
            )
    conn.execute("INSERT INTO chunks_fts (rowid, heading, text) SELECT rowid, heading, text FROM chunks")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', '3')")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('embedding', ?)", (IDENTITY.to_json(),))
    conn.close()


QUERIES = ["statin survival", "breast cancer cohort", "fiber colon methods", "soy", "arsenic rice title", "body 2"]


def test_an_old_store_is_upgraded_in_place_and_keeps_its_rows_and_bm25_scores(tmp_path: Path) -> None:
    _old_store(tmp_path / "old")
    conn = sqlite3.connect(tmp_path / "old" / "store.sqlite")
    before_scores = _bm25(conn, QUERIES)
    before_rows = conn.execute("SELECT rowid, id, doc_key, ordinal, heading, text, vector FROM chunks").fetchall()
    conn.close()
    assert sum(map(len, before_scores)) > 50  # the queries match: the comparison below means something

    store = Store.open(tmp_path, "old")
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert _bm25(store.db, QUERIES) == before_scores  # same rowids, same floats
    _fts_ok(store.db)
    chunks = store.chunks_by_rowid([r[0] for r in before_rows])
    assert [(r, c.id, c.doc_key, c.ordinal, c.heading, c.text) for r, c in sorted(chunks.items())] == [
        tuple(row[:6]) for row in before_rows
    ]  # rowids (the ANN keys) and headings as they were
    stored = dict(store.db.execute("SELECT id, heading FROM chunks").fetchall())
    assert sum(h is None for h in stored.values()) == 300 * 3  # titles once per document…
    assert {h for h in stored.values() if h is not None} == {f"{_doc(i).title} › Methods" for i in range(0, 400, 4)}
    _, ids, vectors = store._all_vectors()
    assert np.array_equal(vectors, np.frombuffer(b"".join(r[6] for r in before_rows), np.int8).reshape(-1, 16))
    assert store.db.execute("PRAGMA freelist_count").fetchone()[0] == 0  # the copied table's old pages went back
    assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2

    store.apply(_changeset(store, [], [], deletes=[before_rows[0][1]]))  # a delete through the new FTS content
    _fts_ok(store.db)
    assert before_rows[0][0] not in {r for r, _ in store.bm25(before_rows[0][5], 200)}


def test_a_heading_equal_to_its_title_is_stored_once_and_read_back_everywhere(tmp_path: Path) -> None:
    store = Store.open(tmp_path, "s", create=True)
    docs = [_doc(i) for i in range(4)]
    chunks = [c for d in docs for c in _chunks(d)] + _chunks(_doc(9), tag="x", heading="Other › Section")
    store.apply(_changeset(store, docs, chunks))  # doc9's chunks: no document record in this changeset
    stored = dict(store.db.execute("SELECT id, heading FROM chunks").fetchall())
    assert [stored[c.id] for c in chunks] == [None] * 12 + ["Other › Section"] * 3
    by_id = {c.id: c for c in store.chunks_by_rowid(range(1, 100)).values()}
    assert [by_id[c.id].heading for c in chunks] == [c.heading for c in chunks]
    assert sorted((c.id, c.heading) for c in store.snapshot().upserts) == sorted((c.id, c.heading) for c in chunks)
    title_word = WORDS[2]  # in doc2's title only: BM25 still finds every chunk of doc2 through its heading
    hits = store.chunks_by_rowid([r for r, _ in store.bm25(f"title {title_word} 2", 50)])
    assert {c.id for c in hits.values() if c.doc_key == "doc2.md"} == {c.id for c in chunks if c.doc_key == "doc2.md"}
    _fts_ok(store.db)


def test_a_retitled_or_deleted_document_leaves_its_remaining_chunks_their_heading(tmp_path: Path) -> None:
    store = Store.open(tmp_path, "r", create=True)
    doc0, doc1 = _doc(0), _doc(1)
    store.apply(_changeset(store, [doc0, doc1], _chunks(doc0) + _chunks(doc1)))
    renamed = _doc(0, title="A new title")
    extra = _chunks(renamed, n=1, tag="new")
    store.apply(_changeset(store, [renamed], extra, deletes=[f"{doc0.key}#0"]))  # two old chunks stay
    store.apply(_changeset(store, [], [], delete_docs=[doc1.key]))  # its chunks stay (a changeset may do that)
    _fts_ok(store.db)
    headings = {c.id: c.heading for c in store.chunks_by_rowid(range(1, 100)).values()}
    assert headings == {
        f"{doc0.key}#1": doc0.title,
        f"{doc0.key}#2": doc0.title,
        f"{doc0.key}#0new": "A new title",
        **{f"{doc1.key}#{j}": doc1.title for j in range(3)},
    }


def test_a_new_store_has_16k_pages_and_gives_freed_pages_back_on_checkpoint(tmp_path: Path) -> None:
    store = Store.open(tmp_path, "n", create=True)
    assert store.db.execute("PRAGMA page_size").fetchone()[0] == 16384
    assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    docs = [_doc(i) for i in range(300)]
    store.apply(_changeset(store, docs, [c for d in docs for c in _chunks(d, n=6)]))
    store.checkpoint()
    full = (tmp_path / "n" / "store.sqlite").stat().st_size
    store.apply(_changeset(store, docs[:10], [c for d in docs[:10] for c in _chunks(d)], snapshot=True))
    assert store.db.execute("PRAGMA freelist_count").fetchone()[0] > 0  # the replaced rows' pages
    store.checkpoint()
    assert store.db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert (tmp_path / "n" / "store.sqlite").stat().st_size < full / 2  # 14 pages are the empty schema
    assert not (tmp_path / "n" / "store.sqlite-wal").stat().st_size
    _fts_ok(store.db)
    assert store.counts() == (10, 30)


def _indexes(store: Store) -> set[str]:
    return {
        r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'chunks'")
    }


def test_a_snapshot_builds_the_chunk_indexes_once_and_a_failed_one_keeps_them(tmp_path: Path) -> None:
    store = Store.open(tmp_path, "x", create=True)
    docs = [_doc(i) for i in range(20)]
    store.apply(_changeset(store, docs, [c for d in docs for c in _chunks(d)]))
    assert _indexes(store) == {"chunks_id", "chunks_doc"}
    again = [c for d in docs[:5] for c in _chunks(d, tag="s")]
    bad = _changeset(store, docs[:5], again + again[:1], snapshot=True)  # one id twice: CREATE UNIQUE INDEX refuses
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        store.apply(bad)
    assert store.version == 1 and store.counts() == (20, 60) and _indexes(store) == {"chunks_id", "chunks_doc"}
    _fts_ok(store.db)
    store.apply(_changeset(store, docs[:5], again, snapshot=True))
    assert _indexes(store) == {"chunks_id", "chunks_doc"} and store.counts() == (5, 15)
    plan = " ".join(r[3] for r in store.db.execute("EXPLAIN QUERY PLAN SELECT rowid FROM chunks WHERE id = 'x'"))
    assert "chunks_id" in plan  # the lookups of deletes and revectors use it again
    store.apply(_changeset(store, [], [], deletes=[again[0].id]))
    _fts_ok(store.db)
    assert store.counts() == (5, 14) and store.chunk_ids(["doc0.md"]) == [c.id for c in again[1:3]]


def test_an_upgrade_beside_a_reader_migrates_and_compacts_and_the_reader_keeps_its_snapshot(tmp_path: Path) -> None:
    _old_store(tmp_path / "busy")
    reader = sqlite3.connect(tmp_path / "busy" / "store.sqlite", isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM chunks").fetchone()[0] == 1200  # holds a read snapshot open
    store = Store.open(tmp_path, "busy")  # a WAL reader blocks neither the migration nor VACUUM
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert store.counts()[1] == 1200 and store.bm25("statin", 5)
    assert reader.execute("SELECT count(*) FROM chunks WHERE heading IS NULL").fetchone()[0] == 0  # the old schema
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM chunks WHERE heading IS NULL").fetchone()[0] == 900  # the new one
    reader.close()
    _fts_ok(store.db)
