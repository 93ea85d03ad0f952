"""Hybrid retrieval: BM25 (FTS5) and dense (int8 cosine) fused by weighted reciprocal rank.

RRF needs no score calibration between retrievers, which is why it is the default in hybrid
search: ``score(d) = Σ_r w_r / (k + rank_r(d))`` with ``k = 60``. Each retriever contributes a
deeper list (``depth``) than the final ``k``, so a chunk ranked well by one retriever alone can
still surface.

The two retrievers run at once: the dense search (usearch or numpy, both release the GIL) in a worker thread
while BM25 (SQLite, which releases it too) runs on the caller's, so a hybrid query costs about the slower of the
two rather than their sum when a core is free (issue 12, P5: at 1M chunks each costs ≈ 7–9 ms of CPU at p50).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from outpost.embed.base import Embedder
from outpost.embed.quantize import quantize
from outpost.records import Adapter, Hit
from outpost.store.sqlite import Store

__all__ = ["Mode", "Retriever", "rrf"]

Mode = Literal["hybrid", "bm25", "dense"]

# One pool per process: a thread per query would cost more than a small collection's whole dense search. Made on
# first use and forgotten in a child made by fork, which inherits the pool without its threads: work sent to it
# would wait for ever (the pool counts the parent's idle threads as its own).
_DENSE_POOL: ThreadPoolExecutor | None = None
_DENSE_POOL_LOCK = threading.Lock()


def _dense_pool() -> ThreadPoolExecutor:
    global _DENSE_POOL
    with _DENSE_POOL_LOCK:
        if _DENSE_POOL is None:
            _DENSE_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="outpost-dense")
        return _DENSE_POOL


def _forget_pool_in_child() -> None:
    global _DENSE_POOL, _DENSE_POOL_LOCK
    _DENSE_POOL, _DENSE_POOL_LOCK = None, threading.Lock()  # the lock too: a parent's thread may have held it


os.register_at_fork(after_in_child=_forget_pool_in_child)


def rrf(rankings: list[tuple[list[int], float]], k: int = 60) -> list[tuple[int, float]]:
    """Weighted reciprocal-rank fusion of ranked key lists; returns (key, score), best first."""
    scores: dict[int, float] = {}
    for keys, weight in rankings:
        for rank, key in enumerate(keys, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass
class Retriever:
    """Searches one store; ``mode`` picks BM25, dense or both."""

    store: Store
    embedder: Embedder
    rrf_k: int = 60
    bm25_weight: float = 1.0
    dense_weight: float = 1.0
    depth: int = 50
    adapter: Adapter | None = None  # overrides the collection's own (evaluation of a candidate adapter)

    def query_vector(self, text: str) -> np.ndarray:
        """The int8 query vector: embedded, passed through the collection's adapter, quantised like the stored ones."""
        return self.quantized(self.embedder.embed_query(text))

    def quantized(self, query: np.ndarray) -> np.ndarray:
        adapter = self.adapter if self.adapter is not None else self.store.adapter
        if adapter is not None:
            query = adapter.apply(query)
        q, _ = quantize(query)
        vector: np.ndarray = q[0]
        return vector

    def search(self, text: str, k: int = 5, mode: Mode = "hybrid", query: np.ndarray | None = None) -> list[Hit]:
        """Top-``k`` chunks; ``query`` is the text's raw embedding when the caller already has it."""
        depth = max(self.depth, k)
        dense_job: Future[list[tuple[int, float]]] | None = None
        if mode in ("hybrid", "dense"):
            raw = self.embedder.embed_query(text) if query is None else query
            dense_job = self._start_dense(self.quantized(raw), depth, alone=mode == "dense")
        bm25 = self.store.bm25(text, depth) if mode in ("hybrid", "bm25") else []
        dense = dense_job.result() if dense_job is not None else []
        if mode == "bm25":
            fused = bm25[:k]
        elif mode == "dense":
            fused = dense[:k]
        else:
            fused = rrf(
                [([key for key, _ in bm25], self.bm25_weight), ([key for key, _ in dense], self.dense_weight)],
                self.rrf_k,
            )[:k]
        bm25_rank = {key: r for r, (key, _) in enumerate(bm25, start=1)}
        dense_rank = {key: r for r, (key, _) in enumerate(dense, start=1)}
        chunks = self.store.chunks_by_rowid([key for key, _ in fused])
        return [
            Hit(chunks[key], score, bm25_rank.get(key), dense_rank.get(key)) for key, score in fused if key in chunks
        ]

    def _start_dense(self, query: np.ndarray, depth: int, alone: bool) -> Future[list[tuple[int, float]]]:
        """The dense search, resolved against the store's current state here and run in the pool (or here, alone).

        Resolving first matters: BM25 holds the store's lock for its whole query, and a worker that still needed
        the lock would wait for it, making the two run one after the other again.
        """
        search: Callable[[np.ndarray, int], list[tuple[int, float]]] = self.store.dense_searcher()
        if not alone:
            return _dense_pool().submit(search, query, depth)
        done: Future[list[tuple[int, float]]] = Future()
        done.set_result(search(query, depth))
        return done
