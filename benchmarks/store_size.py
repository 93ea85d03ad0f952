"""Store size on NFCorpus (issue 12): before and after, measured in one run.

The whole corpus (3,633 documents, written as Markdown) goes through the real ingest pipeline twice, each in its
own process, one after the other: once by the code of ``--baseline-rev`` (extracted with ``git archive``) and once
by the current code. For each store: the files right after the ingest and once closed, and what the database holds
(``dbstat``: bytes per table and index). Then the baseline's store is upgraded in place by the current code (its
numbered migrations, as a laptop's collection is on the first open after an update) and measured again, and the
BM25 answers (top 10, rowids and scores) of the NFCorpus queries are compared between the baseline store, the
upgraded one and the new one: they must be identical.

Vectors are random (``SizeOnlyEmbedder``): MiniLM's identity and tokenizer cut exactly ingest's chunks, but no
model runs, because a store's size does not depend on vector values (int8, 384 bytes and a scale per chunk).

    nice -n 10 .venv/bin/python benchmarks/store_size.py [--docs 0] [--baseline-rev f22f037] [--json]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports transformers: never download

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _common import REPO, load_corpus, load_queries, log, machine, write_markdown
from outpost.embed.base import Embedder
from outpost.embed.local_model import LocalModel

MODEL = "all-MiniLM-L6-v2"
BASELINE_REV = "f22f037"  # before migration 4 (headings once per document, 16 KiB pages, auto-vacuum)
COLLECTION = "nf"


class SizeOnlyEmbedder(Embedder):
    """MiniLM's identity and tokenizer (so chunks are exactly ingest's) with random vectors: a store's size does not
    depend on the vector values (int8, 384 bytes + a float scale per chunk), and the full corpus then takes seconds."""

    def __init__(self) -> None:
        from outpost.embed.tokens import WordPieces

        model = LocalModel.find(MODEL)
        assert model is not None
        self.model = model
        self.pieces = WordPieces(model.tokenizer_file, model.max_seq_length)
        self.rng = np.random.default_rng(0)

    @property
    def identity(self) -> Any:
        return self.model.identity()

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.pieces.count(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.rng.standard_normal((len(texts), 384)).astype(np.float32)


def files_mb(folder: Path) -> dict[str, float]:
    return {p.name: round(p.stat().st_size / 1e6, 2) for p in sorted(folder.iterdir()) if p.stat().st_size}


def ingest_worker(docs: Path, root: Path) -> dict[str, Any]:
    """Ingest ``docs`` into ``root/nf`` with whatever ``outpost`` this process imports (baseline or current)."""
    import outpost
    from outpost.ingest import discover, ingest
    from outpost.ingest.chunker import Chunker
    from outpost.ingest.limits import ReadLimits
    from outpost.store import Store

    embedder = SizeOnlyEmbedder()
    chunker = Chunker(embedder.count_tokens, 200, 30, embedder.identity.name)
    store = Store.open(root, COLLECTION, create=True)
    ingest(store, discover([docs]), embedder, chunker, limits=ReadLimits(10**9, 0))
    after = files_mb(store.folder)
    chunks = store.counts()[1]
    store.close()
    return {
        "outpost": outpost.__file__,
        "chunks": chunks,
        "right_after_ingest": after,
        "closed": files_mb(store.folder),
    }


def dbstat(path: Path) -> dict[str, Any]:
    """Bytes per table and index (``dbstat``), the page size and the free pages of one SQLite file."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        pragma = {p: db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count", "freelist_count")}
        tables = db.execute("SELECT name, SUM(pgsize), SUM(unused) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        return {
            **pragma,
            "file_mb": round(path.stat().st_size / 1e6, 2),
            "free_pages_mb": round(pragma["freelist_count"] * pragma["page_size"] / 1e6, 2),
            "mb": {name: round(size / 1e6, 3) for name, size, _ in tables if size >= 50_000},
            "unused_in_pages_mb": round(db.execute("SELECT SUM(unused) FROM dbstat").fetchone()[0] / 1e6, 2),
        }
    finally:
        db.close()


