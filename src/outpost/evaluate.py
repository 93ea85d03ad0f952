"""Retrieval evaluation on BEIR-format datasets: BM25, dense and hybrid, with or without an adapter.

A document's score is the best of its chunks' (the usual way to score chunked retrieval on
document-level judgements). Metrics follow BEIR / pytrec_eval: nDCG@10 with graded gains and a
log2 discount, recall@10 and @100 over relevant (grade > 0) documents, MRR@10.

The corpus is ingested into a scratch collection ``eval-<dataset>`` through the normal ingest path,
so reruns embed nothing new. ``adapter_from`` trains a query adapter from another split's judgements
with the same functions the hub uses (``learn.qrels_examples`` → ``adapt.fit``); evaluation never imports
hub code.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from outpost.adapt import fit
from outpost.app import Outpost
from outpost.errors import ConfigError
from outpost.ingest.pipeline import Progress, plan_documents
from outpost.learn import collection_vectors, qrels_examples
from outpost.metrics import ndcg_at_k, recall_at_k, reciprocal_rank
from outpost.records import Adapter, Block, Document
from outpost.retrieve import Mode, Retriever

__all__ = ["EvalReport", "load_beir", "load_qrels", "load_queries", "metrics_for", "run_eval"]

MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")


def load_beir(folder: Path, split: str) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    """corpus.jsonl → Documents (key = _id), queries.jsonl, qrels/<split>.tsv (header line, any line ending)."""
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder} is not a BEIR dataset: {name} is missing")
    docs = []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                text = d.get("text", "")
                sha = hashlib.sha256(f"{d.get('title', '')}\0{text}".encode()).hexdigest()
                docs.append(Document(str(d["_id"]), sha, d.get("title", ""), "json", (Block(text),), len(text)))
    return docs, load_queries(folder / "queries.jsonl"), load_qrels(folder / "qrels" / f"{split}.tsv")


def load_queries(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8") as fh:
        return {str(q["_id"]): q["text"] for q in map(json.loads, filter(str.strip, fh))}


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id  corpus-id  score`` rows (tab-separated, optional header, any line ending)."""
    qrels: dict[str, dict[str, int]] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        parts = line.strip().split("\t")
        if i == 0 and not parts[-1].lstrip("-").isdigit():
            continue  # header
        if len(parts) >= 3:
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def metrics_for(ranked: list[str], judged: dict[str, int]) -> dict[str, float]:
    """One query's metrics over a document ranking (definitions in :mod:`outpost.metrics`)."""
    relevant = {d for d, g in judged.items() if g > 0}
    return {
        "ndcg@10": ndcg_at_k(ranked, judged),
        "recall@10": recall_at_k(ranked, relevant, 10),
        "recall@100": recall_at_k(ranked, relevant, 100),
        "mrr@10": reciprocal_rank(ranked, relevant, 10),
    }


@dataclass
class EvalReport:
    dataset: str
    split: str
    queries: int
    documents: int
    chunks: int
    results: dict[str, dict[str, float]] = field(default_factory=dict)  # mode → metrics + latency
    adapter: dict[str, object] | None = None


def _ingest(op: Outpost, name: str, docs: list[Document], progress: Progress | None) -> None:
    store = op.store(name, create=True)
    embedder = op.embedder()
    changeset, _ = plan_documents(store, docs, embedder, op.chunker(embedder), {d.key for d in docs}, progress)
    if not changeset.is_empty():
        store.apply(changeset)


def _evaluate_mode(
    retriever: Retriever,
    mode: Mode,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    vectors: dict[str, np.ndarray],
) -> dict[str, float]:
    totals: dict[str, float] = {}
    latencies: list[float] = []
    for qid, judged in qrels.items():
        start = time.perf_counter()
        hits = retriever.search(queries[qid], 300, mode, query=vectors.get(qid))
        latencies.append(time.perf_counter() - start)
        ranked = list(dict.fromkeys(h.chunk.doc_key for h in hits))  # best chunk decides a document's rank
        for key, value in metrics_for(ranked, judged).items():
            totals[key] = totals.get(key, 0.0) + value
    out = {k: v / max(len(qrels), 1) for k, v in totals.items()}
    out["p50_ms"] = 1000 * float(np.percentile(latencies, 50))
    out["p99_ms"] = 1000 * float(np.percentile(latencies, 99))
    return out


def run_eval(
    op: Outpost,
    folder: Path,
    split: str = "test",
    adapter_from: str | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    on_mode: Callable[[str], None] | None = None,
) -> EvalReport:
    docs, queries, qrels = load_beir(folder, split)
    qrels = {q: j for q, j in qrels.items() if q in queries}
    if limit:
        qrels = dict(list(qrels.items())[:limit])
    name = f"eval-{folder.name}"
    _ingest(op, name, docs, progress)
    store = op.store(name)
    retriever = op.retriever(name)
    retriever.depth = 300
    vectors = dict(zip(qrels, retriever.embedder.embed([queries[q] for q in qrels])))  # embed once, reuse per mode
    docs_n, chunks_n = store.counts()
    report = EvalReport(folder.name, split, len(qrels), docs_n, chunks_n)
    for mode in MODES:
        if on_mode:
            on_mode(mode)
        report.results[mode] = _evaluate_mode(retriever, mode, queries, qrels, vectors)
    if adapter_from:
        _, _, train_qrels = load_beir(folder, adapter_from)
        examples = qrels_examples(store, retriever.embedder, train_qrels, queries)
        ids, matrix = collection_vectors(store)
        result = fit(examples, ids, matrix, None, min_gain=0.0)
        retriever.adapter = Adapter(1, result.matrix)
        for mode in ("dense", "hybrid"):
            if on_mode:
                on_mode(f"{mode}+adapter")
            report.results[f"{mode}+adapter"] = _evaluate_mode(retriever, mode, queries, qrels, vectors)
        report.adapter = {
            "trained_on": adapter_from,
            "examples": result.train_examples,
            "heldout": result.heldout_examples,
            "heldout_mrr@10_before": result.before["mrr@10"],
            "heldout_mrr@10_after": result.after["mrr@10"],
        }
    return report
