"""Retrieval settings for large collections (issue 12, P5), each checked against an oracle on a small collection:
the HNSW search width that grows with the index (recall against exact int8 search), the remembered BM25 term
counts (answers equal to computing them afresh, across versions), and the hybrid search that runs its two
retrievers at once (the same fused ranking as running them one after the other, from several threads too)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from outpost.embed.quantize import quantize
from outpost.records import Changeset, Chunk, EmbeddingIdentity
from outpost.retrieve import Retriever, rrf
from outpost.store import AnnIndex, Store, exact_search
from outpost.store import bm25 as plan
from outpost.store.ann import (
    EXPANSION_ADD,
    EXPANSION_ADD_SMALL,
    EXPANSION_SEARCH_MAX,
    EXPANSION_SEARCH_MIN,
    LARGE_INDEX,
    expansion_add,
    expansion_search,
)
from outpost.store.sqlite import query_terms

DIM = 48
IDENTITY = EmbeddingIdentity("test-vectors", "0" * 64, DIM, 256)


def _vectors(n: int, seed: int) -> np.ndarray:
    """Points near an 8-dimensional manifold (as sentence embeddings are: benchmarks/scale.py), plus as much
    isotropic noise as makes a narrow HNSW search miss a quarter of the true neighbours."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(50, 8))
    projection = np.random.default_rng(1).normal(size=(8, DIM)) / np.sqrt(8)
    latents = centres[rng.integers(0, 50, n)] + 0.6 * rng.normal(size=(n, 8))
    return (latents @ projection + 0.7 * rng.normal(size=(n, DIM))).astype(np.float32)


