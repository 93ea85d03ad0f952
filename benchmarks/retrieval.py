"""Retrieval benchmark: query latency at 10k and 100k chunks, recall@10 of the int8 dense path, NFCorpus nDCG@10.

Why it is built this way:
- **Real vectors first.** All of NFCorpus goes through the real pipeline once (``Outpost.ingest`` on a folder
  of Markdown files); the float32 vectors the embedder returned are captured and cached in
  ``benchmarks/.cache/`` together with the chunks, so reruns take seconds instead of many minutes.
- **Honest expansion.** NFCorpus gives roughly 10k real chunks. Larger sizes add *synthetic copies* of real
  chunks: vector + Gaussian noise, renormalised (mean cosine to the original ≈ 0.875, printed), text with its
  sentences shuffled. The real chunks stay in every set. Near-duplicate clusters are not what a real 100k
  corpus looks like, so the output says how many chunks are synthetic.
- **The product's own path.** Collections are built with ``Store.apply(Changeset)`` and int8 vectors from
  ``quantize``; dense search is ``Store.dense`` (usearch ``i8`` HNSW at these sizes), fused search is the real
  ``Retriever.search`` with the query vector precomputed, so the model's time is reported on its own line.
- **Baselines in the same process.** numpy float32 brute force at the same size for latency, and exact
  float32 top-10 on the unquantised vectors as recall ground truth; an exact int8 store separates
  quantisation loss from ANN loss.
- numpy's BLAS is pinned to one thread while measuring (DESIGN.md §4): on 2 cores it otherwise competes with
  torch's thread pool.

Run: ``.venv/bin/python benchmarks/retrieval.py`` (``--sizes 10000,100000``, ``--json``, ``--prepare``).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports transformers: never download

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from _common import (
    NFCORPUS,
    REFERENCE_NDCG,
    Latency,
    best_chunk_per_doc,
    blas_one_thread,
    dump_json,
    ensure_cache_dir,
    load_corpus,
    load_qrels,
    load_queries,
    log,
    machine,
    ndcg_at_k,
    peak_rss_mb,
    sha256_file,
    stopwatch,
    table,
    time_calls,
    write_markdown,
)
from outpost import Outpost
from outpost.embed.base import Embedder
from outpost.embed.quantize import quantize
from outpost.ingest.chunker import embedding_text, split_sentences
from outpost.records import Changeset, Chunk, DocumentRecord, EmbeddingIdentity
from outpost.retrieve import Retriever
from outpost.settings import Settings
from outpost.store import AnnIndex, Store

CACHE_FORMAT = 1
TARGET_COSINE = 0.875  # synthetic copy vs its original: near-duplicate, not identical
K = 10


# -- the real NFCorpus chunks and vectors (cached) -------------------------------------------


@dataclass
class RealSet:
    """All NFCorpus chunks as the pipeline made them, with the float32 vectors it quantised."""

    chunks: list[Chunk]
    vectors: np.ndarray
    documents: list[DocumentRecord]
    embedding: EmbeddingIdentity
    chunker_id: str
    meta: dict[str, Any] = field(default_factory=dict)


def _cache_paths(op: Outpost, embedder: Embedder, docs: int) -> tuple[Path, Path]:
    """Cache files keyed by corpus bytes, document count, chunker id and embedding identity."""
    key_source = "\x00".join(
        [
            str(CACHE_FORMAT),
            sha256_file(NFCORPUS / "corpus.jsonl"),
            str(docs),
            op.chunker(embedder).id,
            embedder.identity.to_json(),
        ]
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    folder = ensure_cache_dir()
    return folder / f"nfcorpus-{key}.npy", folder / f"nfcorpus-{key}.json"


def _save(real: RealSet, npy: Path, meta_json: Path) -> None:
    np.save(npy, real.vectors)
    meta_json.write_text(
        json.dumps(
            {
                "chunks": [asdict(c) for c in real.chunks],
                "documents": [asdict(d) for d in real.documents],
                "embedding": json.loads(real.embedding.to_json()),
                "chunker_id": real.chunker_id,
                "meta": real.meta,
            }
        )
    )


def _load(npy: Path, meta_json: Path) -> RealSet:
    raw = json.loads(meta_json.read_text())
    return RealSet(
        chunks=[Chunk(**c) for c in raw["chunks"]],
        vectors=np.load(npy),
        documents=[DocumentRecord(**d) for d in raw["documents"]],
        embedding=EmbeddingIdentity(**raw["embedding"]),
        chunker_id=raw["chunker_id"],
        meta=raw["meta"],
    )


def _progress_printer() -> Callable[[str, int, int], None]:
    """Log each ingest stage roughly every 10%: the full build takes minutes on 2 cores."""
    done: dict[str, int] = {}

    def tick(stage: str, advance: int, total: int) -> None:
        before = done.get(stage, 0)
        done[stage] = before + advance
        if total and (done[stage] * 10 // total != before * 10 // total or done[stage] == total):
            log(f"  {stage}: {done[stage]}/{total}")

    return tick


def _ingest_capturing(op: Outpost, embedder: Embedder, folder: Path) -> tuple[list[str], np.ndarray, float]:
    """Run the real ``Outpost.ingest`` and keep the float32 vectors the embedder returned to it.

    The pipeline stores only int8; wrapping ``embed`` on this embedder instance (not in ``src``) keeps the
    floats it handed to ``quantize``, so the recall ground truth is the very same embedding.
    """
    captured: list[tuple[list[str], np.ndarray]] = []
    original = embedder.embed

    def capture(texts: Sequence[str], progress: Any = None) -> np.ndarray:
        out = original(texts, progress)
        captured.append((list(texts), out.copy()))
        return out

    embedder.embed = capture  # type: ignore[method-assign]
    try:
        with stopwatch() as elapsed:
            report = op.ingest(folder, collection="nfcorpus", progress=_progress_printer())
    finally:
        del embedder.embed  # back to the class method
    if report.failures:
        raise RuntimeError(f"ingest failures: {report.failures[:3]}")
    texts = [t for batch, _ in captured for t in batch]
    vectors = np.concatenate([v for _, v in captured]) if captured else np.zeros((0, 0), np.float32)
    return texts, vectors, elapsed[0]


def build_real_set(op: Outpost, embedder: Embedder, docs: int = 0, rebuild: bool = False) -> RealSet:
    """The cached real set, or ingest NFCorpus (all when ``docs`` is 0) once through the real pipeline."""
    npy, meta_json = _cache_paths(op, embedder, docs)
    if npy.is_file() and meta_json.is_file() and not rebuild:
        log(f"real chunks and vectors from cache {npy.name}")
        return _load(npy, meta_json)
    corpus = load_corpus(docs or None)
    log(f"building the cache: ingesting {len(corpus)} NFCorpus documents through Outpost.ingest (minutes)")
    with tempfile.TemporaryDirectory(prefix="outpost-bench-docs-") as tmp:
        folder = Path(tmp) / "nfcorpus"
        write_markdown(corpus, folder)
        texts, floats, seconds = _ingest_capturing(op, embedder, folder)
        store = op.store("nfcorpus")
        _, keys, ints = store._all_vectors()
        by_rowid = store.chunks_by_rowid([int(k) for k in keys])
        chunks = [by_rowid[int(k)] for k in keys]
        if [embedding_text(c) for c in chunks] != texts:
            raise RuntimeError("captured texts do not line up with the stored chunks")
        if not np.array_equal(quantize(floats)[0], ints):
            raise RuntimeError("captured float vectors do not quantise to the stored int8 vectors")
        real = RealSet(
            chunks=chunks,
            vectors=floats,
            documents=store.documents(),
            embedding=embedder.identity,
            chunker_id=store.chunker_id,
            meta={"documents": len(corpus), "ingest_seconds": round(seconds, 2), "built": time.strftime("%Y-%m-%d")},
        )
        op.delete_collection("nfcorpus")
    _save(real, npy, meta_json)
    log(f"cached {len(real.chunks)} chunks in {npy.parent} (ingest took {seconds:.0f} s)")
    return real


# -- synthetic expansion ---------------------------------------------------------------------


@dataclass
class Collection:
    """One benchmark collection: chunks aligned with float32 vectors (rowid = index + 1 once applied)."""

    size: int
    real: int
    chunks: list[Chunk]
    vectors: np.ndarray
    documents: list[DocumentRecord]
    noise_sigma: float = 0.0
    synthetic_cosine: tuple[float, float, float] | None = None  # mean, min, max


def noise_sigma(dim: int, target_cosine: float = TARGET_COSINE) -> float:
    """Per-component σ so that cos(v, normalise(v + σ·g)) ≈ target for a unit v: |σg|² ≈ σ²·dim."""
    return float(np.sqrt((1.0 / target_cosine**2 - 1.0) / dim))


def _synthetic_chunk(chunk: Chunk, copy: int, rng: np.random.Generator) -> Chunk:
    """A copy of a real chunk under a synthetic document: same heading, sentences shuffled."""
    sentences = split_sentences(chunk.text)
    order = rng.permutation(len(sentences)) if len(sentences) > 1 else np.arange(len(sentences))
    digest = hashlib.sha256(f"synthetic\x00{copy}\x00{chunk.id}".encode()).hexdigest()[:32]
    return Chunk(
        id=digest,
        doc_key=f"synthetic-{copy}/{chunk.doc_key}",
        ordinal=chunk.ordinal,
        text=" ".join(sentences[i] for i in order),
        heading=chunk.heading,
        token_count=chunk.token_count,
    )


def _documents_for(chunks: Sequence[Chunk], titles: dict[str, str]) -> list[DocumentRecord]:
    counts: dict[str, int] = {}
    for c in chunks:
        counts[c.doc_key] = counts.get(c.doc_key, 0) + 1
    return [
        DocumentRecord(key, hashlib.sha256(key.encode()).hexdigest(), titles.get(key.split("/")[-1], ""), "md", 0, n)
        for key, n in counts.items()
    ]


def expand(real: RealSet, size: int, seed: int = 0) -> Collection:
    """``size`` chunks: all real ones (or the first ``size``) plus synthetic copies cycling over the real set."""
    titles = {d.key: d.title for d in real.documents}
    n_real = min(size, len(real.chunks))
    chunks = list(real.chunks[:n_real])
    extra = size - n_real
    if extra <= 0:
        return Collection(size, n_real, chunks, real.vectors[:n_real], _documents_for(chunks, titles))
    rng = np.random.default_rng(seed)
    source = np.arange(extra) % n_real
    sigma = noise_sigma(real.vectors.shape[1])
    noisy = real.vectors[source] + rng.standard_normal((extra, real.vectors.shape[1]), dtype=np.float32) * sigma
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    cosine = np.einsum("ij,ij->i", noisy, real.vectors[source])
    chunks += [_synthetic_chunk(real.chunks[s], i // n_real + 1, rng) for i, s in enumerate(source)]
    return Collection(
        size=size,
        real=n_real,
        chunks=chunks,
        vectors=np.concatenate([real.vectors[:n_real], noisy]).astype(np.float32),
        documents=_documents_for(chunks, titles),
        noise_sigma=sigma,
        synthetic_cosine=(float(cosine.mean()), float(cosine.min()), float(cosine.max())),
    )


# -- stores ----------------------------------------------------------------------------------


@dataclass
class Built:
    """The same SQLite collection opened twice: exact int8 search, and the product's default path."""

    exact: Store
    default: Store
    apply_s: float
    index_build_s: float | None
    index_bytes: int
    sqlite_bytes: int

    @property
    def dense_path(self) -> str:
        return "usearch i8 HNSW" if self.index_build_s is not None else "exact int8 (below exact_search_below)"


