"""Apply and retrieval at size (issue 12: P4, P5) and the streaming simulation behind ``docs/scale.md``.

Three commands, all on synthetic data (no model, no dataset, nothing downloaded):

- ``apply``: a snapshot pack of ``--size`` chunks (100k) and a delta pack of ``--delta`` changed chunks (1k) are
  written once; then the *same packs* are verified, read and applied (``read_pack`` + ``Store.apply``, exactly what
  ``outpost sync`` does, the delta on a freshly opened store like a later sync) by the code of each
  ``--baseline-rev`` (repeatable; extracted with ``git archive`` into a temp folder) and by the current code, each in
  its own process, one after the other, so the ratios are measured in one run on the same load.
- ``retrieval``: a ``--size`` store (1M) built once (cached under ``benchmarks/.cache/``); per query p50/p99 of
  ``Store.bm25``, ``Store.dense`` and the hybrid ``Retriever.search`` (query vector precomputed: the model's time
  is not the store's), against exact int8 search (numpy brute force, the recall oracle) and against the baseline
  revision's code on the same file, in its own process.
- ``simulate``: synthetic versions M and N of a ``--size`` collection (10M) streamed in batches through diff (ids
  of both versions, sorted), pack (Parquet row groups), sign (sha256 of each file, Ed25519 over the manifest) and
  apply (one SQLite transaction fed batch by batch), with time and peak memory per stage.

Synthetic data, and why it looks like this:
- **Vectors** live on a low-dimensional manifold, as sentence embeddings do: a latent point (``--latent`` = 32
  dims) drawn around one of 2,000 topic centres, mapped into 384 dims by a fixed random projection, plus isotropic
  noise of about the same energy, normalised (calibrated so a query's nearest chunk sits at cosine ≈ 0.5 and its
  10th at ≈ 0.4, and HNSW recall at 30k chunks is what NFCorpus gave: 0.98–0.99 at ``expansion_search`` 128).
  Isotropic noise alone would be the ANN worst case (no structure at all), near-duplicate copies of a few real
  vectors the opposite; real corpora sit between. Queries are perturbed
  latent points of random chunks, so each has true neighbours.
- **Text**: words from a vocabulary of 50k drawn Zipf-like (exponent 1.07, like English word frequencies), 80–160
  words a chunk; the most frequent ranks are the English stopwords the query path drops (as in real text), the rest
  are made-up syllable words. Query text: 2–6 distinct words of the chunk the query vector came from.

Run under ``nice -n 10`` on the shared machine; progress on stderr, figures (or ``--json``) on stdout::

    nice -n 10 .venv/bin/python benchmarks/scale.py apply --size 100000 --delta 1000
    nice -n 10 .venv/bin/python benchmarks/scale.py retrieval --size 1000000 --queries 1000
    nice -n 10 .venv/bin/python benchmarks/scale.py simulate --size 1000000 --batch 50000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / ".cache"
DIM = 384
BASELINE_REV = "4b68ed8"  # the code before the issue-12 apply/retrieval work
IDENTITY = {"name": "synthetic-384", "weights_sha256": "0" * 64, "dimension": DIM, "max_seq_length": 256}
CHUNKER = "synthetic-v1"
CHUNKS_PER_DOC = 8


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Current resident set size (peak RSS only ever grows; per-stage memory needs the current one)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def machine() -> dict[str, Any]:
    """Cores, load and versions, without importing torch (it would add ~1 GB to every memory figure)."""
    import usearch

    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "cores": len(os.sched_getaffinity(0)),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "usearch": usearch.__version__,
    }


def cpu_jiffies() -> tuple[int, int]:
    """(steal, total) jiffies of this machine so far (/proc/stat; zeros where there is none). On a virtual machine
    *steal* is time the hypervisor gave this VM's CPUs to another guest: wall times then exceed CPU times, and a
    latency figure says more about the neighbours than about the code."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time stolen by the hypervisor between two :func:`cpu_jiffies` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


