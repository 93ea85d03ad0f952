"""Top lists: each common word's best rows under BM25, kept beside FTS5, so that a one-word query on a large
collection reads a hundred rows instead of scoring every row the word is in (issue 12, P5).

Why: FTS5 computes ``bm25()`` for every row a query matches before it sorts. For a query of one common word there
is nothing to prune with (``store/bm25.py`` prunes with the rarer words of a query): at a million chunks a word
in 8% of them is 78,000 scores, ≈ 50 ms, the whole p99 of hybrid retrieval. This is the "top-k postings" idea of
Lucene's impact-sorted indexes, built from FTS5's own arithmetic so that the answer does not change.

What is kept, for every word (FTS5 term) matching more than :data:`LIST_MIN` rows: the :data:`LENGTH` rows it
scores best in, each with the word's count in that row (``tf``) and the row's length in tokens, and the
term-frequency factor of the last one (the *floor*: no row left out scored above it). None of it goes stale: a
rowid is never reused and a row's text never changes under its rowid (``Store._next_rowid``), so a listed row
is true for as long as it exists; the rows an apply deletes are recorded (``toplists_gone``, :func:`forget`).

Answering a word's top ``k`` from its list, exactly, on any later state of the collection:

1. the listed rows not deleted since are scored with FTS5's formula and the collection's row count and average
   length *now*;
2. rows added since the lists were built (rowid ≥ the lists' *watermark*) are scored by FTS5 itself, restricted
   to that rowid range;
3. any other row existed when the list was made and its factor was at most the floor then. Only the length term
   of BM25's denominator has moved since, so its factor now is at most :func:`ceiling` of the floor (the floor
   itself when the average length did not grow). When the k-th best of (1) ∪ (2) reaches that bound, (1) ∪ (2)
   holds the exact top k; when not (many listed rows deleted), the caller scores everything, as without lists.

So lists only ever make a query faster, never different, and a stale list is not wrong, only less useful. The
store rebuilds them after an apply that changed a tenth of the collection (:func:`worth_rebuilding`), after the
commit and in a transaction of their own, like the ANN index; a snapshot drops them in its own transaction.

FTS5 internals read here, both part of its on-disk format: the ``averages`` record (``<table>_data`` id 1: the
row count and each column's token total) and, while building, ``<table>_docsize`` (each row's token count per
column), both varints. Lists whose derived counts are not whole numbers (an FTS5 that scores otherwise) are not
kept: the build checks, and ``tests/store/test_toplists.py`` compares every answer with FTS5's own.
"""

from __future__ import annotations

import json
import logging
import sqlite3

import numpy as np

from outpost.store import fts
from outpost.store.fts import K1, STOPWORDS, B, idf, query_words, row_counts, stems, temp_tables, totals

__all__ = [
    "BUILD_FROM",
    "LENGTH",
    "LIST_MIN",
    "build",
    "describe",
    "drop",
    "forget",
    "one_word",
    "worth_rebuilding",
]

# a word matching more rows gets a list: at 1M chunks FTS5 scores a mid-frequency word's scattered rows at 2-3 us
# each (each row's length is a B-tree look-up), so 2,000 rows cost 5-7 ms, a one-word query's whole budget
LIST_MIN = 2_000
LENGTH = 128  # rows kept per word: the retriever's depth (50) with room for deleted rows
# chunks from which lists are kept: below, a word's rows are few enough to score (≤ ~20k, ≤ ~30 ms), and the build
# (2–4 s at 100k) would be a tenth of a 100k snapshot's apply (P4: docs/benchmarks.md, "P5: top lists")
BUILD_FROM = 200_000
CHURN = 0.1  # rows added or deleted since the build, as a share of the collection, that make a rebuild worth it

_SUFFIXES = ("", "e", "s", "es", "ed", "ing", "ion", "al", "er", "ly", "y", "ate", "ment", "ness", "ive", "ize")
_META = "toplists"  # meta key: the build's watermark, row count and average length

log = logging.getLogger(__name__)


def factor(tf: np.ndarray, dl: np.ndarray, avgdl: float) -> np.ndarray:
    """BM25's term-frequency factor, as FTS5's ``bm25()`` computes it (ext/fts5/fts5_aux.c)."""
    return tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))


