"""Helpers shared by the benchmarks: NFCorpus loading, machine facts, timing, tables, nDCG, the vector cache.

Why one module: both benchmarks must read the dataset, describe the machine and report latencies the same
way, so their figures can sit side by side in ``docs/benchmarks.md``. Importing this module first also sets
the offline switches before anything imports ``transformers`` (the benchmarks never download anything).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any import that may reach for the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import datetime as _dt
import hashlib
import json
import math
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NFCORPUS = Path(os.environ.get("OUTPOST_BENCH_NFCORPUS", REPO.parent / "shared" / "datasets" / "nfcorpus"))
CACHE_DIR = REPO / "benchmarks" / ".cache"

# Published / measured figures from shared/README.md (NFCorpus test split, nDCG@10), printed beside ours.
REFERENCE_NDCG: list[tuple[str, str]] = [
    ("BM25 (BEIR, published)", "≈ 0.325"),
    ("all-MiniLM-L6-v2 dense (MTEB, published)", "≈ 0.31–0.32"),
    ("LlamaIndex defaults (1024-token chunks)", "0.311"),
    ("LangChain + Chroma, 1000/100 char splitter", "0.315"),
    ("LangChain + Chroma + BM25Retriever ensemble (hybrid)", "0.279"),
    ("SQLite FTS5 + MiniLM, RRF k=60, whole documents", "0.354"),
]

# The other stacks' ingest figures from shared/README.md (same data, 2 idle cores).
REFERENCE_STACKS: list[dict[str, str]] = [
    {
        "stack": "LlamaIndex defaults",
        "chunks": "3,643",
        "docs/s": "13.4",
        "peak RSS": "895 MB",
        "store": "45 MB",
        "nDCG@10": "0.311",
        "query p50": "89 ms",
    },
    {
        "stack": "LangChain + Chroma (1000/100 chars)",
        "chunks": "10,548",
        "docs/s": "8.5",
        "peak RSS": "1,236 MB",
        "store": "97 MB",
        "nDCG@10": "0.315",
        "query p50": "31 ms",
    },
    {
        "stack": "… + BM25Retriever ensemble (hybrid)",
        "chunks": "10,548",
        "docs/s": "",
        "peak RSS": "",
        "store": "",
        "nDCG@10": "0.279",
        "query p50": "49 ms",
    },
]


# -- dataset ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusDoc:
    """One BEIR corpus row."""

    id: str
    title: str
    text: str


def load_corpus(limit: int | None = None) -> list[CorpusDoc]:
    """The first ``limit`` NFCorpus documents in file order (all when ``None`` or 0)."""
    docs: list[CorpusDoc] = []
    with (NFCORPUS / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if limit and len(docs) >= limit:
                break
            row = json.loads(line)
            docs.append(CorpusDoc(row["_id"], row.get("title") or "", row.get("text") or ""))
    return docs


def load_queries() -> dict[str, str]:
    """Query id → text, all splits."""
    with (NFCORPUS / "queries.jsonl").open(encoding="utf-8") as fh:
        return {row["_id"]: row["text"] for row in map(json.loads, fh)}


def load_qrels(split: str = "test") -> dict[str, dict[str, int]]:
    """Query id → {document id: graded relevance}; the TSV has a header line and CRLF line ends."""
    qrels: dict[str, dict[str, int]] = {}
    lines = (NFCORPUS / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        parts = line.strip().split("\t")
        if len(parts) == 3:
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def markdown_text(doc: CorpusDoc) -> str:
    """``# title`` then the abstract: the shape a user's notes folder would have."""
    title = " ".join(doc.title.split())
    return f"# {title}\n\n{doc.text}\n" if title else f"{doc.text}\n"


def write_markdown(docs: Iterable[CorpusDoc], folder: Path) -> int:
    """Write ``<_id>.md`` per document; returns the bytes written (what ingest has to read)."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for doc in docs:
        data = markdown_text(doc).encode("utf-8")
        (folder / f"{doc.id}.md").write_bytes(data)
        total += len(data)
    return total


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- machine and process facts ---------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What a reader needs to judge the figures: cores, CPU, load (other work on the box), versions."""
    import torch
    import usearch

    from outpost.cpus import usable_cpus

    cores = usable_cpus()  # the affinity mask and cgroup quota, as the code under test counts them
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cores": cores,
        "cpu": cpu_model(),
        "gpu": "cuda" if torch.cuda.is_available() else "none",
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "usearch": usearch.__version__,
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@contextmanager
def blas_one_thread() -> Iterator[None]:
    """numpy's BLAS at one thread: on 2 cores it otherwise fights torch's pool (DESIGN.md §4)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def log(message: str) -> None:
    """Progress goes to stderr so ``--json`` output on stdout stays parseable."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Per-call latency summary in milliseconds."""

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        return cls(len(ms), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.mean()))

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def time_calls(fn: Callable[[Any], object], items: Sequence[Any], repeats: int = 1, warmup: int = 10) -> Latency:
    """Time ``fn(item)`` per call after ``warmup`` untimed calls (caches, lazily built indexes, page cache)."""
    for item in items[:warmup]:
        fn(item)
    samples: list[float] = []
    for _ in range(repeats):
        for item in items:
            start = time.perf_counter()
            fn(item)
            samples.append(time.perf_counter() - start)
    return Latency.of(samples)


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


# -- quality ---------------------------------------------------------------------------------


def ndcg_at_k(ranked: Sequence[str], judged: dict[str, int], k: int = 10) -> float:
    """BEIR/trec_eval nDCG@k: gain = graded relevance, discount log2(rank + 1), ideal over all judged docs."""
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def best_chunk_per_doc(scored: Iterable[tuple[str, float]], k: int = 10) -> list[str]:
    """Chunk-level (doc id, score) → top-k document ids, a document scoring as its best chunk (DESIGN §4)."""
    best: dict[str, float] = {}
    for doc, score in scored:
        if doc not in best or score > best[doc]:
            best[doc] = score
    return [doc for doc, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


# -- output ----------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None, left: int = 1) -> str:
    """A plain aligned text table (also valid inside a Markdown code block); the first ``left`` columns flush left."""
    cells = [[str(c) for c in row] for row in ([header] if header else []) + list(rows)]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(max(map(len, cells)))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(row)))
        if header and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def dump_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False, default=str)


def ensure_cache_dir() -> Path:
    """``benchmarks/.cache/`` with a ``*`` .gitignore inside, so the cache is never committed by accident."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    ignore = CACHE_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return CACHE_DIR