def build_store(root: Path, name: str, coll: Collection, real: RealSet, exact_below: int) -> Built:
    """One ``Store.apply(Changeset)`` (no ANN file: exact_below above the size), then the product's ANN build.

    Opening the same SQLite file with the default ``exact_below`` and asking for the index runs
    ``AnnIndex.build`` over the stored int8 rows, the very call a first ``apply`` makes, so its time is the
    index build alone (SQLite and FTS5 writes are in ``apply_s``).
    """
    exact = Store.open(root, name, create=True, exact_below=coll.size + 1)
    q, scales = quantize(coll.vectors)
    changeset = Changeset(
        collection=name,
        base_version=exact.version,
        upserts=coll.chunks,
        vectors=q,
        scales=scales,
        documents=coll.documents,
        embedding=real.embedding,
        chunker_id=real.chunker_id,
    )
    with stopwatch() as applied:
        exact.apply(changeset)
    _, keys, ints = exact._all_vectors()
    if not (np.array_equal(keys, np.arange(1, coll.size + 1)) and np.array_equal(ints, q)):
        raise RuntimeError("stored rowids/vectors do not line up with the collection order")
    default = Store.open(root, name, exact_below=exact_below)
    build_s: float | None = None
    index_bytes = 0
    if coll.size >= exact_below:
        with stopwatch() as built:
            default._ann_index()
        build_s = built[0]
        index_bytes = AnnIndex(default.folder, q.shape[1]).path(default.version).stat().st_size
    sqlite_bytes = sum(p.stat().st_size for p in default.folder.glob("store.sqlite*"))
    return Built(exact, default, applied[0], build_s, index_bytes, sqlite_bytes)


