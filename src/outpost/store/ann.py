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

__all__ = ["AnnIndex", "exact_search", "expansion_search", "top_k_cosine", "unit_rows"]

log = logging.getLogger(__name__)


_TMP = ".tmp"

# HNSW settings, measured with benchmarks/scale.py (docs/scale.md): expansion_add 64 builds in about half the CPU of
# 128 (100k chunks: 26 vs 54 CPU-s), so the graph stays sparse and the search widens instead. How wide depends on
# the graph's size: HNSW's recall at a fixed expansion_search falls as the graph grows. Recall@10 against exact int8
# search on the synthetic set (issue 12, P5): 30k chunks 0.98–0.99 at 128; 100k 0.975 / 0.991–0.995 / 0.998–1 at
# 128 / 256 / 512; 300k 0.968 / 0.989 at 256 / 512; 1M 0.961 / 0.975 / 0.985 / 0.993 at 512 / 768 / 1024 / 1536.
# So the width is about one per 500 chunks (as a power of two) between 128 and 1024: ≥ 0.98 at every size measured,
# and a small collection does not pay for a large one's width (1M at 1024 costs ≈ 2× the search CPU of 512: ≈ 7 ms
# on an idle core, estimated).
CONNECTIVITY = 16
EXPANSION_ADD = 64
EXPANSION_SEARCH_MIN = 128
EXPANSION_SEARCH_MAX = 1024
CHUNKS_PER_EXPANSION = 500


def expansion_search(size: int) -> int:
    """The HNSW search width for an index of ``size`` vectors (see the measurements above)."""
    wanted = max(1, size // CHUNKS_PER_EXPANSION)
    return min(EXPANSION_SEARCH_MAX, max(EXPANSION_SEARCH_MIN, 1 << (wanted - 1).bit_length()))


_TEMP_NAME = re.compile(r"index-\d+\.usearch\.(\d+)-[0-9a-f]+\.tmp")


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
        index = self._new()
        if len(keys):
            index.add(np.asarray(keys).astype(np.uint64), vectors.astype(np.int8, copy=False), threads=usable_cpus())
        return index

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
            index.add(np.asarray(keys).astype(np.uint64), vectors.astype(np.int8, copy=False), threads=usable_cpus())
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
