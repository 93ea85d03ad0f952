"""Store size on NFCorpus (issue 12): before and after, measured in one run.

The whole corpus (3,633 documents, written as Markdown) goes through the real ingest pipeline three times, each in
its own process, one after the other: by the code of ``--baseline-rev`` (before migration 4), of ``--previous-rev``
(before migration 5: text packed), both extracted with ``git archive``, and by the current code. For each store: the
files right after the ingest and once closed, and what the database holds (``dbstat``: bytes per table and index).
Then the baseline's and the previous revision's stores are upgraded in place by the current code (their numbered
migrations, as a laptop's collection is on the first open after an update) and measured again, and the BM25
answers (top 10, rowids and scores) of the NFCorpus queries are compared between the baseline store and every
other: they must be identical.

What the text's packing costs (migration 5), measured in the same run: each worker times its ingest and, on its
store, reading 10 chunks by rowid (what a search or an ask does for its sources) and the whole snapshot (a hub's
pack export); this process times ``pack_text``/``unpack_text`` over every chunk text (CPU).

Vectors are random (``SizeOnlyEmbedder``): MiniLM's identity and tokenizer cut exactly ingest's chunks, but no
model runs, because a store's size does not depend on vector values (int8, 384 bytes and a scale per chunk).

    nice -n 10 .venv/bin/python benchmarks/store_size.py [--docs 0] [--baseline-rev f22f037] \
        [--previous-rev 6191a1f] [--json]
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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _common import REPO, load_corpus, load_queries, log, machine, write_markdown
from outpost.embed.base import Embedder
from outpost.embed.local_model import LocalModel

MODEL = "all-MiniLM-L6-v2"
BASELINE_REV = "f22f037"  # before migration 4 (headings once per document, 16 KiB pages, auto-vacuum)
PREVIOUS_REV = "6191a1f"  # before migration 5 (chunk text packed)
READS = 2000  # reads of 10 chunks by rowid, per store
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
    start = time.perf_counter()
    ingest(store, discover([docs]), embedder, chunker, limits=ReadLimits(10**9, 0))
    ingest_s = time.perf_counter() - start
    after = files_mb(store.folder)
    chunks = store.counts()[1]
    timings = read_timings(store)
    store.close()
    return {
        "outpost": outpost.__file__,
        "chunks": chunks,
        "ingest_s": round(ingest_s, 2),
        **timings,
        "right_after_ingest": after,
        "closed": files_mb(store.folder),
    }


def read_timings(store: Any) -> dict[str, float]:
    """Median µs to read 10 random chunks by rowid (a search's or an ask's sources; warm cache), and seconds for a
    whole snapshot (a hub's pack export), with whatever ``Store`` this process imports."""
    rowids = [r[0] for r in store.db.execute("SELECT rowid FROM chunks")]
    rng = np.random.default_rng(0)
    samples = [rng.choice(rowids, 10, replace=False).tolist() for _ in range(READS)]
    store.chunks_by_rowid(rowids)  # warm the page cache
    times = []
    for sample in samples:
        start = time.perf_counter()
        store.chunks_by_rowid(sample)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    store.snapshot()
    return {"read_10_us": round(float(np.median(times)) * 1e6, 1), "snapshot_s": round(time.perf_counter() - start, 3)}


def pack_costs(texts: list[str]) -> dict[str, Any]:
    """CPU of packing (ingest) and unpacking (reads) every chunk text, and the bytes before and after."""
    from outpost.store.sqlite import pack_text, unpack_text

    start = time.process_time()
    packed = [pack_text(t) for t in texts]
    pack_s = time.process_time() - start
    start = time.process_time()
    for value in packed:
        unpack_text(value)
    unpack_s = time.process_time() - start
    plain = sum(len(t.encode()) for t in texts)
    kept = [v for v in packed if isinstance(v, str)]
    return {
        "texts": len(texts),
        "plain_mb": round(plain / 1e6, 3),
        "packed_mb": round(sum(len(v if isinstance(v, bytes) else v.encode()) for v in packed) / 1e6, 3),
        "left_plain": len(kept),
        "pack_us_per_text": round(pack_s / len(texts) * 1e6, 1),
        "unpack_us_per_text": round(unpack_s / len(texts) * 1e6, 1),
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


def extract(rev: str, into: Path) -> Path:
    """The ``src`` folder of revision ``rev``, extracted under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True, capture_output=True).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


# The stores measured: (label, the ingested store it is, or the one it upgrades in place by the current code)
INGESTED = ("baseline", "previous", "current")
UPGRADED = {"upgraded": "baseline", "upgraded_previous": "previous"}


def measure(docs: int = 0, baseline_rev: str = BASELINE_REV, previous_rev: str = PREVIOUS_REV) -> dict[str, Any]:
    """The before/after figures (``docs`` = 0: the whole corpus)."""
    from outpost.store import Store

    result: dict[str, Any] = {"machine": machine(), "baseline_rev": baseline_rev, "previous_rev": previous_rev}
    with tempfile.TemporaryDirectory(prefix="outpost-store-size-") as tmp:
        work = Path(tmp)
        write_markdown(load_corpus(docs or None), work / "docs")
        sources = {"baseline": extract(baseline_rev, work / "src-baseline"), "current": None}
        sources["previous"] = extract(previous_rev, work / "src-previous")
        for label in INGESTED:
            log(f"{label}: ingest")
            result[label] = run_worker(sources[label], work / "docs", work / label)
            result[label]["dbstat"] = dbstat(work / label / COLLECTION / "store.sqlite")
        queries = list(load_queries().values())
        before = bm25_answers(work / "baseline" / COLLECTION / "store.sqlite", queries)
        result["bm25_queries"] = len(queries)
        result["bm25_answers_matched"] = sum(bool(a) for a in before)
        for label, source in UPGRADED.items():
            log(f"the {source} store upgraded in place by the current code")
            shutil.copytree(work / source, work / label)
            start = time.perf_counter()
            Store.open(work / label, COLLECTION).close()
            upgraded = work / label / COLLECTION / "store.sqlite"
            result[label] = {
                "upgrade_s": round(time.perf_counter() - start, 2),
                "closed": files_mb(upgraded.parent),
                "dbstat": dbstat(upgraded),
            }
        for label in ("previous", "current", *UPGRADED):
            after = bm25_answers(work / label / COLLECTION / "store.sqlite", queries)
            result[label]["bm25_identical"] = sum(a == b for a, b in zip(before, after))
        store = Store.open(work / "current", COLLECTION)
        result["packing"] = pack_costs([c.text for c in store.snapshot().upserts])
        store.close()
    return result


def _or_dash(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else format("-", f">{spec.split('.')[0]}")


def render(r: dict[str, Any]) -> str:
    lines = [f"store size, NFCorpus ({r['current']['chunks']:,} chunks)  {r['machine']}"]
    lines.append(
        f"{'store':<30} {'after ingest MB':>15} {'closed MB':>10} {'page':>6} {'free MB':>8} {'BM25 same':>10}"
        f" {'ingest s':>9} {'read 10 µs':>11} {'snapshot s':>11}"
    )
    names = {
        "baseline": f"baseline ({r['baseline_rev']})",
        "previous": f"previous ({r['previous_rev']})",
        "upgraded": "baseline upgraded in place",
        "upgraded_previous": "previous upgraded in place",
    }
    for label in (*INGESTED, *UPGRADED):
        f = r[label]
        after = sum(v for k, v in f.get("right_after_ingest", f["closed"]).items() if k.startswith("store.sqlite"))
        closed = sum(v for k, v in f["closed"].items() if k.startswith("store.sqlite"))
        same = f"{f['bm25_identical']}/{r['bm25_queries']}" if "bm25_identical" in f else "(itself)"
        lines.append(
            f"{names.get(label, label):<30} {after:15.2f} {closed:10.2f} {f['dbstat']['page_size']:6d} "
            f"{f['dbstat']['free_pages_mb']:8.2f} {same:>10} {f.get('ingest_s', f.get('upgrade_s', 0)):9.2f} "
            f"{_or_dash(f.get('read_10_us'), '11.1f')} {_or_dash(f.get('snapshot_s'), '11.3f')}"
        )
        lines.append("    " + ", ".join(f"{k} {v:.2f}" for k, v in f["dbstat"]["mb"].items()))
    p = r["packing"]
    lines.append(
        f"BM25 top 10 compared with the baseline's ({r['bm25_answers_matched']} of {r['bm25_queries']} queries match "
        f"rows); upgrades: 's' is the upgrade's time. Text: {p['plain_mb']} MB plain -> {p['packed_mb']} MB packed "
        f"({p['left_plain']} of {p['texts']} left plain), pack {p['pack_us_per_text']} µs, "
        f"unpack {p['unpack_us_per_text']} µs per text (CPU)"
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
    parser.add_argument("--previous-rev", default=PREVIOUS_REV)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "worker":
        print(json.dumps(ingest_worker(args.docs, args.root)))
        return 0
    result = measure(args.docs, args.baseline_rev, args.previous_rev)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
