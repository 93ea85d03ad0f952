"""Vector search over the int8 vectors: exact for small collections, usearch HNSW above that.

The SQLite store is the truth; the usearch file is derived, named ``index-<version>.usearch`` and
switched by an atomic rename, so a reader never sees a half-written index. If the file for the
current version is missing (a crash between commit and index write, or a fresh sync), it is
rebuilt from the store. Keys are the chunks' SQLite rowids. Vectors go in as int8 arrays, never
floats: usearch would otherwise quantise them itself, far more coarsely.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from outpost.cpus import usable_cpus
from outpost.fsutil import commit_file
from outpost.store.lock import pid_alive

if TYPE_CHECKING:
    from usearch.index import Index

__all__ = ["AnnIndex", "add_threads", "exact_search", "expansion_add", "expansion_search", "top_k_cosine", "unit_rows"]

log = logging.getLogger(__name__)


_TMP = ".tmp"

# HNSW settings, measured with benchmarks/scale.py and scratch sweeps of the same synthetic set (docs/scale.md,
# docs/benchmarks.md "P4 on this machine"). Recall@10 is against exact int8 search, 200 queries.
#
# Building is what a first sync waits for (P4: a 100k snapshot in ≤ 30 s on 2 cores), and its cost is set by
# ``expansion_add``: at 100k, 64 costs 41–52 CPU-s, 40 costs 26, 32 costs 21 (2 idle cores, 2026-12-03). A sparser
# build is paid back by a wider search, and how much depends on the size:
#   100k, ``expansion_add`` 64: 0.971 / 0.994 / 0.998 at width 128 / 256 / 512; 40: 0.953 / 0.982 / 0.996
#   200k, 40: 0.960 / 0.987 / 0.997 at 256 / 512 / 1024
#   1M, 64: 0.961 / 0.975 / 0.985 / 0.993 at 512 / 768 / 1024 / 1536; 40: 0.922 / 0.958 / 0.974 / 0.979 at
#   512 / 1024 / 1536 / 2048 (never 0.98 within the width P5's latency allows)
# So an index is built with 40 while it is small (the sizes a laptop syncs whole) and with 64 from
# LARGE_INDEX vectors on (where only the denser graph reaches 0.98 at a width of 1024). The search width is one
# per 250 chunks, as a power of two between 128 and 1024: ≥ 0.98 at every size measured, and a small collection
# does not pay for a large one's width. An index that grows past LARGE_INDEX by deltas keeps its sparser early
# nodes and gets denser links from then on; its width is already the largest.
CONNECTIVITY = 16
EXPANSION_ADD_SMALL = 40
EXPANSION_ADD = 64
LARGE_INDEX = 200_000
EXPANSION_SEARCH_MIN = 128
EXPANSION_SEARCH_MAX = 1024
CHUNKS_PER_EXPANSION = 250
# Vectors inserted at once by threads do not see each other's links, and a small batch spread over many threads is a
# worse graph for nothing: 300 vectors cost 12 ms on one thread, and with 8 threads (on 2 cores) recall@10 fell to
# 0.94-0.97 in some builds, against 0.99-1.0 every time on one (the failed CI run of 2026-12-03). So one thread per
# ADDS_PER_THREAD vectors added, up to the usable CPUs: a delta of a few hundred chunks builds the same graph every
# time, and a snapshot still uses every core.
ADDS_PER_THREAD = 1000


def expansion_search(size: int) -> int:
    """The HNSW search width for an index of ``size`` vectors (see the measurements above)."""
    wanted = max(1, size // CHUNKS_PER_EXPANSION)
    return min(EXPANSION_SEARCH_MAX, max(EXPANSION_SEARCH_MIN, 1 << (wanted - 1).bit_length()))


def expansion_add(size: int) -> int:
    """The HNSW build width for vectors added to an index that will hold ``size`` (sparser while small)."""
    return EXPANSION_ADD if size >= LARGE_INDEX else EXPANSION_ADD_SMALL


_TEMP_NAME = re.compile(r"index-\d+\.usearch\.(\d+)-[0-9a-f]+\.tmp")


def add_threads(count: int) -> int:
    """Threads for adding ``count`` vectors at once (see ADDS_PER_THREAD)."""
    return max(1, min(usable_cpus(), -(-count // ADDS_PER_THREAD)))


def _remove_dead_temps(folder: Path) -> None:
    """Delete temp files whose writer is gone (killed mid-save); a live process's file is never touched."""
    for tmp in folder.glob(f"index-*.usearch.*{_TMP}"):
        match = _TEMP_NAME.fullmatch(tmp.name)
        if match is None or not pid_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """int8 (or float) rows as unit-length float32 rows: cosine becomes one matrix-vector product."""
    mat = vectors.astype(np.float32)
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    return mat / np.where(norms > 0, norms, 1.0)


