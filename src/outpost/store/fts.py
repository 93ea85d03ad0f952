"""FTS5 as the BM25 code sees it: which words a query uses, their stems and row counts, FTS5's own BM25
arithmetic, scoring a query in full, and the two records of FTS5's file format that its statistics live in.

Shared by the query planner (``store/bm25.py``) and the words' top lists (``store/toplists.py``), so that both
use exactly FTS5's tokens, IDF and term-frequency factor and neither can drift from the other.

Stems and row counts: words are run through FTS5's own tokenizer (a small ``temp`` FTS5 table, so the stems are
exactly the index's) and looked up in an ``fts5vocab`` table — no other stemmer is involved. Both are
remembered: a word's stems never change (module-wide), a stem's row count not within one version of the
collection (the caller's ``counts`` dict, which ``Store`` keeps per state). The look-up is not free — fts5vocab
counts a term's rows by walking its whole doclist, ≈ 1–4 ms for a common word at 1M chunks — and common words
recur from query to query (Zipf), so the cache hits most of the time.
"""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass

__all__ = [
    "B",
    "K1",
    "STOPWORDS",
    "Totals",
    "fts_query",
    "idf",
    "lengths",
    "query_terms",
    "query_words",
    "ranked",
    "row_counts",
    "stems",
    "temp_tables",
    "totals",
    "varints",
]

# Words that carry no retrieval signal; dropping them halves FTS5 latency at the same quality.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)
_WORD = re.compile(r"\w+", re.UNICODE)


K1 = 1.2  # FTS5's bm25() constants (ext/fts5/fts5_aux.c)
B = 0.75
CACHE_LIMIT = 50_000  # words (stems) and stems (row counts) remembered; past it the cache starts again

_STEM_CACHE: dict[str, tuple[str, ...]] = {}  # word → its tokens under 'porter unicode61' (fixed: never stale)

_SETUP = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.outpost_qwords USING fts5(w, tokenize='porter unicode61')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.outpost_qstems USING fts5vocab(temp, outpost_qwords, instance)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.outpost_vocab USING fts5vocab(main, chunks_fts, row)",
)
_RANKED = "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY s LIMIT ?"
_RANKED_SINCE = (
    "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? AND rowid >= ? ORDER BY s LIMIT ?"
)


def query_words(words: list[str]) -> str:
    """Words → the FTS5 OR query (each quoted: raw syntax never reaches ``MATCH``)."""
    return " OR ".join(f'"{w}"' for w in words)


def idf(total: int, rows: int) -> float:
    """FTS5's IDF: ``log((N - n + 0.5) / (n + 0.5))``, floored at 1e-6 as FTS5 does."""
    value = math.log((total - rows + 0.5) / (rows + 0.5))
    return value if value > 0 else 1e-6


def fts_query(text: str) -> str:
    """A user's text → a safe FTS5 query: quoted word tokens, stopwords and repeats dropped, OR-ed.

    Raw text never reaches ``MATCH``: a ``?``, a quote, ``C++`` or ``AND`` must not be an error.
    """
    return query_words(query_terms(text))


def query_terms(text: str) -> list[str]:
    """The words of a user's text that a BM25 query uses: lower-cased, stopwords and repeats dropped, in order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in STOPWORDS:
            seen.setdefault(word, None)
    return list(seen)


def temp_tables(db: sqlite3.Connection) -> None:
    """The connection's temp tables for stems (``temp.outpost_qwords``, ``temp.outpost_qstems``) and for every
    term's row count (``temp.outpost_vocab``); made once per connection, kept as long as it is open."""
    for statement in _SETUP:
        db.execute(statement)


def ranked(db: sqlite3.Connection, query: str, k: int, since: int | None = None) -> list[tuple[int, float]]:
    """FTS5 scoring every row ``query`` matches (or only those with rowid ≥ ``since``): the top ``k`` as (rowid,
    score), higher is better. The one place a query is scored in full; what the planners above avoid."""
    if since is None:
        return [(row[0], -row[1]) for row in db.execute(_RANKED, (query, k))]
    return [(row[0], -row[1]) for row in db.execute(_RANKED_SINCE, (query, since, k))]


def stems(db: sqlite3.Connection, words: list[str]) -> list[tuple[str, ...]]:
    """Each word's tokens as the index's tokenizer makes them (``porter unicode61``), through a temp FTS5 table."""
    known = {w: _STEM_CACHE[w] for w in words if w in _STEM_CACHE}  # a copy: another thread may clear the cache
    unknown = [w for w in dict.fromkeys(words) if w not in known]
    if unknown:
        temp_tables(db)
        db.execute("DELETE FROM temp.outpost_qwords")
        db.executemany("INSERT INTO temp.outpost_qwords (rowid, w) VALUES (?, ?)", enumerate(unknown))
        stems: list[list[str]] = [[] for _ in unknown]
        for term, doc in db.execute("SELECT term, doc FROM temp.outpost_qstems ORDER BY doc, offset"):
            stems[doc].append(term)
        if len(_STEM_CACHE) + len(unknown) > CACHE_LIMIT:
            _STEM_CACHE.clear()
        known.update(zip(unknown, map(tuple, stems)))
        _STEM_CACHE.update(known)
    return [known[w] for w in words]


def row_counts(db: sqlite3.Connection, stems: set[str], counts: dict[str, int]) -> dict[str, int]:
    """Rows holding each stem (fts5vocab ``doc``), from ``counts`` where known; the new ones are added to it."""
    known = {stem: counts[stem] for stem in stems if stem in counts}
    missing = sorted(stems - known.keys())
    if missing:
        temp_tables(db)
        found = dict.fromkeys(missing, 0)
        marks = ",".join("?" * len(missing))
        found.update(db.execute(f"SELECT term, doc FROM temp.outpost_vocab WHERE term IN ({marks})", missing))
        if len(counts) + len(found) > CACHE_LIMIT:
            counts.clear()
        counts.update(found)
        known.update(found)
    return known


@dataclass(frozen=True)
class Totals:
    """FTS5's collection statistics for BM25: rows indexed and their average length in tokens (all columns)."""

    rows: int
    avgdl: float


def varints(blob: bytes) -> list[int]:
    """SQLite's varints (big-endian, 7 bits a byte, the ninth byte whole), as FTS5 writes its records."""
    out, i = [], 0
    while i < len(blob):
        value = 0
        for j in range(9):
            byte = blob[i]
            i += 1
            if j == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        out.append(value)
    return out


def totals(db: sqlite3.Connection) -> Totals:
    """FTS5's committed ``averages`` record (``chunks_fts_data`` id 1: the row count, each column's token total).

    Inside a write transaction that has indexed rows it lags (FTS5 writes it at commit): read it after one.
    """
    row = db.execute("SELECT block FROM chunks_fts_data WHERE id = 1").fetchone()
    values = varints(row[0]) if row and row[0] else []
    if not values or values[0] == 0:
        return Totals(0, 0.0)
    return Totals(values[0], sum(values[1:]) / values[0])


def lengths(db: sqlite3.Connection, rowids: list[int]) -> dict[int, int]:
    """Each existing row's length in tokens, all columns (``chunks_fts_docsize``); a deleted row is absent."""
    marks = ",".join("?" * len(rowids))
    rows = db.execute(f"SELECT id, sz FROM chunks_fts_docsize WHERE id IN ({marks})", rowids)
    return {rowid: sum(varints(size)) for rowid, size in rows}
