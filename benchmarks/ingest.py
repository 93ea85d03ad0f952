"""Ingest benchmark: the real ``Outpost.ingest`` over NFCorpus as Markdown, against pure embedding of the same texts.

Why it is built this way:
- Embedding is 95–100% of ingest time in the stacks we compare with (shared/README.md), so the honest
  baseline for our pipeline is *the same embedder on exactly the texts we embedded, in the same batch size*:
  ``pipeline time / pure-embedding time`` is what reading, parsing, chunking, token counting, quantising and
  SQLite/FTS5/index writes cost on top. A ratio near 1.0 means nothing is left to win outside the model.
- The model is loaded (and its weights hashed for the embedding identity) before the clock starts, by
  embedding one string; that one-off time is printed separately.
- Inside the timed ingest, the embedder instance's ``_encode`` and ``count_tokens`` are wrapped (on the
  instance only; ``src`` is untouched) to split the wall time into model time, token counting and the rest.
- A second ingest of the unchanged folder must embed nothing: asserted, and timed.

Run: ``.venv/bin/python benchmarks/ingest.py`` (``--docs 1000`` default, ``--docs 0`` for all 3,633;
``--batch-size``, ``--device``, ``--json``).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports transformers: never download

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from _common import (
    REFERENCE_STACKS,
    dump_json,
    folder_bytes,
    load_corpus,
    log,
    machine,
    peak_rss_mb,
    stopwatch,
    table,
    write_markdown,
)
from outpost import Outpost
from outpost.embed.base import Embedder
from outpost.embed.quantize import dequantize
from outpost.ingest.chunker import embedding_text
from outpost.records import Chunk
from outpost.store import Store

COLLECTION = "bench"


@dataclass
class Meter:
    """Seconds spent in the model (``_encode``) and in token counting while installed on an embedder."""

    encode_s: float = 0.0
    count_s: float = 0.0
    encode_calls: int = 0

    def _wrap(self, fn: Callable[[list[str]], Any], attr: str) -> Callable[[list[str]], Any]:
        def timed(texts: list[str]) -> Any:
            start = time.perf_counter()
            try:
                return fn(texts)
            finally:
                setattr(self, attr, getattr(self, attr) + time.perf_counter() - start)
                if attr == "encode_s":
                    self.encode_calls += 1

        return timed

    def install(self, embedder: Embedder) -> None:
        embedder._encode = self._wrap(embedder._encode, "encode_s")  # type: ignore[method-assign]
        embedder.count_tokens = self._wrap(embedder.count_tokens, "count_s")  # type: ignore[method-assign]

    @staticmethod
    def remove(embedder: Embedder) -> None:
        for name in ("_encode", "count_tokens"):
            embedder.__dict__.pop(name, None)


def stored_chunks(store: Store) -> tuple[list[Chunk], np.ndarray]:
    """Every chunk in rowid order (the order the pipeline embedded them) with its int8 vector."""
    _, keys, ints = store._all_vectors()
    by_rowid = store.chunks_by_rowid([int(k) for k in keys])
    return [by_rowid[int(k)] for k in keys], ints


def min_cosine(floats: np.ndarray, ints: np.ndarray) -> float:
    """Agreement of the baseline's floats with the stored int8 rows: proves both embedded the same texts."""
    if not len(floats):
        return 1.0
    back = dequantize(ints, np.ones(len(ints), dtype=np.float32))
    cos = np.einsum("ij,ij->i", floats, back) / np.linalg.norm(back, axis=1) / np.linalg.norm(floats, axis=1)
    return float(cos.min())


