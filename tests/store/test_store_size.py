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
    """FTS5's integrity check, against the content too: with ``rank = 1`` it tokenizes every row of ``chunks_text``
    again and compares with the index (without it, SQLite 3.40 checks only the index's own structure)."""
    db.execute("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")


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


def _text(i: int, j: int) -> str:
    """Chunk text of the lengths a store meets: short (stays TEXT), abstract-sized (packed), and non-ASCII."""
    if j == 0:
        return f"{WORDS[i % 10]} {i}"
    words = " ".join(WORDS[k] for k in np.random.default_rng(i * 10 + j).integers(0, 10, 90))
    text = f"{words} w{i}x{j}"
    return text if j == 1 else text.replace("rice", "riz – naïve µg/kg 🍚")


def _v4_store(folder: Path, docs: int = 200) -> None:
    """A collection as the code before migration 5 wrote it: plain text in ``chunks.text``, FTS5 over chunks_text."""
    folder.mkdir(parents=True)
    conn = sqlite3.connect(folder / "store.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn, MIGRATIONS[:4])
    rng = np.random.default_rng(2)
    for i in range(docs):
        doc = _doc(i)
        conn.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?)", (doc.key, doc.sha256, doc.title, "md", 1, 3))
        for j in range(3):
            conn.execute(
                "INSERT INTO chunks (rowid, id, doc_key, ordinal, page, heading, text, token_count, vector, scale) "
                "VALUES (?, ?, ?, ?, NULL, ?, ?, 7, ?, 0.01)",
                (
                    3 * i + j + 5,
                    f"{doc.key}#{j}",
                    doc.key,
                    j,
                    "Methods" if j == 2 else None,
                    _text(i, j),
                    rng.integers(-127, 128, 16, dtype=np.int8).tobytes(),
                ),
            )
    conn.execute("INSERT INTO chunks_fts (rowid, heading, text) SELECT rowid, heading, text FROM chunks_text")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', '1')")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('embedding', ?)", (IDENTITY.to_json(),))
    conn.close()


QUERIES_5 = ["statin survival", "breast cancer cohort", "naïve rice", "riz µg", "soy 7", "w3x1", "methods title"]


def test_migration_5_packs_the_text_in_place_and_keeps_rows_fts5_and_bm25_scores(tmp_path: Path) -> None:
    _v4_store(tmp_path / "v4")
    conn = sqlite3.connect(tmp_path / "v4" / "store.sqlite")
    before_scores = _bm25(conn, QUERIES_5)
    before_rows = conn.execute("SELECT rowid, id, heading, text FROM chunks_text ORDER BY rowid").fetchall()
    before_vectors = conn.execute("SELECT vector FROM chunks ORDER BY rowid").fetchall()
    plain_bytes = conn.execute("SELECT sum(length(CAST(text AS BLOB))) FROM chunks").fetchone()[0]
    conn.close()
    assert sum(map(len, before_scores)) > 50  # the queries match: the comparison below means something

    store = Store.open(tmp_path, "v4")
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 6  # 6: top lists
    assert _bm25(store.db, QUERIES_5) == before_scores  # same rowids, same floats
    _fts_ok(store.db)  # FTS5 re-reads every row through chunks_text (unpacked) and finds the tokens it holds
    chunks = store.chunks_by_rowid([r[0] for r in before_rows])
    assert [(r, c.id, c.heading, c.text) for r, c in sorted(chunks.items())] == [tuple(r) for r in before_rows]
    assert all(type(c.text) is str for c in chunks.values())
    kinds = dict(store.db.execute("SELECT typeof(packed_text), count(*) FROM chunks GROUP BY 1").fetchall())
    assert kinds == {"text": 200, "blob": 400}  # short texts stay plain: packed, they would grow
    packed_bytes = store.db.execute("SELECT sum(length(packed_text)) FROM chunks").fetchone()[0]
    assert packed_bytes < 0.7 * plain_bytes
    _, _, vectors = store._all_vectors()
    assert np.array_equal(vectors, np.frombuffer(b"".join(r[0] for r in before_vectors), np.int8).reshape(-1, 16))
    assert store.db.execute("PRAGMA freelist_count").fetchone()[0] == 0  # the old table's pages went back
    with pytest.raises(sqlite3.OperationalError, match="no such column"):  # a plain-SQL reader fails, loudly
        store.db.execute("SELECT text FROM chunks")

    gone = [r[1] for r in before_rows[:30]]  # deletes feed FTS5 the unpacked text it indexed
    store.apply(_changeset(store, [], [], deletes=gone))
    _fts_ok(store.db)
    assert not {r for r, _ in store.bm25("w0x1 w1x2 riz", 600)} & {r[0] for r in before_rows[:30]}
    new = Chunk("new#0", "new.md", 0, _text(7, 2) + " zebra", None, "", 7)
    store.apply(_changeset(store, [], [new]))
    _fts_ok(store.db)
    (hit,) = store.chunks_by_rowid([r for r, _ in store.bm25("zebra", 5)]).values()
    assert hit.text == new.text


