"""Learning on the hub: store feedback, turn it into training examples, train and publish adapters.

Feedback rows are keyed by the id the outpost gave them, so a retried upload is ignored. Every item is
checked against its collection before it is stored (:func:`check_feedback`: vector dimension, chunk ids
that exist) and keeps the id of the token that uploaded it, so a revoked token's votes stop counting
(:func:`examples` skips them). Training
reads the collection's own int8 vectors (no text, no re-embedding), fits an adapter with
``outpost.adapt.fit`` and publishes it only if held-out MRR@10 improves; publishing is a normal new
version whose pack carries ``adapter.npy``. Rolling back publishes a newer version that carries the
previous adapter: versions only move forward. The held-out split uses a key the hub derives from each
item id with a secret (:func:`split_key`), so an uploader cannot choose which of its votes are held out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from outpost.adapt import Example, fit
from outpost.embed.base import Embedder
from outpost.errors import ConfigError
from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.learn import collection_vectors, qrels_examples
from outpost.records import Adapter, Changeset
from outpost.store.sqlite import Store

if TYPE_CHECKING:
    from outpost.hub.metadata import FeedbackItem

__all__ = [
    "Rejection",
    "TrainReport",
    "check_feedback",
    "examples",
    "import_qrels",
    "rollback",
    "split_key",
    "store_feedback",
    "train_and_publish",
    "untrained_count",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejection:
    """A feedback item that does not fit its collection (not stored); ``index`` is its place in the upload."""

    index: int
    id: str
    reason: str


def check_feedback(store: Store, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """Split well-formed items into those that fit ``store`` and those that do not, with the reason.

    The shape (types, counts, finite values, votes in range) is the HTTP layer's job; this checks what only
    the collection knows: the query vector's dimension, and that every chunk shown or voted on exists. An
    item that fails is reported, not stored: a legitimate outpost can hold votes on chunks a later version
    deleted, and those must not block the rest of its queue.
    """
    dim = store.embedding.dimension if store.embedding else None
    wanted = {cid for item in items for cid in (*item.get("shown", []), *item.get("source_votes", {}))}
    known = store.known_chunk_ids(wanted)
    good: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for index, item in enumerate(items):
        reason = _misfit(item, dim, known)
        if reason:
            rejected.append(Rejection(index, str(item["id"]), reason))
        else:
            good.append(item)
    return good, rejected


def _misfit(item: dict[str, Any], dim: int | None, known: set[str]) -> str | None:
    if dim is None:
        return "the collection has no embedding yet"
    if len(item["query_vector"]) != dim:
        return f"query_vector has {len(item['query_vector'])} values; the collection's embedding has {dim}"
    missing = [cid for cid in (*item.get("shown", []), *item.get("source_votes", {})) if cid not in known]
    if missing:
        return f"{len(missing)} chunk id(s) not in the collection, e.g. {missing[0]!r}"
    return None


def store_feedback(home: HubHome, collection: str, token_id: int | None, items: list[dict[str, Any]]) -> int:
    """Insert feedback items; returns how many were new (a retried upload adds none)."""
    from outpost.hub.metadata import FeedbackItem

    rows = [
        FeedbackItem(
            id=str(item["id"]),
            token_id=token_id,
            query=item.get("query"),
            query_vector=np.asarray(item["query_vector"], dtype=np.float32).tobytes(),
            shown=list(item.get("shown", [])),
            answer_vote=item.get("answer_vote"),
            source_votes=dict(item.get("source_votes", {})),
        )
        for item in items
    ]
    return home.metadata().add_feedback(collection, token_id, rows)


def untrained_count(home: HubHome, collection: str) -> int:
    """New votes that count (what triggers automatic training: a revoked token's flood triggers nothing)."""
    return home.metadata().untrained_count(collection)


def _example(row: FeedbackItem, key: str) -> Example:
    """Helpful sources are positives, unhelpful ones hard negatives; a helpful answer with no source votes
    credits its first source, an unhelpful one discredits all it showed."""
    votes, shown = row.source_votes, row.shown
    positives = [cid for cid, v in votes.items() if v]
    negatives = [cid for cid, v in votes.items() if not v]
    if not votes and row.answer_vote == 1 and shown:
        positives = shown[:1]
    if not votes and row.answer_vote == 0:
        negatives = shown
    source = "" if row.token_id is None else str(row.token_id)
    return Example(np.frombuffer(row.query_vector, dtype=np.float32), tuple(positives), tuple(negatives), key, source)


def examples(home: HubHome, collection: str) -> list[Example]:
    """The collection's judged queries that still count: the operator's own, and live tokens' (not revoked)."""
    rows = home.metadata().feedback(collection)
    secret = _split_secret(home)
    return [_example(r, split_key(secret, r.id)) for r in rows]


def _split_secret(home: HubHome) -> bytes:
    """A secret only the hub holds, derived from its signing key (no new state to keep or back up)."""
    raw = home.signing_key.private_bytes_raw()
    return hashlib.sha256(b"outpost feedback split\0" + raw).digest()


def split_key(secret: bytes, item_id: str) -> str:
    """The train/held-out key of an item: an HMAC of its id, which an uploader cannot predict or steer."""
    return hmac.new(secret, item_id.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class TrainReport:
    collection: str
    published: bool
    adapter_version: int | None
    collection_version: int
    before: dict[str, float]
    after: dict[str, float]
    train_examples: int
    heldout_examples: int
    reason: str


def train_and_publish(
    hub: Hub,
    collection: str,
    min_examples: int = 20,
    min_gain: float = 0.005,
    token_share: float = 0.5,
    **train_kw: float,
) -> TrainReport:
    """Fit an adapter from the collection's feedback; publish it only if it beats the current state held out
    (also without any single token's queries; each token supplies at most ``token_share`` of the data)."""
    home = hub.home
    store = hub.store(collection)
    try:
        ids, vectors = collection_vectors(store)
        current = store.adapter
        result = fit(
            examples(home, collection),
            ids,
            vectors,
            current.matrix if current else None,
            min_examples=min_examples,
            min_gain=min_gain,
            token_share=token_share,
            **train_kw,
        )
        next_version = home.metadata().next_adapter_version(collection, (current.version if current else 0) + 1)
        reason = (
            f"held-out MRR@10 {result.before['mrr@10']:.4f} → {result.after['mrr@10']:.4f} "
            f"on {result.heldout_examples} queries"
        ) + "".join(f"; {note}" for note in result.notes)
        if not result.improved:
            return TrainReport(
                collection,
                False,
                None,
                store.version,
                result.before,
                result.after,
                result.train_examples,
                result.heldout_examples,
                reason + ": not published",
            )
        adapter = Adapter(next_version, result.matrix)
        version = _publish_adapter(hub, store, adapter, {"before": result.before, "after": result.after})
        home.metadata().mark_trained(collection, next_version)
        return TrainReport(
            collection,
            True,
            next_version,
            version,
            result.before,
            result.after,
            result.train_examples,
            result.heldout_examples,
            reason + ": published",
        )
    finally:
        store.close()


def _publish_adapter(hub: Hub, store: Store, adapter: Adapter, metrics: dict[str, Any]) -> int:
    changeset = Changeset(
        collection=store.name,
        base_version=store.version,
        adapter=adapter,
        embedding=store.embedding,
        chunker_id=store.chunker_id,
    )
    version = hub.publish(store, changeset)
    matrix = adapter.matrix.astype(np.float32)
    hub.home.metadata().save_adapter(store.name, adapter.version, matrix.tobytes(), matrix.shape[0], metrics, version)
    return version


def rollback(hub: Hub, collection: str) -> tuple[int, int]:
    """Publish a new version carrying the adapter before the current one (identity if none); returns
    (collection version, adapter version now in force)."""
    store = hub.store(collection)
    try:
        current = store.adapter
        if current is None:
            raise ConfigError(f"Collection {collection!r} has no adapter to roll back")
        row = hub.home.metadata().previous_adapter(collection, current.version)
        if row is None:
            dim = current.matrix.shape[0]
            previous = Adapter(0, np.eye(dim, dtype=np.float32))
        else:
            number, matrix, dim = row
            previous = Adapter(number, np.frombuffer(matrix, np.float32).reshape(dim, dim))
        return _publish_adapter(hub, store, previous, {"rollback_from": current.version}), previous.version
    finally:
        store.close()


def import_qrels(
    hub: Hub, collection: str, embedder: Embedder, qrels: dict[str, dict[str, int]], queries: dict[str, str]
) -> int:
    """Store labelled queries as feedback (ids derived from collection and query id: re-import is a no-op)."""
    store = hub.store(collection)
    try:
        items = [
            {
                "id": hashlib.sha256(f"qrels\0{collection}\0{ex.key}".encode()).hexdigest()[:32],
                "query_vector": ex.query.tolist(),
                "query": queries.get(ex.key),
                "shown": [*ex.positives, *ex.negatives],
                "answer_vote": None,
                "source_votes": {**{n: 0 for n in ex.negatives}, **{p: 1 for p in ex.positives}},
            }
            for ex in qrels_examples(store, embedder, qrels, queries)
        ]
    finally:
        store.close()
    return store_feedback(hub.home, collection, None, items)