def top_k_cosine(query: np.ndarray, unit: np.ndarray, keys: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Exact cosine top-k of ``query`` against pre-normalised rows ``unit``."""
    if len(keys) == 0:
        return []
    q = query.astype(np.float32)
    sims = unit @ (q / max(float(np.linalg.norm(q)), 1e-12))
    k = min(k, len(keys))
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.argsort(-sims[top], kind="stable")]
    return [(int(keys[i]), float(sims[i])) for i in top]


def exact_search(query: np.ndarray, vectors: np.ndarray, keys: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Brute-force cosine over int8 rows (also the oracle the ANN path is tested against)."""
    return top_k_cosine(query, unit_rows(vectors), keys, k)


class AnnIndex:
    """usearch ``i8`` cosine index over one collection's chunks, one file per version."""

    def __init__(self, folder: Path, ndim: int) -> None:
        self.folder = folder
        self.ndim = ndim

    def path(self, version: int) -> Path:
        return self.folder / f"index-{version}.usearch"

    def _new(self) -> Index:
        from usearch.index import Index

        return Index(
            ndim=self.ndim,
            metric="cos",
            dtype="i8",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH_MIN,
        )

    def load(self, version: int) -> Index | None:
        """The index for ``version``, or ``None`` if its file is missing or unreadable."""
        path = self.path(version)
        if not path.is_file():
            return None
        index = self._new()
        try:
            index.load(str(path))
        except Exception as exc:  # a damaged derived file is rebuilt, never trusted
            log.warning("ignoring unreadable index %s: %s", path, exc)
            return None
        return index

    def build(self, version: int, keys: np.ndarray, vectors: np.ndarray) -> Index:
        index = self.build_index(keys, vectors)
        self.save(index, version)
        return index

    def build_index(self, keys: np.ndarray, vectors: np.ndarray) -> Index:
        """A new index over ``vectors`` keyed by ``keys``, not saved (``Store.apply`` saves it after its commit)."""
        return self.change(self._new(), np.zeros(0, np.uint64), keys, vectors)

    def update(
        self,
        index: Index,
        version: int,
        removed: np.ndarray,
        keys: np.ndarray,
        vectors: np.ndarray,
    ) -> Index:
        """Apply one changeset's removals and additions, then save as ``version``."""
        index = self.change(index, removed, keys, vectors)
        self.save(index, version)
        return index

    @staticmethod
    def change(index: Index, removed: np.ndarray, keys: np.ndarray, vectors: np.ndarray) -> Index:
        """One changeset's removals and additions on ``index``, in place, not saved."""
        if len(removed):
            index.remove(np.asarray(removed).astype(np.uint64))
        if len(keys):
            index.expansion_add = expansion_add(len(index) + len(keys))  # type: ignore[misc]  # untyped setter
            index.add(
                np.asarray(keys).astype(np.uint64), vectors.astype(np.int8, copy=False), threads=add_threads(len(keys))
            )
        return index

    def save(self, index: Index, version: int) -> None:
        """Write to a temp file, fsync, rename into place, then drop older versions' files.

        The temp name is this process's own (pid + random): a reader rebuilding the index and a writer saving
        it may run at once in two processes, and a shared name would let one rename the other's half-written
        file into place. A failed write removes its temp file (a full disk gets its space back).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.path(version)
        tmp = self.folder / f"{final.name}.{os.getpid()}-{secrets.token_hex(4)}{_TMP}"
        try:
            index.save(str(tmp))
            commit_file(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        for old in self.folder.glob("index-*.usearch"):
            if old != final:
                old.unlink(missing_ok=True)
        _remove_dead_temps(self.folder)

    def drop(self) -> None:
        for old in self.folder.glob("index-*.usearch"):
            old.unlink(missing_ok=True)
        _remove_dead_temps(self.folder)

    @staticmethod
    def search(index: Index, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """ANN top-``k`` as (key, cosine), searched as wide as the index's size needs (:func:`expansion_search`).

        The width is a search setting, not the file's, and follows the index as deltas grow or shrink it.
        """
        size = len(index)
        if size == 0:
            return []
        width = expansion_search(size)
        if index.expansion_search != width:
            index.expansion_search = width  # type: ignore[misc]  # usearch's setter is untyped
        matches = index.search(query.astype(np.int8), min(k, size), threads=1)
        return [(int(key), 1.0 - float(dist)) for key, dist in zip(matches.keys, matches.distances)]
