"""Feedback queue and upload, adapter training and its publish gate, and adapters shipped to outposts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hubkit import HubServer
from outpost import Outpost
from outpost.adapt import Example, evaluate, fit
from outpost.embed.quantize import quantize
from outpost.feedback import FeedbackQueue
from outpost.hub.home import HubHome
from outpost.hub.learning import examples, rollback, store_feedback, train_and_publish
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.hubclient import HubClient
from outpost.packs import read_pack
from outpost.records import Adapter, Changeset, Chunk, EmbeddingIdentity
from outpost.retrieve import Retriever
from outpost.store import Store
from test_hub_sync import HubFixture, client_sync, write_docs

DIM = 32


def synthetic_world(n_docs: int = 1500, n_queries: int = 400, seed: int = 0):  # type: ignore[no-untyped-def]
    """Documents, and queries that are a fixed linear distortion of their target document plus noise:
    the known right answer an adapter can learn (undo the distortion)."""
    rng = np.random.default_rng(seed)
    docs = rng.normal(size=(n_docs, DIM)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    distortion = (np.eye(DIM) + 1.2 * rng.normal(size=(DIM, DIM)) / np.sqrt(DIM)).astype(np.float32)
    targets = rng.integers(0, n_docs, n_queries)
    queries = docs[targets] @ distortion.T + 0.15 * rng.normal(size=(n_queries, DIM)).astype(np.float32)
    return docs, queries.astype(np.float32), targets


def hub_with_vectors(tmp_path: Path, docs: np.ndarray) -> Hub:
    home = HubHome.at(tmp_path / "hub-home")
    home.init()
    hub = Hub(home)
    store = hub.store("synth", create=True)
    q, s = quantize(docs)
    chunks = [Chunk(f"c{i}", f"d{i}.txt", 0, f"document {i}") for i in range(len(docs))]
    hub.publish(
        store, Changeset("synth", 0, chunks, q, s, embedding=EmbeddingIdentity("synthetic", "0" * 64, DIM, 256))
    )
    store.close()
    return hub


def _items(queries: np.ndarray, positives: np.ndarray, prefix: str) -> list[dict]:  # type: ignore[type-arg]
    return [
        {
            "id": f"{prefix}{i}",
            "query_vector": q.tolist(),
            "shown": [f"c{p}"],
            "answer_vote": 1,
            "source_votes": {f"c{p}": 1},
        }
        for i, (q, p) in enumerate(zip(queries, positives))
    ]


def test_training_on_feedback_with_a_known_answer_improves_ranking(tmp_path: Path) -> None:
    docs, queries, targets = synthetic_world()
    ids = [f"c{i}" for i in range(len(docs))]
    exs = [Example(q, (f"c{t}",), key=str(i)) for i, (q, t) in enumerate(zip(queries, targets))]
    result = fit(exs, ids, docs, min_gain=0.0)
    assert result.after["mrr@10"] > result.before["mrr@10"] + 0.15, (result.before, result.after)
    # and through the hub: stored feedback → train → a new version carrying the adapter
    hub = hub_with_vectors(tmp_path, docs)
    assert store_feedback(hub.home, "synth", None, _items(queries, targets, "q")) == len(queries)
    report = train_and_publish(hub, "synth")
    assert report.published and report.adapter_version == 1 and report.collection_version == 2
    assert report.after["mrr@10"] > report.before["mrr@10"]
    pack = hub.home.packs_dir / "synth" / "delta-1-2"
    manifest, changeset = read_pack(pack, hub.home.public_key)
    assert manifest["adapter"]["version"] == 1 and changeset.adapter is not None and not changeset.upserts
    assert (pack / "adapter.npy").stat().st_size < 10_000  # one small matrix, no document vectors


def test_an_adapter_that_does_not_help_held_out_queries_is_not_published(tmp_path: Path) -> None:
    docs, queries, _ = synthetic_world(seed=1)
    hub = hub_with_vectors(tmp_path, docs)
    wrong = np.random.default_rng(7).integers(0, len(docs), len(queries))  # votes that contradict the data
    store_feedback(hub.home, "synth", None, _items(queries, wrong, "w"))
    report = train_and_publish(hub, "synth")
    assert not report.published and "not published" in report.reason
    assert hub.info("synth").version == 1
    assert not (hub.home.packs_dir / "synth" / "delta-1-2").exists()


def test_an_identical_upload_counts_once(tmp_path: Path) -> None:
    docs, queries, targets = synthetic_world(n_queries=5)
    hub = hub_with_vectors(tmp_path, docs)
    items = _items(queries, targets, "same")
    _, token = Tokens(hub.home).create("laptop", ["synth"], feedback=["synth"])
    assert store_feedback(hub.home, "synth", token.id, items) == 5
    assert store_feedback(hub.home, "synth", token.id, items) == 0
    assert len(examples(hub.home, "synth")) == 5


@pytest.mark.slow
def test_the_queue_survives_a_restart_and_uploads_exactly_once(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    hub = HubFixture(tmp_path / "hub-home", embedder)
    hub.publish(write_docs(tmp_path / "docs", 1))
    token = hub.tokens.create("laptop", ["docs"], feedback=["docs"])[0]  # voting is its own right
    client = tmp_path / "client"
    with HubServer(hub.home) as server:
        client_sync(client, server.url, token)
        op = Outpost(home=client)
        answer = op.ask("When does the alpha project launch?", "docs", max_tokens=8, seed=0)
        op.vote(answer, helpful=True, sources={1: True, 2: False})
        op.feedback.close()
        del op
        restarted = Outpost(home=client)  # a new process would see the same file
        pending = restarted.feedback.pending()
        assert [p.id for p in pending] == [answer.id] and pending[0].source_votes[answer.sources[0].chunk_id] == 1
        first = client_sync(client, server.url, token)
        assert first.feedback_uploaded == 1
        assert client_sync(client, server.url, token).feedback_uploaded == 0  # nothing left to send
        # a retry of the same upload (say the reply was lost) is acknowledged but not counted again
        item = FeedbackQueue(client).get(answer.id)
        retry = HubClient(server.url, token).post("/v1/collections/docs/feedback", {"items": [item.payload(False)]})
        assert retry == {"accepted": 0, "duplicates": 1, "rejected": []}
    stored = examples(hub.hub_home, "docs")
    assert len(stored) == 1 and stored[0].positives == (answer.sources[0].chunk_id,)
    assert stored[0].negatives == (answer.sources[1].chunk_id,)


@pytest.mark.slow
def test_an_outpost_after_sync_ranks_like_the_hub_with_the_same_adapter(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    hub = HubFixture(tmp_path / "hub-home", embedder)
    hub.publish(write_docs(tmp_path / "docs", 1))
    service = Hub(hub.hub_home)
    store = service.store("docs")
    rng = np.random.default_rng(3)
    matrix = (np.eye(384) + 0.2 * rng.normal(size=(384, 384)) / np.sqrt(384)).astype(np.float32)
    from outpost.hub.learning import _publish_adapter

    _publish_adapter(service, store, Adapter(1, matrix), {})
    hub_retriever = Retriever(store, embedder)
    token = hub.token("docs")
    client = tmp_path / "client"
    with HubServer(hub.home) as server:
        client_sync(client, server.url, token)
        local = Store.open(client / "collections", "docs")
        assert local.adapter is not None and local.adapter.version == 1
        client_retriever = Retriever(local, embedder)
        for query in ["alpha launch", "who is on call this week", "coffee", "beta ships"]:
            theirs = [(h.chunk.id, round(h.score, 6)) for h in hub_retriever.search(query, 5, "dense")]
            ours = [(h.chunk.id, round(h.score, 6)) for h in client_retriever.search(query, 5, "dense")]
            assert ours == theirs
        plain = [
            h.chunk.id
            for h in Retriever(local, embedder, adapter=Adapter(0, np.eye(384, dtype=np.float32))).search(
                "who is on call this week", 5, "dense"
            )
        ]
        assert plain  # the adapter is what the client applies; identity is the un-adapted ranking
        # rollback: a newer version carrying the previous adapter (here none: the identity)
        version, adapter_version = rollback(service, "docs")
        assert (version, adapter_version) == (3, 0)
        assert client_sync(client, server.url, token).updated == {"docs": (2, 3, "delta-2-3")}
        reopened = Store.open(client / "collections", "docs")
        assert reopened.adapter is not None and reopened.adapter.version == 0
        assert np.allclose(reopened.adapter.matrix, np.eye(384))
    store.close()


def test_evaluate_counts_ranks_of_positives() -> None:
    vectors = np.eye(4, dtype=np.float32)
    exs = [Example(np.array([1, 0.1, 0, 0], np.float32), ("b",)), Example(np.array([0, 0, 1, 0], np.float32), ("c",))]
    m = evaluate(None, exs, ["a", "b", "c", "d"], vectors)
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1) / 2) and m["recall@10"] == 1.0
