"""BM25 top-k over FTS5 that scores only the rows a query's rare words match, with a bound that keeps it exact.

Why: FTS5 computes ``bm25()`` for every row the OR of a query's words matches before it sorts, and a word that
sits in a quarter of a million-chunk collection makes that a quarter of a million scores (≈ 1–2 µs each) for one
query. Matching alone is cheap (FTS5 skips through doclists); scoring is not. The words that match many rows add
little to a score, because BM25's IDF is small for them: that is the idea of Lucene's MaxScore and of
Elasticsearch's old ``cutoff_frequency``, here with FTS5's own arithmetic so that the answer does not change.

How, for query words split into *rare* ``R`` (fewest matching rows, up to :data:`ROW_BUDGET` rows in all) and
*common* ``F`` (the rest):

1. ``MATCH R`` ranked by ``bm25()``: each row's score over R's words. FTS5's BM25 is a sum over the query's
   phrases, each term using the collection's IDF, so this is exactly R's part of the full score.
2. ``MATCH (R) AND (F)`` ranked the same way: the full score of every row that has both kinds of word.
3. A row with no word of R can score at most ``Σ_F idf · (k1 + 1)`` (BM25's term-frequency factor never
   reaches ``k1 + 1``). When the k-th best of (1) ∪ (2) scores above that bound, no such row can enter the top k,
   and (1) ∪ (2) *is* the top k of the full query. When it does not, (1) ∪ (2) is still the answer: rows that
   hold only common words are left out, as ``cutoff_frequency`` did. That is a departure from exact BM25, taken
   only where scoring everything would cost more than FULL_BUDGET rows (milliseconds); below that, and
   on any collection of at most EXACT_UP_TO chunks, the full query runs as before.

IDF needs each word's row count: the words are run through FTS5's own tokenizer (a small ``temp`` FTS5 table, so
the stems are exactly the index's) and looked up in an ``fts5vocab`` table — no other stemmer is involved. Both
are remembered: a word's stems never change (module-wide), a stem's row count not within one version of the
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
    "EXACT_UP_TO",
    "FULL_BUDGET",
    "ROW_BUDGET",
    "STOPWORDS",
    "bm25_top_k",
    "fts_query",
    "plan",
    "query_terms",
    "query_words",
    "rare_first",
    "row_counts",
    "stems",
    "temp_tables",
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
ROW_BUDGET = 4000  # rows the rare words may match together (each scored once or twice: ≈ 5 ms)
FULL_BUDGET = 5_000  # a query matching at most this many rows in all is scored in full (exact, ≈ 5 ms at most)
EXACT_UP_TO = 20_000  # collections of at most this many chunks always get the full query (exact; NFCorpus: 9.5k)
CACHE_LIMIT = 50_000  # words (stems) and stems (row counts) remembered; past it the cache starts again

_STEM_CACHE: dict[str, tuple[str, ...]] = {}  # word → its tokens under 'porter unicode61' (fixed: never stale)

_SETUP = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.outpost_qwords USING fts5(w, tokenize='porter unicode61')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.outpost_qstems USING fts5vocab(temp, outpost_qwords, instance)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.outpost_vocab USING fts5vocab(main, chunks_fts, row)",
)
_RANKED = "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY s LIMIT ?"


@dataclass(frozen=True)
class Word:
    """One query word: its FTS5 phrase, the rows it matches (None: several tokens, not looked up) and its IDF."""

    phrase: str
    rows: int | None
    idf: float


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


def _ranked(db: sqlite3.Connection, query: str, k: int) -> list[tuple[int, float]]:
    return [(row[0], -row[1]) for row in db.execute(_RANKED, (query, k))]


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


def _words(db: sqlite3.Connection, words: list[str], total: int, counts: dict[str, int] | None = None) -> list[Word]:
    tokens_of = stems(db, words)
    rows_of = row_counts(db, {s[0] for s in tokens_of if len(s) == 1}, {} if counts is None else counts)
    out = []
    for word, tokens in zip(words, tokens_of):
        rows = (rows_of[tokens[0]] if len(tokens) == 1 else None) if tokens else 0  # no token: matches none
        out.append(Word(f'"{word}"', rows, idf(total, rows or 0)))
    return out


def _split(words: list[Word]) -> tuple[list[Word], list[Word]]:
    """(rare, common): the words matching fewest rows while they match at most ROW_BUDGET together (maybe none).

    A word of several tokens (its row count unknown) counts as rare: that only costs time, never exactness.
    """
    rare = [w for w in words if w.rows is None]
    known = sorted((w for w in words if w.rows is not None), key=lambda w: w.rows or 0)
    budget = ROW_BUDGET
    while known and (known[0].rows or 0) <= budget:
        budget -= known[0].rows or 0
        rare.append(known.pop(0))
    return rare, known


def bm25_top_k(
    db: sqlite3.Connection, words: list[str], k: int, total: int, counts: dict[str, int] | None = None
) -> list[tuple[int, float]]:
    """The top ``k`` rows by FTS5 BM25 over the OR of ``words``, as (rowid, score), higher is better.

    Exact whenever scoring every matching row is cheap (at most FULL_BUDGET rows) or the bound vouches for the
    rare words' rows. Otherwise, on large collections, the answer is the best of the rows that hold a rare word
    (Elasticsearch's ``cutoff_frequency`` rule), or, when every word is common, of the rows that hold them all;
    ``benchmarks/scale.py retrieval`` measures how often and how much that differs from scoring everything.
    Run inside one read transaction (``total``, the collection's row count, must be of the same state; so must
    ``counts``, the stems' row counts remembered for that state, if given).
    """
    if not words or k <= 0:
        return []
    full = query_words(words)
    if len(words) == 1 or total <= EXACT_UP_TO:
        return _ranked(db, full, k)
    scored = _words(db, words, total, counts)
    if sum(w.rows if w.rows is not None else total for w in scored) <= FULL_BUDGET:
        return _ranked(db, full, k)
    rare, common = _split(scored)
    if rare and common:
        return rare_first(db, rare, common, k)[0]
    if not rare:  # every word is common: the rows that hold them all, else those of the least common word
        top = _ranked(db, " AND ".join(w.phrase for w in scored), k)
        if len(top) == k:
            return top
        if len(scored) > 1 and all(w.rows is not None for w in scored):
            least, *rest = sorted(scored, key=lambda w: w.rows or 0)
            return rare_first(db, [least], rest, k)[0]
    return _ranked(db, full, k)


def rare_first(
    db: sqlite3.Connection, rare: list[Word], common: list[Word], k: int
) -> tuple[list[tuple[int, float]], bool]:
    """The top ``k`` of the rows holding a rare word, by their full score (steps 1–3 above); and whether the
    bound proves that no row without a rare word could enter it (then the answer is exactly the full query's)."""
    rare_q = " OR ".join(w.phrase for w in rare)
    common_q = " OR ".join(w.phrase for w in common)
    scores = dict(_ranked(db, rare_q, k))
    scores.update(_ranked(db, f"({rare_q}) AND ({common_q})", k))
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:k]
    bound = sum(w.idf for w in common) * (K1 + 1)
    return top, len(top) == k and top[-1][1] > bound


def plan(db: sqlite3.Connection, words: list[str], total: int) -> tuple[list[Word], list[Word]]:
    """(rare, common) for ``words`` on this collection: what :func:`bm25_top_k` would use (for measurements)."""
    return _split(_words(db, words, total))