# -- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    qid: str
    text: str
    f32: np.ndarray
    q8: np.ndarray


class KnownQueries:
    """Stands in for the embedder inside ``Retriever``: precomputed vectors, so timing excludes the model."""

    def __init__(self, queries: Sequence[Query]) -> None:
        self.vectors = {q.text: q.f32 for q in queries}

    def embed_query(self, text: str) -> np.ndarray:
        return self.vectors[text]


def embed_queries(embedder: Embedder, split: str = "test") -> tuple[list[Query], Latency]:
    """The split's queries embedded one at a time with the real embedder (that per-query time is reported)."""
    texts = load_queries()
    qids = sorted(load_qrels(split))
    for qid in qids[:5]:
        embedder.embed_query(texts[qid])  # warm-up
    queries: list[Query] = []
    samples: list[float] = []
    for qid in qids:
        start = time.perf_counter()
        vector = embedder.embed_query(texts[qid])
        samples.append(time.perf_counter() - start)
        queries.append(Query(qid, texts[qid], vector, quantize(vector)[0][0]))
    return queries, Latency.of(samples)


def f32_top(vectors: np.ndarray, query: np.ndarray, k: int = K) -> np.ndarray:
    """The baseline: numpy float32 brute force (vectors are unit length, so the dot is the cosine)."""
    scores = vectors @ query
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]


