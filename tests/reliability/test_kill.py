"""R1, R2: SIGKILL at random moments — inside a client's sync apply, a hub's ingest publish, a hub's training publish.

The kill time is drawn at random and fired by a timer in the process itself (``OUTPOST_FAULT=<point>+<seconds>``,
see ``outpost/faults.py``), counted from the start of the step, so the moments fall across the whole step:
deleting rows, inserting, committing, building the ANN index, writing the pack, recording the version. The full
run is ``OUTPOST_RELIABILITY_TRIALS=50`` (``benchmarks/reliability.py``); CI runs a bounded number.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from hubkit import HubServer
from outpost import Outpost
from outpost.hub.home import HubHome
from outpost.hub.learning import store_feedback
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name
from outpost.packs import read_pack
from outpost.store.sqlite import Store
from outpost.sync import sync_hub
from reliability._kit import (
    changeset,
    expected_state,
    make_hub,
    outpost_env,
    publish,
    python_process,
    record,
    run_outpost,
    store_state,
    trials,
)

BASE_ROWS = 6_000  # above exact_search_below (5,000): the apply also builds the client's ANN index


def _timed_apply(template: Path, scratch: Path, base_rows: int) -> tuple[float, float]:
    """Seconds from the start of one v1→v2 apply (on a copy) to its commit, and to its end (the ANN index
    follows the commit), so the kill times can be spread over both parts."""
    shutil.copytree(template, scratch)
    store = Store.open(scratch / "collections", "big")
    start = time.monotonic()
    committed: list[float] = []
    after_apply = store._after_apply

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        committed.append(time.monotonic() - start)
        return after_apply(*args, **kwargs)

    store._after_apply = timed  # type: ignore[method-assign]
    store.apply(changeset("big", 2, base_rows, 1))
    elapsed = time.monotonic() - start
    store.close()
    shutil.rmtree(scratch)
    return committed[0], elapsed


@pytest.mark.slow
def test_r1_a_client_killed_at_random_moments_of_sync_apply_keeps_one_version(tmp_path: Path) -> None:
    hub = make_hub(tmp_path / "hub-home", "big", BASE_ROWS, versions=1)
    token = Tokens(hub.home).create("r1", ["big"])[0]
    old, new = expected_state(1, BASE_ROWS), expected_state(2, BASE_ROWS)
    rng = random.Random(11)
    outcomes = {"old": 0, "new": 0, "killed": 0, "mixes": 0}
    with HubServer(hub.home.root.parent) as server:
        template = tmp_path / "template"
        assert not sync_hub(template, HubConfig(hub_name(server.url), server.url, token)).failed
        assert store_state(template / "collections", "big") == (1, old)
        publish(hub, "big", BASE_ROWS, 2)
        commit, span = _timed_apply(template, tmp_path / "timing", BASE_ROWS)
        for trial in range(trials(5)):
            home = tmp_path / f"trial-{trial}"
            shutil.copytree(template, home)
            # half the kills before the commit (rows being replaced), half after (the ANN index being written)
            delay = rng.uniform(0, commit) if trial % 2 == 0 else rng.uniform(commit, span + 0.1)
            killed = run_outpost("sync", "-q", home=home, OUTPOST_FAULT=f"apply:start+{delay:.3f}")
            assert killed.returncode in (0, -9), killed.stderr
            outcomes["killed"] += killed.returncode == -9
            version, rows = store_state(home / "collections", "big")
            if (version, rows) not in ((1, old), (2, new)):
                outcomes["mixes"] += 1
            assert (version, rows) in ((1, old), (2, new)), f"trial {trial}: a mix at version {version}, {delay:.3f}s"
            outcomes["old" if version == 1 else "new"] += 1
            _search_answers_from_its_own_rows(home)
            done = run_outpost("sync", "-q", home=home)
            assert done.returncode == 0, done.stderr
            assert store_state(home / "collections", "big") == (2, new)
            assert not any((home / "staging").rglob("*.parquet*")), "staging debris after a completed sync"
            shutil.rmtree(home)
    record("R1 sync apply", trials=trials(5), commit_s=round(commit, 2), kill_window_s=round(span + 0.1, 2), **outcomes)


def _search_answers_from_its_own_rows(home: Path) -> None:
    """The killed store opens and both retrievers answer with rows it holds (the ANN index rebuilt if needed)."""
    store = Store.open(home / "collections", "big")
    try:
        query = np.random.default_rng(0).integers(-127, 128, 32, dtype=np.int8)
        hits = store.dense(query, 5) + store.bm25("chunk document", 5)
        assert len(hits) == 10
        assert len(store.chunks_by_rowid([rowid for rowid, _ in hits])) == len({rowid for rowid, _ in hits})
    finally:
        store.close()


def _write_docs(root: Path, version: int, files: int = 12) -> None:
    """A small tree; version 2 changes a third of the files and adds two (a real delta to publish)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files + (2 if version == 2 else 0)):
        edited = version == 2 and i % 3 == 0
        words = " ".join(f"word{(i * 7 + j) % 97}" for j in range(60))
        (root / f"note{i}.txt").write_text(f"Note {i} {'revised' if edited else 'first'} edition. {words}\n")