def _texts(n: int, seed: int, vocab_size: int = 400) -> list[str]:
    """Zipf-like text, so a few words match most rows and most words match few (what BM25's plan is about)."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(vocab_size)]
    weights = 1.0 / np.arange(1, vocab_size + 1) ** 1.05
    return [" ".join(rng.choice(vocab, int(rng.integers(5, 40)), p=weights / weights.sum())) for _ in range(n)]


def _store(folder: Path, n: int, exact_below: int = 0) -> Store:
    store = Store.open(folder, "s", create=True, exact_below=exact_below)
    q, s = quantize(_vectors(n, seed=1))
    chunks = [Chunk(f"c{i}", f"d{i // 4}", i % 4, t) for i, t in enumerate(_texts(n, seed=2))]
    store.apply(Changeset(store.name, 0, chunks, q, s, embedding=IDENTITY))
    return store


def test_the_search_width_grows_with_the_index_between_its_bounds() -> None:
    assert expansion_search(0) == expansion_search(5_000) == EXPANSION_SEARCH_MIN
    assert expansion_search(100_000) == 512  # measured: recall@10 0.996 at 100k, built sparse (store/ann.py)
    assert expansion_search(1_000_000) == expansion_search(10**8) == EXPANSION_SEARCH_MAX
    widths = [expansion_search(n) for n in range(0, 2_000_001, 10_000)]
    assert widths == sorted(widths)


def test_an_index_is_built_sparse_while_small_and_dense_once_large() -> None:
    """The build width follows the size the index will have (P4's 100k snapshot builds in ≈ half the CPU)."""
    assert expansion_add(100_000) == EXPANSION_ADD_SMALL < EXPANSION_ADD == expansion_add(LARGE_INDEX)
    index = AnnIndex(Path("unused"), DIM)._new()
    vectors, _ = quantize(_vectors(300, seed=5))
    AnnIndex.change(index, np.zeros(0, np.uint64), np.arange(300), vectors)
    assert index.expansion_add == EXPANSION_ADD_SMALL


@pytest.fixture(scope="module")
def ann(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, np.ndarray, list[set[int]]]:
    """A 20k-vector index as the store builds it, 100 queries, and their exact int8 top 10 (the oracle)."""
    q, _ = quantize(_vectors(20_000, seed=3))
    keys = np.arange(1, len(q) + 1, dtype=np.int64)
    index = AnnIndex(tmp_path_factory.mktemp("ann"), DIM).build_index(keys, q)
    queries, _ = quantize(_vectors(100, seed=4))
    return index, queries, [{k for k, _ in exact_search(x, q, keys, 10)} for x in queries]


def test_ann_recall_against_exact_int8_search(ann: tuple[Any, np.ndarray, list[set[int]]]) -> None:
    index, queries, truth = ann
    recall = [len({k for k, _ in AnnIndex.search(index, x, 10)} & t) / 10 for x, t in zip(queries, truth)]
    assert index.expansion_search == expansion_search(len(index))  # the search set the width for its size
    assert np.mean(recall) >= 0.98


def test_a_narrow_search_misses_neighbours_the_size_rule_finds(ann: tuple[Any, np.ndarray, list[set[int]]]) -> None:
    """The width matters on this data: searched narrowly, recall falls (so the check above could fail)."""
    index, queries, truth = ann
    index.expansion_search = 10
    narrow = np.mean([len(set(index.search(x, 10).keys.tolist()) & t) / 10 for x, t in zip(queries, truth)])
    wide = np.mean([len({k for k, _ in AnnIndex.search(index, x, 10)} & t) / 10 for x, t in zip(queries, truth)])
    assert narrow < 0.9 < wide


def test_remembered_term_counts_give_the_answers_of_fresh_ones_across_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small budgets make a 2,000-chunk collection take the rare-words-first plan, whose split and bound depend on
    each word's row count. After a new version changes those counts, a stale cache would change the plan."""
    monkeypatch.setattr(plan, "ROW_BUDGET", 60)
    monkeypatch.setattr(plan, "FULL_BUDGET", 300)
    monkeypatch.setattr(plan, "EXACT_UP_TO", 300)
    store = _store(tmp_path, 2000)
    rng = np.random.default_rng(5)
    queries = [query_terms(" ".join(f"w{i}" for i in rng.integers(0, 120, int(rng.integers(2, 6))))) for _ in range(60)]

    def fresh(words: list[str]) -> list[tuple[int, float]]:
        with store.reading():
            return plan.bm25_top_k(store.db, words, 10, store.counts()[1])  # no remembered counts

    assert [store.bm25(" ".join(w), 10) for w in queries] == [fresh(w) for w in queries]
    # version 2: the rarer words become common (each now in 1,500 more rows), the common ones stay
    extra = [Chunk(f"x{i}", f"x{i}", 0, " ".join(f"w{j}" for j in range(40, 120))) for i in range(1500)]
    q, s = quantize(_vectors(len(extra), seed=6))
    store.apply(Changeset(store.name, 1, extra, q, s, embedding=IDENTITY, version=2))
    moved = [w for w in queries if store.bm25(" ".join(w), 10) != fresh(w)]
    assert moved == []
    assert [store.bm25(" ".join(w), 10) for w in queries] == [fresh(w) for w in queries]


class _VectorsOnly:
    """The embedder slot of a Retriever whose every query comes with its vector: nothing is embedded."""

    def embed_query(self, text: str) -> np.ndarray:
        raise AssertionError("queries come with their vectors")


@pytest.mark.parametrize("exact_below", [0, 10_000])  # the ANN index, then numpy exact search
def test_hybrid_with_both_retrievers_at_once_fuses_as_one_after_the_other(tmp_path: Path, exact_below: int) -> None:
    store = _store(tmp_path, 3000, exact_below)
    retriever = Retriever(store, _VectorsOnly())  # type: ignore[arg-type]
    rng = np.random.default_rng(7)
    texts = [" ".join(f"w{i}" for i in rng.integers(0, 300, 3)) for _ in range(40)]
    raws = _vectors(len(texts), seed=8)

    def serial(i: int) -> list[tuple[str, float]]:
        bm25 = store.bm25(texts[i], retriever.depth)
        dense = store.dense(retriever.quantized(raws[i]), retriever.depth)
        fused = rrf([([k for k, _ in bm25], 1.0), ([k for k, _ in dense], 1.0)])[:10]
        rows = store.chunks_by_rowid([k for k, _ in fused])
        return [(rows[k].id, score) for k, score in fused]

    def hybrid(i: int) -> list[tuple[str, float]]:
        return [(h.chunk.id, h.score) for h in retriever.search(texts[i], 10, "hybrid", query=raws[i])]

    expected = [serial(i) for i in range(len(texts))]
    assert [hybrid(i) for i in range(len(texts))] == expected
    with ThreadPoolExecutor(4) as pool:  # an API server's request threads share one store and one index
        assert list(pool.map(hybrid, range(len(texts)))) == expected
    dense_only = [h.chunk.id for h in retriever.search(texts[0], 5, "dense", query=raws[0])]
    ranked = store.dense(retriever.quantized(raws[0]), retriever.depth)[:5]
    rows = store.chunks_by_rowid([k for k, _ in ranked])
    assert dense_only == [rows[k].id for k, _ in ranked]


def test_a_failing_dense_search_fails_the_hybrid_search(tmp_path: Path) -> None:
    """The worker thread's error reaches the caller (never an answer from BM25 alone that looks complete)."""
    store = _store(tmp_path, 500)
    retriever = Retriever(store, _VectorsOnly())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        retriever.search("w1 w2", 5, "hybrid", query=np.zeros(DIM + 3, dtype=np.float32))  # wrong dimension


def _search_in_child(retriever: Retriever, query: np.ndarray, out: Any) -> None:
    out.put([h.chunk.id for h in retriever.search("w1 w2", 3, "hybrid", query=query)])


def test_a_forked_child_searches_after_its_parent_did(tmp_path: Path) -> None:
    """A process forked after a hybrid search (multiprocessing's default on Linux) inherits the thread pool without
    its threads; the child's search must not wait for them for ever."""
    import multiprocessing

    store = _store(tmp_path, 500)
    retriever = Retriever(store, _VectorsOnly())  # type: ignore[arg-type]
    query = _vectors(1, seed=9)[0]
    expected = [h.chunk.id for h in retriever.search("w1 w2", 3, "hybrid", query=query)]  # the pool starts here
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_search_in_child, args=(retriever, query, out))
    child.start()
    child.join(60)  # generous: the search itself takes milliseconds
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung and child.exitcode == 0
    assert out.get(timeout=10) == expected


