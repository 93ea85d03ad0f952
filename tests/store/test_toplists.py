"""Top lists (``store/toplists.py``, issue 12 P5): a one-word query answered from the word's list must be exactly
FTS5's own ``bm25()`` top k — on the state the lists were built for, after deltas that add better rows, delete
listed ones and move the average length, and by falling back when the list cannot vouch for its answer.

The thresholds are lowered so that a few thousand chunks have lists (at their real values lists start at 200k
chunks); the arithmetic is the same at any size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from outpost.embed.quantize import quantize
from outpost.records import Changeset, Chunk, EmbeddingIdentity
from outpost.store import Store, fts, toplists

DIM = 8
IDENTITY = EmbeddingIdentity("test-vectors", "0" * 64, DIM, 256)
# common words first; "nelafede" and "agreed" stem to terms the stemmer does not leave alone ("nelafed" → "nelaf")
VOCAB = ["w0", "nelafede", "w2", "agreed", *(f"w{i}" for i in range(4, 300))]


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toplists, "BUILD_FROM", 1_000)
    monkeypatch.setattr(toplists, "LIST_MIN", 150)
    monkeypatch.setattr(toplists, "LENGTH", 64)


def _texts(n: int, seed: int, length: tuple[int, int] = (5, 60)) -> list[str]:
    """Zipf-like text: a few words in most rows (listed), most words in few (not)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(VOCAB) + 1) ** 1.05
    return [" ".join(rng.choice(VOCAB, int(rng.integers(*length)), p=weights / weights.sum())) for _ in range(n)]


def _chunks(texts: list[str], prefix: str) -> list[Chunk]:
    return [Chunk(f"{prefix}{i}", f"{prefix}d{i // 4}", i % 4, t) for i, t in enumerate(texts)]


def _apply(store: Store, chunks: list[Chunk], delete: list[str] | None = None, snapshot: bool = False) -> None:
    vectors = np.random.default_rng(len(chunks)).normal(size=(max(len(chunks), 1), DIM)).astype(np.float32)
    q, s = quantize(vectors[: len(chunks)])
    change = Changeset(
        store.name, store.version, chunks, q, s, delete_chunks=delete or [], embedding=IDENTITY, snapshot=snapshot
    )
    store.apply(change)


def _exact(store: Store, word: str, k: int) -> list[tuple[int, float]]:
    """FTS5 scoring every row the word is in: the oracle."""
    sql = "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?"
    return [(r, s) for r, s in store.db.execute(sql, (f'"{word}"', k))]


def _assert_exact(got: list[tuple[int, float]], want: list[tuple[int, float]], store: Store, word: str) -> None:
    """The same scores in the same order (rows tied at the k-th score may differ), and every row's score its own."""
    assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9, abs=1e-12)
    everything = dict(_exact(store, word, 10**9))
    for rowid, score in got:
        assert everything[rowid] == pytest.approx(score, rel=1e-9, abs=1e-12)


def _listed(store: Store) -> list[str]:
    """The listed words, as a query spells them (a listed term is a stem)."""
    spelling = {fts.stems(store.db, [w])[0][0]: w for w in VOCAB}
    return [spelling[t] for (t,) in store.db.execute("SELECT term FROM toplists ORDER BY term")]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path, "c", create=True, exact_below=10**9)
    _apply(s, _chunks(_texts(3_000, seed=1), "a"), snapshot=True)
    return s


def test_a_large_collection_gets_lists_for_its_common_words_only(store: Store) -> None:
    store.db.execute("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, chunks_fts, row)")
    rows = dict(store.db.execute("SELECT term, doc FROM temp.v"))
    listed = [t for (t,) in store.db.execute("SELECT term FROM toplists ORDER BY term")]
    assert listed == sorted(t for t, n in rows.items() if n > toplists.LIST_MIN)
    assert 5 <= len(listed) < 100
    assert {"nelafed", "agre"} <= set(listed)  # asked for through a spelling that stems to them
    for word in ("nelafede", "agreed"):
        assert toplists.one_word(store.db, word, 10) is not None
        _assert_exact(store.bm25(word, 10), _exact(store, word, 10), store, word)


@pytest.mark.parametrize("k", [1, 10, 50])
def test_every_listed_word_answers_as_fts5_scores_it(store: Store, k: int) -> None:
    for word in _listed(store):
        got = toplists.one_word(store.db, word, k)
        assert got is not None, word  # answered from the list, not by the fallback
        _assert_exact(got, _exact(store, word, k), store, word)
        _assert_exact(store.bm25(word, k), _exact(store, word, k), store, word)


