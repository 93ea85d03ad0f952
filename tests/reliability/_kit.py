"""Shared pieces of the reliability proofs (issue 11): synthetic versions whose every row says which version wrote
it, a hub that publishes them, state checks that spot a mix of two versions, trial counts and a summary sink.

Synthetic vectors on purpose: what is proved is which rows go with which version number (old or new, never a
mix), not retrieval quality, and a pack must be big enough that applying it takes a while (so random kill times
land inside the apply) without embedding thousands of texts on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.records import Changeset, Chunk, DocumentRecord, EmbeddingIdentity
from outpost.store.sqlite import Store

DIM = 32
IDENTITY = EmbeddingIdentity("reliability-vectors", "0" * 64, DIM, 64)
_RESULTS = os.environ.get("OUTPOST_RELIABILITY_RESULTS")  # a JSON-lines file the full run collects figures in
RESULTS = Path(_RESULTS) if _RESULTS else None


def trials(default: int) -> int:
    """How many trials a proof runs: ``OUTPOST_RELIABILITY_TRIALS`` (the full run) or a bounded CI default."""
    return int(os.environ.get("OUTPOST_RELIABILITY_TRIALS", default))


def seconds(default: float) -> float:
    """How long a load test runs: ``OUTPOST_RELIABILITY_SECONDS`` (the full run: 60) or a bounded CI default."""
    return float(os.environ.get("OUTPOST_RELIABILITY_SECONDS", default))


def record(name: str, **figures: object) -> None:
    """Print a proof's figures (visible with ``-s``) and append them to ``OUTPOST_RELIABILITY_RESULTS``."""
    line = json.dumps({"proof": name, **figures}, sort_keys=True)
    print(line)
    if RESULTS is not None:
        with RESULTS.open("a") as fh:
            fh.write(line + "\n")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- versions that identify themselves ---------------------------------------------------------------------------


def rows_at(version: int, base_rows: int) -> list[str]:
    """Chunk ids present at ``version``: most rows stay, a slice is replaced each version (a real delta)."""
    keep = [f"r{i}" for i in range(base_rows) if i % 4 != version % 4]
    new = [f"r{i}-v{version}" for i in range(base_rows) if i % 4 == version % 4]
    return keep + new


def _vector(cid: str) -> np.ndarray:
    seed = int.from_bytes(cid.encode(), "little") % (2**32)
    return np.random.default_rng(seed).integers(-127, 128, DIM, dtype=np.int8)


def _chunk(cid: str) -> Chunk:
    doc = cid.split("-")[0]
    return Chunk(cid, f"{doc}.txt", 0, f"text of chunk {cid} in document {doc}")


def changeset(name: str, version: int, base_rows: int, previous: int = 0) -> Changeset:
    """The change from ``previous`` (0: a snapshot) to ``version``; every row's text names its own id."""
    now = rows_at(version, base_rows)
    before = set(rows_at(previous, base_rows)) if previous else set()
    upserts = [_chunk(c) for c in now if c not in before]
    deletes = sorted(before - set(now))
    docs = sorted({c.doc_key for c in upserts})
    return Changeset(
        name,
        previous,
        upserts,
        np.stack([_vector(c.id) for c in upserts]) if upserts else np.zeros((0, DIM), np.int8),
        np.ones(len(upserts), np.float32),
        documents=[DocumentRecord(d, f"sha-{d}-{version}", d, "text", 1, 1) for d in docs],
        delete_chunks=deletes,
        embedding=IDENTITY,
        version=version,
    )


def expected_state(version: int, base_rows: int) -> set[tuple[str, str, bytes]]:
    return {(c, _chunk(c).text, _vector(c).tobytes()) for c in rows_at(version, base_rows)}


def store_state(folder: Path, name: str) -> tuple[int, set[tuple[str, str, bytes]]]:
    """(version, rows) read in one transaction from a store, the way any reader opens it."""
    store = Store.open(folder, name)
    try:
        with store.reading():
            rows = store.db.execute("SELECT id, text_unpack(packed_text), vector FROM chunks").fetchall()
            return store.version, {(r[0], r[1], bytes(r[2])) for r in rows}
    finally:
        store.close()


