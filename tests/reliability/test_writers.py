"""Two writers at once on one collection: two ingests, two syncs, and a writer that bypasses the lock.

Before issue 11 an ingest read its base version *after* planning, so a second ingest that landed in between was
either applied over (stale chunks of a plan made against rows that were gone) or hit a raw ``IntegrityError``,
and two syncs of one collection downloaded into the same staging files. Now a cross-process lock per collection
(``outpost/store/lock.py``) is held from planning to apply, and the base is read first and checked at apply.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hubkit import HubServer
from outpost import Outpost
from outpost.errors import CollectionBusyError
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name, save_hub
from outpost.ingest import pipeline
from outpost.ingest.discover import discover
from outpost.store.sqlite import Store
from reliability._kit import expected_state, make_hub, outpost_env, publish, record, run_outpost, store_state

HOLD = """
import sys, time
from pathlib import Path
from outpost.store.lock import write_lock
with write_lock(Path(sys.argv[1]), "shared"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_waits_for_the_lock_says_so_and_gives_up_clearly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(tmp_path, "shared", create=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store.folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = pytest.raises(CollectionBusyError, match="Another process is writing")
        with caplog.at_level(logging.WARNING), busy, store.writing(wait_s=0.5):
            pass
        assert "another process is writing collection 'shared'; waiting" in caplog.text
        holder.send_signal(signal.SIGKILL)  # the kernel drops a dead holder's flock: nothing stays locked
        holder.wait(10)
        with store.writing(wait_s=0):  # free at once: still held, it would raise without waiting
            pass
    finally:
        holder.kill()
        holder.wait(10)
        store.close()


def _tree(root: Path, names: list[str], edition: str = "first") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        words = " ".join(f"{name}{j}" for j in range(40))
        (root / f"{name}.txt").write_text(f"Document {name}, {edition} edition, says its own words. {words}\n")
    return root


def _consistent(home: Path, name: str) -> tuple[int, set[str], set[str]]:
    """(version, document keys, chunk ids) after checking no chunk is stale: every chunk belongs to a stored
    document and every document has exactly the chunks it says."""
    store = Store.open(home / "collections", name)
    try:
        with store.reading():
            docs = {d.key: d.chunk_count for d in store.documents()}
            rows = store.db.execute("SELECT id, doc_key FROM chunks").fetchall()
            version = store.version
    finally:
        store.close()
    per_doc = {key: 0 for key in docs}
    for _, key in rows:
        assert key in per_doc, f"stale chunk of {key}"
        per_doc[key] += 1
    assert per_doc == docs
    return version, set(docs), {r[0] for r in rows}


@pytest.mark.slow
def test_two_ingests_into_one_collection_at_once_both_land(tmp_path: Path, home: Path) -> None:
    """Two real `outpost ingest` processes, overlapping folders, started together."""
    a = _tree(tmp_path / "a", ["common1", "common2", "onlya"])
    b = _tree(tmp_path / "b", ["common1", "common2", "onlyb"])
    env = outpost_env(home)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "outpost", "ingest", str(folder), "-c", "team", "-q"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in (a, b)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert not any("IntegrityError" in e or "Traceback" in e for e in errors), errors
    version, docs, chunks = _consistent(home, "team")
    assert docs == {"common1.txt", "common2.txt", "onlya.txt", "onlyb.txt"}
    assert version in (1, 2)
    # the same chunks as one ingest of the union, made in this process
    op = Outpost(home=tmp_path / "oracle")
    op.ingest(_tree(tmp_path / "union", ["common1", "common2", "onlya", "onlyb"]), collection="team")
    assert chunks == _consistent(tmp_path / "oracle", "team")[2]
    record("two ingests", processes=2, errors=0, final_version=version)


@pytest.mark.slow
def test_a_writer_that_bypasses_the_lock_makes_the_ingest_plan_again(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer (an older Outpost, without the lock) applies while this ingest embeds: the plan's base no
    longer holds, so the apply is refused as a version conflict and the ingest plans again on the new version.
    Both edit ``common1``: applied on a plan made before the other write, its chunks would stay behind, stale."""
    op = Outpost(home=home)
    op.ingest(_tree(tmp_path / "v1", ["common1", "onlya"]), collection="team")
    other = Store.open(home / "collections", "team")  # its own connection, as another process would have
    embedder = op.embedder()
    chunker = op.chunker(embedder)
    sneaky = _tree(tmp_path / "sneaky", ["common1", "onlyb"], edition="second")
    real_embed = pipeline.embed_chunks
    landed: list[int] = []

    def embed_then_let_the_other_write(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not landed:
            landed.append(0)
            changeset, _ = pipeline.plan(other, discover([sneaky]), embedder, chunker)
            landed[0] = other.apply(changeset)  # lands between this ingest's plan and its apply
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(pipeline, "embed_chunks", embed_then_let_the_other_write)
    mine = _tree(tmp_path / "mine", ["common1", "onlyc"], edition="third")
    report = op.ingest(mine, collection="team")
    other.close()
    assert landed == [2] and report.version == 3
    version, docs, _ = _consistent(home, "team")
    assert (version, docs) == (3, {"common1.txt", "onlya.txt", "onlyb.txt", "onlyc.txt"})


@pytest.mark.slow
def test_two_syncs_of_one_home_at_once_both_succeed(tmp_path: Path) -> None:
    hub = make_hub(tmp_path / "hub-home", "big", 6000, versions=1)
    token = Tokens(hub.home).create("w", ["big"])[0]
    client = tmp_path / "client"
    with HubServer(hub.home.root.parent) as server:
        save_hub(client, HubConfig(hub_name(server.url), server.url, token, hub.home.public_key))
        for target in (1, 2):
            publish(hub, "big", 6000, target)
            env = outpost_env(client)
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "outpost", "sync", "-q"], env=env, stderr=subprocess.PIPE, text=True
                )
                for _ in range(2)
            ]
            errors = [p.communicate(timeout=300)[1] for p in procs]
            assert [p.returncode for p in procs] == [0, 0], errors
            assert store_state(client / "collections", "big") == (target, expected_state(target, 6000))
            assert not any((client / "staging").rglob("*.parquet*"))
        assert run_outpost("sync", "-q", home=client).returncode == 0
    record("two syncs", processes=2, rounds=2, errors=0)


def test_ann_index_temp_files_are_per_process_and_a_dead_writer_s_are_cleaned(tmp_path: Path) -> None:
    """Two processes saving the index of one version never share a temp file; a killed writer's temp is removed
    by the next save, a live writer's is left alone."""
    import numpy as np

    from outpost.store.ann import AnnIndex

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        live_tmp = tmp_path / f"index-3.usearch.{sleeper.pid}-0a0b0c0d.tmp"
        dead_tmp = tmp_path / f"index-3.usearch.{int(dead.stdout)}-0a0b0c0d.tmp"
        live_tmp.write_bytes(b"half")
        dead_tmp.write_bytes(b"half")
        names: list[str] = []
        files = AnnIndex(tmp_path, 8)
        index = files._new()
        real_save = index.save
        index.save = lambda path: (names.append(Path(path).name), real_save(path))  # type: ignore[method-assign]
        index.add(np.arange(3, dtype=np.uint64), np.ones((3, 8), np.int8))
        files.save(index, 3)
        assert names and names[0].startswith(f"index-3.usearch.{os.getpid()}-") and names[0].endswith(".tmp")
        assert live_tmp.exists() and not dead_tmp.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["index-3.usearch", live_tmp.name])
    finally:
        sleeper.kill()
        sleeper.wait(10)


def _posix_locks(path: Path) -> list[str]:
    """This process's POSIX locks on ``path`` (from /proc/locks)."""
    inode, me = os.stat(path).st_ino, f" {os.getpid()} "
    return [
        line.split(":", 1)[1]
        for line in Path("/proc/locks").read_text().splitlines()
        if f":{inode} " in line and me in line
    ]


def test_opening_a_store_again_keeps_the_locks_another_connection_of_this_process_holds(tmp_path: Path) -> None:
    """Closing any descriptor of a SQLite file drops every POSIX lock the process holds on it. ``Store.open`` used
    to open and close the file (to tighten its mode) before connecting: on a hub serving many clients, one
    request's open dropped another's read lock, and a publishing process then reset the WAL under that reader
    ("database disk image is malformed", found by R6 with 50 clients)."""
    reader = Store.open(tmp_path, "c", create=True)
    try:
        with reader.reading():
            reader.db.execute("SELECT count(*) FROM chunks").fetchone()
            held = _posix_locks(reader.path)
            assert held, "a reader holds a lock on the database file"
            Store.open(tmp_path, "c").close()
            assert _posix_locks(reader.path) == held
    finally:
        reader.close()
