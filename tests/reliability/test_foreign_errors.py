"""Errors that are not Outpost's own — sqlite3, OSError, MemoryError — caught at the right level: one failing
collection or file never stops the rest, and a failed sync leaves nothing in staging (issue 11).

The disk-full proofs (``test_disk_full.py``) cover OSError / SQLITE_FULL; these cover a collection SQLite
cannot read (a damaged file: ``sqlite3.DatabaseError``) and a loader that runs out of memory (a real
``MemoryError``: the allocation is refused, nothing is faked).
"""

from __future__ import annotations

from pathlib import Path

from hubkit import HubServer
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name
from outpost.ingest.discover import discover
from outpost.ingest.loaders import load_bytes
from outpost.ingest.pipeline import read_batch
from outpost.records import Document
from outpost.sync import sync_hub
from reliability._kit import expected_state, make_hub, publish, record, store_state


def test_a_collection_sqlite_cannot_read_fails_alone_and_leaves_no_staging(tmp_path: Path) -> None:
    hub = make_hub(tmp_path / "hub-home", "good", 200, versions=1)
    publish(hub, "damaged", 200, 1)
    token = Tokens(hub.home).create("e", ["good", "damaged"])[0]
    client = tmp_path / "client"
    with HubServer(hub.home.root.parent) as server:
        config = HubConfig(hub_name(server.url), server.url, token)
        assert not sync_hub(client, config).failed
        damaged = client / "collections" / "damaged"
        for extra in ("store.sqlite-wal", "store.sqlite-shm"):
            (damaged / extra).unlink(missing_ok=True)
        (damaged / "store.sqlite").write_bytes(b"this is not a database, a disk error wrote it" * 100)
        publish(hub, "good", 200, 2)
        publish(hub, "damaged", 200, 2)
        report = sync_hub(client, config)
    assert set(report.failed) == {"damaged"} and "good" in report.updated  # one failure never stops the rest
    message = report.failed["damaged"]
    assert "damaged" in message and "\n" not in message and "Traceback" not in message
    assert store_state(client / "collections", "good") == (2, expected_state(2, 200))
    left = [p for p in (client / "staging").rglob("*") if p.is_file()] if (client / "staging").exists() else []
    assert left == [], f"a failed sync left {left} in staging"
    record("foreign error: sqlite3 in one collection", failed=message, other_collection_synced=True, staging=0)


def test_a_loader_that_runs_out_of_memory_fails_that_file_only(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for name in ("a", "greedy", "b"):
        (root / f"{name}.txt").write_text(f"Notes of {name}.\n")

    def parse(data: bytes, key: str) -> Document:
        """The in-process parser, around a stage that asks for more memory than there is on one file."""
        if key == "greedy.txt":
            bytearray(1 << 62)  # the allocation is refused: a real MemoryError
        return load_bytes(data, key)

    docs, _, errors = read_batch(discover([root]), {}, parse=parse)
    assert sorted(d.key for d in docs) == ["a.txt", "b.txt"]
    assert [e.path for e in errors] == ["greedy.txt"] and "MemoryError" in str(errors[0])