# -- per-size measurement --------------------------------------------------------------------


def _recall(found: Sequence[Sequence[int]], truth: Sequence[set[int]]) -> float:
    return float(np.mean([len(set(f) & t) / len(t) for f, t in zip(found, truth)]))


def _timed_results(
    fn: Callable[[Query], list[tuple[int, float]]], queries: Sequence[Query]
) -> tuple[list[list[int]], Latency]:
    """Results and per-call latency in one pass (for the slow exact int8 path, measured once)."""
    for q in queries[:5]:
        fn(q)
    results: list[list[int]] = []
    samples: list[float] = []
    for q in queries:
        start = time.perf_counter()
        hits = fn(q)
        samples.append(time.perf_counter() - start)
        results.append([key for key, _ in hits])
    return results, Latency.of(samples)


def measure_size(
    coll: Collection, built: Built, queries: Sequence[Query], embedder: Embedder, repeats: int
) -> dict[str, Any]:
    """Latency of each path and recall@10 against exact float32, for one collection."""
    store, exact = built.default, built.exact
    known = Retriever(store, cast(Embedder, KnownQueries(queries)))
    real_model = Retriever(store, embedder)
    latency: dict[str, Latency] = {}
    latency["f32 brute force, numpy (baseline)"] = time_calls(lambda q: f32_top(coll.vectors, q.f32), queries, repeats)
    latency["dense: Store.dense k=10"] = time_calls(lambda q: store.dense(q.q8, K), queries, repeats)
    latency["bm25: Store.bm25 k=10"] = time_calls(lambda q: store.bm25(q.text, K), queries, repeats)
    for mode in ("dense", "bm25", "hybrid"):
        latency[f"Retriever.search {mode} (no embedding)"] = time_calls(
            lambda q, m=mode: known.search(q.text, K, m),
            queries,
            repeats,  # type: ignore[misc]
        )
    latency["Retriever.search hybrid incl. query embedding"] = time_calls(
        lambda q: real_model.search(q.text, K, "hybrid"), queries, 1
    )
    latency["Store.counts() (now once per version, not per dense call)"] = time_calls(
        lambda q: store.counts(), queries, repeats
    )
    exact_hits, latency["dense: exact int8 Store.dense k=10"] = _timed_results(lambda q: exact.dense(q.q8, K), queries)

    truth = [{int(i) + 1 for i in f32_top(coll.vectors, q.f32)} for q in queries]
    ann10 = [[k for k, _ in store.dense(q.q8, K)] for q in queries]
    ann50 = [[k for k, _ in store.dense(q.q8, known.depth)][:K] for q in queries]
    recall = {
        "int8 exact vs f32 exact (quantisation loss)": _recall(exact_hits, truth),
        f"{built.dense_path} k=10 vs f32 exact": _recall(ann10, truth),
        f"{built.dense_path} depth {known.depth} → top 10 (Retriever) vs f32 exact": _recall(ann50, truth),
        f"{built.dense_path} k=10 vs int8 exact (ANN loss alone)": _recall(ann10, [set(h) for h in exact_hits]),
    }
    sweep: dict[str, dict[str, float]] = {}
    if built.index_build_s is not None:
        index = store._ann_index()
        latency["usearch search alone: AnnIndex.search k=10"] = time_calls(
            lambda q: AnnIndex.search(index, q.q8, K), queries, repeats
        )
        sweep = expansion_sweep(index, queries, truth, repeats)
    base = latency["f32 brute force, numpy (baseline)"].p50_ms
    return {
        "size": coll.size,
        "real_chunks": coll.real,
        "synthetic_chunks": coll.size - coll.real,
        "noise_sigma": round(coll.noise_sigma, 5),
        "synthetic_cosine_mean_min_max": [round(x, 4) for x in coll.synthetic_cosine or ()] or None,
        "dense_path": built.dense_path,
        "apply_seconds": round(built.apply_s, 2),
        "index_build_seconds": round(built.index_build_s, 2) if built.index_build_s is not None else None,
        "usearch_file_mb": round(built.index_bytes / 1e6, 2),
        "sqlite_mb": round(built.sqlite_bytes / 1e6, 2),
        "latency_ms": {name: lat.to_dict() for name, lat in latency.items()},
        "dense_p50_over_f32_p50": round(latency["dense: Store.dense k=10"].p50_ms / base, 3) if base else None,
        "recall_at_10": {name: round(v, 4) for name, v in recall.items()},
        "hnsw_expansion_search_sweep": sweep,
        "queries": len(queries),
        "repeats": repeats,
    }