def make_hub(home: Path, name: str, base_rows: int, versions: int = 1) -> Hub:
    """A hub at ``versions`` published versions of the synthetic collection ``name``."""
    hub_home = HubHome.at(home)
    hub_home.init()
    hub = Hub(hub_home)
    publish(hub, name, base_rows, versions)
    return hub


def publish(hub: Hub, name: str, base_rows: int, upto: int) -> None:
    store = hub.store(name, create=True)
    try:
        for v in range(store.version + 1, upto + 1):
            hub.publish(store, changeset(name, v, base_rows, v - 1))
    finally:
        store.close()


def outpost_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "OUTPOST_HOME": str(home), "HF_HUB_OFFLINE": "1", **extra}
    if "OUTPOST_FAULT" not in extra:
        env.pop("OUTPOST_FAULT", None)
    return env


def run_outpost(*args: str, home: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outpost", *args],
        env=outpost_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- other processes for the load proofs (run as `python -c`, with tests/ on PYTHONPATH) --------------------------


def publish_loop(hub_root: str, name: str, base_rows: int, seconds: float, pause: float) -> None:
    """Another process publishing a new version every ``pause`` seconds for ``seconds`` (R6's moving target)."""
    import time

    hub = Hub(HubHome(Path(hub_root)))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        store = hub.store(name)
        try:
            publish(hub, name, base_rows, store.version + 1)
        finally:
            store.close()
        time.sleep(pause)


def apply_loop(collections: str, name: str, states: str, applies: int, pause: float) -> None:
    """Another process applying ``applies`` changes to a local collection, alternating between two real states,
    every fourth one a snapshot (the long-running reader's moving target)."""
    import pickle
    import time

    with open(states, "rb") as fh:
        first, second = pickle.load(fh)
    store = Store.open(Path(collections), name)
    try:
        for _ in range(applies):
            version = store.version
            now, target = (first, second) if version % 2 else (second, first)
            store.apply(state_change(name, now, target, version, snapshot=version % 4 == 0))
            time.sleep(pause)
    finally:
        store.close()


def state_change(name: str, now: Changeset, target: Changeset, version: int, snapshot: bool) -> Changeset:
    """The changeset from state ``now`` (a snapshot) to state ``target`` (a snapshot), as version + 1."""
    if snapshot:
        return Changeset(
            name,
            0,
            target.upserts,
            target.vectors,
            target.scales,
            documents=target.documents,
            embedding=target.embedding,
            chunker_id=target.chunker_id,
            version=version + 1,
            snapshot=True,
        )
    have = {c.id for c in now.upserts}
    keep = [i for i, c in enumerate(target.upserts) if c.id not in have]
    wanted = {c.id for c in target.upserts}
    return Changeset(
        name,
        version,
        [target.upserts[i] for i in keep],
        target.vectors[keep],
        target.scales[keep],
        documents=target.documents,
        delete_chunks=sorted(have - wanted),
        delete_documents=sorted({d.key for d in now.documents} - {d.key for d in target.documents}),
        embedding=target.embedding,
        chunker_id=target.chunker_id,
        version=version + 1,
    )


def python_process(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    tests = str(Path(__file__).resolve().parents[1])
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [tests, env.get("PYTHONPATH", "")]))}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def rss_figures(samples: list[tuple[float, int]], warm: float) -> dict[str, object]:
    """RSS over a load run (``samples``: seconds since start, kB, one a second) summed up: at the start, once warm
    (``warm`` s: models loaded, every client answered once), at the end, the peak, and the least-squares slope of
    the samples after warm-up in MB per minute (flat memory: near 0)."""
    after = [(t, kb / 1024) for t, kb in samples if t >= warm]
    slope = 0.0
    if len(after) >= 2:
        ts, ms = np.array([t for t, _ in after]), np.array([m for _, m in after])
        slope = float(np.polyfit(ts, ms, 1)[0]) * 60
    return {
        "rss_mb_start": round(samples[0][1] / 1024),
        "rss_mb_warm": round(after[0][1]) if after else None,
        "rss_mb_end": round(samples[-1][1] / 1024),
        "rss_mb_peak": round(max(kb for _, kb in samples) / 1024),
        "rss_mb_per_min_after_warmup": round(slope, 1),
        "rss_mb_every_5s": [round(kb / 1024) for t, kb in samples[::5]],
    }