def test_chunk_text_is_packed_on_apply_and_read_back_plain_everywhere(tmp_path: Path) -> None:
    store = Store.open(tmp_path, "p", create=True)
    docs = [_doc(i) for i in range(30)]
    chunks = [
        Chunk(f"{d.key}#{j}", d.key, j, _text(i, j), None, d.title, 7) for i, d in enumerate(docs) for j in range(3)
    ]
    store.apply(_changeset(store, docs, chunks))
    stored = dict(store.db.execute("SELECT id, packed_text FROM chunks").fetchall())
    assert {type(v) for v in stored.values()} == {str, bytes}
    assert all(type(stored[c.id]) is str for c in chunks if c.ordinal == 0)  # short: as it is
    texts = {c.id: c.text for c in chunks}
    assert {c.id: c.text for c in store.chunks_by_rowid(range(1, 200)).values()} == texts
    assert {c.id: c.text for c in store.snapshot().upserts} == texts
    assert dict(store.db.execute("SELECT id, text FROM chunks_text").fetchall()) == texts
    hits = store.chunks_by_rowid([r for r, _ in store.bm25("naïve µg", 100)])
    assert {c.id for c in hits.values()} == {c.id for c in chunks if "naïve" in c.text}
    _fts_ok(store.db)
    plain = sqlite3.connect(tmp_path / "p" / "store.sqlite")  # a session without the store's functions
    with pytest.raises(sqlite3.OperationalError, match="no such function: text_unpack"):
        plain.execute("SELECT text FROM chunks_text").fetchall()
    assert plain.execute("SELECT count(*) FROM chunks").fetchone()[0] == 90
    plain.close()
    store.close()


def test_fts5_rows_written_from_the_changeset_are_what_chunks_text_yields(tmp_path: Path) -> None:
    """``_insert`` gives FTS5 the changeset's own text and heading instead of reading them back through
    ``chunks_text``; external-content FTS5 needs them equal to what the view yields for those rows. Every heading
    case: the title (stored NULL), another heading, empty, NULL (a pack's null heading: the view gives the title),
    a chunk whose document is in an earlier version or in none; then a delta deletes them (FTS5 is fed the view's
    values) and the integrity check, which re-reads every row through the view, must still pass."""
    store = Store.open(tmp_path, "f", create=True)
    docs = [_doc(i) for i in range(3)]
    first = [c for d in docs for c in _chunks(d)]
    store.apply(_changeset(store, docs, first, snapshot=True))
    odd = [
        Chunk("h-other", "doc0.md", 5, "fiber colon other heading", None, "Methods", 7),
        Chunk("h-empty", "doc1.md", 5, "soy empty heading", None, "", 7),
        Chunk("h-null", "doc2.md", 5, "arsenic rice null heading", None, None, 7),  # type: ignore[arg-type]
        Chunk("h-nodoc", "gone.md", 0, "statin without a document", None, None, 7),  # type: ignore[arg-type]
    ]
    store.apply(_changeset(store, [], odd))  # their documents are in an earlier version, or in none
    _fts_ok(store.db)
    view = dict(store.db.execute("SELECT id, heading FROM chunks_text").fetchall())
    assert [view[c.id] for c in odd] == ["Methods", "", docs[2].title, ""]
    hits = store.chunks_by_rowid([r for r, _ in store.bm25(docs[2].title, 50)])
    assert "h-null" in {c.id for c in hits.values()}  # indexed under its document's title, as the view reads it
    store.apply(_changeset(store, [], [], deletes=[c.id for c in odd] + [first[0].id]))
    _fts_ok(store.db)
    assert store.bm25("null heading", 10) == []
    store.close()