def expansion_sweep(
    index: Any,
    queries: Sequence[Query],
    truth: Sequence[set[int]],
    repeats: int,
    values: Sequence[int] = (64, 128, 256),
) -> dict[str, dict[str, float]]:
    """Recall@10 and usearch-only latency at other ``expansion_search`` (ef) values than ``AnnIndex``'s.

    Only the loaded index object's search-time knob changes (restored afterwards); the file and ``src`` are
    untouched. It shows what a different default would buy, measured on the same data.
    """
    default = index.expansion_search
    out: dict[str, dict[str, float]] = {}
    try:
        for ef in values:
            index.expansion_search = ef
            found = [[k for k, _ in AnnIndex.search(index, q.q8, K)] for q in queries]
            lat = time_calls(lambda q: AnnIndex.search(index, q.q8, K), queries, repeats)
            label = f"ef={ef}" + (" (AnnIndex default)" if ef == default else "")
            out[label] = {
                "recall_at_10": round(_recall(found, truth), 4),
                "p50_ms": round(lat.p50_ms, 4),
                "p99_ms": round(lat.p99_ms, 4),
            }
    finally:
        index.expansion_search = default
    return out


# -- NFCorpus quality ------------------------------------------------------------------------


def _doc_id(doc_key: str) -> str:
    return doc_key.rsplit("/", 1)[-1].removesuffix(".md")


