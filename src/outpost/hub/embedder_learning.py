"""The hub fine-tunes a collection's embedder and ships it when held-out queries improve.

Data, all optional but not all empty:

- judged queries that carry their text: feedback from outposts whose settings send text, and labelled qrels
  imported with ``outpost hub feedback import`` (both are feedback rows; a revoked token's stop counting);
- questions the hub's own GGUF model writes for a sample of the collection's chunks (cached in the hub home
  under ``learning/<collection>/questions.jsonl``, so a second run generates only for new chunks).

The held-out split is the adapter's (:func:`outpost.hub.learning.split_key`: an HMAC the uploader cannot
steer), and each token's share is capped the same way (``adapt.cap_sources``). Generated questions are split
by the same hashed key, so a hub with no judged queries still has held-out ones to gate on. Training, the
consistency filter and the gate are :mod:`outpost.finetune.embedder`; shipping (re-embedding every chunk
with the exported encoder, one new version, the laptops' switch) is :func:`outpost.hub.embedder.publish_embedder`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from outpost.adapt import Example, cap_sources, split
from outpost.embed.base import Embedder
from outpost.embed.factory import load_embedder
from outpost.errors import ConfigError
from outpost.finetune.embedder import (
    EmbedderTrainConfig,
    GateResult,
    HybridIndex,
    Judged,
    Pair,
    candidate_index,
    gate,
    generate_questions,
    judged_pairs,
    mine_pairs,
    sample_passages,
    store_bm25,
    store_passages,
    train_embedder,
)
from outpost.hub.learning import _example, _split_secret, split_key
from outpost.hub.service import Hub
from outpost.learn import collection_vectors
from outpost.settings import Settings

__all__ = ["EmbedderReport", "learn_embedder"]

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


@dataclass
class EmbedderReport:
    collection: str
    published: bool
    version: int | None
    reason: str
    sources: dict[str, int] = field(default_factory=dict)  # training pairs by origin
    heldout: int = 0
    generated: int = 0  # questions the generator wrote
    inconsistent: int = 0  # of those, dropped by the consistency filter
    gate: GateResult | None = None
    train_seconds: float = 0.0
    steps: int = 0


def _feedback(hub: Hub, collection: str, share: float) -> tuple[list[tuple[Example, str]], list[tuple[Example, str]]]:
    """(train, held out) judged queries with text, as (example, query text): split and capped like the adapter's."""
    home = hub.home
    secret = _split_secret(home)
    rows = home.metadata().feedback(collection, counting_only=True, with_query=True)
    pairs = [(_example(r, split_key(secret, r.id)), r.query or "") for r in rows]
    text = {ex.key: q for ex, q in pairs}
    usable = [ex for ex, _ in pairs if ex.positives]
    train, held = split(usable, 0.2)
    train, held = cap_sources(train, share), cap_sources(held, share)
    return [(ex, text[ex.key]) for ex in train], [(ex, text[ex.key]) for ex in held]


def _held_generated(pairs: list[Pair], secret: bytes) -> tuple[list[Pair], list[Pair]]:
    """Generated pairs split by the hub's keyed hash of the chunk id (a fifth held out, at least one)."""
    keyed = [(split_key(secret, "generated\0" + p.positive), p) for p in pairs]
    examples = [Example(np.zeros(1, np.float32), (p.positive,), key=k) for k, p in keyed]
    train_ex, held_ex = split(examples, 0.2)
    if not held_ex and len(pairs) > 1:
        held_ex = sorted(examples, key=lambda e: e.key)[:1]
    held_keys = {e.key for e in held_ex}
    return [p for k, p in keyed if k not in held_keys], [p for k, p in keyed if k in held_keys]


def _current_index(hub: Hub, store: Any, embedder: Embedder) -> HybridIndex:
    """Search as the collection searches now: its stored vectors, its encoder for queries, its BM25."""
    current = hub.collection_embedder(store, embedder)
    ids, vectors = collection_vectors(store)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return HybridIndex(ids, vectors, current.embed, store_bm25(store))


