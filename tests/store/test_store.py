"""The SQLite store and its ANN index: atomic versioned applies, exact-search oracle for the ANN path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from outpost.embed.quantize import dequantize, quantize
from outpost.errors import ConfigError, VersionConflictError
from outpost.records import Changeset, Chunk, EmbeddingIdentity
from outpost.store import Store, exact_search, fts_query

IDENTITY = EmbeddingIdentity("test-vectors", "0" * 64, 32, 256)


def _changeset(store: Store, vectors: np.ndarray, start: int = 0, deletes: list[str] | None = None) -> Changeset:
    q, s = quantize(vectors)
    chunks = [
        Chunk(f"c{start + i}", f"doc{(start + i) // 10}.txt", i, f"text number {start + i}") for i in range(len(q))
    ]
    return Changeset(store.name, store.version, chunks, q, s, delete_chunks=deletes or [], embedding=IDENTITY)


def _clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Vectors around a few dozen centres, like real embeddings (pure noise is the ANN worst case)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    return (centres[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


def test_quantisation_keeps_cosine() -> None:
    x = _clustered(200)
    q, s = quantize(x)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    back = dequantize(q, s)
    cos = (back * x).sum(1) / np.linalg.norm(back, axis=1) / np.linalg.norm(x, axis=1)
    assert cos.min() > 0.999


def test_apply_bumps_the_version_and_refuses_a_stale_base(tmp_path: Path) -> None:
    store = Store.open(tmp_path, "v", create=True)
    cs = _changeset(store, _clustered(5))
    assert store.apply(cs) == 1
    with pytest.raises(VersionConflictError, match="at version 1"):
        store.apply(cs)  # built on version 0
    assert store.version == 1 and store.counts() == (0, 5)


def test_a_failed_apply_changes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path, "v", create=True)
    store.apply(_changeset(store, _clustered(5)))
    bad = _changeset(store, _clustered(3), start=3)  # c3, c4 already exist: UNIQUE fails mid-transaction
    with pytest.raises(Exception, match="UNIQUE"):
        store.apply(bad)
    assert store.version == 1 and store.counts() == (0, 5)


def test_ann_matches_the_exact_oracle_and_follows_deletes(tmp_path: Path) -> None:
    store = Store.open(tmp_path, "ann", create=True, exact_below=0)  # force the ANN path
    vectors = _clustered(3000)
    store.apply(_changeset(store, vectors))
    gone = [f"c{i}" for i in range(0, 3000, 3)]
    store.apply(_changeset(store, _clustered(500, seed=1), start=3000, deletes=gone))
    assert store.path.parent.joinpath("index-2.usearch").is_file()
    assert not store.path.parent.joinpath("index-1.usearch").exists()

    _, keys, ints = store._all_vectors()
    queries, _ = quantize(_clustered(50, seed=2))
    recall = []
    deleted_rowids = set(range(1, 3001, 3))
    for q in queries:
        ann = [k for k, _ in store.dense(q, 10)]
        exact = [k for k, _ in exact_search(q, ints, keys, 10)]
        assert not deleted_rowids & set(ann)
        recall.append(len(set(ann) & set(exact)) / 10)
    assert np.mean(recall) >= 0.95


def test_a_missing_index_file_is_rebuilt_from_the_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path, "ann", create=True, exact_below=0)
    store.apply(_changeset(store, _clustered(300)))
    queries, _ = quantize(_clustered(20, seed=5))
    _, keys, ints = store._all_vectors()
    store.close()
    for f in tmp_path.joinpath("ann").glob("index-*.usearch"):
        f.unlink()
    reopened = Store.open(tmp_path, "ann", exact_below=0)
    # HNSW built on several threads (over ann.ADDS_PER_THREAD vectors) is not bit-for-bit reproducible, so a
    # rebuilt index is checked against the exact oracle on the same rows, not against the first build's answers.
    overlap = [
        len({k for k, _ in reopened.dense(q, 5)} & {k for k, _ in exact_search(q, ints, keys, 5)}) / 5 for q in queries
    ]
    assert np.mean(overlap) >= 0.95
    assert tmp_path.joinpath("ann", "index-1.usearch").is_file()
    assert len(reopened._ann_index()) == 300


def test_fts_query_never_passes_raw_syntax() -> None:
    assert fts_query('What is "C++" AND the? (NEAR) -x') == '"c" OR "near" OR "x"'
    assert fts_query("the of and") == ""


def test_bm25_survives_hostile_queries(tmp_path: Path) -> None:
    store = Store.open(tmp_path, "b", create=True)
    store.apply(_changeset(store, _clustered(20)))
    for query in ['"', "AND", "C++?", "NEAR(a b)", "*", "text number 7 OR", "ünïcödé"]:
        store.bm25(query, 5)
    assert store.bm25("number 7", 1)[0][0] == 8  # rowid of c7


def test_collection_names_are_checked_before_touching_the_disk(tmp_path: Path) -> None:
    for bad in ["../etc", "a/b", "", ".hidden", "x" * 129]:
        with pytest.raises(ConfigError):
            Store.open(tmp_path, bad, create=True)
    assert list(tmp_path.iterdir()) == []
