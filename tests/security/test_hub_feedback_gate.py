"""One token cannot own the adapter's quality gate.

The world: synthetic document vectors, honest laptops whose votes agree with the current ranking (their
queries are already answered well), and one hostile token that floods votes for a different, learnable
ranking (the documents nearest to a distorted query). Stored as the hub operator's own, that flood is
enough to publish an adapter (the control); from a token, it is capped, judged on everyone else's
held-out queries, and nothing is published. A revoked token's votes stop counting, and an uploader
cannot choose which of its votes are held out.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np
import pytest

from outpost.adapt import Example, cap_sources, split
from outpost.embed.quantize import quantize
from outpost.hub.home import HubHome
from outpost.hub.learning import examples, store_feedback, train_and_publish, untrained_count
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.records import Changeset, Chunk, EmbeddingIdentity

DIM = 32
DOCS = 600
FLOOD = 800  # hostile votes: four times what the honest laptops sent
FAST = {"epochs": 20, "lr": 2e-3}  # enough to learn the distortion here; keeps each training run to seconds


def world(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    docs = rng.normal(size=(DOCS, DIM)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    distortion = np.eye(DIM) + 1.5 * rng.normal(size=(DIM, DIM)) / np.sqrt(DIM)  # the ranking the attacker wants
    return docs, distortion.astype(np.float32)


def hub_with(tmp_path: Path, docs: np.ndarray) -> Hub:
    home = HubHome.at(tmp_path / "hub-home")
    home.init()
    hub = Hub(home)
    store = hub.store("docs", create=True)
    q, s = quantize(docs)
    chunks = [Chunk(f"c{i}", f"d{i}.txt", 0, f"document {i}") for i in range(len(docs))]
    hub.publish(store, Changeset("docs", 0, chunks, q, s, embedding=EmbeddingIdentity("synthetic", "0" * 64, DIM, 256)))
    store.close()
    return hub


def votes(docs: np.ndarray, n: int, seed: int, rotation: np.ndarray | None = None) -> list[dict]:  # type: ignore[type-arg]
    """Queries near a document; the positive is that document (honest) or the one nearest the distorted query."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, len(docs), n)
    queries = docs[targets] + 0.1 * rng.normal(size=(n, DIM)).astype(np.float32)
    if rotation is not None:
        targets = np.argmax((queries @ rotation.T) @ docs.T, axis=1)
    return [
        {
            "id": uuid.UUID(int=int(rng.integers(0, 2**62))).hex,
            "query_vector": q.tolist(),
            "shown": [f"c{t}"],
            "answer_vote": 1,
            "source_votes": {f"c{t}": 1},
        }
        for q, t in zip(queries, targets)
    ]


@pytest.fixture
def flooded(tmp_path: Path) -> tuple[Hub, Tokens, list[dict], list[dict]]:  # type: ignore[type-arg]
    docs, rotation = world()
    hub = hub_with(tmp_path, docs)
    tokens = Tokens(hub.home)
    honest = [tokens.create(f"laptop-{i}", ["docs"], feedback=["docs"])[1] for i in range(2)]
    hostile = tokens.create("hostile", ["docs"], feedback=["docs"])[1]
    for i, token in enumerate(honest):
        store_feedback(hub.home, "docs", token.id, votes(docs, 100, seed=10 + i))
    flood = votes(docs, FLOOD, seed=99, rotation=rotation)
    store_feedback(hub.home, "docs", hostile.id, flood)
    return hub, tokens, flood, votes(docs, 200, seed=5)


@pytest.mark.slow
def test_the_flood_would_publish_if_it_were_trusted(tmp_path: Path) -> None:
    """The control: the same hostile votes, stored as the hub operator's own, do get an adapter published,
    so the gate below refuses them for the right reason (who sent them), not because they are unlearnable."""
    docs, rotation = world()
    hub = hub_with(tmp_path, docs)
    store_feedback(hub.home, "docs", None, votes(docs, FLOOD, seed=99, rotation=rotation))
    report = train_and_publish(hub, "docs", **FAST)
    assert report.published, report.reason