def run(docs: int, batch_size: int | None, device: str | None) -> dict[str, Any]:
    info = machine()
    corpus = load_corpus(docs or None)
    with tempfile.TemporaryDirectory(prefix="outpost-bench-ingest-") as tmp:
        folder, home = Path(tmp) / "nfcorpus", Path(tmp) / "home"
        source_bytes = write_markdown(corpus, folder)
        os.environ["OUTPOST_HOME"] = str(home)  # a fresh home: no user config.toml leaks in
        op = Outpost(home=home, embed_batch_size=batch_size, device=device)
        embedder = op.embedder()
        with stopwatch() as load:
            embedder.embed(["warm-up"])  # loads torch + model and hashes the weights (identity)
        rss_before = peak_rss_mb()

        meter = Meter()
        meter.install(embedder)
        log(f"ingesting {len(corpus)} documents")
        try:
            with stopwatch() as first:
                report = op.ingest(folder, collection=COLLECTION)
        finally:
            Meter.remove(embedder)
        rss_ingest = peak_rss_mb()
        if report.failures:
            raise RuntimeError(f"ingest failures: {report.failures[:3]}")

        store = op.store(COLLECTION)
        chunks, ints = stored_chunks(store)
        texts = [embedding_text(c) for c in chunks]
        pieces = sum(embedder.count_tokens(texts))
        log(f"pure embedding of the same {len(texts)} texts")
        with stopwatch() as pure:
            floats = embedder.embed(texts)
        agreement = min_cosine(floats, ints)

        log("second ingest of the unchanged folder")
        with stopwatch() as second:
            again = op.ingest(folder, collection=COLLECTION)
        assert again.chunks_embedded == 0, f"unchanged re-ingest embedded {again.chunks_embedded} chunks"
        assert again.unchanged == len(corpus), f"{again.unchanged} of {len(corpus)} documents seen as unchanged"

        settings = op.settings
        index_files = sorted(p.name for p in store.folder.glob("index-*.usearch"))
        for open_store in list(op._stores.values()):
            open_store.close()  # checkpoints the WAL, so the size below is what stays on disk
        store_bytes = folder_bytes(store.folder)

    t, p = first[0], pure[0]
    return {
        "benchmark": "ingest",
        "command": "benchmarks/ingest.py " + " ".join(sys.argv[1:]),
        "machine": info | {"loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
        "settings": {
            "embed_model": settings.embed_model,
            "batch_size": embedder.batch_size,
            "device": getattr(embedder, "device", None) or "default (cpu without CUDA)",
            "chunk_tokens": settings.chunk_tokens,
            "chunk_overlap": settings.chunk_overlap,
            "exact_search_below": settings.exact_search_below,
        },
        "documents": len(corpus),
        "source_mb": round(source_bytes / 1e6, 2),
        "chunks": len(chunks),
        "chunks_embedded": report.chunks_embedded,
        "word_pieces": pieces,
        "model_load_seconds_excluded": round(load[0], 2),
        "ingest_seconds": round(t, 2),
        "docs_per_s": round(len(corpus) / t, 2),
        "chunks_per_s": round(len(chunks) / t, 2),
        "word_pieces_per_s": round(pieces / t, 1),
        "breakdown_seconds": {
            "model (_encode)": round(meter.encode_s, 2),
            "token counting (chunker)": round(meter.count_s, 2),
            "rest: read, parse, chunk, quantise, SQLite/FTS5/index": round(t - meter.encode_s - meter.count_s, 2),
        },
        "pure_embedding_seconds": round(p, 2),
        "pure_embedding_chunks_per_s": round(len(chunks) / p, 2),
        "pure_embedding_word_pieces_per_s": round(pieces / p, 1),
        "pipeline_over_pure_embedding": round(t / p, 3),
        "baseline_min_cosine_to_stored_int8": round(agreement, 5),
        "peak_rss_mb_after_model_load": round(rss_before, 1),
        "peak_rss_mb_after_ingest": round(rss_ingest, 1),
        "store_mb": round(store_bytes / 1e6, 2),
        "index_files": index_files,
        "second_ingest_seconds": round(second[0], 3),
        "second_ingest_chunks_embedded": again.chunks_embedded,
    }


def render(r: dict[str, Any]) -> str:
    m, s, b = r["machine"], r["settings"], r["breakdown_seconds"]
    t = r["ingest_seconds"]
    rows: list[Sequence[object]] = [
        ("documents (NFCorpus, Markdown files)", f"{r['documents']:,}  ({r['source_mb']} MB)"),
        ("chunks", f"{r['chunks']:,}  (all embedded: {r['chunks_embedded']:,})"),
        ("word pieces embedded (no special tokens)", f"{r['word_pieces']:,}"),
        ("model load + weight hash (excluded)", f"{r['model_load_seconds_excluded']} s"),
        ("Outpost.ingest wall time", f"{t} s"),
        ("  docs/s", r["docs_per_s"]),
        ("  chunks/s", r["chunks_per_s"]),
        ("  word pieces/s", r["word_pieces_per_s"]),
        *[(f"  of which {name}", f"{sec} s ({100 * sec / t:.0f}%)") for name, sec in b.items()],
        ("pure embedding of the same texts", f"{r['pure_embedding_seconds']} s"),
        ("  chunks/s", r["pure_embedding_chunks_per_s"]),
        ("  word pieces/s", r["pure_embedding_word_pieces_per_s"]),
        ("pipeline overhead (ingest / pure embedding)", f"{r['pipeline_over_pure_embedding']}×"),
        ("  check: min cosine baseline vs stored int8", r["baseline_min_cosine_to_stored_int8"]),
        (
            "peak RSS (after ingest; model alone)",
            f"{r['peak_rss_mb_after_ingest']:.0f} MB  ({r['peak_rss_mb_after_model_load']:.0f} MB)",
        ),
        ("store on disk", f"{r['store_mb']} MB  (index files: {', '.join(r['index_files']) or 'none, exact search'})"),
        ("second ingest, unchanged (0 embedded)", f"{r['second_ingest_seconds']} s"),
    ]
    ref = [(x["stack"], x["chunks"], x["docs/s"], x["peak RSS"], x["store"]) for x in REFERENCE_STACKS[:2]]
    return "\n".join(
        [
            "Outpost ingest benchmark",
            f"machine: {m['cores']} cores, {m['cpu']}, GPU {m['gpu']}, torch {m['torch_threads']} threads; "
            f"load avg {m['loadavg_1m_at_start']} → {m['loadavg_1m_at_end']}; {m['date_utc']} UTC",
            f"settings: {s['embed_model']}, batch {s['batch_size']}, device {s['device']}, "
            f"chunks ≤{s['chunk_tokens']} word pieces, overlap {s['chunk_overlap']}",
            "",
            table(rows, ("measure", "value"), left=2),
            "",
            "for context (shared/README.md, all 3,633 docs, 2 idle cores):",
            table(ref, ("stack", "chunks", "docs/s", "peak RSS", "store")),
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--docs", type=int, default=1000, help="first N NFCorpus documents (0 = all 3,633)")
    p.add_argument("--batch-size", type=int, default=None, help="embedding batch size (default: the settings')")
    p.add_argument("--device", default=None, help="torch device (default: the settings', cuda if present)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args.docs, args.batch_size, args.device)
    print(dump_json(result) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