@pytest.mark.slow
def test_r2_a_hub_killed_at_random_moments_of_ingest_publishes_nothing_partial(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    docs, home = tmp_path / "docs", tmp_path / "hub"
    _write_docs(docs, 1)
    assert run_outpost("hub", "init", home=home).returncode == 0
    first = run_outpost("hub", "ingest", str(docs), "-c", "notes", "-q", home=home)
    assert first.returncode == 0, first.stderr
    template = tmp_path / "template"
    shutil.copytree(home, template)
    _write_docs(docs, 2)
    reference = run_outpost("hub", "ingest", str(docs), "-c", "notes", "--sync", "-q", home=home)
    assert reference.returncode == 0, reference.stderr
    v1 = _hub_rows(template)
    v2 = _hub_rows(home)
    window = _timed_publish(template, tmp_path / "timing", docs, embedder)
    rng = random.Random(12)
    outcomes = {"old": 0, "new": 0, "killed": 0, "mixes": 0}
    for trial in range(trials(1)):
        shutil.rmtree(home)
        shutil.copytree(template, home)
        delay = rng.uniform(0, window)
        killed = run_outpost(
            "hub",
            "ingest",
            str(docs),
            "-c",
            "notes",
            "--sync",
            "-q",
            home=home,
            OUTPOST_FAULT=f"hub:publish+{delay:.3f}",
        )
        assert killed.returncode in (0, -9), killed.stderr
        outcomes["killed"] += killed.returncode == -9
        state = _hub_rows(home)
        outcomes["mixes"] += state not in (v1, v2)
        assert state in (v1, v2), f"trial {trial}: a partial version after a kill at {delay:.3f}s"
        outcomes["old" if state == v1 else "new"] += 1
        _published_versions_are_complete(home, "notes")
        done = run_outpost("hub", "ingest", str(docs), "-c", "notes", "--sync", "-q", home=home)
        assert done.returncode == 0, done.stderr
        assert _hub_rows(home) == v2
        _published_versions_are_complete(home, "notes")
    record("R2 hub ingest", trials=trials(1), kill_window_s=round(window, 3), **outcomes)


def _timed_publish(template: Path, scratch: Path, docs: Path, embedder) -> float:  # type: ignore[no-untyped-def]
    """Seconds the v1→v2 publish takes here (pack, apply, version row), measured on a copy of the hub."""
    shutil.copytree(template, scratch)
    hub = Hub(HubHome.at(scratch))
    spans: list[float] = []
    publish_now = hub._publish

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.monotonic()
        try:
            return publish_now(*args, **kwargs)
        finally:
            spans.append(time.monotonic() - start)

    hub._publish = timed  # type: ignore[method-assign]
    hub.ingest([docs], "notes", embedder, Outpost(home=scratch).chunker(embedder), sync=True)
    shutil.rmtree(scratch)
    return spans[0]


def _hub_rows(home: Path) -> tuple[int, set[tuple[str, str, bytes]]]:
    return store_state(HubHome.at(home).collections_dir, "notes")


def _published_versions_are_complete(home: Path, name: str) -> None:
    """Every version up to the store's has its signed, hash-checked pack; what clients get at 0 is the store."""
    hub = Hub(HubHome.at(home))
    version = hub.info(name).version
    key = hub.home.public_key
    for v in range(2, version + 1):
        read_pack(hub.home.packs_dir / name / f"delta-{v - 1}-{v}", key)  # raises on a partial pack
    _, snapshot = read_pack(hub.pack_for(name, 0), key)
    assert snapshot.version == version


@pytest.mark.slow
def test_r2_a_hub_killed_at_random_moments_of_training_publishes_nothing_partial(tmp_path: Path) -> None:
    from test_learning import _items, hub_with_vectors, synthetic_world

    docs, queries, targets = synthetic_world(600, 160)
    hub = hub_with_vectors(tmp_path, docs)
    store_feedback(hub.home, "synth", None, _items(queries, targets, "q"))
    template = tmp_path / "template"
    shutil.copytree(tmp_path / "hub-home", template)  # an OUTPOST_HOME whose hub/ is at version 1, with feedback
    rng = random.Random(13)
    outcomes = {"old": 0, "new": 0, "killed": 0, "mixes": 0}
    home = tmp_path / "trial"
    args = ("hub", "train", "-c", "synth", "--min-gain=-1")  # publish whatever it learns: the publish is the point
    for trial in range(trials(1)):
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(template, home)
        delay = rng.uniform(0, 0.4)
        # the first kill is always between the pack and the apply: that orphan pack once blocked every later training
        fault = "hub:after-pack" if trial == 0 else f"hub:publish+{delay:.3f}"
        killed = run_outpost(*args, home=home, OUTPOST_FAULT=fault)
        assert killed.returncode in (0, -9), killed.stderr
        outcomes["killed"] += killed.returncode == -9
        version, adapter = _version_and_adapter(home)
        assert version in (1, 2)
        consistent = (adapter is not None) == (version == 2)
        outcomes["mixes"] += not consistent
        assert consistent, f"trial {trial}: adapter and version disagree after a kill at {delay:.3f}s"
        outcomes["old" if version == 1 else "new"] += 1
        _published_versions_are_complete(home, "synth")
        done = run_outpost(*args, home=home)
        assert done.returncode == 0, done.stderr
        assert _version_and_adapter(home)[0] == version + 1
        _published_versions_are_complete(home, "synth")
    record("R2 hub train", trials=trials(1), kill_window_s=0.4, **outcomes)


def _version_and_adapter(home: Path):  # type: ignore[no-untyped-def]
    store = Store.open(HubHome.at(home).collections_dir, "synth")
    try:
        return store.version, store.adapter
    finally:
        store.close()


def _version_rows(hub_root: Path, name: str) -> dict[int, str]:
    """The hub metadata's ``versions`` rows of ``name``: version → publish time."""
    with contextlib.closing(sqlite3.connect(hub_root / "hub.sqlite")) as db:
        rows = db.execute("SELECT version, published_at FROM versions WHERE collection = ?", (name,)).fetchall()
    return {int(v): str(t) for v, t in rows}


def test_a_publish_killed_between_its_apply_and_its_versions_row_loses_no_row(tmp_path: Path) -> None:
    """The ``versions`` row lives in ``hub.sqlite`` (or PostgreSQL), the rows in the collection's store: no one
    transaction holds both. A kill right after the apply's commit leaves version 2 without its row; the next
    writer records it, with the publish time the apply committed. Fails on the old code (row 2 never written)."""
    hub = make_hub(tmp_path / "hub-home", "docs", 200, versions=1)
    root = hub.home.root
    killed = python_process(
        "from pathlib import Path; from reliability._kit import publish; from outpost.hub.home import HubHome; "
        f"from outpost.hub.service import Hub; publish(Hub(HubHome(Path({str(root)!r}))), 'docs', 200, 2)",
        outpost_env(tmp_path / "hub-home", OUTPOST_FAULT="apply:after-commit"),
    )
    assert killed.wait(120) == -signal.SIGKILL
    assert store_state(root / "collections", "docs")[0] == 2
    assert sorted(_version_rows(root, "docs")) == [1]  # the moment the issue is about: data at 2, no row 2
    store = hub.store("docs")
    published_at = store.get_meta("published_at")
    store.close()
    publish(Hub(HubHome(root)), "docs", 200, 3)  # the next writer (another process, or this one)
    rows = _version_rows(root, "docs")
    assert sorted(rows) == [1, 2, 3]
    assert rows[2] == published_at


def test_where_a_hub_assigns_version_numbers_sqlite_syncs_fully(tmp_path: Path) -> None:
    """A power loss must never reuse a published version number: the hub's collection stores and every
    ``hub.sqlite`` connection run at ``synchronous=FULL`` (2), where a client's store may run at NORMAL (1)."""
    hub = make_hub(tmp_path / "hub-home", "docs", 50, versions=1)
    store = hub.store("docs")
    try:
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        store.close()
    with hub.home.metadata().write() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    client = Store.open(tmp_path / "client", "docs", create=True)
    try:
        assert client.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # the check can tell the two apart
    finally:
        client.close()