# -- synthetic data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    """The fixed structure every batch is drawn from: topic centres, projection, vocabulary."""

    centres: np.ndarray  # (topics, latent)
    projection: np.ndarray  # (latent, DIM)
    vocab: list[str]
    cdf: np.ndarray  # Zipf cumulative distribution over vocab

    @classmethod
    def make(cls, seed: int = 7, latent: int = 32, topics: int = 2000, vocab: int = 50_000) -> Space:
        rng = np.random.default_rng(seed)
        from outpost.store.fts import STOPWORDS

        syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
        # The most frequent ranks are real English stopwords, as in real text: the query path drops them
        words: dict[str, None] = dict.fromkeys(sorted(STOPWORDS))
        while len(words) < vocab:
            n = int(rng.integers(2, 5))
            words["".join(syllables[i] for i in rng.integers(0, len(syllables), n))] = None
        weights = 1.0 / np.arange(1, vocab + 1) ** 1.07
        return cls(
            centres=rng.normal(size=(topics, latent)).astype(np.float32),
            projection=rng.normal(size=(latent, DIM)).astype(np.float32) / np.sqrt(latent),
            vocab=list(words),
            cdf=np.cumsum(weights) / weights.sum(),
        )

    def latents(self, rng: np.random.Generator, n: int) -> np.ndarray:
        topic = rng.integers(0, len(self.centres), n)
        noise: np.ndarray = 0.6 * rng.normal(size=(n, self.centres.shape[1])).astype(np.float32)
        return np.asarray(self.centres[topic] + noise, dtype=np.float32)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` chunks' latent points and their unit vectors (the first draws of every batch)."""
        latents = self.latents(rng, n)
        return latents, self.vectors(rng, latents)

    def vectors(self, rng: np.random.Generator, latents: np.ndarray) -> np.ndarray:
        x = latents @ self.projection + 1.0 * rng.normal(size=(len(latents), DIM)).astype(np.float32)
        return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)

    def texts(self, rng: np.random.Generator, n: int) -> list[str]:
        lengths = rng.integers(80, 161, n)
        ids = np.searchsorted(self.cdf, rng.random(int(lengths.sum())))
        vocab, out, at = self.vocab, [], 0
        for length in lengths.tolist():
            out.append(" ".join([vocab[i] for i in ids[at : at + length].tolist()]))
            at += length
        return out


@dataclass
class Batch:
    """Rows ``start .. start + n`` of one synthetic collection version, as plain arrays."""

    start: int
    ids: list[str]
    texts: list[str]
    latents: np.ndarray
    q: np.ndarray  # int8 (n, DIM)
    scales: np.ndarray
    floats: np.ndarray


def chunk_id(row: int, version_tag: str = "") -> str:
    return hashlib.blake2b(f"{row}{version_tag}".encode(), digest_size=16).hexdigest()


def make_batch(space: Space, start: int, n: int, seed: int = 0, tag: str = "") -> Batch:
    """Deterministic per (seed, start): any batch can be regenerated alone (streaming, baselines)."""
    from outpost.embed.quantize import quantize

    rng = np.random.default_rng([seed, start])
    latents, floats = space.sample(rng, n)
    q, scales = quantize(floats)
    ids = [chunk_id(i, tag) for i in range(start, start + n)]
    return Batch(start, ids, space.texts(rng, n), latents, q, scales, floats)


def changeset_of(batches: Sequence[Batch], base: int = 0, version: int = 1) -> Any:
    from outpost.records import Changeset, Chunk, DocumentRecord, EmbeddingIdentity

    chunks: list[Chunk] = []
    for b in batches:
        chunks += [
            Chunk(cid, f"doc{(b.start + i) // CHUNKS_PER_DOC:09d}.md", (b.start + i) % CHUNKS_PER_DOC, text)
            for i, (cid, text) in enumerate(zip(b.ids, b.texts))
        ]
    keys = sorted({c.doc_key for c in chunks})
    documents = [DocumentRecord(k, hashlib.sha256(k.encode()).hexdigest(), k, "md", 1000, CHUNKS_PER_DOC) for k in keys]
    return Changeset(
        "scale",
        base,
        chunks,
        np.concatenate([b.q for b in batches]) if batches else np.zeros((0, DIM), np.int8),
        np.concatenate([b.scales for b in batches]) if batches else np.zeros(0, np.float32),
        documents,
        embedding=EmbeddingIdentity(**IDENTITY),  # type: ignore[arg-type]
        chunker_id=CHUNKER,
        version=version,
        snapshot=base == 0,
    )


def batches(space: Space, size: int, batch: int, seed: int = 0) -> Iterator[Batch]:
    for start in range(0, size, batch):
        yield make_batch(space, start, min(batch, size - start), seed)


# -- baseline code -----------------------------------------------------------------------------


def baseline_src(rev: str, into: Path) -> Path:
    """The ``src`` tree of ``rev`` (``git archive``, read-only use): how the code before a change is run."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True, capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def run_worker(src: Path | None, args: list[str]) -> dict[str, Any]:
    """This script's worker command in a new process, importing ``outpost`` from ``src`` (None: this checkout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src if src is not None else REPO / "src")
    out = subprocess.run([sys.executable, __file__, *args], env=env, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def cpu_s() -> float:
    """CPU seconds of this process, all threads: on cores shared with others, the figure that load does not skew."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], Any], cpu: dict[str, float] | None = None, name: str = "") -> tuple[Any, float]:
    """(value, wall seconds); with ``cpu``, also records the CPU seconds under ``name``."""
    start, start_cpu = time.perf_counter(), cpu_s()
    value = fn()
    if cpu is not None:
        cpu[name] = cpu_s() - start_cpu
    return value, time.perf_counter() - start


# -- apply (P4) --------------------------------------------------------------------------------


def write_apply_packs(work: Path, size: int, delta: int, batch: int) -> str:
    """Snapshot-1 of ``size`` chunks and delta-1-2 replacing ``delta`` of them; returns the hub key text."""
    from outpost.packs import generate_key, public_key_text, write_pack

    space = Space.make()
    key = generate_key(work / "key.pem")
    all_batches = list(batches(space, size, batch))
    snapshot = changeset_of(all_batches)
    write_pack(snapshot, work / "snapshot-1", key)
    rng = np.random.default_rng(11)
    gone = sorted(rng.choice(size, delta, replace=False).tolist())
    fresh = make_batch(space, size, delta, seed=1, tag="v2")
    cs = changeset_of([fresh], base=1, version=2)
    cs.upserts = [
        type(c)(c.id, snapshot.upserts[g].doc_key, snapshot.upserts[g].ordinal, c.text)
        for c, g in zip(cs.upserts, gone)
    ]
    cs.documents = []
    cs.delete_chunks = [snapshot.upserts[g].id for g in gone]
    write_pack(cs, work / "delta-1-2", key)
    return public_key_text(key)


def apply_worker(packs: Path, hub_key: str, store_dir: Path) -> dict[str, Any]:
    """What ``outpost sync`` does with each pack: verify + read, then apply on a freshly opened store."""
    import outpost
    from outpost.packs import read_pack
    from outpost.store import Store

    cpu: dict[str, float] = {}
    result: dict[str, Any] = {"outpost": outpost.__file__, "cpu_s": cpu}
    read, result["snapshot_read_s"] = timed(lambda: read_pack(packs / "snapshot-1", hub_key), cpu, "snapshot_read")
    store = Store.open(store_dir, "scale", create=True)
    _, result["snapshot_apply_s"] = timed(lambda: store.apply(read[1]), cpu, "snapshot_apply")
    result["snapshot_rows"] = store.counts()[1]
    store.close()
    read = None  # the snapshot's rows go before the delta is measured
    (_, delta), result["delta_read_s"] = timed(lambda: read_pack(packs / "delta-1-2", hub_key), cpu, "delta_read")
    store = Store.open(store_dir, "scale")
    _, result["delta_apply_s"] = timed(lambda: store.apply(delta), cpu, "delta_apply")
    result["delta_rows"] = store.counts()[1]
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def cmd_apply(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="outpost-scale-apply-"))
    try:
        log(f"writing a {args.size}-chunk snapshot pack and a {args.delta}-chunk delta pack")
        hub_key, write_s = timed(lambda: write_apply_packs(work, args.size, args.delta, args.batch))
        revs = list(dict.fromkeys(args.baseline_rev or [BASELINE_REV]))
        codes: list[tuple[str, Path | None]] = [(rev, baseline_src(rev, work / rev)) for rev in revs]
        codes.append(("current", None))
        result: dict[str, Any] = {"machine": machine(), "size": args.size, "delta": args.delta, "write_s": write_s}
        result["codes"] = [label for label, _ in codes]
        for trial in range(args.trials):  # trials interleaved: a change of load falls on every code alike
            for label, src in codes:
                log(f"{label} trial {trial + 1}: verify + read + apply (load {os.getloadavg()[0]:.2f})")
                store_dir = work / f"store-{label}-{trial}"
                fig = run_worker(src, ["apply-worker", str(work), hub_key, str(store_dir)])
                fig["loadavg_1m"] = round(os.getloadavg()[0], 2)
                result.setdefault(label, []).append(fig)
                shutil.rmtree(store_dir, ignore_errors=True)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render_apply(r: dict[str, Any]) -> str:
    lines = [f"apply: snapshot {r['size']:,} chunks, delta {r['delta']:,} chunks  {r['machine']}"]
    lines.append(
        f"{'code':<10} {'snap read s':>11} {'snap apply s':>12} {'total s':>8} {'delta read s':>12} "
        f"{'delta apply s':>13} {'total s':>8} {'peak RSS MB':>11} {'load':>5}"
    )
    for label in r["codes"]:
        for f in r[label]:
            lines.append(
                f"{label:<10} {f['snapshot_read_s']:11.2f} {f['snapshot_apply_s']:12.2f} "
                f"{f['snapshot_read_s'] + f['snapshot_apply_s']:8.2f} {f['delta_read_s']:12.3f} "
                f"{f['delta_apply_s']:13.3f} {f['delta_read_s'] + f['delta_apply_s']:8.3f} "
                f"{f['peak_rss_mb']:11.0f} {f['loadavg_1m']:5.2f}"
            )
    return "\n".join(lines)


# -- retrieval (P5) ----------------------------------------------------------------------------


K = 10
DEPTH = 50  # what Retriever asks each retriever for (its default depth)
# The code before the words' top lists. Revisions before store migration 5 (4b68ed8, f22f037) cannot read a store
# made since (packed chunk text), so the exact-BM25 oracle is computed by the driver (FTS5 scoring every row).
P5_BASELINE_REVS = ("e9f73c4",)
EF_CURVE = (128, 256, 512, 768, 1024, 1536)
STAGES = ("bm25", "bm25.terms", "bm25.score", "bm25.lists", "dense", "fetch", "gc")


def build_retrieval_store(folder: Path, size: int, batch: int, queries: int) -> dict[str, Any]:
    """A ``size``-chunk collection in one snapshot apply, and ``queries`` queries drawn from its rows (cached)."""
    from outpost.embed.quantize import quantize
    from outpost.store import Store

    space = Space.make()
    rng = np.random.default_rng(2024)
    rows = np.sort(rng.choice(size, queries, replace=False))
    parts, texts, vectors = [], [], []
    for b in batches(space, size, batch):
        parts.append(b)
        for r in rows[(rows >= b.start) & (rows < b.start + len(b.ids))].tolist():
            words = list(dict.fromkeys(b.texts[r - b.start].split()))
            take = rng.choice(len(words), min(len(words), int(rng.integers(2, 7))), replace=False)
            texts.append(" ".join(words[i] for i in take))
            vectors.append(
                space.vectors(rng, b.latents[r - b.start][None, :] + rng.normal(size=(1, 32)).astype(np.float32))
            )
        log(f"generated {b.start + len(b.ids):,} / {size:,} chunks")
    cs = changeset_of(parts)
    del parts
    store = Store.open(folder, "scale", create=True)
    log(f"applying {size:,} chunks (load {os.getloadavg()[0]:.2f})")
    cpu: dict[str, float] = {}
    _, apply_s = timed(lambda: store.apply(cs), cpu, "apply")
    store.close()
    q, _ = quantize(np.concatenate(vectors))
    np.save(folder / "queries.npy", q)
    built = {"size": size, "apply_s": apply_s, "apply_cpu_s": cpu["apply"], "texts": texts}
    (folder / "queries.json").write_text(json.dumps(built))
    return built


def exact_truth(keys: np.ndarray, ints: np.ndarray, queries: np.ndarray, k: int = K) -> tuple[np.ndarray, list[float]]:
    """Exact int8 cosine top-k for every query (the recall oracle), and per-query brute-force times."""
    unit = ints.astype(np.float32)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    truth, times = [], []
    for q in queries:
        start = time.perf_counter()
        qf = q.astype(np.float32)
        sims = unit @ (qf / max(float(np.linalg.norm(qf)), 1e-12))
        top = np.argpartition(-sims, k - 1)[:k]
        truth.append(keys[top[np.argsort(-sims[top])]])
        times.append(time.perf_counter() - start)
    return np.array(truth), times


def cached_truth(folder: Path, store: Any, vectors: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The oracle's answers, computed once per collection state (166 ms a query at 1M); brute force timed on 20.

    Keyed by the store's (version, generation), not the file's time: every open may checkpoint or migrate the file
    without changing a row.
    """
    truth_file, key_file = folder / "truth.npy", folder / "truth-state.json"
    state = list(store.state())
    _, keys, ints = store._all_vectors()
    if truth_file.is_file() and key_file.is_file() and json.loads(key_file.read_text()) == state:
        truth = np.load(truth_file)
        if len(truth) >= len(vectors):
            return truth[: len(vectors)], exact_truth(keys, ints, vectors[:20])[1]
    truth, times = exact_truth(keys, ints, vectors)
    np.save(truth_file, truth)
    key_file.write_text(json.dumps(state))
    return truth, times


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def latency(fn: Callable[[int], object], n: int, warmup: int = 20) -> dict[str, float]:
    for i in range(min(warmup, n)):
        fn(i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


class _NoEmbedder:
    """Retriever's embedder slot: every query here comes with its vector, so nothing is embedded."""

    def embed_query(self, text: str) -> np.ndarray:
        raise AssertionError("the benchmark passes query vectors")


class StageClock:
    """Per-query time in each stage of a search, by wrapping the library's own functions (whichever the running
    revision has): ``Store.bm25``, its term look-up, FTS5 scoring and top lists, the dense search (it may run in a
    thread), fetching the rows, and the garbage collector's pauses."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}  # wall seconds per stage
        self.cpu: dict[str, float] = {}  # CPU seconds per stage, of the thread that ran it
        self._gc_start = 0.0

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        fn = getattr(owner, name, None)
        if fn is None:
            return

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[stage] = self.spent.get(stage, 0.0) + time.perf_counter() - start
                self.cpu[stage] = self.cpu.get(stage, 0.0) + time.thread_time() - start_cpu

        setattr(owner, name, staticmethod(timed_call) if isinstance(owner, type) and name == "search" else timed_call)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.spent["gc"] = self.spent.get("gc", 0.0) + time.perf_counter() - self._gc_start

    def install(self) -> None:
        import gc

        from outpost.store import sqlite

        self.wrap(sqlite.Store, "bm25", "bm25")
        self.wrap(sqlite.Store, "chunks_by_rowid", "fetch")
        self.wrap(sqlite.AnnIndex, "search", "dense")
        try:
            from outpost.store import bm25
        except ImportError:  # the baseline before issue 12 has no rare-words-first BM25
            return
        self.wrap(bm25, "_words", "bm25.terms")
        self.wrap(bm25, "_ranked", "bm25.score")  # FTS5 scoring in full, before store/fts.py
        gc.callbacks.append(self.on_gc)
        try:
            from outpost.store import fts, toplists
        except ImportError:  # before the words' top lists
            return
        self.wrap(fts, "ranked", "bm25.score")
        self.wrap(toplists, "one_word", "bm25.lists")


def retrieval_serve(folder: Path, truth_file: Path, measure: int) -> None:
    """A worker that times one query at a time when the driver asks (stdin: ``i`` or ``done``; stdout: JSON lines).

    Several revisions' workers are run side by side and asked in turn, query by query, so every revision sees the
    same load; each times its own calls, so process start and pipes are not in the figures.
    """
    import outpost
    from outpost.retrieve import Retriever
    from outpost.store import Store

    raw = json.loads((folder / "queries.json").read_text())
    texts, vectors = raw["texts"][:measure], np.load(folder / "queries.npy")[:measure]
    store = Store.open(folder, "scale")
    retriever = Retriever(store, _NoEmbedder())  # type: ignore[arg-type]
    _, load_s = timed(lambda: store.dense(vectors[0], K))  # loads the index file
    clock = StageClock()

    def hybrid(i: int) -> list[Any]:
        return retriever.search(texts[i], K, "hybrid", query=vectors[i].astype(np.float32))

    for i in range(min(20, len(texts))):  # warm-up: caches, the index's pages
        store.bm25(texts[i], DEPTH), store.dense(vectors[i], DEPTH), hybrid(i)
    clock.install()
    print(json.dumps({"ready": True, "outpost": outpost.__file__, "index_load_s": load_s}), flush=True)
    per_query: list[dict[str, Any]] = []
    for line in sys.stdin:
        if line.strip() == "done":
            break
        i = int(line)
        text, vector = texts[i], vectors[i]
        got: dict[str, Any] = {"i": i}
        cpu: dict[str, float] = {}
        _, got["bm25"] = timed(lambda: store.bm25(text, DEPTH), cpu, "bm25")  # noqa: B023 (called at once)
        _, got["dense"] = timed(lambda: store.dense(vector, DEPTH), cpu, "dense")  # noqa: B023
        clock.spent.clear(), clock.cpu.clear()
        _, got["hybrid"] = timed(lambda: hybrid(i), cpu, "hybrid")  # noqa: B023
        got["stages"], got["stages_cpu"], got["cpu"] = dict(clock.spent), dict(clock.cpu), cpu
        per_query.append(got)
        print(json.dumps(got), flush=True)
    truth = np.load(truth_file)
    n = len(per_query)
    found = [[key for key, _ in store.dense(vectors[i], K)] for i in range(n)]
    result: dict[str, Any] = {"outpost": outpost.__file__, "index_load_s": load_s, "queries": n}
    for path in ("bm25", "dense", "hybrid"):
        result[path] = percentiles([q[path] for q in per_query])
        result[f"{path}_cpu"] = percentiles([q["cpu"][path] for q in per_query])
    for what in ("stages", "stages_cpu"):
        result[what] = {
            stage: percentiles([q[what].get(stage, 0.0) for q in per_query])
            for stage in STAGES
            if any(stage in q[what] for q in per_query)
        }
    result["per_query"] = per_query
    result["bm25_top10"] = [[key for key, _ in store.bm25(texts[i], K)] for i in range(n)]
    result["hybrid_top10"] = [[h.chunk.id for h in hybrid(i)] for i in range(n)]
    result["dense_recall@10"] = float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth)]))
    result["bm25_matches"] = bm25_match_counts(store, texts[:n])
    result["peak_rss_mb"] = own_peak_rss_mb()
    print(json.dumps(result), flush=True)


def own_peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM): ``ru_maxrss`` of a child started by fork + exec starts at its parent's,
    and the driver holds the oracle's 1.5 GB float matrix."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:"))


def bm25_match_counts(store: Any, texts: Sequence[str]) -> list[int]:
    """How many rows each query's OR matches: what FTS5 must score per query if it scores them all."""
    from outpost.store import fts_query

    sql = "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?"
    return [store.db.execute(sql, (q,)).fetchone()[0] if (q := fts_query(t)) else 0 for t in texts]


def ef_sweep(index: Any, vectors: np.ndarray, truth: np.ndarray, efs: Sequence[int]) -> list[dict[str, float]]:
    """Recall@10 and usearch search time at several ``expansion_search`` settings on the same index."""
    out = []
    for ef in efs:
        index.expansion_search = ef
        found: list[list[int]] = []

        def search(i: int, into: list[list[int]] = found) -> None:
            into.append(index.search(vectors[i], K).keys.tolist())  # usearch itself: AnnIndex.search sets ef

        lat = latency(search, len(vectors), 0)
        recall = float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth)]))
        out.append({"expansion_search": ef, "recall@10": recall, **lat})
    return out


def cmd_ef_curve(args: argparse.Namespace) -> dict[str, Any]:
    """Recall@10 against exact int8 search at several ``expansion_search`` widths for an index over the first
    ``--first`` chunks of the cached ``--size`` collection (its queries, its HNSW settings): how the width that
    reaches a recall grows with the index (``store/ann.py`` sizes it from these curves)."""
    from outpost.store import AnnIndex, Store

    folder = CACHE / f"scale-{args.size}"
    store = Store.open(folder, "scale")
    _, keys, ints = store._all_vectors()
    store.close()
    keys, ints = keys[: args.first], ints[: args.first]
    vectors = np.load(folder / "queries.npy")[: args.measure]
    truth, _ = exact_truth(keys, ints, vectors)
    cpu: dict[str, float] = {}
    index, build_s = timed(lambda: AnnIndex(folder, DIM).build_index(keys, ints), cpu, "build")
    result: dict[str, Any] = {
        "machine": machine(),
        "chunks": len(keys),
        "build_s": build_s,
        "build_cpu_s": cpu["build"],
    }
    result["ef_sweep"] = ef_sweep(index, vectors, truth, EF_CURVE)
    return result


def cmd_build_curve(args: argparse.Namespace) -> dict[str, Any]:
    """HNSW build cost against recall: for each ``expansion_add``, the build's wall and CPU over ``--size``
    synthetic vectors (two usearch threads, as ``Store.apply`` builds) and recall@10 against exact int8 search at
    several widths. No store is involved: the vectors are generated in memory (``store/ann.py`` chose its build
    and search widths from these curves, issue 12 P4 vs P5)."""
    from usearch.index import Index

    from outpost.cpus import usable_cpus
    from outpost.embed.quantize import quantize

    space = Space.make()
    parts = []
    for start in range(0, args.size, 10_000):  # make_batch's draws, without its texts
        latents, floats = space.sample(np.random.default_rng([0, start]), min(10_000, args.size - start))
        parts.append((latents, quantize(floats)[0]))
    latents, ints = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    keys = np.arange(len(ints), dtype=np.uint64)
    rng = np.random.default_rng(2024)  # queries: perturbed latents of random chunks, as `retrieval` draws them
    picked = latents[rng.integers(0, len(latents), args.measure)]
    queries, _ = quantize(space.vectors(rng, picked + rng.normal(size=picked.shape).astype(np.float32)))
    truth, _ = exact_truth(keys, ints, queries)
    result: dict[str, Any] = {"machine": machine(), "chunks": len(ints), "builds": []}
    for links in args.connectivity:
        for add in args.adds:
            index = Index(ndim=DIM, metric="cos", dtype="i8", connectivity=links, expansion_add=add)
            cpu: dict[str, float] = {}
            _, build_s = timed(lambda built=index: built.add(keys, ints, threads=usable_cpus()), cpu, "build")
            curve = ef_sweep(index, queries, truth, args.widths)
            build = {"connectivity": links, "expansion_add": add, "build_s": build_s, "build_cpu_s": cpu["build"]}
            result["builds"].append(build | {"memory_mb": index.memory_usage / 1e6, "curve": curve})
            log(f"connectivity {links}, expansion_add {add}: built in {build_s:.1f} s ({cpu['build']:.1f} CPU-s)")
            del index
    return result


def render_build_curve(r: dict[str, Any]) -> str:
    widths = [c["expansion_search"] for c in r["builds"][0]["curve"]] if r["builds"] else []
    head = f"HNSW build vs recall@10 and search p50 (ms), {r['chunks']:,} chunks  {r['machine']}\n"
    rows = ["links  expansion_add  build s  build CPU-s  memory MB  " + "  ".join(f"w{w:<12}" for w in widths)]
    for b in r["builds"]:
        recalls = "  ".join(f"{c['recall@10']:.4f} {c['p50_ms']:5.2f}" for c in b["curve"])
        rows.append(
            f"{b.get('connectivity', 16):>5}  {b['expansion_add']:>13}  {b['build_s']:>7.1f}  {b['build_cpu_s']:>11.1f}"
            f"  {b.get('memory_mb', 0):>9.0f}  {recalls}"
        )
    return head + "\n".join(rows)


class Worker:
    """One revision's ``retrieval-serve`` process, asked one query at a time."""

    def __init__(self, label: str, src: Path | None, args: list[str]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(src if src is not None else REPO / "src")
        self.label = label
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "retrieval-serve", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}: worker ended (exit {self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, message: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(message + "\n")
        self.proc.stdin.flush()
        return self._read()

    def finish(self) -> dict[str, Any]:
        result = self.ask("done")
        self.proc.wait()
        return result


def index_as_this_code_builds(folder: Path, store: Any) -> tuple[Any, dict[str, Any]]:
    """The cached collection with its ANN index as the current code builds it (links per node, ``store/ann.py``).

    An index built by earlier code is kept for the baseline revisions, in a copy of the collection
    (``<folder>/baseline``), and the collection's own is rebuilt: each revision then searches the graph it would
    have built. Returns the (reopened) store and what was done.
    """
    from outpost.store import AnnIndex, Store

    base = folder / "baseline"
    index = store._ann_index()
    links = AnnIndex(folder, DIM)._new().connectivity
    if index.connectivity == links:
        if base.exists():
            copy = Store.open(base, "scale")
            stale = copy.state() != store.state()
            copy.close()
            if stale:
                shutil.rmtree(base)  # a copy of another state of the collection
        return store, {}
    log(f"keeping the index of {index.connectivity} links for the baselines (a copy of the collection)")
    shutil.rmtree(base, ignore_errors=True)
    (base / "scale").mkdir(parents=True)
    store.close()  # checkpointed: the file alone is the collection
    for name in ("queries.json", "queries.npy"):
        shutil.copy2(folder / name, base / name)
    for path in (folder / "scale").iterdir():
        if path.name == "store.sqlite" or path.suffix == ".usearch":
            shutil.copy2(path, base / "scale" / path.name)
    store = Store.open(folder, "scale")
    log(f"rebuilding the index as this code builds it ({links} links)")
    store._ann_files().drop()
    store._ann = None
    cpu: dict[str, float] = {}
    rebuilt, build_s = timed(store._ann_index, cpu, "index")
    return store, {
        "links_before": index.connectivity,
        "links": rebuilt.connectivity,
        "build_s": build_s,
        "build_cpu_s": cpu["index"],
    }


def cmd_retrieval(args: argparse.Namespace) -> dict[str, Any]:
    from outpost.store import Store, fts, toplists

    folder = CACHE / f"scale-{args.size}"
    if not (folder / "queries.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (CACHE / ".gitignore").write_text("*\n")
        build_retrieval_store(folder, args.size, args.batch, args.queries)
    built = json.loads((folder / "queries.json").read_text())
    result: dict[str, Any] = {"machine": machine(), "size": args.size, "build_apply_s": built["apply_s"]}
    result["build_apply_cpu_s"] = built.get("apply_cpu_s")
    store = Store.open(folder, "scale")
    log("the words' top lists as this code keeps them (rebuilt if a cached store has another revision's)")
    cpu: dict[str, float] = {}
    _, result["toplists_refresh_s"] = timed(store.refresh_toplists, cpu, "lists")
    result["toplists_refresh_cpu_s"], result["toplists"] = cpu["lists"], toplists.describe(store.db)
    store, result["index_rebuilt"] = index_as_this_code_builds(folder, store)
    vectors = np.load(folder / "queries.npy")[: args.measure]
    log("exact int8 search for every query (the recall oracle)")
    truth, exact_times = cached_truth(folder, store, vectors)
    result["exact_int8"] = percentiles(exact_times)
    truth_file = folder / f"truth-{len(truth)}.npy"
    np.save(truth_file, truth)
    log("exact FTS5 BM25 for every query (the oracle: every matching row scored)")
    exact_bm25 = [
        [rowid for rowid, _ in fts.ranked(store.db, q, K)] if (q := fts.fts_query(t)) else []
        for t in built["texts"][: args.measure]
    ]
    log(f"expansion_search curve {EF_CURVE} (load {os.getloadavg()[0]:.2f})")
    result["ef_sweep"] = ef_sweep(store._ann_index(), vectors, truth, EF_CURVE)
    store.close()
    revs = list(dict.fromkeys(args.baseline_rev or P5_BASELINE_REVS))
    tmp = Path(tempfile.mkdtemp(prefix="outpost-scale-base-"))
    srcs: dict[str, Path | None] = {rev: baseline_src(rev, tmp / rev) for rev in revs}
    srcs["current"] = None
    base = folder / "baseline" if (folder / "baseline").is_dir() else folder  # the index the baselines built
    workers = []
    for label, src in srcs.items():
        log(f"starting {label} (load {os.getloadavg()[0]:.2f})")
        at = folder if src is None else base
        workers.append(Worker(label, src, [str(at), str(truth_file), str(args.measure)]))
    result["load_before"] = round(os.getloadavg()[0], 2)
    log(f"timing {len(vectors)} queries, revisions in turn (load {result['load_before']})")
    jiffies = cpu_jiffies()
    for i in range(len(vectors)):
        for worker in workers[i % len(workers) :] + workers[: i % len(workers)]:  # each goes first in turn
            worker.ask(str(i))
    result["load_after"] = round(os.getloadavg()[0], 2)
    result["cpu_steal_share"] = steal_share(jiffies, cpu_jiffies())
    result["revisions"] = {}
    for worker in workers:
        result["revisions"][worker.label] = worker.finish() | {"index_load_s": worker.ready["index_load_s"]}
    shutil.rmtree(tmp, ignore_errors=True)
    for r in result["revisions"].values():  # each revision's BM25 answers against FTS5 scoring every row
        r.pop("hybrid_top10")
        same = [len(set(a) & set(b)) / len(b) if b else float(not a) for a, b in zip(r.pop("bm25_top10"), exact_bm25)]
        r["bm25_top10_overlap_with_exact"] = float(np.mean(same))
    result["slowest"] = slowest(result["revisions"]["current"], built["texts"], args.size)
    return result


def slowest(current: dict[str, Any], texts: Sequence[str], size: int, n: int = 4) -> list[dict[str, Any]]:
    """The current code's slowest hybrid queries, their stage split and what their words match (why p99)."""
    from outpost.store import Store
    from outpost.store.bm25 import plan
    from outpost.store.fts import query_terms

    store = Store.open(CACHE / f"scale-{size}", "scale")
    out = []
    for q in sorted(current["per_query"], key=lambda q: -q["hybrid"])[:n]:
        words = query_terms(texts[q["i"]])
        rare, common = plan(store.db, words, size)
        out.append(
            {
                "query": q["i"],
                "hybrid_ms": q["hybrid"] * 1000,
                "stages_ms": {k: v * 1000 for k, v in q["stages"].items()},
                "words_rows": {w.phrase: w.rows for w in rare + common},
                "rare": len(rare),
            }
        )
    store.close()
    return out


def render_ef_curve(r: dict[str, Any]) -> str:
    lines = [f"HNSW over the first {r['chunks']:,} chunks  {r['machine']}"]
    lines.append(f"built in {r['build_s']:.1f} s (CPU {r['build_cpu_s']:.1f} s)")
    for e in r["ef_sweep"]:
        lines.append(
            f"expansion_search {e['expansion_search']:>4}: recall@10 {e['recall@10']:.4f}, "
            f"usearch p50 {e['p50_ms']:.2f} ms p99 {e['p99_ms']:.2f} ms"
        )
    return "\n".join(lines)


def render_retrieval(r: dict[str, Any]) -> str:
    lines = [f"retrieval at {r['size']:,} chunks  {r['machine']}"]
    lines.append(
        f"built by one Store.apply in {r['build_apply_s']:.1f} s (CPU {r.get('build_apply_cpu_s') or 0:.1f} s)"
    )
    lines.append(
        f"exact int8 brute force (numpy, the oracle): p50 {r['exact_int8']['p50_ms']:.1f} ms, "
        f"p99 {r['exact_int8']['p99_ms']:.1f} ms"
    )
    if r.get("toplists") is not None:
        t = r["toplists"]
        lines.append(
            f"top lists: {t['words']:,} words over {t.get('list_min', 5000):,} rows "
            f"(refreshed in {r['toplists_refresh_s']:.1f} s, CPU {r['toplists_refresh_cpu_s']:.1f} s)"
        )
    if r.get("index_rebuilt"):
        x = r["index_rebuilt"]
        lines.append(
            f"index rebuilt as this code builds it: {x['links_before']} → {x['links']} links per node in "
            f"{x['build_s']:.0f} s (CPU {x['build_cpu_s']:.0f} s); the baselines search the index they built (a copy)"
        )
    steal = f", CPU stolen by the hypervisor {r['cpu_steal_share']:.1%}" if "cpu_steal_share" in r else ""
    lines.append(f"revisions timed query by query in turn; load {r['load_before']} → {r['load_after']}{steal}")
    lines.append(f"{'code':<9} {'path':<8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for label, f in r["revisions"].items():
        for path in ("bm25", "dense", "hybrid"):
            lat = f[path]
            lines.append(f"{label:<9} {path:<8} {lat['p50_ms']:8.2f} {lat['p99_ms']:8.2f} {lat['mean_ms']:8.2f}")
        overlap = ""
        if "bm25_top10_overlap_with_exact" in f:
            overlap = f"; BM25 top-10 overlap with FTS5 scoring every row: {f['bm25_top10_overlap_with_exact']:.3f}"
        lines.append(f"{label:<9} dense recall@10 vs exact int8 {f['dense_recall@10']:.4f}{overlap}")
        lines.append(f"{label:<9} index load {f['index_load_s']:.1f} s, peak RSS {f['peak_rss_mb']:.0f} MB")
        for what, name in (("stages", "wall"), ("stages_cpu", "CPU")):
            split = ", ".join(
                f"{stage} {lat['p50_ms']:.2f}/{lat['p99_ms']:.2f}" for stage, lat in f.get(what, {}).items()
            )
            lines.append(f"{label:<9} hybrid by stage, {name} p50/p99 ms: {split}")
        if "hybrid_cpu" in f:
            cpu = ", ".join(
                f"{path} {f[f'{path}_cpu']['p50_ms']:.2f}/{f[f'{path}_cpu']['p99_ms']:.2f}"
                for path in ("bm25", "dense", "hybrid")
            )
            lines.append(f"{label:<9} process CPU (all threads) p50/p99 ms: {cpu}")
    matches = np.asarray(r["revisions"]["current"]["bm25_matches"])
    lines.append(
        f"BM25 rows the OR matches: p50 {np.percentile(matches, 50):.0f}, p99 {np.percentile(matches, 99):.0f}"
    )
    for e in r["ef_sweep"]:
        lines.append(
            f"expansion_search {e['expansion_search']:>4}: recall@10 {e['recall@10']:.4f}, "
            f"usearch p50 {e['p50_ms']:.2f} ms p99 {e['p99_ms']:.2f} ms"
        )
    for s in r["slowest"]:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in s["stages_ms"].items())
        lines.append(f"slow query {s['query']}: {s['hybrid_ms']:.1f} ms ({stages}); words' rows {s['words_rows']}")
    return "\n".join(lines)


# -- the streaming simulation (docs/scale.md) ---------------------------------------------------


class Stage:
    """Wall time, CPU time and peak resident memory of one stage (RSS sampled every 50 ms in a thread)."""

    def __init__(self, name: str, record: dict[str, Any]) -> None:
        self.name, self.record = name, record

    def __enter__(self) -> Stage:
        import threading

        self.peak, self.stop = rss_mb(), threading.Event()
        self.rss_before = self.peak
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        self.start, self.cpu = time.perf_counter(), cpu_s()
        log(f"stage {self.name} (load {os.getloadavg()[0]:.2f})")
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sampler.join()
        self.record[self.name] = {
            "wall_s": round(time.perf_counter() - self.start, 2),
            "cpu_s": round(cpu_s() - self.cpu, 2),
            "rss_before_mb": round(self.rss_before),
            "peak_rss_mb": round(max(self.peak, rss_mb())),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }


def _ids(space: Space, size: int, batch: int, deleted: np.ndarray, added: int) -> np.ndarray:
    """A version's chunk ids as one sorted array of 16-byte keys (32 hex chars): 16 bytes a chunk, no text."""
    keep = np.ones(size, dtype=bool)
    keep[deleted] = False
    ids = [chunk_id(i) for i in range(size) if keep[i]] + [chunk_id(size + i, "v2") for i in range(added)]
    return np.sort(np.array(ids, dtype="S32"))


def _snapshot_pack(space: Space, folder: Path, size: int, batch: int) -> None:
    """Version M as ``chunks.parquet`` written one row group per batch: memory bounded by a batch."""
    import pyarrow.parquet as pq

    from outpost.packs.format import _chunks_table  # the pack's own table layout, one batch at a time

    folder.mkdir(parents=True)
    writer: Any = None
    for b in batches(space, size, batch):
        table = _chunks_table(changeset_of([b]))
        if writer is None:
            writer = pq.ParquetWriter(folder / "chunks.parquet", table.schema, compression="zstd")
        writer.write_table(table)
    writer.close()


def _sign(folder: Path, key: Any, size: int) -> bytes:
    """The manifest's file hashes (streamed sha256) and its Ed25519 signature."""
    from outpost.hashing import sha256_file
    from outpost.packs.signing import sign

    files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(folder.iterdir())}
    raw = json.dumps({"chunks": size, "files": files}, sort_keys=True).encode()
    (folder / "manifest.json").write_bytes(raw)
    signature = sign(key, raw)
    (folder / "manifest.sig").write_bytes(signature)
    return raw


def _parts(folder: Path, batch: int) -> Iterator[Any]:
    """The pack's chunks as changesets of ``batch`` rows, read one row group at a time."""
    import pyarrow.parquet as pq

    from outpost.packs.format import _vectors
    from outpost.records import Changeset, Chunk

    for record in pq.ParquetFile(folder / "chunks.parquet").iter_batches(batch_size=batch):
        columns = [record.column(n).to_pylist() for n in ("id", "doc_key", "ordinal", "text", "page", "heading")]
        chunks = [Chunk(*row) for row in zip(*columns)]
        import pyarrow as pa

        table = pa.Table.from_batches([record])
        yield Changeset("scale", 0, chunks, _vectors(table, DIM), record.column("scale").to_numpy())


def cmd_simulate(args: argparse.Namespace) -> dict[str, Any]:
    """Versions M and N (N: ``--change`` of M's chunks replaced) through diff, pack, sign, verify, apply."""
    from outpost.hashing import sha256_file
    from outpost.packs import generate_key, public_key_text, read_pack, write_pack
    from outpost.packs.signing import verify
    from outpost.store import Store

    work = Path(tempfile.mkdtemp(prefix="outpost-scale-sim-", dir=args.workdir))
    space, size, batch = Space.make(), args.size, args.batch
    changed = max(1, int(size * args.change))
    stages: dict[str, Any] = {}
    result: dict[str, Any] = {"machine": machine(), "size": size, "batch": batch, "changed": changed, "stages": stages}
    key = generate_key(work / "key.pem")
    deleted = np.sort(np.random.default_rng(3).choice(size, changed, replace=False))
    try:
        with Stage("diff: ids of M and N, sorted, set differences", stages):
            old, new = (
                _ids(space, size, batch, np.array([], dtype=np.int64), 0),
                _ids(space, size, batch, deleted, changed),
            )
            gone, came = np.setdiff1d(old, new, assume_unique=True), np.setdiff1d(new, old, assume_unique=True)
            result["diff"] = {"deleted": len(gone), "added": len(came)}
            del old, new
        with Stage("pack: snapshot M, Parquet row group per batch", stages):
            _snapshot_pack(space, work / "snapshot-1", size, batch)
        with Stage("sign: sha256 of the files + Ed25519 over the manifest", stages):
            raw = _sign(work / "snapshot-1", key, size)
        with Stage("pack + sign: delta M→N (write_pack)", stages):
            fresh = make_batch(space, size, changed, seed=1, tag="v2")
            delta = changeset_of([fresh], base=1, version=2)
            delta.documents = []
            delta.delete_chunks = [chunk_id(int(i)) for i in deleted]
            write_pack(delta, work / "delta-1-2", key)
            del delta, fresh
        result["bytes"] = {
            "snapshot": sum(p.stat().st_size for p in (work / "snapshot-1").iterdir()),
            "delta": sum(p.stat().st_size for p in (work / "delta-1-2").iterdir()),
        }
        with Stage("verify: signature + sha256 of the snapshot's files", stages):
            verify(public_key_text(key), raw, (work / "snapshot-1" / "manifest.sig").read_bytes())
            for name, entry in json.loads(raw)["files"].items():
                assert sha256_file(work / "snapshot-1" / name) == entry["sha256"]
        store = Store.open(work / "client", "scale", create=True)
        with Stage("apply: snapshot M streamed from the pack in one transaction (+ ANN build)", stages):
            parts = _parts(work / "snapshot-1", batch)
            header = next(parts)
            header.embedding, header.chunker_id, header.version, header.snapshot = (
                changeset_of([]).embedding,
                CHUNKER,
                1,
                True,
            )
            store.apply(header, parts=parts)
        result["store_bytes"] = sum(p.stat().st_size for p in (work / "client" / "scale").iterdir())
        store.close()
        with Stage("verify + read + apply: delta M→N on a freshly opened store", stages):
            _, cs = read_pack(work / "delta-1-2", public_key_text(key))
            store = Store.open(work / "client", "scale")
            store.apply(cs)
            result["rows_after"] = store.counts()[1]
        result["peak_rss_mb"] = peak_rss_mb()
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render_simulate(r: dict[str, Any]) -> str:
    lines = [f"simulation: {r['size']:,} chunks, batches of {r['batch']:,}, {r['changed']:,} changed  {r['machine']}"]
    lines.append(f"{'stage':<78} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>11} {'load':>5}")
    for name, f in r["stages"].items():
        lines.append(f"{name:<78} {f['wall_s']:8.1f} {f['cpu_s']:8.1f} {f['peak_rss_mb']:11,} {f['loadavg_1m']:5.1f}")
    b = r["bytes"]
    lines.append(
        f"snapshot pack {b['snapshot'] / 1e6:,.1f} MB ({b['snapshot'] / r['size']:.0f} B/chunk), "
        f"delta {b['delta'] / 1e6:,.2f} MB; client store {r['store_bytes'] / 1e6:,.1f} MB"
    )
    return "\n".join(lines)


# -- CLI ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    apply = sub.add_parser("apply", help="P4: snapshot and delta apply, current vs baseline code")
    apply.add_argument("--size", type=int, default=100_000)
    apply.add_argument("--delta", type=int, default=1_000)
    apply.add_argument("--batch", type=int, default=50_000)
    apply.add_argument("--trials", type=int, default=1)
    apply.add_argument(
        "--baseline-rev", action="append", help=f"revisions run beside the current code, in order ({BASELINE_REV})"
    )
    apply.add_argument("--json", action="store_true")
    retrieval = sub.add_parser("retrieval", help="P5: hybrid latency and ANN recall, current vs baseline code")
    retrieval.add_argument("--size", type=int, default=1_000_000)
    retrieval.add_argument("--queries", type=int, default=1_000)
    retrieval.add_argument("--batch", type=int, default=50_000)
    retrieval.add_argument("--measure", type=int, default=1_000, help="queries timed (the first N of --queries)")
    retrieval.add_argument(
        "--baseline-rev", action="append", help=f"revisions timed beside the current code ({P5_BASELINE_REVS})"
    )
    retrieval.add_argument("--json", action="store_true")
    curve = sub.add_parser("ef-curve", help="P5: recall vs expansion_search for an index over the first N chunks")
    curve.add_argument("--size", type=int, default=1_000_000, help="the cached collection to take the chunks from")
    curve.add_argument("--first", type=int, default=100_000)
    curve.add_argument("--measure", type=int, default=200)
    curve.add_argument("--json", action="store_true")
    build = sub.add_parser("build-curve", help="P4 vs P5: HNSW build cost and recall per expansion_add")
    build.add_argument("--size", type=int, default=100_000)
    build.add_argument("--adds", type=int, nargs="+", default=[64, 40, 32])
    build.add_argument("--connectivity", type=int, nargs="+", default=[16], help="links per node, each built")
    build.add_argument("--widths", type=int, nargs="+", default=[128, 256, 512, 1024])
    build.add_argument("--measure", type=int, default=200)
    build.add_argument("--json", action="store_true")
    rworker = sub.add_parser("retrieval-serve")
    rworker.add_argument("folder", type=Path)
    rworker.add_argument("truth", type=Path)
    rworker.add_argument("measure", type=int)
    simulate = sub.add_parser("simulate", help="docs/scale.md: diff, pack, sign, apply, streamed, per stage")
    simulate.add_argument("--size", type=int, default=1_000_000)
    simulate.add_argument("--batch", type=int, default=50_000)
    simulate.add_argument("--change", type=float, default=0.01)
    simulate.add_argument("--workdir", type=Path, default=None)
    simulate.add_argument("--json", action="store_true")
    worker = sub.add_parser("apply-worker")
    worker.add_argument("packs", type=Path)
    worker.add_argument("hub_key")
    worker.add_argument("store_dir", type=Path)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "apply-worker":
        print(json.dumps(apply_worker(args.packs, args.hub_key, args.store_dir)))
        return 0
    if args.command == "retrieval-serve":
        retrieval_serve(args.folder, args.truth, args.measure)
        return 0
    if args.command == "simulate":
        result = cmd_simulate(args)
        print(json.dumps(result, indent=2) if args.json else render_simulate(result))
        return 0
    if args.command == "build-curve":
        result = cmd_build_curve(args)
        print(json.dumps(result, indent=2) if args.json else render_build_curve(result))
        return 0
    if args.command == "ef-curve":
        result = cmd_ef_curve(args)
        print(json.dumps(result, indent=2) if args.json else render_ef_curve(result))
        return 0
    if args.command == "retrieval":
        result = cmd_retrieval(args)
        print(json.dumps(result, indent=2) if args.json else render_retrieval(result))
        return 0
    result = cmd_apply(args)
    print(json.dumps(result, indent=2) if args.json else render_apply(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