def ceiling(floor: float, growth: float) -> float:
    """The highest factor, at an average length ``growth`` times the build's, of a row whose factor was at most
    ``floor`` then. Only BM25's length term moves: a shorter average (growth ≤ 1) lowers every factor; a longer
    one raises a row's factor most for long rows, and along the rows whose factor was ``floor`` it rises with
    ``tf`` towards ``(k1 + 1) · g / (g - 1 + (k1 + 1) / floor)`` (g the growth), below ``floor · g``.
    """
    if growth <= 1.0 or floor <= 0.0:
        return floor
    return (K1 + 1) * growth / (growth - 1 + (K1 + 1) / floor)


def _gone(db: sqlite3.Connection, rowids: np.ndarray) -> list[int]:
    """Which of these listed rows were deleted since the build (none, mostly: one look at an empty table)."""
    if db.execute("SELECT 1 FROM toplists_gone LIMIT 1").fetchone() is None:
        return []
    marks = ",".join("?" * len(rowids))
    return [r for (r,) in db.execute(f"SELECT rowid FROM toplists_gone WHERE rowid IN ({marks})", rowids.tolist())]


def _meta(db: sqlite3.Connection) -> dict[str, float] | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (_META,)).fetchone()
    return json.loads(row[0]) if row else None


def build(db: sqlite3.Connection, next_rowid: int) -> int:
    """Replace the lists with ones for the committed state; returns how many words got one.

    Call inside a write transaction, with no uncommitted FTS5 rows (see :func:`totals`). Cost: FTS5 scores every
    row of every listed word once after one walk of its vocabulary (5 CPU-s): at 1M synthetic chunks 3,974 words
    in 90 CPU-s on idle cores (1,613 words, ≈ 25M scores, 58 CPU-s at load ≈ 3 while lists started at 5,000 rows).
    """
    drop(db)
    stats = totals(db)
    if stats.rows == 0:
        return 0
    temp_tables(db)
    common = dict(db.execute("SELECT term, doc FROM temp.outpost_vocab WHERE doc > ?", (LIST_MIN,)))
    unasked = {t for tokens in stems(db, sorted(STOPWORDS)) for t in tokens}  # a query never holds a stopword
    kept = []
    for term, word in _spellings(db, [t for t in common if t not in unasked]).items():
        ranked = fts.ranked(db, query_words([word]), LENGTH)
        lengths = fts.lengths(db, [r for r, _ in ranked])
        scores = np.array([s for _, s in ranked])
        dl = np.array([lengths[r] for r, _ in ranked], dtype=np.float64)
        norm = K1 * (1 - B + B * dl / stats.avgdl)
        weight = idf(stats.rows, common[term]) * (K1 + 1)
        tf = scores * norm / (weight - scores)  # bm25 = weight · tf / (tf + norm), solved for tf
        counts = np.rint(tf)
        if not np.allclose(tf, counts, rtol=0, atol=1e-6) or (counts < 1).any():
            log.warning("top lists not kept: FTS5's bm25() of %r does not decompose as expected", term)
            drop(db)
            return 0
        floor = float(factor(counts[-1:], dl[-1:], stats.avgdl)[0])
        rowids = np.array([r for r, _ in ranked], dtype=np.int64)
        kept.append((term, rowids.tobytes(), counts.astype(np.int32).tobytes(), dl.astype(np.int32).tobytes(), floor))
    db.executemany("INSERT INTO toplists (term, rowids, tfs, lengths, floor) VALUES (?, ?, ?, ?, ?)", kept)
    header = {"watermark": next_rowid, "rows": stats.rows, "avgdl": stats.avgdl, "length": LENGTH, "list_min": LIST_MIN}
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_META, json.dumps(header)))
    return len(kept)


def _spellings(db: sqlite3.Connection, terms: list[str]) -> dict[str, str]:
    """A word that FTS5's tokenizer turns into each term, to ask for the term's rows with (a term may have none).

    A query is stemmed, and the Porter stemmer does not always leave a stem alone ("nelafede" → "nelafed" →
    "nelaf"), so the term itself is not always a spelling of itself; the suffixes the stemmer strips are tried.
    """
    found: dict[str, str] = {}
    for suffix in _SUFFIXES:
        left = [t for t in terms if t not in found]
        if not left:
            break
        tried = [t + suffix for t in left]
        found.update((t, w) for t, w, tokens in zip(left, tried, stems(db, tried)) if tokens == (t,))
    return found


