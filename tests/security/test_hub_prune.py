"""Retention of old packs: after ``outpost hub prune`` a deleted document is in no pack a client can download,
clients the policy still supports get a delta, and older ones fall back to a fresh snapshot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hubkit import HubServer, outpost_cli
from outpost.embed.quantize import quantize
from outpost.errors import CollectionNotFoundError
from outpost.hub.prune import prune, prune_all
from outpost.hub.service import Hub
from outpost.records import Changeset, Chunk, EmbeddingIdentity
from security.hubworld import DIM, synthetic_hub
from test_hub_sync import HubFixture, client_sync, state, write_docs

DELETED = "descaled every Friday"  # coffee.txt's text: in version 1 of write_docs, deleted in version 2


def pack_names(hub: Hub, name: str = "docs") -> set[str]:
    return {p.name for p in hub.public_packs_dir(name).iterdir()}


def strings_in(folder: Path) -> str:
    """Every value of every table of a pack, as text (the files are zstd-compressed: grep would see nothing)."""
    return repr([pq.read_table(f).to_pylist() for f in sorted(folder.glob("*.parquet"))])


def publish_versions(hub: Hub, upto: int, name: str = "docs") -> None:
    """Versions 2..upto of a synthetic collection, one new chunk each."""
    identity = EmbeddingIdentity("synthetic", "0" * 64, DIM, 256)
    for version in range(2, upto + 1):
        store = hub.store(name)
        q, s = quantize(np.random.default_rng(version).normal(size=(1, DIM)).astype(np.float32))
        hub.publish(
            store,
            Changeset(name, version - 1, [Chunk(f"v{version}", "v.txt", 0, f"v{version}")], q, s, embedding=identity),
        )
        store.close()


def test_the_policy_keeps_what_supported_clients_need(tmp_path: Path) -> None:
    hub = synthetic_hub(tmp_path / "hub-home", ("docs",))
    publish_versions(hub, 5)
    for have in range(5):  # every client version asks once: squashed deltas and the latest snapshot get cached
        hub.pack_for("docs", have)
    assert pack_names(hub) >= {"snapshot-1", "delta-1-5", "delta-2-5", "delta-3-5", "snapshot-5"}
    report = prune(hub, "docs", keep_versions=2)
    assert (report.version, report.oldest_supported) == (5, 3)
    assert pack_names(hub) == {"delta-3-4", "delta-4-5", "delta-3-5", "snapshot-5"}
    assert set(report.removed) == {"snapshot-1", "delta-1-2", "delta-2-3", "delta-1-5", "delta-2-5"}
    assert hub.pack_for("docs", 2).name == "snapshot-5"  # no longer supported: a fresh snapshot
    assert hub.pack_for("docs", 3).name == "delta-3-5"
    assert hub.pack_for("docs", 4).name == "delta-4-5"
    prune(hub, "docs", keep_versions=0)
    assert pack_names(hub) == {"snapshot-5"}


def test_prune_leaves_a_publish_in_flight_and_non_packs_alone(tmp_path: Path) -> None:
    hub = synthetic_hub(tmp_path / "hub-home", ("docs",))
    publish_versions(hub, 3)
    packs = hub.public_packs_dir("docs")
    (packs / "delta-3-4").mkdir()  # written by a publish that has not applied yet
    (packs / ".delta-3-4.tmp-1").mkdir()
    prune(hub, "docs", keep_versions=0)
    assert pack_names(hub) == {"delta-3-4", ".delta-3-4.tmp-1"}  # snapshot-3 is built on demand
    with pytest.raises(CollectionNotFoundError):
        prune(hub, "nope", keep_versions=0)
    assert [r.collection for r in prune_all(hub, 5)] == ["docs"]


@pytest.mark.slow
def test_a_deleted_document_leaves_every_pack_and_old_clients_still_sync(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    hub = HubFixture(tmp_path / "hub-home", embedder)
    docs = write_docs(tmp_path / "docs", 1)
    hub.publish(docs)
    token = hub.token("docs")
    service = Hub(hub.hub_home)
    old, mid = tmp_path / "old", tmp_path / "mid"
    with HubServer(hub.home) as server:
        assert client_sync(old, server.url, token).updated["docs"] == (0, 1, "snapshot-1")
        hub.publish(write_docs(docs, 2))  # v2: coffee.txt deleted
        assert client_sync(mid, server.url, token).updated["docs"] == (0, 2, "snapshot-2")
        (docs / "gamma.md").write_text("# Gamma\n\nGamma now also covers evaluation.\n")
        hub.publish(docs)  # v3
        service.pack_for("docs", 1)  # a squashed delta 1→3 cached for a client at v1
        holding = {p.name for p in service.public_packs_dir("docs").iterdir() if DELETED in strings_in(p)}
        assert holding == {"snapshot-1"}  # the checker sees the text where it is
        pruned = outpost_cli("hub", "prune", "--keep-versions", "1", "--collection", "docs", home=hub.home)
        assert pruned.returncode == 0, pruned.stderr
        assert "removed" in pruned.stderr
        remaining = pack_names(service)
        assert remaining == {"delta-2-3"}
        assert not [name for name in remaining if DELETED in strings_in(service.public_packs_dir("docs") / name)]
        # the client at v1 is older than the policy supports: it gets a snapshot, and ends where the others do
        assert client_sync(old, server.url, token).updated["docs"] == (1, 3, "snapshot-3")
        assert client_sync(mid, server.url, token).updated["docs"] == (2, 3, "delta-2-3")
        fresh = tmp_path / "fresh"
        client_sync(fresh, server.url, token)
    assert state(old) == state(mid) == state(fresh)
    assert DELETED not in repr(state(old))