def test_after_deltas_the_lists_stay_exact_without_a_rebuild(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """New rows that outscore every listed one, listed rows deleted, longer rows moving the average length: the
    lists are not rebuilt (under a tenth of the collection changed) and still give FTS5's answer."""
    header = toplists.describe(store.db)
    word = min(_listed(store), key=lambda w: len(_exact(store, w, 10**9)))  # the least common listed word
    best = [r for r, _ in _exact(store, word, 20)]
    ids = [i for (i,) in store.db.execute(f"SELECT id FROM chunks WHERE rowid IN ({','.join('?' * 10)})", best[:10])]
    strong = [" ".join([word] * 12 + ["w299"])] * 5 + _texts(40, seed=9, length=(80, 160))
    strong += [" ".join(["nelafede"] * 12)] * 3  # a word whose term ("nelafed") the stemmer does not leave alone
    _apply(store, _chunks(strong, "b"), delete=ids)
    after = toplists.describe(store.db)
    assert after is not None and header is not None and after["watermark"] == header["watermark"]  # not rebuilt
    stats = fts.totals(store.db)
    assert stats.avgdl > header["avgdl"] * 1.02  # the bound's length term moved
    for w in _listed(store):
        got = toplists.one_word(store.db, w, 50)
        assert got is not None, w
        _assert_exact(got, _exact(store, w, 50), store, w)
    top = toplists.one_word(store.db, word, 5) or []
    new_rows = {r for (r,) in store.db.execute("SELECT rowid FROM chunks WHERE id LIKE 'b%'")}
    assert {r for r, _ in top} <= new_rows  # the new rows outscore every listed one
    assert {r for r, _ in toplists.one_word(store.db, "nelafede", 3) or []} <= new_rows


def test_a_list_that_cannot_vouch_for_its_answer_falls_back(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toplists, "CHURN", 10.0)  # no rebuild, however much changes
    word = _listed(store)[-1]
    listed = [r for r, _ in _exact(store, word, toplists.LENGTH)]
    ids = [
        i for (i,) in store.db.execute(f"SELECT id FROM chunks WHERE rowid IN ({','.join('?' * len(listed))})", listed)
    ]
    _apply(store, [], delete=ids[: len(ids) - 5])  # five listed rows left: fewer than k
    assert toplists.one_word(store.db, word, 10) is None
    _assert_exact(store.bm25(word, 10), _exact(store, word, 10), store, word)


def test_lists_are_rebuilt_after_a_large_change_and_dropped_when_small(store: Store) -> None:
    before = toplists.describe(store.db)
    _apply(store, _chunks(_texts(400, seed=3), "c"))  # 400 of 3,400: over a tenth
    after = toplists.describe(store.db)
    assert before is not None and after is not None and after["watermark"] > before["watermark"]
    ids = [i for (i,) in store.db.execute("SELECT id FROM chunks LIMIT 2600")]
    _apply(store, [], delete=ids)  # 800 left: below BUILD_FROM
    assert toplists.describe(store.db) is None and _listed(store) == []
    word = "w0"
    _assert_exact(store.bm25(word, 10), _exact(store, word, 10), store, word)


def test_lists_built_for_another_threshold_are_rebuilt(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose lists an Outpost with another LIST_MIN built gets this one's, from ``refresh_toplists`` (or the
    next apply); with nothing changed, a refresh keeps what is there."""
    before = toplists.describe(store.db)
    assert before is not None and before["list_min"] == toplists.LIST_MIN
    store.refresh_toplists()
    assert toplists.describe(store.db) == before  # nothing to do
    monkeypatch.setattr(toplists, "LIST_MIN", 60)
    store.refresh_toplists()
    after = toplists.describe(store.db)
    assert after is not None and after["list_min"] == 60 and after["words"] > before["words"]
    newly = set(_listed(store)) - {w for w in VOCAB if len(_exact(store, w, 10**9)) > 150}
    assert newly
    for word in newly:
        got = toplists.one_word(store.db, word, 10)
        assert got is not None, word
        _assert_exact(got, _exact(store, word, 10), store, word)


def test_a_snapshot_replaces_the_lists(store: Store) -> None:
    before = toplists.describe(store.db)
    _apply(store, _chunks(_texts(2_000, seed=4), "d"), snapshot=True)
    after = toplists.describe(store.db)
    assert before is not None and after is not None and after["watermark"] > before["watermark"]
    assert after["rows"] == 2_000
    for word in _listed(store)[:5]:
        _assert_exact(toplists.one_word(store.db, word, 10) or [], _exact(store, word, 10), store, word)


def test_queries_of_several_words_answer_the_same_with_lists_as_without(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner (``store/bm25.py``) reads a list where it would score one word's rows in full (a query whose
    rarest word is common): the answers must be those it gives without lists, and lists must have been read."""
    from outpost.store import bm25

    monkeypatch.setattr(bm25, "ROW_BUDGET", 60)
    monkeypatch.setattr(bm25, "FULL_BUDGET", 300)
    monkeypatch.setattr(bm25, "EXACT_UP_TO", 300)
    rng = np.random.default_rng(7)
    listed = _listed(store)
    queries = [[str(w) for w in rng.choice(listed, int(rng.integers(3, 5)), replace=False)] for _ in range(30)]
    queries += [[str(rng.choice(listed)), f"w{int(rng.integers(100, 300))}"] for _ in range(30)]
    total = store.counts()[1]
    used = []
    one_word = toplists.one_word

    def counted(*args: object, **kwargs: object) -> list[tuple[int, float]] | None:
        answer = one_word(*args, **kwargs)  # type: ignore[arg-type]
        used.append(answer is not None)
        return answer

    monkeypatch.setattr(toplists, "one_word", counted)
    with_lists = [bm25.bm25_top_k(store.db, q, 10, total) for q in queries]
    monkeypatch.setattr(toplists, "one_word", lambda *args, **kwargs: None)
    without = [bm25.bm25_top_k(store.db, q, 10, total) for q in queries]
    assert sum(used) >= 5  # the least common word of an all-common query whose AND is short of k rows
    for got, want in zip(with_lists, without):
        assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9)
