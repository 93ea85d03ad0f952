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

Step 1 for a single rare word, and a query of one word, read the word's top list when it has one
(``store/toplists.py``: the same rows and scores, without scoring each of the word's rows), so a one-word query is
exact and cheap at any size. IDF needs each word's row count: ``store/fts.py`` finds the stems and counts with
FTS5's own tokenizer and vocabulary, and remembers them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from outpost.store import fts, toplists
from outpost.store.fts import K1, idf, query_words, row_counts, stems

__all__ = ["EXACT_UP_TO", "FULL_BUDGET", "ROW_BUDGET", "Word", "bm25_top_k", "plan", "rare_first"]

ROW_BUDGET = 4000  # rows the rare words may match together (each scored once or twice: ≈ 5 ms)
FULL_BUDGET = 5_000  # a query matching at most this many rows in all is scored in full (exact, ≈ 5 ms at most)
EXACT_UP_TO = 20_000  # collections of at most this many chunks always get the full query (exact; NFCorpus: 9.5k)


@dataclass(frozen=True)
class Word:
    """One query word, the rows it matches (None: several tokens, not looked up) and its IDF."""

    word: str
    rows: int | None
    idf: float

    @property
    def phrase(self) -> str:
        """The word as an FTS5 phrase (quoted: raw syntax never reaches ``MATCH``)."""
        return query_words([self.word])


def _words(db: sqlite3.Connection, words: list[str], total: int, counts: dict[str, int] | None = None) -> list[Word]:
    tokens_of = stems(db, words)
    rows_of = row_counts(db, {s[0] for s in tokens_of if len(s) == 1}, {} if counts is None else counts)
    out = []
    for word, tokens in zip(words, tokens_of):
        rows = (rows_of[tokens[0]] if len(tokens) == 1 else None) if tokens else 0  # no token: matches none
        out.append(Word(word, rows, idf(total, rows or 0)))
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
    (Elasticsearch's ``cutoff_frequency`` rule), or, when every word is common, of the rows that hold them all
    (when k such rows are expected), else of the least common word's rows;
    ``benchmarks/scale.py retrieval`` measures how often and how much that differs from scoring everything.
    Run inside one read transaction (``total``, the collection's row count, must be of the same state; so must
    ``counts``, the stems' row counts remembered for that state, if given).
    """
    if not words or k <= 0:
        return []
    full = query_words(words)
    if total <= EXACT_UP_TO:
        return fts.ranked(db, full, k)
    if len(words) == 1:  # nothing to prune with: the word's top list, else every row it is in
        return _own_top(db, words[0], None, k, counts)
    scored = _words(db, words, total, counts)
    if sum(w.rows if w.rows is not None else total for w in scored) <= FULL_BUDGET:
        return fts.ranked(db, full, k)
    rare, common = _split(scored)
    if rare and common:
        return rare_first(db, rare, common, k, counts)[0]
    if not rare:  # every word is common: the rows that hold them all, else those of the least common word
        if _expected_holding_all(scored, total) >= k:  # not a statement (and FTS5's IDF pass) bound to come back short
            top = fts.ranked(db, " AND ".join(w.phrase for w in scored), k)
            if len(top) == k:
                return top
        least, *rest = sorted(scored, key=lambda w: w.rows or 0)
        return rare_first(db, [least], rest, k, counts)[0]
    return fts.ranked(db, full, k)


def _expected_holding_all(words: list[Word], total: int) -> float:
    """Rows expected to hold every word if words fell independently (real text: more, as words co-occur).

    Why: every FTS5 statement that ranks by ``bm25()`` first walks the whole doclist of each of its words to count
    their rows for IDF (≈ 2 ms per 65k rows at 1M chunks). Five common words whose AND holds one row cost ≈ 12 ms
    to learn that, before the fallback walks them all again; asking only when k rows are likely skips that.
    """
    expected = float(total)
    for w in words:
        expected *= (w.rows or 0) / max(total, 1)
    return expected


def rare_first(
    db: sqlite3.Connection, rare: list[Word], common: list[Word], k: int, counts: dict[str, int] | None = None
) -> tuple[list[tuple[int, float]], bool]:
    """The top ``k`` of the rows holding a rare word, by their full score (steps 1–3 above); and whether the
    bound proves that no row without a rare word could enter it (then the answer is exactly the full query's)."""
    rare_q = " OR ".join(w.phrase for w in rare)
    common_q = " OR ".join(w.phrase for w in common)
    one = rare[0] if len(rare) == 1 else None
    scores = dict(_own_top(db, one.word, one.rows, k, counts) if one is not None else fts.ranked(db, rare_q, k))
    scores.update(fts.ranked(db, f"({rare_q}) AND ({common_q})", k))
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:k]
    bound = sum(w.idf for w in common) * (K1 + 1)
    return top, len(top) == k and top[-1][1] > bound


def _own_top(
    db: sqlite3.Connection, word: str, rows: int | None, k: int, counts: dict[str, int] | None
) -> list[tuple[int, float]]:
    """One word's top ``k`` by its own score: from its top list when it has one (``store/toplists.py``: the same
    answer, without scoring each of its rows), else FTS5 scoring them all. ``rows``: its row count, if known."""
    listed = toplists.one_word(db, word, k, counts) if rows is None or rows > toplists.LIST_MIN else None
    return listed if listed is not None else fts.ranked(db, query_words([word]), k)


def plan(db: sqlite3.Connection, words: list[str], total: int) -> tuple[list[Word], list[Word]]:
    """(rare, common) for ``words`` on this collection: what :func:`bm25_top_k` would use (for measurements)."""
    return _split(_words(db, words, total))