def drop(db: sqlite3.Connection) -> None:
    """Forget every list (inside the caller's write transaction)."""
    db.execute("DELETE FROM toplists")
    db.execute("DELETE FROM toplists_gone")
    db.execute("DELETE FROM meta WHERE key = ?", (_META,))


def forget(db: sqlite3.Connection, rowids: np.ndarray, everything: bool = False) -> None:
    """Record rows an apply deletes (inside its transaction), so a query skips them in the lists without looking
    every listed row up (128 seeks in FTS5's row lengths: ≈ 1 ms at 1M chunks); ``everything`` (a snapshot) drops
    the lists instead: the collection they described is gone."""
    header = _meta(db)
    if header is None:
        return
    if everything:
        drop(db)
        return
    old = rowids[rowids < int(header["watermark"])].tolist()
    db.executemany("INSERT OR IGNORE INTO toplists_gone (rowid) VALUES (?)", ((r,) for r in old))


def worth_rebuilding(db: sqlite3.Connection, chunks: int) -> bool:
    """Whether lists should be (re)built for a collection of ``chunks`` rows: it is large and has none, or a tenth
    of it was added or deleted since they were built (each such row costs a little on every query that uses one),
    or they were built for another LIST_MIN (an older Outpost's: 5,000 before 2026-12-03). A small collection
    with lists left over says so too (:func:`build` then keeps none)."""
    header = _meta(db)
    if chunks < BUILD_FROM:
        return header is not None
    if header is None or header.get("list_min", 5_000) != LIST_MIN:
        return True
    since = (int(header["watermark"]),)  # FTS5's row lengths: a small row per chunk, cheaper to count than chunks
    added = int(db.execute("SELECT count(*) FROM chunks_fts_docsize WHERE id >= ?", since).fetchone()[0])
    deleted = int(header["rows"]) + added - chunks
    return added + deleted > CHURN * chunks


def one_word(
    db: sqlite3.Connection, word: str, k: int, counts: dict[str, int] | None = None
) -> list[tuple[int, float]] | None:
    """The top ``k`` rows for a one-word query as (rowid, score), exactly as ``bm25()`` ranks them; None when the
    word has no list or its list cannot vouch for the answer (then score everything).

    ``counts``: the terms' row counts remembered for this state (``store/bm25.py``). Call inside one read
    transaction.
    """
    header = _meta(db)
    if header is None or k > int(header["length"]):
        return None
    tokens = stems(db, [word])[0]
    if len(tokens) != 1:  # a word FTS5 splits into a phrase
        return None
    term = tokens[0]
    row = db.execute("SELECT rowids, tfs, lengths, floor FROM toplists WHERE term = ?", (term,)).fetchone()
    if row is None:
        return None
    term_rows = row_counts(db, {term}, {} if counts is None else counts)[term]
    stats = totals(db)
    rowids = np.frombuffer(row[0], dtype=np.int64)
    alive = ~np.isin(rowids, _gone(db, rowids))
    tfs = np.frombuffer(row[1], dtype=np.int32)[alive].astype(np.float64)
    dl = np.frombuffer(row[2], dtype=np.int32)[alive].astype(np.float64)  # a row's length never changes
    weight = idf(stats.rows, term_rows)
    scored = list(zip(rowids[alive].tolist(), (weight * factor(tfs, dl, stats.avgdl)).tolist()))
    watermark = int(header["watermark"])
    if db.execute("SELECT 1 FROM chunks_fts_docsize WHERE id >= ? LIMIT 1", (watermark,)).fetchone():
        scored += fts.ranked(db, query_words([word]), k, since=watermark)  # the word: the term may not stem to itself
    top = sorted(scored, key=lambda rs: -rs[1])[:k]
    bound = weight * ceiling(float(row[3]), stats.avgdl / float(header["avgdl"]))
    if len(top) < k or top[-1][1] < bound:
        return None
    return top


def describe(db: sqlite3.Connection) -> dict[str, float] | None:
    """The lists' header (for measurements and tests): watermark, rows and average length at the build."""
    header = _meta(db)
    if header is None:
        return None
    return header | {"words": db.execute("SELECT count(*) FROM toplists").fetchone()[0]}
