"""Embedding benchmark (issue 12): every backend on the same NFCorpus chunks, each beside its baseline, one run.

Parts (``--parts``, comma-separated; default all but ``gpu``):
- ``throughput``: word pieces/s embedding the chunks Outpost's chunker cuts from the first ``--docs`` documents:
  *before* (sentence-transformers, batches of 64 in document order: what ``Embedder.embed`` did), *after*
  (the same, length-sorted: what it does now), plain ``SentenceTransformer.encode`` on the whole list (the
  reference stack: at batch 64, the baseline of every earlier run, at its own default of 32, and at the ONNX
  backend's batch size, so a gain from the batch alone shows), ONNX Runtime fp32 (the plain traced graph and the
  transformer optimiser's fused graph) and int8, and the fast torch path (the hub's GPU code, here on the CPU).
  A word piece is what the model reads: ``min(pieces, 254) + 2`` special tokens per text. Each row also prints the
  CPU seconds the process spent in it (all threads): less sensitive to other work on the machine than wall time.
- ``quality``: dense nDCG@10 on the NFCorpus test queries (323) over all documents (``--quality-docs``), with the
  stored int8 vectors and best chunk per document, for the torch path, ONNX fp32 and int8; the per-chunk cosine to
  the torch path. The ONNX fp32 graph must stay within 0.5% of torch to be chosen automatically.
- ``eval``: the product's own evaluation (``outpost.evaluate.run_eval``, what ``outpost eval`` runs) on the whole
  NFCorpus (3,633 documents, 323 test queries), one home per ``embed_backend`` (``--eval-backends``) under
  ``benchmarks/.cache/eval/`` so a rerun embeds nothing; then the mixed case: query vectors from ``auto`` (ONNX
  fp32, the same identity) and from the int8 graph (another identity) against the collection torch embedded (a
  laptop searching what its hub built).
- ``ingest``: a whole ``Outpost.ingest`` of the first ``--docs`` documents in a fresh process per backend: wall
  time, peak RSS, the store's size right after ingest (``store.sqlite`` + ``-wal`` + ``-shm``), then a cold
  ``outpost search`` (new process, ``--repeat`` times: median) and query-embedding latency in-process.
- ``pdf``: pypdf against pypdfium2 on PDFs written from NFCorpus abstracts (fpdf2): time and text equality.
- ``gpu``: the fast torch path in fp16 against ``SentenceTransformer.encode`` on CUDA (only with a GPU).

Run under ``nice -n 10`` on a shared machine: ``nice -n 10 .venv/bin/python benchmarks/embed.py`` (``--json``
for machine-readable output). The ONNX graphs are exported once into ``benchmarks/.cache/onnx``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports transformers: never download

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _common import (
    NFCORPUS,
    REPO,
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
    table,
    time_calls,
    write_markdown,
)
from outpost.embed.base import Embedder
from outpost.embed.local_model import LocalModel
from outpost.embed.onnx import OnnxEmbedder, position_batches
from outpost.embed.onnx_export import Variant, ensure_export
from outpost.embed.quantize import quantize
from outpost.embed.select import ONNX_BATCH_SIZE, choose_embedder
from outpost.embed.sentence_transformers import SentenceTransformerEmbedder
from outpost.ingest.chunker import Chunker, embedding_text
from outpost.records import Block, Chunk, Document

ONNX_CACHE = ensure_cache_dir() / "onnx"
MODEL = "all-MiniLM-L6-v2"


# -- data --------------------------------------------------------------------------------------


def corpus_chunks(docs: int, reference: Embedder) -> list[Chunk]:
    """The chunks ingest would embed: Outpost's chunker over ``# title`` + abstract, 200/30 word pieces."""
    chunker = Chunker(reference.count_tokens, 200, 30, reference.identity.name)
    documents = [
        Document(key=d.id, sha256=d.id, title=d.title, kind="markdown", blocks=(Block(d.text, None, ()),))
        for d in load_corpus(docs)
    ]
    return chunker.chunk_batch(documents)


