"""A real hub (uvicorn on 127.0.0.1) and real clients in separate homes: sync, tampering, scopes, crashes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from hubkit import CuttingProxy, HubServer, outpost_cli
from outpost import Outpost
from outpost.errors import HubError, PackError, VersionConflictError
from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name, load_hubs, save_hub
from outpost.ingest import Chunker
from outpost.llm.bundled import resolve_gguf
from outpost.models.pull import pull
from outpost.models.registry import Registry
from outpost.packs import generate_key, pack_name, read_pack, write_pack
from outpost.packs.signing import fingerprint, sign
from outpost.records import Changeset, Chunk, DocumentRecord, EmbeddingIdentity
from outpost.store import Store
from outpost.sync import sync_hub

QUERIES = ["alpha launch date", "who is on call", "budget risks", "coffee machine"]


def write_docs(root: Path, version: int) -> Path:
    """Version 1 of a small document tree, or version 2 with one file added, one changed, one removed."""
    root.mkdir(parents=True, exist_ok=True)
    for f in root.iterdir():
        f.unlink()
    (root / "alpha.md").write_text(
        "# Alpha\n\nThe alpha project launches on 3 March.\n\n## Risks\n\nBudget risks are low.\n"
    )
    (root / "oncall.txt").write_text("On call this week: Ada. Escalate to Grace after one hour.\n")
    if version == 1:
        (root / "coffee.txt").write_text("The coffee machine is descaled every Friday.\n")
        (root / "beta.md").write_text("# Beta\n\nBeta ships in June.\n")
    else:
        (root / "beta.md").write_text("# Beta\n\nBeta slips to September because of budget risks.\n")
        (root / "gamma.md").write_text("# Gamma\n\nGamma is a new research track on retrieval.\n")
    return root


class HubFixture:
    def __init__(self, home: Path, embedder) -> None:  # type: ignore[no-untyped-def]
        self.home = home
        self.hub_home = HubHome.at(home)
        self.public_key = self.hub_home.init()
        self.embedder = embedder
        self.tokens = Tokens(self.hub_home)

    def publish(self, folder: Path, name: str = "docs") -> int:
        hub = Hub(self.hub_home)
        chunker = Chunker(self.embedder.count_tokens, 200, 30, self.embedder.identity.name)
        return hub.ingest([folder], name, self.embedder, chunker, sync=True).version

    def token(self, *read: str) -> str:
        return self.tokens.create("t", list(read))[0]


@pytest.fixture
def hub(tmp_path: Path, embedder) -> HubFixture:  # type: ignore[no-untyped-def]
    return HubFixture(tmp_path / "hub-home", embedder)


def client_sync(home: Path, url: str, token: str, key: str | None = None, **kw):  # type: ignore[no-untyped-def]
    return sync_hub(home, HubConfig(hub_name(url), url, token), key, **kw)


def state(home: Path, name: str = "docs") -> tuple[int, set[tuple]]:
    store = Store.open(home / "collections", name)
    rows = store.db.execute(
        "SELECT id, doc_key, ordinal, page, heading, text_unpack(packed_text), vector, scale FROM chunks"
    ).fetchall()
    docs = store.db.execute("SELECT key, sha256 FROM documents").fetchall()
    version = store.version
    store.close()
    return version, {tuple(r) for r in rows} | {tuple(d) for d in docs}


def results(home: Path, name: str = "docs") -> list[list[str]]:
    op = Outpost(home=home)
    return [[h.chunk.id for h in op.search(q, name, 3)] for q in QUERIES]


def test_snapshot_then_delta_equals_a_fresh_snapshot(hub: HubFixture, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 1)
    assert hub.publish(docs) == 1
    token = hub.token("docs")
    a, b = tmp_path / "client-a", tmp_path / "client-b"
    with HubServer(hub.home) as server:
        first = client_sync(a, server.url, token)
        assert first.updated == {"docs": (0, 1, "snapshot-1")}
        assert hub.publish(write_docs(docs, 2)) == 2
        second = client_sync(a, server.url, token)
        assert second.updated == {"docs": (1, 2, "delta-1-2")}
        fresh = client_sync(b, server.url, token)
        assert fresh.updated == {"docs": (0, 2, "snapshot-2")}
        assert client_sync(a, server.url, token).current == ["docs"]
    assert state(a) == state(b)
    assert state(a)[0] == 2
    assert results(a) == results(b)
    assert Outpost(home=a).search("gamma research track", "docs", 1)[0].chunk.doc_key == "gamma.md"
    assert not Outpost(home=a).search("descaled", "docs", 3, mode="bm25")  # removed document is gone
    # The delta carried only what changed, not the whole collection.
    delta = read_pack(hub.hub_home.packs_dir / "docs" / "delta-1-2", hub.public_key)[1]
    assert (
        0
        < len(delta.upserts)
        < len(read_pack(hub.hub_home.packs_dir / "docs" / "snapshot-2", hub.public_key)[1].upserts)
    )
    assert delta.delete_documents == ["coffee.txt"]


def test_a_pack_another_hub_process_built_meanwhile_is_served_not_a_500(hub: HubFixture, tmp_path: Path) -> None:
    """Two ``hub serve`` processes of one home building the same snapshot: the second rename finds the folder
    full. Found by the reliability work (docs/reliability.md); the loser now keeps the winner's pack."""
    docs = write_docs(tmp_path / "docs", 1)
    hub.publish(docs)
    write_docs(docs, 2)
    assert hub.publish(docs) == 2  # version 2's own pack is a delta: its snapshot is built on request
    served = Hub(hub.hub_home)
    store = served.store("docs")
    changeset = store.snapshot()
    store.close()
    folder = served.public_packs_dir("docs") / pack_name(0, changeset.version)
    write_pack(changeset, folder, hub.hub_home.signing_key)  # the other process won the race
    first = (folder / "manifest.sig").read_bytes()
    with pytest.raises(OSError):  # what the second writer used to answer with (HTTP 500)
        write_pack(changeset, folder, hub.hub_home.signing_key)
    served._write_cached(changeset, folder)
    assert (folder / "manifest.sig").read_bytes() == first  # the winner's pack stays, and it verifies
    assert read_pack(folder, hub.public_key)[1].version == changeset.version
    assert not [p.name for p in folder.parent.iterdir() if ".tmp-" in p.name]  # no temp folder left behind