_THREADS_ON_ONE_STORE = """
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, sys.argv[2])
from test_retrieval_at_size import _store, _texts  # noqa: E402

store = _store(Path(sys.argv[1]), 2000)
queries = _texts(64, seed=5, vocab_size=400)


def work(i: int) -> int:
    rng = np.random.default_rng(i)
    found = 0
    for q in queries:
        hits = store.bm25(q, 20)
        found += len(store.chunks_by_rowid([k for k, _ in hits] + [int(k) for k in rng.integers(1, 2000, 20)]))
        found += store.info().chunks
    return found


with ThreadPoolExecutor(8) as pool:
    print(sum(pool.map(work, range(32))))
"""


def test_threads_sharing_one_store_never_freeze_the_process(tmp_path: Path) -> None:
    """Request threads share one store connection. A Python function inside a statement (the old ``text_unpack``
    read) held SQLite's connection mutex while it waited for the GIL, while another thread held the GIL and waited
    for the mutex: the whole process froze (CI lost its time limit to it). Run in a child, so a freeze fails here."""
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-c", _THREADS_ON_ONE_STORE, str(tmp_path), str(Path(__file__).parent)],
            capture_output=True,
            text=True,
            timeout=180,  # the work itself takes seconds
        )
    except subprocess.TimeoutExpired:
        pytest.fail("threads reading one store froze the process")
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 32 * 64 * 2000  # every thread did all its reads (info counts 2000 each)
