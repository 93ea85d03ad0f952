"""Shipping a fine-tuned embedder: a real hub on 127.0.0.1, real laptops syncing, a really fine-tuned MiniLM.

The model is the bundled all-MiniLM-L6-v2 after 10 steps of sentence-transformers' MultipleNegativesRankingLoss on
a few (question, passage) pairs, saved with ``SentenceTransformer.save``: a real fine-tuned folder, made in the
test because nothing may be downloaded (``tuned_model`` in ``conftest.py``, shared with the Ray ingest test). The
hub exports it to the laptops' ONNX encoder, re-embeds the collection and publishes one version; laptops sync it
(encoder first, then the vectors), search with it, survive a cut and a tampered download, and roll back.

The fast tests at the bottom check the pack format, squash and ``Store.apply`` on synthetic vectors (no model).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from hubkit import CuttingProxy, HubServer, outpost_cli
from outpost import Outpost
from outpost.embed.base import Embedder
from outpost.embed.encoders import ENCODER_JSON, encoder_for, encoders_dir, load_encoder
from outpost.embed.onnx import OnnxEmbedder
from outpost.embed.quantize import quantize
from outpost.errors import ModelMismatchError, PackError, ReadOnlyError
from outpost.hub.embedder import embedder_history, publish_embedder, rollback_embedder, switch_embedder
from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name
from outpost.ingest import Chunker
from outpost.ingest.chunker import embedding_text
from outpost.packs import generate_key, read_pack, write_pack
from outpost.packs.format import check_manifest
from outpost.packs.signing import load_private_key, public_key_text
from outpost.packs.squash import squash
from outpost.records import Adapter, Changeset, Chunk, EmbeddingIdentity, EncoderRef, Revectors
from outpost.store import Store
from outpost.sync import SyncReport, sync_hub
from security.hubworld import synthetic_hub

METRICS = {"ndcg@10": {"before": 0.31, "after": 0.35}, "mrr@10": {"before": 0.40, "after": 0.44}}


def write_docs(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "alpha.md").write_text("# Alpha\n\nThe alpha project launches on 3 March.\n\n## Risks\n\nBudget is low.\n")
    (root / "oncall.txt").write_text("On call this week: Ada. Escalate to Grace after one hour.\n")
    (root / "coffee.txt").write_text("The coffee machine is descaled every Friday.\n")
    (root / "beta.md").write_text("# Beta\n\nBeta ships in June.\n")
    return root


@dataclass
class World:
    """A hub at version 2 (the fine-tuned embedder), and laptops that synced version 1 before it was published."""

    home: Path
    hub: Hub
    url: str
    token: str
    laptops: dict[str, Path]
    v1_vectors: dict[str, bytes]
    base: EmbeddingIdentity
    sha: str
    proxy: CuttingProxy  # in front of the hub, idle until a test arms it (the "cut" laptop syncs through it)


def sync(home: Path, url: str, token: str) -> SyncReport:
    return sync_hub(home, HubConfig(hub_name(url), url, token))


def vectors(home: Path, name: str = "docs") -> dict[str, bytes]:
    store = Store.open(home / "collections", name)
    try:
        return dict(store.db.execute("SELECT id, vector FROM chunks").fetchall())
    finally:
        store.close()


def identity(home: Path, name: str = "docs") -> EmbeddingIdentity | None:
    store = Store.open(home / "collections", name)
    try:
        return store.embedding
    finally:
        store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder, tuned_model: Path) -> Iterator[World]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("shipping")
    hub_home = HubHome.at(root / "hub-home")
    hub_home.init()
    hub = Hub(hub_home)
    chunker = Chunker(embedder.count_tokens, 200, 30, embedder.identity.name)
    hub.ingest([write_docs(root / "docs")], "docs", embedder, chunker, sync=True)
    hub.ingest([write_docs(root / "plain")], "plain", embedder, chunker, sync=True)
    token = Tokens(hub_home).create("t", ["docs", "plain"])[0]
    laptops = {name: root / f"laptop-{name}" for name in ("switch", "cut", "tampered", "rollback")}
    with HubServer(root / "hub-home") as server, CuttingProxy(server.port, cut_after=0) as proxy:
        proxy.cut_after = None
        for name, laptop in laptops.items():
            url = proxy.url if name == "cut" else server.url
            assert sync(laptop, url, token).updated["docs"] == (0, 1, "snapshot-1")
        v1 = vectors(laptops["switch"])
        assert publish_embedder(hub, "docs", tuned_model, METRICS) == 2
        new = hub.info("docs").embedding
        assert new is not None
        yield World(
            root / "hub-home", hub, server.url, token, laptops, v1, embedder.identity, new.weights_sha256, proxy
        )


@pytest.mark.slow
def test_a_synced_laptop_searches_with_the_hubs_new_encoder(world: World, tmp_path: Path) -> None:
    laptop = world.laptops["switch"]
    assert identity(laptop) == world.base
    report = sync(laptop, world.url, world.token)
    assert report.updated["docs"] == (1, 2, "delta-1-2"), report

    tuned = identity(laptop)
    assert tuned is not None and tuned != world.base and tuned.weights_sha256 == world.sha
    assert tuned.name.startswith("sentence-transformers/all-MiniLM-L6-v2+ft-")
    installed = encoders_dir(laptop) / world.sha
    assert stat.S_IMODE(installed.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in installed.iterdir()} == {
        "encoder.json": 0o600,
        "model.onnx": 0o600,
        "tokenizer.json": 0o600,
    }

    shutil.copytree(laptop / "collections" / "docs", laptop / "collections" / "mine")  # for the ingest below
    op = Outpost(home=laptop)
    retriever = op.retriever("docs")
    assert isinstance(retriever.embedder, OnnxEmbedder) and retriever.embedder.identity == tuned
    assert op.retriever("docs").embedder is retriever.embedder  # loaded once per process, not per query
    hub_encoder = load_encoder(world.home / "hub" / "encoders" / world.sha, world.sha)
    question = "who is on call this week"
    np.testing.assert_allclose(retriever.embedder.embed_query(question), hub_encoder.embed_query(question), atol=1e-6)
    assert op.search(question, "docs", 1, mode="dense")[0].chunk.doc_key == "oncall.txt"

    # Every vector changed, none of the text travelled again, and the laptop holds exactly the hub's vectors.
    now = vectors(laptop)
    assert now.keys() == world.v1_vectors.keys() and all(now[k] != world.v1_vectors[k] for k in now)
    hub_store = world.hub.store("docs")
    try:
        assert now == dict(hub_store.db.execute("SELECT id, vector FROM chunks").fetchall())
    finally:
        hub_store.close()
    delta = world.home / "hub" / "packs" / "docs" / "delta-1-2"
    manifest = json.loads((delta / "manifest.json").read_bytes())
    assert manifest["format_version"] == 2 and manifest["encoder"]["sha256"] == world.sha
    assert manifest["counts"]["chunks"] == 0 and manifest["revectors"] == len(now)

    # A local ingest into the synced collection is refused (the hub is its only writer), encoder or not; one
    # into a local collection with the encoder's identity embeds with that encoder, as search does.
    more = tmp_path / "more"
    more.mkdir()
    (more / "gamma.md").write_text("# Gamma\n\nGamma is a new research track on retrieval.\n")
    with pytest.raises(ReadOnlyError, match="synced from .* read-only here; ingest on the hub"):
        op.ingest(more, collection="docs")
    mine = op.store("mine")
    mine.set_meta(hub="")  # a copy of the synced collection, no longer tied to the hub
    assert op.collection_embedder(mine) is retriever.embedder
    assert op.ingest(more, collection="mine").chunks_embedded == 1
    gamma = next(c for c in mine.snapshot().upserts if c.doc_key == "gamma.md")
    stored = dict(mine.db.execute("SELECT id, vector FROM chunks").fetchall())[gamma.id]
    assert mine.embedding == tuned and stored == quantize(hub_encoder.embed([embedding_text(gamma)]))[0][0].tobytes()

    # The gate's figures are kept per version and shown by `outpost hub collections --json`.
    shown = json.loads(outpost_cli("hub", "collections", "--json", home=world.home).stdout)
    entry = next(c for c in shown if c["name"] == "docs")["embedders"]
    assert [(e["version"], e["kind"], e["metrics"]) for e in entry] == [(2, "fine-tuned", METRICS)]
    assert entry[0]["encoder"]["sha256"] == world.sha and entry[0]["bytes_per_chunk"] > 0


@pytest.mark.slow
def test_a_cut_encoder_download_keeps_the_old_pair_and_resumes(world: World) -> None:
    laptop = world.laptops["cut"]
    proxy = world.proxy
    proxy.cut_after = 4_000_000  # inside model.onnx (~90 MB)
    first = sync(laptop, proxy.url, world.token)
    assert "docs" in first.failed and "run `outpost sync` again" in first.failed["docs"]
    assert proxy.cuts == 1
    # Until both are complete the laptop searches with the old encoder and the old vectors.
    assert identity(laptop) == world.base and vectors(laptop) == world.v1_vectors
    assert not (encoders_dir(laptop) / world.sha).exists()
    part = encoders_dir(laptop) / ".partial" / world.sha / "model.onnx.part"
    assert 0 < part.stat().st_size < 4_000_000
    op = Outpost(home=laptop)
    assert op.retriever("docs").embedder.identity == world.base
    assert op.search("who is on call this week", "docs", 1)[0].chunk.doc_key == "oncall.txt"

    proxy.requests.clear()
    second = sync(laptop, proxy.url, world.token)
    assert second.updated["docs"] == (1, 2, "delta-1-2"), second
    resumed = [r for r in proxy.requests if r.lower().startswith("range:")]
    assert resumed and int(resumed[0].split("=")[1].rstrip("-")) > 0  # it resumed, it did not start over
    assert identity(laptop) is not None and identity(laptop).weights_sha256 == world.sha  # type: ignore[union-attr]
    assert not (encoders_dir(laptop) / ".partial" / world.sha).exists()


@pytest.mark.slow
def test_a_tampered_encoder_is_refused_and_the_old_pair_stays(world: World) -> None:
    laptop = world.laptops["tampered"]
    graph = world.home / "hub" / "encoders" / world.sha / "model.onnx"
    original = graph.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF  # same size: only the hash can tell
    graph.write_bytes(bytes(flipped))
    try:
        report = sync(laptop, world.url, world.token)
    finally:
        graph.write_bytes(original)
    assert "model.onnx does not match the hash in encoder.json" in report.failed["docs"]
    assert identity(laptop) == world.base and vectors(laptop) == world.v1_vectors
    assert not (encoders_dir(laptop) / world.sha).exists()
    assert not (encoders_dir(laptop) / ".partial" / world.sha).exists()  # fetched afresh next time
    assert Outpost(home=laptop).retriever("docs").embedder.identity == world.base
    assert sync(laptop, world.url, world.token).updated["docs"] == (1, 2, "delta-1-2")


@pytest.mark.slow
def test_the_encoder_is_served_only_to_its_own_collection(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.token}"}
    ok = httpx.get(f"{world.url}/v1/collections/docs/encoders/{world.sha}/encoder.json", headers=headers)
    assert ok.status_code == 200 and json.loads(ok.content)["files"]["model.onnx"]["bytes"] > 1_000_000
    ranged = httpx.get(
        f"{world.url}/v1/collections/docs/encoders/{world.sha}/model.onnx", headers={**headers, "Range": "bytes=10-19"}
    )
    assert ranged.status_code == 206 and len(ranged.content) == 10
    for path in (
        f"/v1/collections/docs/encoders/{'0' * 64}/encoder.json",  # an unknown sha
        f"/v1/collections/plain/encoders/{world.sha}/encoder.json",  # the sha of another collection
        f"/v1/collections/docs/encoders/{world.sha}/manifest.json",  # not an encoder file
        f"/v1/collections/docs/encoders/{world.sha}/..%2Fencoder.json",
    ):
        assert httpx.get(world.url + path, headers=headers).status_code == 404, path
    assert httpx.get(f"{world.url}/v1/collections/docs/encoders/{world.sha}/encoder.json").status_code == 401


@pytest.mark.slow
def test_ingest_after_the_switch_then_rollback(world: World, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    laptop = world.laptops["rollback"]  # still at version 1, the base model's
    # A hub ingest into the switched collection embeds the new chunk with its encoder, not the settings' model.
    docs = write_docs(tmp_path / "docs")
    (docs / "gamma.md").write_text("# Gamma\n\nGamma is a new research track on retrieval.\n")
    chunker = Chunker(embedder.count_tokens, 200, 30, embedder.identity.name)
    assert world.hub.ingest([docs], "docs", embedder, chunker, sync=True).version == 3
    store = world.hub.store("docs")
    try:
        hub_vectors = dict(store.db.execute("SELECT id, vector FROM chunks").fetchall())
        gamma = next(c for c in store.snapshot().upserts if c.doc_key == "gamma.md")
    finally:
        store.close()
    encoder = load_encoder(world.home / "hub" / "encoders" / world.sha, world.sha)
    assert hub_vectors[gamma.id] == quantize(encoder.embed([embedding_text(gamma)]))[0][0].tobytes()

    # The laptop at version 1 gets one squashed delta: new vectors for what it had, the new chunk with its own.
    assert sync(laptop, world.url, world.token).updated["docs"] == (1, 3, "delta-1-3")
    assert identity(laptop) == identity(world.laptops["switch"]) and vectors(laptop) == hub_vectors

    with pytest.raises(ModelMismatchError, match="needs the embedder"):
        rollback_embedder(world.hub, "docs")  # the base model is not an encoder the hub shipped: say what to pass
    done = outpost_cli("hub", "rollback-embedder", "-c", "docs", home=world.home)  # with the settings' base model
    assert done.returncode == 0 and "docs v4 embeds with sentence-transformers/all-MiniLM-L6-v2 " in done.stdout
    assert (encoders_dir(laptop) / world.sha / ENCODER_JSON).is_file()
    assert sync(laptop, world.url, world.token).updated["docs"] == (3, 4, "delta-3-4")
    assert identity(laptop) == world.base
    assert not (encoders_dir(laptop) / world.sha).exists()  # no collection names it now: its 90 MB go
    assert Outpost(home=laptop).retriever("docs").embedder.identity == world.base
    back = vectors(laptop)
    for key, vector in world.v1_vectors.items():  # the base model again: the version-1 vectors, up to rounding
        diff = np.abs(np.frombuffer(back[key], np.int8).astype(int) - np.frombuffer(vector, np.int8))
        assert diff.max() <= 1
    history = embedder_history(world.hub, "docs")
    assert [(h.version, h.kind) for h in history] == [(2, "fine-tuned"), (4, "rollback")]
    assert history[1].previous is not None and history[1].previous["weights_sha256"] == world.sha
    # A laptop that never saw the switch gets the base model's snapshot, with no encoder to fetch.
    fresh = laptop.parent / "laptop-fresh"
    assert sync(fresh, world.url, world.token).updated["docs"] == (0, 4, "snapshot-4")
    assert identity(fresh) == world.base and not (encoders_dir(fresh) / world.sha).exists()
    assert encoder_for(fresh, identity(fresh)) is None


# -- format, squash and apply, on synthetic vectors (no model) ---------------------------------------------------

DIM = 8
OLD = EmbeddingIdentity("base", "a" * 64, DIM, 256)
NEW = EmbeddingIdentity("base+ft-1", "b" * 64, DIM, 256)
REF = EncoderRef("b" * 64, 300)


def _chunks(n: int, start: int = 0) -> list[Chunk]:
    return [Chunk(f"c{i}", f"d{i}.txt", 0, f"text {i}") for i in range(start, start + n)]


def _vectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return quantize(np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32))


def _revectors(ids: list[str], seed: int) -> Revectors:
    q, s = _vectors(len(ids), seed)
    return Revectors(ids, q, s)


def test_a_revectoring_pack_round_trips_and_carries_no_text(tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    generate_key(key_file)
    signer = load_private_key(key_file)
    cs = Changeset("docs", 1, embedding=NEW, revectors=_revectors(["c0", "c1", "c2"], 1), encoder=REF)
    manifest = write_pack(cs, tmp_path / "delta-1-2", signer)
    assert manifest["format_version"] == 2 and manifest["encoder"] == {"sha256": "b" * 64, "bytes": 300}
    assert "vectors.parquet" in manifest["files"] and manifest["counts"]["chunks"] == 0
    _, back = read_pack(tmp_path / "delta-1-2", public_key_text(signer))
    assert back.revectors is not None and back.revectors.ids == ["c0", "c1", "c2"]
    np.testing.assert_array_equal(back.revectors.vectors, cs.revectors.vectors)  # type: ignore[union-attr]
    assert back.encoder == REF and back.embedding == NEW

    for change, message in (
        ({"format_version": 3}, "Unsupported pack format 3; upgrade Outpost"),
        ({"encoder": {"sha256": "c" * 64, "bytes": 300}}, "not the one the embedding identity names"),
        ({"format_version": 1}, "format 1 names no encoder"),
    ):
        with pytest.raises(PackError, match=message):
            check_manifest({**manifest, **change})


def test_squash_gives_every_chunk_its_new_vector(tmp_path: Path) -> None:
    q1, s1 = _vectors(2, 1)
    add = Changeset("docs", 1, _chunks(2, 3), q1, s1, embedding=OLD)  # v2: c3, c4 with old vectors
    switch = Changeset("docs", 2, embedding=NEW, revectors=_revectors(["c0", "c1", "c2", "c3", "c4"], 2), encoder=REF)
    q3, s3 = _vectors(1, 3)
    after = Changeset("docs", 3, _chunks(1, 5), q3, s3, embedding=NEW, delete_chunks=["c1"])  # v4
    squashed = squash([add, switch, after])
    assert squashed.embedding == NEW and squashed.encoder == REF and squashed.version == 4
    upserts = {c.id: squashed.vectors[i] for i, c in enumerate(squashed.upserts)}
    np.testing.assert_array_equal(upserts["c3"], switch.revectors.vectors[3])  # type: ignore[union-attr]
    assert squashed.revectors is not None and squashed.revectors.ids == ["c0", "c2"]

    store = Store.open(tmp_path / "collections", "docs", create=True)
    q0, s0 = _vectors(3, 0)
    store.apply(Changeset("docs", 0, _chunks(3), q0, s0, embedding=OLD, snapshot=True))
    store.apply(squashed)
    rows = dict(store.db.execute("SELECT id, vector FROM chunks").fetchall())
    assert sorted(rows) == ["c0", "c2", "c3", "c4", "c5"] and store.embedding == NEW
    assert rows["c0"] == switch.revectors.vectors[0].tobytes()  # type: ignore[union-attr]
    store.close()


def test_a_switch_that_misses_a_chunk_changes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "collections", "docs", create=True)
    q0, s0 = _vectors(3, 0)
    store.apply(Changeset("docs", 0, _chunks(3), q0, s0, embedding=OLD, snapshot=True))
    with pytest.raises(ModelMismatchError, match="new vectors for 2 of its 3 chunks"):
        store.apply(Changeset("docs", 1, embedding=NEW, revectors=_revectors(["c0", "c1"], 1)))
    with pytest.raises(ModelMismatchError, match="was embedded with base"):  # a plain delta may not switch
        store.apply(Changeset("docs", 1, embedding=NEW))
    assert store.version == 1 and store.embedding == OLD
    assert dict(store.db.execute("SELECT id, vector FROM chunks").fetchall())["c0"] == q0[0].tobytes()
    store.close()


def test_the_laptop_uses_only_a_complete_encoder_of_its_identity(tmp_path: Path) -> None:
    assert encoder_for(tmp_path, OLD) is None  # nothing installed: the settings' embedder
    (encoders_dir(tmp_path) / ("a" * 64)).mkdir(parents=True)  # a folder without its encoder.json is not one
    assert encoder_for(tmp_path, OLD) is None
    assert not (encoders_dir(tmp_path) / ("a" * 64) / ENCODER_JSON).exists()


class HashedEmbedder(Embedder):
    """Stand-in vectors of dimension 8 from each text's sha256, for the synthetic hub of the security tests: what
    this checks (the switch's version, its adapter, its history) does not depend on what the vectors mean."""

    identity = EmbeddingIdentity("hashed", "c" * 64, DIM, 256)  # type: ignore[assignment]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def _encode(self, texts: list[str]) -> np.ndarray:
        digests = [hashlib.sha256(t.encode()).digest()[:DIM] for t in texts]
        return np.array([np.frombuffer(d, np.int8) for d in digests], dtype=np.float32)


def test_a_switch_resets_the_query_adapter_and_is_recorded(tmp_path: Path) -> None:
    hub = synthetic_hub(tmp_path / "home", collections=("docs",))
    store = hub.store("docs")
    try:
        learned = Adapter(1, np.random.default_rng(0).normal(size=(DIM, DIM)).astype(np.float32))
        hub.publish(store, Changeset("docs", 1, adapter=learned))
        texts = [embedding_text(c) for c in store.snapshot().upserts]
    finally:
        store.close()
    embedder = HashedEmbedder()
    assert switch_embedder(hub, "docs", embedder, {"why": "test"}) == 3
    store = hub.store("docs")
    try:
        assert store.embedding == embedder.identity
        adapter = store.adapter
        assert adapter is not None and adapter.version > 1  # an adapter of the old vectors would skew every query
        np.testing.assert_array_equal(adapter.matrix, np.eye(DIM, dtype=np.float32))
        rows = dict(store.db.execute("SELECT text_unpack(packed_text), vector FROM chunks").fetchall())
        expected = quantize(embedder.embed(texts))[0]
        assert [rows[t] for t in texts] == [v.tobytes() for v in expected]
    finally:
        store.close()
    manifest = json.loads((hub.home.packs_dir / "docs" / "delta-2-3" / "manifest.json").read_bytes())
    assert (manifest["format_version"], manifest["encoder"], manifest["revectors"]) == (2, None, len(texts))
    assert set(manifest["files"]) >= {"vectors.parquet", "adapter.npy"}
    (record,) = embedder_history(hub, "docs")
    assert (record.version, record.kind, record.encoder, record.metrics) == (3, "switch", None, {"why": "test"})
    assert record.previous is not None and record.previous["name"] == "synthetic"