def learn_embedder(
    hub: Hub,
    collection: str,
    settings: Settings,
    *,
    generator: Path | None = None,
    max_chunks: int = 200,
    generate_minutes: float | None = None,
    consistency_k: int = 10,
    config: EmbedderTrainConfig | None = None,
    min_gain: float = 0.0,
    token_share: float = 0.5,
    publish: bool = True,
    progress: Progress | None = None,
) -> EmbedderReport:
    """Fine-tune ``base_model`` on the collection's judged and generated questions; publish if the gate passes.

    The base model is ``settings.embed_model`` (the collection's own encoder searches for "before" when it has
    one); ``generator`` is a GGUF path (None: judged queries only); ``token_share`` caps each token's share of
    the judged queries (setting ``hub_feedback_token_share``, as for the adapter).
    """
    store = hub.store(collection)
    try:
        passages = store_passages(store)
        if not passages:
            raise ConfigError(f"Collection {collection!r} has no chunks to learn from")
        chunk_doc = {p.id: p.doc for p in passages}
        texts = {p.id: p.text for p in passages}
        train_fb, held_fb = _feedback(hub, collection, token_share)
        pairs = judged_pairs(((q, ex.positives, ex.negatives) for ex, q in train_fb), origin="feedback")
        held = [Judged(q, {c: 1 for c in ex.positives}) for ex, q in held_fb]
        report = EmbedderReport(collection, False, None, "")
        if generator is None and (not pairs or not held):
            return _not_enough(report, pairs, held)
        current = _current_index(hub, store, load_embedder(settings))
        if generator is not None:
            cache = hub.home.root / "learning" / collection / "questions.jsonl"
            sample = sample_passages(passages, max_chunks)
            budget = generate_minutes * 60 if generate_minutes is not None else None
            generated = generate_questions(sample, generator, cache, time_budget_s=budget, progress=progress)
            current.prime(list(generated.values()))
            mined = mine_pairs(generated, chunk_doc, current.search, k=consistency_k)
            report.generated, report.inconsistent = len(generated), mined.inconsistent
            train_gen, held_gen = _held_generated(mined.pairs, _split_secret(hub.home))
            pairs += train_gen
            held += [Judged(p.query, {p.positive: 1}) for p in held_gen]
        report.sources, report.heldout = _origins(pairs), len(held)
        if not pairs or not held:
            return _not_enough(report, pairs, held)
        with tempfile.TemporaryDirectory(prefix="outpost-embedder-") as work:
            model_dir = Path(work) / "model"
            started = time.monotonic()
            trained = train_embedder(settings.embed_model, pairs, texts, model_dir, config, progress)
            report.train_seconds, report.steps = time.monotonic() - started, trained.steps
            candidate = candidate_index(load_embedder(settings, str(model_dir)), passages, current.bm25, progress)
            report.gate = gate(current.search, candidate.search, held, min_gain)
            report.reason = report.gate.summary()
            if not report.gate.improved:
                report.reason += ": not published"
                return report
            if not publish:
                report.reason += ": passes (not published: dry run)"
                return report
            report.version = _publish(hub, collection, model_dir, report, trained.losses)
            report.published = True
            report.reason += f": published as version {report.version}"
            return report
    finally:
        store.close()


def _not_enough(report: EmbedderReport, pairs: list[Pair], held: list[Judged]) -> EmbedderReport:
    report.reason = (
        f"not enough data: {len(pairs)} training pairs and {len(held)} held-out queries (judged queries need their "
        "text: `outpost hub feedback import`, or outposts that send query text; or a --generator)"
    )
    return report


def _origins(pairs: list[Pair]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in pairs:
        out[p.origin] = out.get(p.origin, 0) + 1
    return out


def _publish(hub: Hub, collection: str, model_dir: Path, report: EmbedderReport, losses: list[float]) -> int:
    from outpost.hub.embedder import publish_embedder

    gate_result = report.gate
    assert gate_result is not None  # publishing follows a passed gate
    metrics: dict[str, Any] = {
        m: {"before": gate_result.before[m], "after": gate_result.after[m]} for m in ("ndcg@10", "mrr@10")
    }
    metrics |= {
        "heldout_queries": gate_result.queries,
        "train_pairs": report.sources,
        "generated_questions": report.generated,
        "steps": report.steps,
        "train_seconds": round(report.train_seconds, 1),
        "loss": [round(losses[0], 4), round(losses[-1], 4)] if losses else [],
    }
    return publish_embedder(hub, collection, model_dir, metrics)