def bm25_answers(path: Path, queries: Sequence[str]) -> list[list[tuple[int, float]]]:
    """FTS5 BM25 top 10 (rowid, score) per query, read with plain SQL (the same on any schema version)."""
    from outpost.store.sqlite import fts_query

    sql = "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY 2, 1 LIMIT 10"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [[tuple(r) for r in db.execute(sql, (fts_query(q),))] if fts_query(q) else [] for q in queries]
    finally:
        db.close()


def run_worker(src: Path | None, docs: Path, root: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(src if src is not None else REPO / "src"))
    cmd = [sys.executable, __file__, "worker", str(docs), str(root)]
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def measure(docs: int = 0, baseline_rev: str = BASELINE_REV) -> dict[str, Any]:
    """The before/after figures (``docs`` = 0: the whole corpus)."""
    from outpost.store import Store

    result: dict[str, Any] = {"machine": machine(), "baseline_rev": baseline_rev}
    with tempfile.TemporaryDirectory(prefix="outpost-store-size-") as tmp:
        work = Path(tmp)
        write_markdown(load_corpus(docs or None), work / "docs")
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", baseline_rev, "src"], check=True, capture_output=True
        ).stdout
        (work / "baseline").mkdir()
        subprocess.run(["tar", "-x", "-C", str(work / "baseline")], input=archive, check=True)
        for label, src in (("baseline", work / "baseline" / "src"), ("current", None)):
            log(f"{label}: ingest")
            result[label] = run_worker(src, work / "docs", work / label)
            result[label]["dbstat"] = dbstat(work / label / COLLECTION / "store.sqlite")
        log("the baseline's store upgraded in place by the current code")
        shutil.copytree(work / "baseline", work / "upgraded", ignore=shutil.ignore_patterns("src"))
        before = bm25_answers(work / "baseline" / COLLECTION / "store.sqlite", queries := list(load_queries().values()))
        store = Store.open(work / "upgraded", COLLECTION)
        store.close()
        upgraded = work / "upgraded" / COLLECTION / "store.sqlite"
        result["upgraded"] = {"closed": files_mb(upgraded.parent), "dbstat": dbstat(upgraded)}
        after, new = (
            bm25_answers(upgraded, queries),
            bm25_answers(work / "current" / COLLECTION / "store.sqlite", queries),
        )
        result["bm25_queries"] = len(queries)
        result["bm25_answers_matched"] = sum(bool(a) for a in before)
        result["bm25_identical_upgraded"] = sum(a == b for a, b in zip(before, after))
        result["bm25_identical_new"] = sum(a == b for a, b in zip(before, new))
    return result


def render(r: dict[str, Any]) -> str:
    lines = [f"store size, NFCorpus ({r['current']['chunks']:,} chunks)  {r['machine']}"]
    lines.append(f"{'store':<28} {'after ingest MB':>15} {'closed MB':>10} {'page':>6} {'free MB':>8}")
    for label in ("baseline", "current", "upgraded"):
        f = r[label]
        after = sum(v for k, v in f.get("right_after_ingest", f["closed"]).items() if k.startswith("store.sqlite"))
        closed = sum(v for k, v in f["closed"].items() if k.startswith("store.sqlite"))
        name = {"baseline": f"baseline ({r['baseline_rev']})", "upgraded": "baseline upgraded in place"}.get(
            label, label
        )
        lines.append(
            f"{name:<28} {after:15.2f} {closed:10.2f} {f['dbstat']['page_size']:6d} {f['dbstat']['free_pages_mb']:8.2f}"
        )
        lines.append("    " + ", ".join(f"{k} {v:.2f}" for k, v in f["dbstat"]["mb"].items()))
    lines.append(
        f"BM25 top 10 identical to the baseline's: upgraded {r['bm25_identical_upgraded']}/{r['bm25_queries']}, "
        f"new {r['bm25_identical_new']}/{r['bm25_queries']} ({r['bm25_answers_matched']} queries match rows)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("worker")
    worker.add_argument("docs", type=Path)
    worker.add_argument("root", type=Path)
    parser.add_argument("--docs", type=int, default=0, help="documents (0: all 3,633)")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "worker":
        print(json.dumps(ingest_worker(args.docs, args.root)))
        return 0
    result = measure(args.docs, args.baseline_rev)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