def word_pieces(embedder: Embedder, texts: Sequence[str]) -> int:
    limit = embedder.identity.max_seq_length - 2
    return sum(min(n, limit) + 2 for n in embedder.count_tokens(list(texts)))


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


# -- backends ----------------------------------------------------------------------------------


def backends() -> dict[str, Embedder]:
    """Every backend on the CPU; the ONNX ones exported (once) into the benchmark's cache. ``onnx-fp32`` is what
    ``auto`` runs; ``onnx-fp32-opt`` the optimiser's fused graph with the same calls, ``onnx-fp32-16`` auto's
    graph cut 16 texts a call (what auto did before ``POSITIONS_PER_CALL``)."""
    model = LocalModel.find(MODEL)
    assert model is not None
    reference = SentenceTransformerEmbedder(MODEL, device="cpu")
    auto = choose_embedder(MODEL, "auto", "cpu", 64, ONNX_CACHE)
    int8 = choose_embedder(MODEL, "onnx-int8", "cpu", 64, ONNX_CACHE)
    fast = choose_embedder(MODEL, "gpu", "cpu", 64, ONNX_CACHE)
    onnx = getattr(auto, "backend", auto)
    assert isinstance(onnx, OnnxEmbedder), f"the fp32 export was refused: {onnx!r}"
    assert isinstance(int8, OnnxEmbedder), "the int8 export was refused"
    opt = fp32_graph(model, reference, "fp32-opt")
    old = OnnxEmbedder(model, onnx.graph, onnx.identity, 16, positions=16 * 256)  # auto before: 16 texts a call
    graphs = {"onnx-fp32-opt": opt, "onnx-fp32-16": old}
    return {"torch": reference, "onnx-fp32": onnx, "onnx-int8": int8, "fast-torch-cpu": fast, **graphs}