def test_a_long_delta_chain_is_squashed_into_one_pack(hub: HubFixture, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 1)
    hub.publish(docs)
    token = hub.token("docs")
    with HubServer(hub.home) as server:
        client_sync(tmp_path / "a", server.url, token)
        write_docs(docs, 2)
        hub.publish(docs)
        (docs / "delta.txt").write_text("Delta team notes: standup at nine.\n")
        hub.publish(docs)
        report = client_sync(tmp_path / "a", server.url, token)
        assert report.updated == {"docs": (1, 3, "delta-1-3")}
        client_sync(tmp_path / "b", server.url, token)
    assert state(tmp_path / "a") == state(tmp_path / "b")


def test_a_cut_download_resumes_with_a_range_request(hub: HubFixture, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 1)
    for i in range(40):  # make the chunks file big enough to cut in the middle
        (docs / f"filler{i}.txt").write_text(f"Filler document {i} about topic {i * 7} and nothing else. " * 8)
    hub.publish(docs)
    token = hub.token("docs")
    with HubServer(hub.home) as server, CuttingProxy(server.port, cut_after=12_000) as proxy:
        home = tmp_path / "client"
        cut = client_sync(home, proxy.url, token)
        assert proxy.cuts == 1 and "docs" in cut.failed and "resume" in cut.failed["docs"]
        parts = list((home / "staging").rglob("*.part"))
        have = parts[0].stat().st_size
        assert len(parts) == 1 and have > 0
        proxy.responses.clear()
        done = client_sync(home, proxy.url, token)
        assert done.updated == {"docs": (0, 1, "snapshot-1")}
        assert f"range: bytes={have}-" in [line.lower() for line in proxy.requests]
        # the hub honoured the Range: a 206 whose Content-Range starts where the .part file ended
        statuses = [line.split()[1] for line in proxy.responses if line.startswith("HTTP/")]
        assert "206" in statuses, proxy.responses
        assert any(line.lower().startswith(f"content-range: bytes {have}-") for line in proxy.responses)
        assert not (home / "staging" / hub_name(proxy.url) / "docs").exists()
        client_sync(tmp_path / "direct", server.url, token)
    assert state(home) == state(tmp_path / "direct")