def ndcg_real(real: RealSet, built: Built, queries: Sequence[Query], depth: int = 100) -> dict[str, float]:
    """nDCG@10 on the test split at the real size; a document scores as its best chunk among the top ``depth``."""
    qrels = load_qrels("test")
    known = Retriever(built.default, cast(Embedder, KnownQueries(queries)))
    known_exact = Retriever(built.exact, cast(Embedder, KnownQueries(queries)))
    keys = [c.doc_key for c in real.chunks]

    def product(retriever: Retriever, mode: str) -> Callable[[Query], list[str]]:
        def run(q: Query) -> list[str]:
            hits = retriever.search(q.text, depth, mode)  # type: ignore[arg-type]
            return best_chunk_per_doc((_doc_id(h.chunk.doc_key), h.score) for h in hits)

        return run

    def f32(q: Query) -> list[str]:
        scores = real.vectors @ q.f32
        top = np.argsort(-scores)[:depth]
        return best_chunk_per_doc((_doc_id(keys[i]), float(scores[i])) for i in top)

    systems: dict[str, Callable[[Query], list[str]]] = {
        "bm25 (FTS5)": product(known, "bm25"),
        f"dense ({built.dense_path})": product(known, "dense"),
        "hybrid (RRF k=60)": product(known, "hybrid"),
        "dense, exact int8 (control)": product(known_exact, "dense"),
        "dense, exact float32 (control)": f32,
    }
    return {
        name: round(float(np.mean([ndcg_at_k(run(q), qrels.get(q.qid, {})) for q in queries])), 4)
        for name, run in systems.items()
    }