def test_a_hostile_token_flooding_votes_cannot_publish_an_adapter(flooded) -> None:  # type: ignore[no-untyped-def]
    hub, *_ = flooded
    report = train_and_publish(hub, "docs", **FAST)
    assert not report.published, report.reason
    assert report.train_examples + report.heldout_examples <= 2 * 200  # the flood counted at most as much as all others
    assert hub.info("docs").version == 1


@pytest.mark.slow
def test_uncapped_the_flood_still_fails_on_everyone_elses_held_out_queries(flooded) -> None:  # type: ignore[no-untyped-def]
    """The second defence alone: with the share cap off, the flood dominates training and the pooled held-out
    set, but the adapter must also gain on the queries of everyone but each token, and it does not."""
    hub, tokens, *_ = flooded
    hostile = next(t.id for t in tokens.list() if t.name == "hostile")
    report = train_and_publish(hub, "docs", token_share=1.0, **FAST)
    assert not report.published, report.reason
    assert f"without token {hostile}'s queries" in report.reason
    assert report.after["mrr@10"] > report.before["mrr@10"]  # the pooled gate alone would have let it through


def test_a_token_alone_cannot_publish_an_adapter(tmp_path: Path) -> None:
    docs, rotation = world()
    hub = hub_with(tmp_path, docs)
    token = Tokens(hub.home).create("only", ["docs"], feedback=["docs"])[1]
    store_feedback(hub.home, "docs", token.id, votes(docs, FLOOD, seed=99, rotation=rotation))
    with pytest.raises(Exception, match="capped at 50%"):
        train_and_publish(hub, "docs", **FAST)
    assert hub.info("docs").version == 1


def test_a_revoked_tokens_votes_stop_counting(flooded) -> None:  # type: ignore[no-untyped-def]
    hub, tokens, flood, _ = flooded
    assert len(examples(hub.home, "docs")) == 200 + FLOOD
    tokens.revoke("hostile")
    counted = examples(hub.home, "docs")
    assert len(counted) == 200
    assert untrained_count(hub.home, "docs") == 200  # nor does its flood trigger automatic training
    assert not {ex.query.tobytes() for ex in counted} & {
        np.asarray(v["query_vector"], np.float32).tobytes() for v in flood
    }
    assert {ex.source for ex in counted} == {str(t.id) for t in tokens.list() if t.name.startswith("laptop")}


def test_an_uploader_cannot_choose_which_votes_are_held_out(tmp_path: Path) -> None:
    """Ids picked so that a public hash of the id would put every one of them in the held-out part land there
    no more often than chance: the split key is an HMAC under a secret only the hub holds."""
    docs, _ = world()
    hub = hub_with(tmp_path, docs)
    token = Tokens(hub.home).create("steer", ["docs"], feedback=["docs"])[1]
    chosen: list[str] = []
    n = 0
    while len(chosen) < 300:
        candidate = f"steer{n}"
        n += 1
        if int(hashlib.sha256(candidate.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < 0.2:
            chosen.append(candidate)
    items = votes(docs, len(chosen), seed=3)
    for vote, item_id in zip(items, chosen):
        vote["id"] = item_id
    store_feedback(hub.home, "docs", token.id, items)
    _, held = split(examples(hub.home, "docs"))
    assert 0.08 < len(held) / len(chosen) < 0.35  # chance is 0.2; steered would be 1.0


def test_the_cap_keeps_each_token_at_most_its_share() -> None:
    def ex(source: str, i: int) -> Example:
        return Example(np.zeros(2, np.float32), ("c",), key=f"{source}{i:04d}", source=source)

    pool = [ex("7", i) for i in range(900)] + [ex("8", i) for i in range(60)] + [ex("", i) for i in range(40)]
    kept = cap_sources(pool, 0.5)
    counts = {s: sum(1 for e in kept if e.source == s) for s in ("7", "8", "")}
    assert counts == {"7": 100, "8": 60, "": 40}  # token 7 ≤ all others (100); the operator's own never capped
    assert len(cap_sources(pool, 1.0)) == len(pool)