def _tamper(kind: str, pack: Path) -> None:
    if kind == "manifest":
        manifest = json.loads((pack / "manifest.json").read_text())
        manifest["counts"]["chunks"] += 1
        (pack / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    elif kind == "data":
        data = bytearray((pack / "chunks.parquet").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (pack / "chunks.parquet").write_bytes(bytes(data))
    else:  # a valid signature, but by another key
        other = generate_key(pack.parent / "attacker.pem")
        (pack / "manifest.sig").write_bytes(sign(other, (pack / "manifest.json").read_bytes()))


@pytest.mark.parametrize("kind", ["manifest", "data", "signature"])
def test_a_tampered_pack_is_refused_and_local_data_stays(hub: HubFixture, tmp_path: Path, kind: str) -> None:
    docs = write_docs(tmp_path / "docs", 1)
    hub.publish(docs)
    token = hub.token("docs")
    home = tmp_path / "client"
    with HubServer(hub.home) as server:
        client_sync(home, server.url, token)
        before = state(home)
        hub.publish(write_docs(docs, 2))
        pack = hub.hub_home.packs_dir / "docs" / "delta-1-2"
        shutil.copytree(pack, tmp_path / "good-pack")
        _tamper(kind, pack)
        report = client_sync(home, server.url, token)
        refused = state(home)
        assert Outpost(home=home).search("coffee machine", "docs", 1)[0].chunk.doc_key == "coffee.txt"
        shutil.rmtree(pack)
        shutil.copytree(tmp_path / "good-pack", pack)  # the hub's pack is mended: the refused copy is not reused
        assert client_sync(home, server.url, token).updated == {"docs": (1, 2, "delta-1-2")}
    assert refused == before
    assert "docs" in report.failed and not report.updated
    assert ("signature" in report.failed["docs"]) if kind != "data" else ("hash" in report.failed["docs"])


def test_an_older_version_is_refused(hub: HubFixture, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 1)
    hub.publish(docs)
    old_hub = tmp_path / "hub-at-v1"
    shutil.copytree(hub.home, old_hub)  # the same hub (same key), rolled back to version 1
    token = hub.token("docs")
    home = tmp_path / "client"
    hub.publish(write_docs(docs, 2))
    with HubServer(hub.home) as server:
        client_sync(home, server.url, token)
    assert state(home)[0] == 2
    old_token = Tokens(HubHome.at(old_hub)).create("old", ["docs"])[0]
    with HubServer(old_hub, port=server.port) as rolled_back:  # same address, same key, older data
        config = HubConfig(hub_name(rolled_back.url), rolled_back.url, old_token, hub.public_key)
        report = sync_hub(home, config)
    assert "not newer" in report.failed["docs"]
    assert state(home)[0] == 2
    # The store refuses a replayed pack on its own too, whatever a hub says.
    _, replay = read_pack(old_hub / "hub" / "packs" / "docs" / "snapshot-1", hub.public_key)
    store = Store.open(home / "collections", "docs")
    with pytest.raises(VersionConflictError, match="already is at version 2"):
        store.apply(replay)


def test_tokens_scopes_and_revocation(hub: HubFixture, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 1)
    hub.publish(docs, "docs")
    hub.publish(docs, "secret")
    reader = hub.token("docs")
    revoked, info = hub.tokens.create("gone", ["docs"])
    hub.tokens.revoke(str(info.id))
    with HubServer(hub.home) as server:
        http = httpx.Client(base_url=server.url)
        auth = {"Authorization": f"Bearer {reader}"}
        assert http.get("/health").json()["status"] == "ok"
        for path in [
            "/v1/collections",
            "/v1/collections/docs",
            "/v1/collections/docs/sync",
            "/v1/collections/docs/packs/snapshot-1/manifest.json",
            "/v1/hub",
        ]:
            assert http.get(path).status_code == 401
            assert http.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
            assert http.get(path, headers={"Authorization": f"Bearer {revoked}"}).status_code == 401
        assert [c["name"] for c in http.get("/v1/collections", headers=auth).json()] == ["docs"]
        hidden = http.get("/v1/collections/secret", headers=auth)
        missing = http.get("/v1/collections/nothing", headers=auth)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"].replace("secret", "X") == missing.json()["detail"].replace("nothing", "X")
        assert http.get("/v1/collections/secret/sync", headers=auth).status_code == 404
        assert http.get("/v1/collections/secret/packs/snapshot-1/manifest.json", headers=auth).status_code == 404
        for bad in ["../../hub/signing-key.pem", "snapshot-1/../../../signing-key.pem", "snapshot-1/x"]:
            assert http.get(f"/v1/collections/docs/packs/{bad}", headers=auth).status_code == 404
        client = tmp_path / "client"
        report = client_sync(client, server.url, reader)
        assert list(report.updated) == ["docs"] and not (client / "collections" / "secret").exists()
        with pytest.raises(Exception, match="refused the token"):
            client_sync(tmp_path / "other", server.url, revoked)


def test_a_changed_hub_key_is_refused_loudly(hub: HubFixture, tmp_path: Path) -> None:
    hub.publish(write_docs(tmp_path / "docs", 1))
    token = hub.token("docs")
    with HubServer(hub.home) as server:
        with pytest.raises(PackError, match="now presents key"):
            client_sync(tmp_path / "c1", server.url, token, key="ed25519:" + "A" * 43 + "=")
        home = tmp_path / "c2"
        client_sync(home, server.url, token)  # pins the key on first use
        saved = json.loads(next((home / "hubs").glob("*.json")).read_text())
        assert saved["hub_key"] == hub.public_key
        assert oct((next((home / "hubs").glob("*.json"))).stat().st_mode & 0o777) == "0o600"
        saved["hub_key"] = "ed25519:" + "B" * 43 + "="
        next((home / "hubs").glob("*.json")).write_text(json.dumps(saved))
        with pytest.raises(PackError, match="Refusing to sync"):
            sync_hub(home, HubConfig(**saved))


def test_an_unreachable_hub_fails_fast_and_leaves_local_data(hub: HubFixture, tmp_path: Path) -> None:
    hub.publish(write_docs(tmp_path / "docs", 1))
    home = tmp_path / "client"
    with HubServer(hub.home) as server:
        client_sync(home, server.url, hub.token("docs"))
        url = server.url
    before = state(home)
    start = time.monotonic()
    with pytest.raises(HubError, match="Cannot reach the hub"):
        client_sync(home, url, "whatever")
    assert time.monotonic() - start < 5
    assert state(home) == before


@pytest.mark.slow
def test_a_client_killed_during_apply_keeps_the_old_or_the_new_version(hub: HubFixture, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 1)
    hub.publish(docs)
    token = hub.token("docs")
    with HubServer(hub.home) as server:
        reference = tmp_path / "reference"
        client_sync(reference, server.url, token)
        old = state(reference)
        hub.publish(write_docs(docs, 2))
        client_sync(reference, server.url, token)
        new = state(reference)
        for point in ["apply:after-delete", "apply:before-commit", "apply:after-commit"]:
            # A client still at version 1: built from the v1 snapshot pack, the same bytes the hub served.
            home = tmp_path / point.replace(":", "-")
            _, v1 = read_pack(hub.hub_home.packs_dir / "docs" / "snapshot-1", hub.public_key)
            store = Store.open(home / "collections", "docs", create=True)
            store.set_meta(hub=server.url)
            store.apply(v1)
            store.close()
            save_hub(home, HubConfig(hub_name(server.url), server.url, token, hub.public_key))
            assert state(home) == old
            killed = outpost_cli("sync", "-q", home=home, fault=point)
            assert killed.returncode == -9, killed.stderr
            after = state(home)
            assert after in (old, new), point
            expected = new if point == "apply:after-commit" else old
            assert after == expected, point
            assert Outpost(home=home).search("alpha launch", "docs", 1)  # opens and answers
            assert outpost_cli("sync", "-q", home=home).returncode == 0
            assert state(home) == new


@pytest.mark.slow
def test_a_hub_killed_during_ingest_publishes_nothing(hub: HubFixture, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 1)
    hub.publish(docs)
    write_docs(docs, 2)
    for point in ["hub:after-pack", "apply:after-delete", "apply:before-commit"]:
        killed = outpost_cli("hub", "ingest", str(docs), "-c", "docs", "--sync", "-q", home=hub.home, fault=point)
        assert killed.returncode == -9, killed.stderr
        h = Hub(hub.hub_home)
        assert h.info("docs").version == 1, point
        assert h.pack_for("docs", 0).name == "snapshot-1"
    done = outpost_cli("hub", "ingest", str(docs), "-c", "docs", "--sync", "-q", home=hub.home)
    assert done.returncode == 0, done.stderr
    assert "docs v2:" in done.stderr
    assert Hub(hub.hub_home).info("docs").version == 2
    with HubServer(hub.home) as server:
        report = client_sync(tmp_path / "client", server.url, hub.token("docs"))
    assert report.updated == {"docs": (0, 2, "snapshot-2")}


def test_status_shows_local_and_hub_versions(hub: HubFixture, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 1)
    hub.publish(docs)
    home = tmp_path / "client"
    with HubServer(hub.home) as server:
        client_sync(home, server.url, hub.token("docs"))
        hub.publish(write_docs(docs, 2))
        rows = json.loads(outpost_cli("status", "--json", home=home).stdout)
        assert [(r["name"], r["version"], r["hub_version"], r["hub_reachable"]) for r in rows] == [("docs", 1, 2, True)]
        assert rows[0]["hub"] == server.url and rows[0]["last_sync"]
    offline = json.loads(outpost_cli("status", "--json", home=home).stdout)
    assert offline[0]["hub_reachable"] is False and offline[0]["version"] == 1


def test_collections_no_longer_shared_are_reported_and_pruned_on_request(hub: HubFixture, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", 1)
    hub.publish(docs, "docs")
    hub.publish(docs, "other")
    home = tmp_path / "client"
    with HubServer(hub.home) as server:
        assert sorted(client_sync(home, server.url, hub.token("docs", "other")).updated) == ["docs", "other"]
        narrower = hub.token("docs")  # the laptop's access shrank to one collection
        report = client_sync(home, server.url, narrower)
        assert report.unshared == ["other"] and (home / "collections" / "other").is_dir()
        pruned = client_sync(home, server.url, narrower, prune=True)
        assert pruned.unshared == ["other"] and not (home / "collections" / "other").exists()
    assert [c.name for c in Outpost(home=home).collections()] == ["docs"]


# -- one version per read: snapshots and vector caches while another connection publishes -------------------
# These use small synthetic vectors on purpose: what is tested is which rows go with which version number, not
# retrieval quality, and hundreds of publishes must fit in a few seconds.

RACE_IDENTITY = EmbeddingIdentity("race-vectors", "0" * 64, 8, 64)


def _rows_at(version: int) -> int:
    return 300 + version % 5  # each version has its own row count, so a mix of two is visible


def _version_rows(name: str, version: int, previous: int = 0) -> Changeset:
    """Version ``version`` of a collection whose every row (text and vector) says which version wrote it."""
    n = _rows_at(version)
    chunks = [Chunk(f"v{version}-{i}", f"d{version}.txt", i, f"v{version} row {i}") for i in range(n)]
    return Changeset(
        name,
        previous,
        chunks,
        np.full((n, 8), version % 100, np.int8),
        np.ones(n, np.float32),
        documents=[DocumentRecord(f"d{version}.txt", "x", "t", "text", 1, n)],
        delete_chunks=[f"v{previous}-{i}" for i in range(_rows_at(previous))] if previous else [],
        delete_documents=[f"d{previous}.txt"] if previous else [],
        embedding=RACE_IDENTITY,
        version=version,
    )


def _is_one_version(version: int, texts: list[str]) -> bool:
    return len(texts) == _rows_at(version) and all(t.startswith(f"v{version} row ") for t in texts)


def test_a_snapshot_and_the_vector_cache_never_pair_one_version_with_another_s_rows(tmp_path: Path) -> None:
    writer = Store.open(tmp_path, "race", create=True)
    writer.apply(_version_rows("race", 1))
    reader = Store.open(tmp_path, "race")  # its own connection, as another process would have
    published = threading.Event()

    def publish() -> None:
        for v in range(2, 150):
            writer.apply(_version_rows("race", v, v - 1))
        published.set()

    thread = threading.Thread(target=publish)
    thread.start()
    reads, mixed = 0, []
    while not published.is_set():
        snap = reader.snapshot()
        if not _is_one_version(snap.version, [c.text for c in snap.upserts]):
            mixed.append(("snapshot", snap.version))
        reader._vectors = None  # read the rows again every time, as a reader does after each new version
        (version, _), _, vectors = reader._all_vectors()
        if len(vectors) != _rows_at(version) or not (vectors == version % 100).all():
            mixed.append(("vectors", version))
        reads += 1
    thread.join()
    assert reads > 20 and not mixed


@pytest.mark.parametrize("when", ["before the snapshot reads", "while the snapshot reads"])
def test_a_hub_snapshot_built_while_publishing_carries_its_rows_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A publish lands at the worst moment of a snapshot build (injected there, so the test is deterministic):
    between the hub reading its version and the snapshot's read, or between the snapshot's rows and its
    documents. The pack's name, its manifest version and its rows must still be one version."""
    home = HubHome.at(tmp_path / "hub-home")
    key = home.init()
    hub = Hub(home)
    writer = hub.store("race", create=True)  # its own connection, as `outpost hub ingest` in another process
    hub.publish(writer, _version_rows("race", 1))  # writes snapshot-1 itself
    hub.publish(writer, _version_rows("race", 2, 1))  # a delta: snapshot-2 does not exist yet
    target = Store.snapshot if when.startswith("before") else Store.documents
    published: list[int] = []

    def publish_first(self: Store, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self is not writer and not published:
            published.append(hub.publish(writer, _version_rows("race", 3, 2)))
        return target(self, *args, **kwargs)

    monkeypatch.setattr(Store, target.__name__, publish_first)
    folder = hub.pack_for("race", 0)
    manifest, cs = read_pack(folder, key)
    assert published == [3]
    assert folder.name == f"snapshot-{manifest['version']}"
    assert _is_one_version(manifest["version"], [c.text for c in cs.upserts])
    assert [d.key for d in cs.documents] == [f"d{manifest['version']}.txt"]


# -- TLS: a real certificate chain, made here with `cryptography` ----------------------------------------------


def _tls_chain(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it signed for 127.0.0.1 (ca.pem, server.pem, server.key)."""
    from datetime import datetime, timedelta, timezone
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)

    def cert(subject: str, key, issuer: str, signer, ca: bool) -> x509.Certificate:  # type: ignore[no-untyped-def]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        )
        if ca:
            usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
            builder = builder.add_extension(usage, critical=True)
        else:
            names = [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("Outpost test CA", ca_key, "Outpost test CA", ca_key, True)
    server = cert("127.0.0.1", server_key, "Outpost test CA", ca_key, False)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def _serve_hub(home: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    """The real `outpost hub serve` in a subprocess on a free port."""
    from hubkit import free_port

    port = free_port()
    env = {**os.environ, "OUTPOST_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "outpost", "hub", "serve", "--port", str(port), *args]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True), port


def _wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    raise AssertionError("the hub did not start")


@pytest.mark.slow
def test_sync_over_tls_verifies_the_hub_certificate_against_a_pinned_private_ca(
    hub: HubFixture, tmp_path: Path
) -> None:
    hub.publish(write_docs(tmp_path / "docs", 1))
    Registry(hub.hub_home.root).pull_file(resolve_gguf("smollm2"), "approved")
    token = hub.tokens.create("t", ["docs"], models=["approved"])[0]
    ca, cert, key = _tls_chain(tmp_path / "tls")
    process, port = _serve_hub(hub.home, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        _wait_listening(port, process)
        url = f"https://127.0.0.1:{port}"
        # Without the CA: refused with a clear certificate error, and nothing synced or saved.
        stranger = tmp_path / "stranger"
        with pytest.raises(HubError, match="failed the TLS check .*CERTIFICATE_VERIFY_FAILED.*--hub-ca"):
            client_sync(stranger, url, token)
        assert not (stranger / "collections" / "docs").exists()
        plain = outpost_cli("sync", "--hub", url, "--token", token, "-q", home=stranger)
        assert plain.returncode != 0 and "--hub-ca" in plain.stderr and "Traceback" not in plain.stderr
        # With --hub-ca: synced; the first use of the hub's key is announced loudly with its fingerprint.
        home = tmp_path / "client"
        first = outpost_cli("sync", "--hub", url, "--token", token, "--hub-ca", str(ca), "-q", home=home)
        assert first.returncode == 0, first.stderr
        assert "WARNING: first sync" in first.stderr and fingerprint(hub.public_key) in first.stderr
        assert f"--hub-key {hub.public_key}" in first.stderr
        assert state(home)[0] == 1
        saved = load_hubs(home)[0]
        assert saved.ca_pem == ca.read_text() and saved.hub_key == hub.public_key
        # The CA is pinned in the hub's config: the next sync uses it without the flag, and warns no more.
        hub.publish(write_docs(tmp_path / "docs", 2))
        again = outpost_cli("sync", "-q", home=home)
        assert again.returncode == 0, again.stderr
        assert "WARNING" not in again.stderr and state(home)[0] == 2
        # A hub model pull goes through the same client and the same pinned CA (it once built its own client
        # from the URL and token alone, and failed the TLS check on a hub that sync reached).
        assert pull(home, "hub://approved").source == "hub"
    finally:
        process.terminate()
        process.wait(timeout=30)
    served = process.stderr.read() if process.stderr else ""
    assert f"https://127.0.0.1:{port}" in served and fingerprint(hub.public_key) in served


def test_hub_serve_refuses_half_a_tls_configuration(hub: HubFixture, tmp_path: Path) -> None:
    _, cert, key = _tls_chain(tmp_path / "tls")
    alone = outpost_cli("hub", "serve", "--tls-cert", str(cert), home=hub.home)
    assert alone.returncode != 0 and "--tls-cert and --tls-key go together" in alone.stderr
    mismatched = outpost_cli("hub", "serve", "--tls-cert", str(cert), "--tls-key", str(cert), home=hub.home)
    assert mismatched.returncode != 0 and "Cannot serve TLS" in mismatched.stderr