def fp32_graph(model: LocalModel, reference: Embedder, variant: Variant) -> OnnxEmbedder:
    """One fp32 graph of the cache, cut into calls as auto cuts them."""
    export = ensure_export(model, reference.identity.weights_sha256, ONNX_CACHE, variant)
    assert export.accepted, f"the {variant} graph was refused: {export}"
    return OnnxEmbedder(model, export.graph_path(ONNX_CACHE), reference.identity, ONNX_BATCH_SIZE)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_cpu(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (every thread, user + system) for one call."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = timed(fn)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def document_order(embedder: Embedder, texts: Sequence[str], batch: int = 64) -> None:
    """The old ``Embedder.embed``: batches cut in input order (long and short texts pad each other)."""
    for start in range(0, len(texts), batch):
        embedder._encode(list(texts[start : start + batch]))


def onnx_batches(st: SentenceTransformerEmbedder, onnx: OnnxEmbedder, texts: Sequence[str]) -> None:
    """sentence-transformers fed exactly the calls the ONNX backend makes (``position_batches``): so a gain that
    comes from the batching alone shows on the reference path too, and is not credited to ONNX Runtime."""
    lengths = [min(n, onnx.max_tokens) + 2 for n in onnx.count_tokens(list(texts))]
    for index in position_batches(lengths, onnx.positions, onnx.batch_size):
        st.model.encode([texts[i] for i in index], batch_size=len(index))


def padding(embedder: Embedder, texts: list[str], batch: int = 64) -> dict[str, Any]:
    """Positions the model computes (batch × longest) against real word pieces: load-free, so exact."""
    from outpost.embed.base import length_batches

    n = np.array([min(x, embedder.identity.max_seq_length - 2) + 2 for x in embedder.count_tokens(texts)])
    orders = {
        "document order": [np.arange(i, min(i + batch, len(n))) for i in range(0, len(n), batch)],
        "sorted by characters": list(length_batches(texts, batch)),
        "sorted by word pieces": list(length_batches(texts, batch, list(n))),
    }
    out: dict[str, Any] = {"real_word_pieces": int(n.sum())}
    for name, batches in orders.items():
        computed = sum(len(b) * int(n[b].max()) for b in batches)
        attention = sum(len(b) * int(n[b].max()) ** 2 for b in batches)
        out[name] = {"padding_waste": round(computed / n.sum() - 1, 3), "attention_cells": attention}
    return out


def throughput(embedders: dict[str, Embedder], texts: list[str], rounds: int) -> list[dict[str, Any]]:
    """Each run over the same texts, in ``rounds`` interleaved slices (every run does slice 1, then every run
    slice 2, …, the order rotating): on a shared machine the load moves by the minute, and interleaving spreads
    it over all runs alike, so the ratios hold even when the absolute figures do not."""
    st = embedders["torch"]
    assert isinstance(st, SentenceTransformerEmbedder)
    onnx = embedders["onnx-fp32"]
    assert isinstance(onnx, OnnxEmbedder)
    graph = "optimised" if onnx.graph == getattr(embedders["onnx-fp32-opt"], "graph", None) else "plain"
    calls = f"≤ {onnx.positions} positions a call"
    runs: list[tuple[str, Callable[[list[str]], object]]] = [
        ("before: sentence-transformers, 64 in document order", lambda t: document_order(st, t)),
        ("after: sentence-transformers, length-sorted (Embedder.embed)", lambda t: st.embed(t)),
        ("plain SentenceTransformer.encode, batch 64 (the baseline)", lambda t: st.model.encode(t, batch_size=64)),
        ("plain SentenceTransformer.encode, its default batch 32", lambda t: st.model.encode(t)),
        ("SentenceTransformer.encode in the ONNX backend's calls", lambda t: onnx_batches(st, onnx, t)),
        (f"auto: ONNX Runtime fp32, {graph} graph, {calls}", lambda t: onnx.embed(t)),
        (f"ONNX Runtime fp32, optimised graph, {calls}", lambda t: embedders["onnx-fp32-opt"].embed(t)),
        ("ONNX Runtime fp32, plain graph, 16 a call (auto before)", lambda t: embedders["onnx-fp32-16"].embed(t)),
        ("ONNX Runtime int8 (a different identity)", lambda t: embedders["onnx-int8"].embed(t)),
        ("fast torch path on the CPU, fp32", lambda t: embedders["fast-torch-cpu"].embed(t)),
    ]
    slices = [texts[i::rounds] for i in range(rounds)]
    seconds = [0.0] * len(runs)
    cpu = [0.0] * len(runs)
    loads = []
    for r, part in enumerate(slices):
        log(f"throughput: round {r + 1}/{rounds} ({len(part)} chunks)")
        loads.append(load_avg())
        for k in range(len(runs)):
            index = (k + r) % len(runs)
            wall, used = timed_cpu(lambda: runs[index][1](part))  # noqa: B023 - called at once, inside the loop
            seconds[index] += wall
            cpu[index] += used
    pieces = word_pieces(st, texts)
    rows: list[dict[str, Any]] = [
        {"run": name, "seconds": round(sec, 2), "word_pieces_s": round(pieces / sec), "cpu_s": round(used, 2)}
        for (name, _), sec, used in zip(runs, seconds, cpu)
    ]
    for row in rows:
        row["vs_before"] = round(row["word_pieces_s"] / rows[0]["word_pieces_s"], 2)
        row["vs_plain_st"] = round(row["word_pieces_s"] / rows[2]["word_pieces_s"], 2)
        row["cpu_vs_plain_st"] = round(rows[2]["cpu_s"] / row["cpu_s"], 2)
    rows[0]["load_per_round"] = loads
    return rows


# -- quality -----------------------------------------------------------------------------------


def dense_ndcg(chunks: list[Chunk], doc_vectors: np.ndarray, query_vectors: dict[str, np.ndarray]) -> float:
    """Dense-only nDCG@10 over the stored int8 vectors (cosine on q), a document scoring as its best chunk."""
    q, _ = quantize(doc_vectors)
    qf = q.astype(np.float32)
    qf /= np.maximum(np.linalg.norm(qf, axis=1, keepdims=True), 1e-12)
    keys = [c.doc_key for c in chunks]
    scores = []
    for qid, judged in subset_qrels(set(keys)).items():
        query, _ = quantize(query_vectors[qid][None, :])
        vec = query[0].astype(np.float32)
        sims = qf @ (vec / max(float(np.linalg.norm(vec)), 1e-12))
        top = np.argsort(-sims)[:200]
        scores.append(ndcg_at_k(best_chunk_per_doc((keys[i], float(sims[i])) for i in top), judged))
    return float(np.mean(scores))


def subset_qrels(docs: set[str]) -> dict[str, dict[str, int]]:
    """Test judgements restricted to the documents embedded (all of them for the whole corpus), dropping queries
    with nothing relevant left: on a subset, nDCG then compares the backends on a well-posed task."""
    kept = {q: {d: g for d, g in judged.items() if d in docs} for q, judged in load_qrels("test").items()}
    return {q: judged for q, judged in kept.items() if any(g > 0 for g in judged.values())}


def quality(embedders: dict[str, Embedder], chunks: list[Chunk]) -> list[dict[str, Any]]:
    texts = [embedding_text(c) for c in chunks]
    queries = load_queries()
    qids = list(subset_qrels({c.doc_key for c in chunks}))
    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    for name in ("torch", "onnx-fp32", "onnx-int8"):
        emb = embedders[name]
        log(f"quality: embedding {len(texts)} chunks with {name}")
        vectors = emb.embed(texts)
        qvec = dict(zip(qids, emb.embed([queries[q] for q in qids])))
        row: dict[str, Any] = {"backend": name, "ndcg@10": round(dense_ndcg(chunks, vectors, qvec), 4)}
        if reference is None:
            reference = vectors
        cos = (vectors * reference).sum(axis=1)
        row |= {"min_cosine_vs_torch": round(float(cos.min()), 5), "mean_cosine_vs_torch": round(float(cos.mean()), 5)}
        rows.append(row)
    base = rows[0]["ndcg@10"]
    for row in rows:
        row["vs_torch_%"] = round(100 * (row["ndcg@10"] - base) / base, 2)
    return rows


def percent(value: float, reference: float) -> float:
    return round(100 * (value - reference) / reference, 2)


# -- eval: the whole NFCorpus through outpost.evaluate ---------------------------------------------

EVAL_HOMES = ensure_cache_dir() / "eval"


def eval_part(backends: Sequence[str], split: str, exact: bool = False) -> dict[str, Any]:
    """``run_eval`` per backend (bm25, dense, hybrid on every document), then other runtimes' queries on torch's
    collection. ``exact``: dense search by brute force over the int8 vectors instead of the HNSW index, whose
    approximate neighbours differ from one index build to the next (the control for collection-to-collection
    differences that are the index's, not the embedder's)."""
    from outpost import Outpost
    from outpost.evaluate import _evaluate_mode, load_beir, run_eval

    rows: list[dict[str, Any]] = []
    ops: dict[str, Outpost] = {}
    for backend in backends:
        log(f"eval: NFCorpus {split} with embed_backend={backend} (home {EVAL_HOMES / backend})")
        op = Outpost(home=EVAL_HOMES / backend, embed_backend=backend, embed_cache=ONNX_CACHE)
        if exact:
            op = Outpost(settings=op.settings.with_overrides(exact_search_below=10**9))
        load, start = load_avg(), time.perf_counter()
        report = run_eval(op, NFCORPUS, split)
        ops[backend] = op
        embedder = op.embedder()
        runtime = type(getattr(embedder, "backend", embedder)).__name__
        row = {"backend": backend, "runs": runtime, "identity": embedder.identity.name, "chunks": report.chunks}
        row |= {f"{mode}_ndcg@10": round(m["ndcg@10"], 4) for mode, m in report.results.items()}
        rows.append(row | {"seconds": round(time.perf_counter() - start), "load": load})
    mixed: list[dict[str, Any]] = []
    if "torch" in ops:  # a laptop searching a collection its hub built with torch: queries from another runtime
        _, queries, qrels = load_beir(NFCORPUS, split)
        qrels = {q: judged for q, judged in qrels.items() if q in queries}
        retriever = ops["torch"].retriever(f"eval-{NFCORPUS.name}")
        retriever.depth = 300  # as run_eval
        for backend in ("auto", "onnx-int8"):
            encoder = choose_embedder(MODEL, backend, "cpu", 64, ONNX_CACHE)
            vectors = dict(zip(qrels, encoder.embed([queries[q] for q in qrels])))
            for mode in ("dense", "hybrid"):
                found = _evaluate_mode(retriever, mode, queries, qrels, vectors)
                row = {"queries": backend, "identity": encoder.identity.name, "documents": "torch", "mode": mode}
                mixed.append(row | {"ndcg@10": round(found["ndcg@10"], 4)})
    first = rows[0]  # torch, the reference path, unless --eval-backends says otherwise
    for row in rows:
        for mode in ("dense", "hybrid"):
            row[f"{mode}_vs_{first['backend']}_%"] = percent(row[f"{mode}_ndcg@10"], first[f"{mode}_ndcg@10"])
    for row in mixed:
        row[f"vs_{first['backend']}_%"] = percent(row["ndcg@10"], first[f"{row['mode']}_ndcg@10"])
    return {
        "split": split,
        "documents": NFCORPUS.name,
        "dense_search": "exact" if exact else "hnsw",
        "backends": rows,
        "queries_on_torch_documents": mixed,
    }


# -- ingest, store, cold search ----------------------------------------------------------------

_INGEST = """
import json, sys, time
from pathlib import Path
from outpost import Outpost
start = time.perf_counter()
op = Outpost()
report = op.ingest(sys.argv[1], collection="bench")
seconds = time.perf_counter() - start
folder = op.settings.collections_dir / "bench"
sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.name.startswith("store.sqlite")}
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec (it read 2.9 GB here)
hwm = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_rss_mb": int(hwm.split()[1]) / 1024,
                  "store_files": sizes, "torch_imported": "torch" in sys.modules,
                  "embedder": type(getattr(op.embedder(), "backend", op.embedder())).__name__}))
"""


def ingest_run(backend: str, folder: Path, home: Path) -> dict[str, Any]:
    env = {**os.environ, "OUTPOST_HOME": str(home), "OUTPOST_EMBED_BACKEND": backend}
    env["OUTPOST_EMBED_CACHE"] = str(ONNX_CACHE)
    load = load_avg()
    done = subprocess.run([sys.executable, "-c", _INGEST, str(folder)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["store_mb_after_ingest"] = round(sum(result.pop("store_files").values()) / 1e6, 2)
    closed = home / "collections" / "bench" / "store.sqlite"
    result["store_mb_closed"] = round(closed.stat().st_size / 1e6, 2)
    return {"backend": backend, "load": load, **result}


def cold_search(backend: str, home: Path, repeat: int) -> dict[str, Any]:
    env = {**os.environ, "OUTPOST_HOME": str(home), "OUTPOST_EMBED_BACKEND": backend}
    env["OUTPOST_EMBED_CACHE"] = str(ONNX_CACHE)
    cmd = [str(REPO / ".venv" / "bin" / "outpost"), "search", "Is coffee bad for your heart?", "-c", "bench"]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
    return {"backend": backend, "cold_search_s_median": round(statistics.median(times), 3), "runs": repeat}


def ingest_part(docs: int, repeat: int, backends: Sequence[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="outpost-embed-bench-") as tmp:
        folder = Path(tmp) / "docs"
        write_markdown(load_corpus(docs), folder)
        runs, searches = [], []
        for backend in backends:
            home = Path(tmp) / f"home-{backend}"
            log(f"ingest: {docs} documents with backend {backend}")
            runs.append(ingest_run(backend, folder, home))
            log(f"cold search x{repeat}: backend {backend}")
            searches.append(cold_search(backend, home, repeat))
    return {"ingest": runs, "cold_search": searches}


def query_latency(embedders: dict[str, Embedder]) -> list[dict[str, Any]]:
    queries = list(load_queries().values())[:200]
    rows = []
    for name in ("torch", "onnx-fp32", "onnx-int8"):
        lat = time_calls(embedders[name].embed_query, queries)
        rows.append({"backend": name, "p50_ms": round(lat.p50_ms, 2), "p99_ms": round(lat.p99_ms, 2)})
    return rows


# -- store size --------------------------------------------------------------------------------


def store_part(docs: int) -> dict[str, Any]:
    """Before/after in one run: ``benchmarks/store_size.py`` (the baseline revision's ingest and the current one on
    the whole NFCorpus, each in its own process; ``dbstat``; the baseline's store upgraded in place)."""
    from store_size import measure

    return measure(docs)


# -- PDF ---------------------------------------------------------------------------------------


def pdf_part(docs: int) -> dict[str, Any]:
    from fpdf import FPDF

    from outpost.ingest.loaders import pdf

    blobs = []
    for doc in load_corpus(docs):
        writer = FPDF()
        writer.add_page()
        writer.set_font("Helvetica", size=11)
        text = (doc.title + "\n\n" + doc.text * 3).encode("latin-1", "replace").decode("latin-1")
        writer.multi_cell(0, 5, text)
        blobs.append(bytes(writer.output()))
    results: dict[str, Any] = {"pdfs": len(blobs), "mb": round(sum(map(len, blobs)) / 1e6, 2)}
    texts: dict[str, list[str]] = {}
    for engine in ("pypdf", "pypdfium2"):
        log(f"pdf: {engine}")
        start = time.perf_counter()
        texts[engine] = [
            " ".join(b.text for b in pdf.extract_with(engine, data, f"{i}.pdf")[1]) for i, data in enumerate(blobs)
        ]
        results[f"{engine}_s"] = round(time.perf_counter() - start, 3)
    same = sum(" ".join(a.split()) == " ".join(b.split()) for a, b in zip(texts["pypdf"], texts["pypdfium2"]))
    results["identical_texts"] = f"{same}/{len(blobs)}"
    results["speedup"] = round(results["pypdf_s"] / results["pypdfium2_s"], 2)
    return results


# -- GPU ---------------------------------------------------------------------------------------


def gpu_part(texts: list[str]) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    st = SentenceTransformerEmbedder(MODEL, device="cuda")
    fast = choose_embedder(MODEL, "gpu", "cuda", 1024, ONNX_CACHE)
    st.embed(texts[:256])
    fast.embed(texts[:256])
    torch.cuda.synchronize()
    base = timed(lambda: st.model.encode(texts, batch_size=64))
    mine = timed(lambda: fast.embed(texts))
    cos = (st.embed(texts[:2000]) * fast.embed(texts[:2000])).sum(axis=1)
    return {
        "chunks": len(texts),
        "st_encode_chunks_s": round(len(texts) / base),
        "fast_chunks_s": round(len(texts) / mine),
        "speedup": round(base / mine, 2),
        "min_cosine": round(float(cos.min()), 5),
        "device": torch.cuda.get_device_name(),
    }


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=600, help="documents for throughput, ingest and pdf")
    parser.add_argument("--quality-docs", type=int, default=0, help="documents for nDCG (0: all 3,633)")
    parser.add_argument("--parts", default="quality,throughput,ingest,store,pdf")
    parser.add_argument("--store-docs", type=int, default=0, help="documents for the store part (0: all)")
    parser.add_argument("--repeat", type=int, default=5, help="cold searches per backend")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds")
    parser.add_argument("--ingest-backends", default="torch,auto", help="embed_backend values for the ingest part")
    parser.add_argument("--eval-backends", default="torch,auto,onnx-int8", help="embed_backend values, eval part")
    parser.add_argument("--eval-split", default="test", help="NFCorpus qrels split for the eval part")
    parser.add_argument("--eval-exact", action="store_true", help="eval part: exact dense search, not HNSW")
    parser.add_argument("--gpu-chunks", type=int, default=50_000)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    parts = set(args.parts.split(","))
    result: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    with blas_one_thread():
        embedders = backends() if parts & {"quality", "throughput", "ingest"} else {}
        if "throughput" in parts:
            texts = [embedding_text(c) for c in corpus_chunks(args.docs, embedders["torch"])]
            for emb in embedders.values():
                emb.embed(texts[:16])  # load and warm every backend before any clock starts
            whole = [embedding_text(c) for c in corpus_chunks(0, embedders["torch"])]
            result["padding"] = padding(embedders["torch"], whole)
            log(f"padding: {json.dumps(result['padding'])}")
            result["throughput"] = {"chunks": len(texts), "rows": throughput(embedders, texts, args.rounds)}
            log(f"throughput: {json.dumps(result['throughput'])}")  # each part as it finishes: long runs get cut
        if "ingest" in parts:
            result["query_embedding"] = query_latency(embedders)
            log(f"query embedding: {json.dumps(result['query_embedding'])}")
            result |= ingest_part(args.docs, args.repeat, args.ingest_backends.split(","))
            log(f"ingest: {json.dumps(result['ingest'])} {json.dumps(result['cold_search'])}")
        if "quality" in parts:
            result["quality"] = quality(embedders, corpus_chunks(args.quality_docs, embedders["torch"]))
            log(f"quality: {json.dumps(result['quality'])}")
    if "eval" in parts:
        result["eval"] = eval_part(args.eval_backends.split(","), args.eval_split, args.eval_exact)
        log(f"eval: {json.dumps(result['eval'])}")
    if "store" in parts:
        result["store"] = store_part(args.store_docs)
        log(f"store: {json.dumps(result['store'])}")
    if "pdf" in parts:
        result["pdf"] = pdf_part(args.docs)
    if "gpu" in parts:
        chunks = corpus_chunks(0, SentenceTransformerEmbedder(MODEL, device="cpu"))
        texts = [embedding_text(c) for c in chunks]
        result["gpu"] = gpu_part((texts * (args.gpu_chunks // len(texts) + 1))[: args.gpu_chunks])
    result["machine"]["loadavg_1m_at_end"] = load_avg()
    result["peak_rss_mb_benchmark"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(dump_json(result) if args.json else render(result))
    return 0


def render(result: dict[str, Any]) -> str:
    out = [f"machine: {json.dumps(result['machine'])}"]
    for key in ("quality", "query_embedding", "ingest", "cold_search"):
        if key in result:
            rows = result[key]
            out += ["", key, table([list(r.values()) for r in rows], list(rows[0]))]
    if "throughput" in result:
        rows = result["throughput"]["rows"]
        out += ["", f"throughput ({result['throughput']['chunks']} chunks)"]
        out.append(table([list(r.values()) for r in rows], list(rows[0])))
    if "eval" in result:
        for key in ("backends", "queries_on_torch_documents"):
            rows = result["eval"][key]
            if rows:
                out += ["", f"eval ({result['eval']['documents']} {result['eval']['split']}): {key}"]
                out.append(table([list(r.values()) for r in rows], list(rows[0])))
    for key in ("store", "pdf", "gpu"):
        if key in result:
            out += ["", f"{key}: {json.dumps(result[key])}"]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