# -- output ----------------------------------------------------------------------------------


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = [
        "Outpost retrieval benchmark (NFCorpus, all-MiniLM-L6-v2, int8 vectors)",
        f"machine: {m['cores']} cores, {m['cpu']}, GPU {m['gpu']}, "
        f"load avg {m['loadavg_1m_at_start']} → {m['loadavg_1m_at_end']}; {m['date_utc']} UTC; "
        f"torch {m['torch_threads']} threads, numpy BLAS pinned to 1 thread while measuring",
        f"real set: {result['real']['chunks']} chunks from {result['real']['documents']} documents "
        f"(cache built by Outpost.ingest in {result['real']['ingest_seconds']} s)",
        f"queries: {result['queries']} NFCorpus test queries; query embedding alone "
        f"p50 {result['query_embedding_ms']['p50_ms']:.2f} ms, p99 {result['query_embedding_ms']['p99_ms']:.2f} ms",
        "",
    ]
    for run in result["sizes"]:
        label = " (the real set, unexpanded)" if run["synthetic_chunks"] == 0 else ""
        out.append(
            f"== {run['size']:,} chunks{label}: {run['real_chunks']:,} real + {run['synthetic_chunks']:,} synthetic; "
            f"dense path: {run['dense_path']}"
        )
        if run["synthetic_cosine_mean_min_max"]:
            mean, lo, hi = run["synthetic_cosine_mean_min_max"]
            out.append(
                f"   synthetic copies: vector + N(0, {run['noise_sigma']}²) renormalised, cosine to original "
                f"mean {mean:.3f} (min {lo:.3f}, max {hi:.3f}); text = the original's sentences shuffled"
            )
        base = run["latency_ms"]["f32 brute force, numpy (baseline)"]["p50_ms"]
        rows = [
            (name, *(f"{lat[key]:.3f}" for key in ("p50_ms", "p99_ms", "mean_ms")), f"{lat['p50_ms'] / base:.2f}×")
            for name, lat in run["latency_ms"].items()
        ]
        out.append(table(rows, ("latency per query", "p50 ms", "p99 ms", "mean ms", "p50 / f32 BF")))
        out.append(table([(k, f"{v:.4f}") for k, v in run["recall_at_10"].items()], ("recall@10", "")))
        if run["hnsw_expansion_search_sweep"]:
            rows = [
                (ef, f"{v['recall_at_10']:.4f}", f"{v['p50_ms']:.3f}", f"{v['p99_ms']:.3f}")
                for ef, v in run["hnsw_expansion_search_sweep"].items()
            ]
            out.append(table(rows, ("HNSW expansion_search", "recall@10 vs f32", "usearch p50 ms", "p99 ms")))
        index = f"{run['index_build_seconds']} s" if run["index_build_seconds"] is not None else "none"
        out.append(
            f"   build: Store.apply (SQLite + FTS5) {run['apply_seconds']} s; HNSW index build {index}; "
            f"usearch file {run['usearch_file_mb']} MB; SQLite {run['sqlite_mb']} MB"
        )
        out.append("")
    q = result["quality"]
    out.append(f"== NFCorpus test nDCG@10 at the real size ({result['real']['chunks']:,} chunks), doc = best chunk")
    rows = [(name, f"{v:.4f}") for name, v in q.items()] + [(name, v) for name, v in REFERENCE_NDCG]
    out.append(table(rows, ("system", "nDCG@10")))
    out.append(f"peak RSS {result['peak_rss_mb']:.0f} MB; total {result['total_seconds']:.0f} s")
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sizes", default="10000,100000", help="collection sizes in chunks, comma-separated")
    p.add_argument("--repeats", type=int, default=3, help="passes over the queries per timed path")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--prepare", action="store_true", help="only build the real-vector cache, then exit")
    p.add_argument("--rebuild-cache", action="store_true", help="re-ingest NFCorpus even if cached")
    p.add_argument("--docs", type=int, default=0, help="NFCorpus documents in the real set (0 = all 3,633)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    started = time.perf_counter()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="outpost-bench-") as tmp:
        home = Path(tmp) / "home"
        os.environ["OUTPOST_HOME"] = str(home)  # a fresh home: no user config.toml leaks in
        op = Outpost(home=home)
        embedder = op.embedder()
        embedder.embed(["warm-up"])  # model load outside every timing
        real = build_real_set(op, embedder, args.docs, args.rebuild_cache)
        if args.prepare:
            return 0
        root = Path(tmp) / "stores"
        exact_below = Settings(home=home).exact_search_below
        with blas_one_thread():
            queries, embed_latency = embed_queries(embedder)
            log(f"embedded {len(queries)} test queries")
            real_coll = expand(real, len(real.chunks))
            real_built = build_store(root, "real", real_coll, real, exact_below)
            quality = ndcg_real(real, real_built, queries)
            log(f"nDCG@10: {quality}; measuring the real (unexpanded) collection")
            runs = [measure_size(real_coll, real_built, queries, embedder, args.repeats)]
            real_built.exact.close()
            real_built.default.close()
            for size in sizes:
                log(f"size {size:,}: expanding and building the store")
                coll = expand(real, size)
                built = build_store(root, f"n{size}", coll, real, exact_below)
                log(f"size {size:,}: measuring")
                runs.append(measure_size(coll, built, queries, embedder, args.repeats))
                built.exact.close()
                built.default.close()
                del coll, built
    result = {
        "benchmark": "retrieval",
        "command": "benchmarks/retrieval.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": info | {"loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
        "real": {"chunks": len(real.chunks), **real.meta},
        "queries": len(queries),
        "query_embedding_ms": embed_latency.to_dict(),
        "exact_search_below": exact_below,
        "sizes": runs,
        "quality": quality,
        "reference_ndcg": dict(REFERENCE_NDCG),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print(dump_json(result) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
